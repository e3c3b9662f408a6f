/** Reading request bodies under a byte limit, and the 413 past it. */
import type { IncomingMessage } from 'node:http';
import { VaultError } from '../errors.js';

/** The default request body limit: 100 KiB. */
export const DEFAULT_BODY_LIMIT_BYTES = 100 * 1024;

export const tooLarge = (limit: number) =>
  new VaultError('PAYLOAD_TOO_LARGE', `Request body exceeds the ${formatBytes(limit)} limit`);

const formatBytes = (n: number) => (n % 1024 === 0 ? `${n / 1024} KiB` : `${n} bytes`);

/**
 * Reads a Node request body, refusing it as soon as it passes `limit` bytes (or at once
 * when `content-length` already says so). A refused body is drained, not destroyed, so
 * the client still receives the 413.
 */
export function readNodeBody(request: IncomingMessage, limit: number): Promise<Uint8Array> {
  const declared = Number(request.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    request.resume();
    return Promise.reject(tooLarge(limit));
  }
  // Gone already (the client left while the request was authenticated): no 'close' will come.
  if (request.destroyed || request.readableEnded) {
    return Promise.reject(new VaultError('VALIDATION_ERROR', 'The request body could not be read'));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) {
        chunks.push(chunk);
        return;
      }
      cleanup();
      request.resume();
      reject(tooLarge(limit));
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks, size));
    };
    const onError = (error?: Error) => {
      cleanup();
      reject(new VaultError('VALIDATION_ERROR', 'The request body could not be read', error !== undefined ? { cause: error } : {}));
    };
    // A client that goes away mid-body: the stream closes without 'end' (and may not error).
    const onClose = () => onError();
    const cleanup = () => {
      request.off('data', onData);
      request.off('end', onEnd);
      request.off('error', onError);
      request.off('close', onClose);
    };
    request.on('data', onData);
    request.on('end', onEnd);
    request.on('error', onError);
    request.on('close', onClose);
  });
}

/**
 * Serves a Web-standard `fetch` handler from a Node HTTP server: the bridge `serve
 * --framework fetch` and the benchmark use. The request body streams with back-pressure.
 */
import type http from 'node:http';
import { VaultError } from '../errors.js';
import { errorResponse } from './handler.js';
import { wireHeaderDefects } from './node.js';

/** A Host header that is only a host name or address and an optional port. */
const PLAIN_HOST = /^(?:[a-z0-9._-]+|\[[0-9a-f:.]+\])(?::\d{1,5})?$/i;

/**
 * The request body as a Web stream that never outlives its consumer: once the reader
 * cancels (a 413) the rest of the body is read and dropped, so the response can still go
 * out, and nothing is queued on the closed stream; so is a body left unread when the
 * response is sent. (`Readable.toWeb` throws an uncaught
 * `ERR_INVALID_STATE` when data arrives after a cancel.) A client that goes away mid-body
 * errors the stream.
 */
function nodeBodyStream(req: http.IncomingMessage, res: http.ServerResponse): ReadableStream<Uint8Array> {
  let settled = false;
  // Answered without reading the whole body (a 401, say): drop the rest, or the paused
  // request would keep the connection from reading its next request.
  res.once('finish', () => {
    settled = true;
    req.resume();
  });
  return new ReadableStream<Uint8Array>(
    {
      start(controller) {
        const onData = (chunk: Buffer) => {
          if (settled) return;
          controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
          if ((controller.desiredSize ?? 0) <= 0) req.pause();
        };
        const fail = () => {
          if (settled) return;
          settled = true;
          controller.error(new Error('The request body could not be read'));
        };
        req.on('data', onData);
        req.once('end', () => {
          if (settled) return;
          settled = true;
          controller.close();
        });
        req.once('error', fail);
        req.once('close', () => {
          if (!req.readableEnded) fail();
        });
        req.pause();
      },
      pull() {
        req.resume();
      },
      cancel() {
        settled = true;
        req.resume();
      },
    },
    { highWaterMark: 1 },
  );
}

/** Serves a Web-standard fetch handler from a Node HTTP server (also used by the benchmark). */
export function nodeToFetch(
  handle: (
    request: Request,
    info: { clientAddress?: string | undefined; rawUrl?: string; rawHeaders?: readonly string[]; headerDefects?: readonly string[] | undefined },
  ) => Promise<Response>,
): http.RequestListener {
  return (req, res) => {
    const send = (response: Response) =>
      response.arrayBuffer().then((body) => {
        res.writeHead(response.status, { ...Object.fromEntries(response.headers), 'content-length': String(body.byteLength) });
        res.end(Buffer.from(body));
      });
    const fail = () => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      res.writeHead(500, { 'content-type': 'application/json; charset=utf-8' });
      res.end(JSON.stringify(errorResponse(new VaultError('INTERNAL', 'Internal server error')).body));
    };
    const rawUrl = req.url ?? '/';
    let request: Request;
    try {
      const headers = new Headers();
      for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i] as string, req.rawHeaders[i + 1] as string);
      const method = req.method ?? 'GET';
      const hasBody = method !== 'GET' && method !== 'HEAD';
      // The Host header never becomes part of the path: a Host that is not just a host
      // (say `127.0.0.1/api/...`) is replaced, and the API routes on `rawUrl` anyway.
      const host = req.headers.host !== undefined && PLAIN_HOST.test(req.headers.host) ? req.headers.host : 'localhost';
      const url = rawUrl.startsWith('/') ? new URL(`http://${host}${rawUrl}`) : new URL(rawUrl);
      request = new Request(url, {
        method,
        headers,
        ...(hasBody ? { body: nodeBodyStream(req, res), duplex: 'half' } : {}),
      } as RequestInit);
    } catch {
      // Request refuses some methods and URLs that Node accepts.
      const response = errorResponse(new VaultError('VALIDATION_ERROR', 'The request could not be parsed'));
      send(new Response(JSON.stringify(response.body), { status: response.status, headers: { 'content-type': 'application/json; charset=utf-8' } })).catch(fail);
      return;
    }
    handle(request, {
      clientAddress: req.socket.remoteAddress,
      rawUrl,
      rawHeaders: req.rawHeaders,
      headerDefects: wireHeaderDefects(req),
    })
      .then(send)
      .catch(fail);
  };
}

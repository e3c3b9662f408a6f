/** The deadline on every store call: past it, or on any backend failure, one STORE_UNAVAILABLE. */
import { VaultError, isVaultError } from '../errors.js';
import type { VaultStore } from './store.js';

/** Default deadline for one store call. */
export const DEFAULT_STORE_TIMEOUT_MS = 2000;

const METHODS = ['get', 'put', 'insert', 'replace', 'remove', 'list', 'removeGroup', 'batch', 'increment', 'purgeExpired', 'scan', 'readIndex'] as const;

/**
 * Wraps a store so that every call settles within `timeoutMs`, and every failure the
 * backend reports becomes one `STORE_UNAVAILABLE` error that names no internals.
 */
export function withDeadline(store: VaultStore, timeoutMs: number): VaultStore {
  const wrapped: Record<string, unknown> = { kind: store.kind, close: () => store.close() };
  for (const method of METHODS) {
    const original = store[method] as (...args: unknown[]) => Promise<unknown>;
    wrapped[method] = (...args: unknown[]) => callWithDeadline(() => original.apply(store, args), timeoutMs);
  }
  return wrapped as unknown as VaultStore;
}

async function callWithDeadline<T>(call: () => Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new VaultError('STORE_UNAVAILABLE', `The credential store did not answer within ${timeoutMs} ms`)),
      timeoutMs,
    );
    timer.unref();
  });
  try {
    return await Promise.race([call(), deadline]);
  } catch (error) {
    if (isVaultError(error)) throw error;
    // The cause keeps the backend's own error for operators; the message stays generic.
    throw new VaultError('STORE_UNAVAILABLE', 'The credential store is unavailable', { cause: error });
  } finally {
    clearTimeout(timer);
  }
}

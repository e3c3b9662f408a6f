/** The deadline on every store call: past it, or on any backend failure, one STORE_UNAVAILABLE. */
import { performance } from 'node:perf_hooks';
import { VaultError, isVaultError } from '../errors.js';
import { isInProcess, markInProcess, type VaultStore } from './store.js';

/** Default deadline for one store call. */
export const DEFAULT_STORE_TIMEOUT_MS = 2000;

const METHODS = ['get', 'put', 'insert', 'replace', 'remove', 'list', 'removeGroup', 'batch', 'increment', 'purgeExpired', 'scan', 'readIndex'] as const;

/** One store call still waiting for its answer, in a list ordered by deadline. */
interface Pending {
  /** `performance.now()` past which the call is answered STORE_UNAVAILABLE. */
  readonly due: number;
  readonly reject: (error: unknown) => void;
  prev: Pending | undefined;
  next: Pending | undefined;
  /** Whether it is still in the list (an answer and the deadline race; the first wins). */
  waiting: boolean;
}

/**
 * Wraps a store so that every call settles within `timeoutMs`, and every failure the
 * backend reports becomes one `STORE_UNAVAILABLE` error that names no internals.
 *
 * A store declared with `markInProcess` (it answers from memory, without I/O) gets no
 * deadline, only the failure mapping.
 *
 * Every call of one store has the same timeout, so calls wait in the order of their
 * deadlines: one list, and one timer armed for its head, serve all of them (a timer per
 * call cost more than the memory store's whole write).
 */
export function withDeadline(store: VaultStore, timeoutMs: number): VaultStore {
  let head: Pending | undefined;
  let tail: Pending | undefined;
  let timer: NodeJS.Timeout | undefined;

  const unlink = (node: Pending): boolean => {
    if (!node.waiting) return false;
    node.waiting = false;
    if (node.prev === undefined) head = node.next;
    else node.prev.next = node.next;
    if (node.next === undefined) tail = node.prev;
    else node.next.prev = node.prev;
    node.prev = undefined;
    node.next = undefined;
    return true;
  };

  const arm = (delayMs: number): void => {
    // Never early: a timer may fire up to a millisecond before its delay.
    timer = setTimeout(expire, Math.max(1, Math.ceil(delayMs)));
    timer.unref();
  };

  function expire(): void {
    timer = undefined;
    const now = performance.now();
    while (head !== undefined && head.due <= now) {
      const node = head;
      unlink(node);
      node.reject(new VaultError('STORE_UNAVAILABLE', `The credential store did not answer within ${timeoutMs} ms`));
    }
    if (head !== undefined) arm(head.due - now);
  }

  const guard = <T>(call: () => Promise<T>): Promise<T> => {
    let answer: Promise<T>;
    try {
      // A store that hands back a plain value instead of a promise still gets the one failure path.
      answer = Promise.resolve(call());
    } catch (error) {
      // A store that throws instead of rejecting still gets one failure path.
      return Promise.reject(storeFailure(error));
    }
    return new Promise<T>((resolve, reject) => {
      const node: Pending = { due: performance.now() + timeoutMs, reject, prev: tail, next: undefined, waiting: true };
      if (tail === undefined) head = node;
      else tail.next = node;
      tail = node;
      // The armed timer, if any, is for an earlier deadline and re-arms for the later ones.
      if (timer === undefined) arm(timeoutMs);
      answer.then(
        (value) => {
          if (unlink(node)) resolve(value);
        },
        (error: unknown) => {
          if (unlink(node)) reject(storeFailure(error));
        },
      );
    });
  };

  const wrapped: Record<string, unknown> = { kind: store.kind, close: () => store.close() };
  const inProcess = isInProcess(store);
  for (const method of METHODS) {
    const original = store[method] as (...args: unknown[]) => Promise<unknown>;
    wrapped[method] = inProcess
      ? (...args: unknown[]) => {
          try {
            return Promise.resolve(original.apply(store, args)).catch(rejectAsFailure);
          } catch (error) {
            return rejectAsFailure(error);
          }
        }
      : (...args: unknown[]) => guard(() => original.apply(store, args));
  }
  // The wrapped store is in process exactly when the store it wraps is.
  if (inProcess) markInProcess(wrapped as unknown as VaultStore);
  return wrapped as unknown as VaultStore;
}

const rejectAsFailure = (error: unknown): Promise<never> => Promise.reject(storeFailure(error));

function storeFailure(error: unknown): VaultError {
  if (isVaultError(error)) return error;
  // The cause keeps the backend's own error for operators; the message stays generic.
  return new VaultError('STORE_UNAVAILABLE', 'The credential store is unavailable', { cause: error });
}

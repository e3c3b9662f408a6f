/**
 * Waiting in tests without asserting on durations: poll until something holds (the bound
 * only stops a hang), and record how a call ended and in what order (DESIGN section 6).
 */

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls `condition` every 20 ms until it holds; after `timeoutMs` throws an error naming
 * `what` (a function is called only then, so it can describe the state at that moment).
 *
 * @example
 * ```ts
 * await waitFor(() => output.includes('listening'), () => `no listening line in ${output}`, 30_000);
 * ```
 */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  what: string | (() => string),
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}`);
    }
    await sleep(20);
  }
}

/** How a call ended: its value, or its error's name and (for a `VaultError`) code, never its message. */
export type Settled<T> = { ok: true; value: T; seq: number } | { ok: false; error: string; seq: number };

let sequence = 0;

/**
 * Runs `call` and reports how it ended, numbered in the order calls settle, so a test
 * states "rejected with STORE_UNAVAILABLE" or "settled before the backend came back"
 * (compare `seq` with {@link mark}) instead of measuring milliseconds.
 */
export async function settle<T>(call: () => Promise<T>): Promise<Settled<T>> {
  try {
    const value = await call();
    return { ok: true, value, seq: ++sequence };
  } catch (error) {
    return { ok: false, error: errorName(error), seq: ++sequence };
  }
}

/** A point in the same sequence as {@link settle}: everything settled before it has a smaller `seq`. */
export function mark(): number {
  return ++sequence;
}

/** `VaultError STORE_UNAVAILABLE`, `RangeError`, ...: enough to assert on, never a message that could hold a secret. */
export function errorName(error: unknown): string {
  if (!(error instanceof Error)) return typeof error;
  const code = (error as { code?: unknown }).code;
  return error.name === 'VaultError' && typeof code === 'string' ? `VaultError ${code}` : error.name;
}

/** The one way the tests take a failure apart: the promise must reject with a VaultError (or a given class). */
import { expect } from 'vitest';
import { VaultError } from '../../src/errors.js';

/**
 * Awaits `promise`, expects it to reject with a {@link VaultError} (or another error class
 * given as `kind`), and returns that error for the caller's own checks on its code and message.
 *
 * @example
 * ```ts
 * expect((await rejection(getDefaultAppCredential(vault, ref, 'k'))).code).toBe('DECRYPTION_FAILED');
 * ```
 */
export async function rejection<E extends Error = VaultError>(
  promise: Promise<unknown>,
  kind: abstract new (...args: never[]) => E = VaultError as unknown as abstract new (...args: never[]) => E,
): Promise<E> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(kind);
  return error as E;
}

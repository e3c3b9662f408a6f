/** The one way the tests take a failure apart: the promise must reject with a VaultError. */
import { expect } from 'vitest';
import { VaultError } from '../../src/errors.js';

/**
 * Awaits `promise`, expects it to reject with a {@link VaultError}, and returns that error
 * for the caller's own checks on its code and message.
 *
 * @example
 * ```ts
 * expect((await rejection(getDefaultAppCredential(vault, ref, 'k'))).code).toBe('DECRYPTION_FAILED');
 * ```
 */
export async function rejection(promise: Promise<unknown>): Promise<VaultError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(VaultError);
  return error as VaultError;
}

/** Secrets handed out (API keys, opaque tokens): random generation, stored hashes, constant-time comparison. */
import { hash, randomBytes, timingSafeEqual } from 'node:crypto';
import { VaultError } from '../errors.js';

/** Fewest random bytes {@link randomToken} hands out: 128 bits, what makes a fast hash safe. */
export const MIN_TOKEN_BYTES = 16;

/**
 * The stored form of an API key or opaque session token: SHA-256, hex (64 characters).
 *
 * @example
 * ```ts
 * const token = randomToken(32);
 * await store.put(group, `session:${hashSecret(token)}`, record); // only the hash is kept
 * ```
 */
export function hashSecret(secret: string): string {
  // These secrets are 128+ random bits, not passwords: guessing is hopeless, so a slow KDF buys nothing.
  // One-shot: no Hash object per call (this runs on every API-key request).
  return hash('sha256', secret, 'hex');
}

/**
 * Compare two hashes from {@link hashSecret} in constant time. Different lengths return
 * `false` (the length of a hash is not a secret).
 *
 * @example
 * ```ts
 * if (!secretsEqual(hashSecret(presented), stored.keyHash)) throw new VaultError('INVALID_API_KEY', 'Invalid API key');
 * ```
 */
export function secretsEqual(aHash: string, bHash: string): boolean {
  const a = Buffer.from(aHash, 'utf8');
  const b = Buffer.from(bHash, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * `bytes` cryptographically random bytes as base64url (no padding). At least
 * {@link MIN_TOKEN_BYTES}; throws `INTERNAL` otherwise, as that is a programming error.
 *
 * @example
 * ```ts
 * const apiKey = `cv_${randomToken(32)}`; // 43 characters after the prefix
 * ```
 */
export function randomToken(bytes: number): string {
  if (!Number.isInteger(bytes) || bytes < MIN_TOKEN_BYTES || bytes > 1024) {
    throw new VaultError('INTERNAL', `randomToken needs an integer byte count from ${MIN_TOKEN_BYTES} to 1024`);
  }
  return randomBytes(bytes).toString('base64url');
}

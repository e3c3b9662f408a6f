/**
 * Failed-authentication counters: one expiring counter per subject (a client address, an
 * API key id) in a `limit:` group of its own. This module owns that group's layout; the
 * limiter in `src/auth` counts through it.
 */
import { escapeComponent } from './layout.js';
import type { VaultStore } from './store.js';

/** A subject failures are counted against, e.g. `ip:203.0.113.9`, `key:3f2a...`. */
export type LimitSubject = string;

const COUNTER = 'count';
const limitGroup = (subject: LimitSubject) => `limit:${escapeComponent(subject)}`;

/** A subject's failures in the current window, and when that window ends (ms since epoch). */
export interface FailureCount {
  count: number;
  expiresAt: number;
}

/**
 * Counts one failure against `subject`, atomically across every process sharing the store.
 * The first failure opens a window of `windowMs`; the count resets when it runs out.
 *
 * @example
 * ```ts
 * const { count } = await countFailure(vault.store, 'ip:203.0.113.9', 300_000);
 * ```
 */
export async function countFailure(store: VaultStore, subject: LimitSubject, windowMs: number): Promise<FailureCount> {
  const { count, expiresAt } = await store.increment(limitGroup(subject), COUNTER, windowMs);
  return { count, expiresAt };
}

import { VaultError } from '../core/errors.js';
import { escapeComponent } from '../core/layout.js';
import type { VaultStore } from '../core/store.js';

/** Limits on failed authentications. */
export interface FailedAuthLimitOptions {
  /** Failures allowed per client address (and per API key id) within the window. Default 20. */
  maxFailures?: number;
  /** Length of the counting window, in seconds. Default 300. */
  windowSeconds?: number;
  /**
   * Also count failures against the API key id a request presents (the public part of the
   * key). This stops a guessing attack spread over many addresses, at the price that such
   * an attack also locks the real key out for the window. Default true.
   */
  perApiKeyId?: boolean;
}

/** Subjects a request's failures are counted against, e.g. `ip:203.0.113.9`, `key:3f2a...`. */
export type LimitSubject = string;

const COUNTER = 'count';
const groupOf = (subject: LimitSubject) => `limit:${escapeComponent(subject)}`;

/**
 * Counts failed authentications in the store, so that the count is shared by every
 * process; each process remembers which subjects it has seen go over the limit, so that
 * the check costs nothing on the path of a request that authenticates. A subject over the
 * limit in the store is blocked by a process at the latest at its next failure there: with
 * P processes an attacker gets at most P - 1 tries past the limit.
 */
export class FailedAuthLimiter {
  readonly maxFailures: number;
  readonly windowMs: number;
  readonly perApiKeyId: boolean;
  private readonly blockedUntil = new Map<LimitSubject, number>();

  constructor(
    private readonly store: VaultStore,
    options: FailedAuthLimitOptions = {},
  ) {
    this.maxFailures = options.maxFailures ?? 20;
    this.windowMs = (options.windowSeconds ?? 300) * 1000;
    this.perApiKeyId = options.perApiKeyId ?? true;
    if (!Number.isInteger(this.maxFailures) || this.maxFailures < 1) throw new RangeError('maxFailures must be a positive integer');
    if (!(this.windowMs > 0)) throw new RangeError('windowSeconds must be positive');
  }

  /** Throws `TOO_MANY_REQUESTS` (with a retry delay) if any subject is known to be over the limit. */
  check(subjects: readonly LimitSubject[]): void {
    const now = Date.now();
    let until = 0;
    for (const subject of subjects) {
      const blocked = this.blockedUntil.get(subject);
      if (blocked === undefined) continue;
      if (blocked <= now) this.blockedUntil.delete(subject);
      else until = Math.max(until, blocked);
    }
    if (until > 0) throw tooManyRequests(until - now);
  }

  /** Counts one failure against each subject, and remembers those that reached the limit. */
  async recordFailure(subjects: readonly LimitSubject[]): Promise<void> {
    await Promise.all(
      subjects.map(async (subject) => {
        const { count, expiresAt } = await this.increment(subject);
        if (count >= this.maxFailures) this.blockedUntil.set(subject, expiresAt);
      }),
    );
    // Keep the local memory bounded: forget blocks that have run out.
    if (this.blockedUntil.size > 10_000) {
      const now = Date.now();
      for (const [subject, until] of this.blockedUntil) if (until <= now) this.blockedUntil.delete(subject);
    }
  }

  /** A counter over the contract's insert and compare-and-swap; its expiry fixes the window. */
  private async increment(subject: LimitSubject): Promise<{ count: number; expiresAt: number }> {
    const group = groupOf(subject);
    for (let attempt = 0; attempt < 10; attempt++) {
      if (await this.store.insert(group, COUNTER, '1', { ttlMs: this.windowMs })) {
        return { count: 1, expiresAt: Date.now() + this.windowMs };
      }
      const entry = await this.store.get(group, COUNTER);
      if (entry === undefined) continue;
      const count = Number(entry.value) + 1;
      if (await this.store.replace(group, COUNTER, entry.value, String(count))) {
        return { count, expiresAt: entry.expiresAt ?? Date.now() + this.windowMs };
      }
    }
    // Heavy contention means heavy failure traffic: treat the subject as over the limit.
    return { count: this.maxFailures, expiresAt: Date.now() + this.windowMs };
  }
}

function tooManyRequests(retryMs: number): VaultError {
  const retryAfter = Math.max(1, Math.ceil(retryMs / 1000));
  return new VaultError('TOO_MANY_REQUESTS', `Too many failed authentication attempts; retry after ${retryAfter} seconds`, {
    details: { retryAfter },
  });
}

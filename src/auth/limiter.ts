/**
 * The failed-authentication limit: decides when a client address or an API key id has
 * failed too often and answers 429; the counting itself is `core/limits.ts`.
 */
import { VaultError } from '../errors.js';
import { countFailure, type LimitSubject } from '../core/limits.js';
import type { VaultStore } from '../core/store.js';

/** Limits on failed authentications. */
export interface FailedAuthLimitOptions {
  /** Failures allowed per client address (and per API key id) within the window. Default 20. */
  maxFailures?: number;
  /** Length of the counting window, in seconds. Default 300. */
  windowSeconds?: number;
  /**
   * Also count failures against the id of a real API key a request presents (the public
   * part of the key), which slows a guessing attack spread over many addresses. Only
   * failed attempts are refused once the id is over the limit: a request that presents the
   * key's correct secret still passes, so knowing a key's id does not let anyone lock the
   * key out. Default true.
   */
  perApiKeyId?: boolean;
}

export type { LimitSubject };

/**
 * Counts failed authentications in the store with one atomic increment per subject, so the
 * count is exact across every process: within a window, at most `maxFailures` failures per
 * subject are answered 401 and every later one 429, however many arrive at once.
 *
 * Each process also remembers which addresses it has seen go over the limit, so that their
 * requests are refused before any store call; that is never done for key ids (see
 * {@link FailedAuthLimitOptions.perApiKeyId}).
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

  /** Throws `TOO_MANY_REQUESTS` (with a retry delay) if this address is known to be over the limit. */
  checkAddress(address: LimitSubject | undefined): void {
    if (address === undefined) return;
    const blocked = this.blockedUntil.get(address);
    if (blocked === undefined) return;
    const now = Date.now();
    if (blocked <= now) this.blockedUntil.delete(address);
    else throw tooManyRequests(blocked - now);
  }

  /**
   * Counts one failure against each subject. Returns the error to answer instead of the
   * authentication failure when a subject is now past the limit, else `undefined`.
   */
  async recordFailure(subjects: readonly LimitSubject[]): Promise<VaultError | undefined> {
    const counts = await Promise.all(
      subjects.map(async (subject) => ({ subject, ...(await countFailure(this.store, subject, this.windowMs)) })),
    );
    let until = 0;
    for (const { subject, count, expiresAt } of counts) {
      if (count < this.maxFailures) continue;
      if (subject.startsWith('ip:')) this.blockedUntil.set(subject, expiresAt);
      if (count > this.maxFailures) until = Math.max(until, expiresAt);
    }
    // Keep the local memory bounded: forget blocks that have run out.
    if (this.blockedUntil.size > 10_000) {
      const now = Date.now();
      for (const [subject, blocked] of this.blockedUntil) if (blocked <= now) this.blockedUntil.delete(subject);
    }
    return until > 0 ? tooManyRequests(until - Date.now()) : undefined;
  }
}

function tooManyRequests(retryMs: number): VaultError {
  const retryAfter = Math.max(1, Math.ceil(retryMs / 1000));
  return new VaultError('TOO_MANY_REQUESTS', `Too many failed authentication attempts; retry after ${retryAfter} seconds`, {
    details: { retryAfter },
  });
}

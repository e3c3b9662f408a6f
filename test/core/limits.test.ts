/** The failed-auth limit through core: exact counts under concurrency, a fixed window, and only real API key ids counted. On memory and SQLite. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createApiKey, verifyApiKey, VaultError, type VaultStore } from '../../src/index.js';
import { presentedApiKeyId } from '../../src/core/api-keys.js';
import { countFailure } from '../../src/core/limits.js';
import { FailedAuthLimiter } from '../../src/auth/limiter.js';
import { waitFor } from '../helpers/wait.js';
import { BACKENDS, openTestVault, type TestVault } from './vaults.js';

/** The groups of the store that hold failure counters. */
async function limitGroups(store: VaultStore): Promise<string[]> {
  const groups = new Set<string>();
  let cursor: string | undefined;
  do {
    const page = await store.scan(cursor, 100);
    for (const item of page.items) if (item.group.startsWith('limit:')) groups.add(item.group);
    cursor = page.cursor;
  } while (cursor !== undefined);
  return [...groups].sort();
}

describe.each(BACKENDS)('failure counting on %s', (backend) => {
  let t: TestVault;
  beforeEach(async () => {
    t = await openTestVault(backend);
  });
  afterEach(() => t.done());

  it('racing failures of one subject get distinct counts 1..N and share one window', async () => {
    const counts = await Promise.all(Array.from({ length: 40 }, () => countFailure(t.vault.store, 'ip:203.0.113.9', 60_000)));
    expect(counts.map((c) => c.count).sort((x, y) => x - y)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    expect(new Set(counts.map((c) => c.expiresAt)).size).toBe(1);
  });

  it('the window opens at the first failure and is not moved by later ones', async () => {
    const before = Date.now();
    const first = await countFailure(t.vault.store, 'ip:a', 60_000);
    const after = Date.now();
    expect(first.count).toBe(1);
    expect(first.expiresAt).toBeGreaterThanOrEqual(before + 60_000);
    expect(first.expiresAt).toBeLessThanOrEqual(after + 60_000);
    const second = await countFailure(t.vault.store, 'ip:a', 60_000);
    expect(second).toEqual({ count: 2, expiresAt: first.expiresAt });
  });

  it('counts start again at 1 once the window has run out', async () => {
    await countFailure(t.vault.store, 'ip:short', 200);
    const { count, expiresAt } = await countFailure(t.vault.store, 'ip:short', 200);
    expect(count).toBe(2);
    await waitFor(() => Date.now() > expiresAt, 'the window to end');
    expect((await countFailure(t.vault.store, 'ip:short', 200)).count).toBe(1);
  });

  it('keeps subjects apart, including ones that escape alike', async () => {
    await countFailure(t.vault.store, 'ip:a', 60_000);
    await countFailure(t.vault.store, 'ip:a', 60_000);
    expect((await countFailure(t.vault.store, 'ip:b', 60_000)).count).toBe(1);
    expect((await countFailure(t.vault.store, 'ip%003aa', 60_000)).count).toBe(1);
    expect((await countFailure(t.vault.store, 'key:ip:a', 60_000)).count).toBe(1);
    expect((await countFailure(t.vault.store, 'ip:a', 60_000)).count).toBe(3);
  });

  it('two limiters over one store (two processes) share one exact count: max failures answered 401, the rest 429', async () => {
    const options = { maxFailures: 5, windowSeconds: 60 };
    const limiters = [new FailedAuthLimiter(t.vault.store, options), new FailedAuthLimiter(t.vault.store, options)];
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => limiters[i % 2]!.recordFailure(['ip:198.51.100.1'])));
    expect(answers.filter((a) => a === undefined)).toHaveLength(5);
    const refused = answers.filter((a): a is VaultError => a !== undefined);
    expect(refused).toHaveLength(15);
    for (const error of refused) {
      expect(error.code).toBe('TOO_MANY_REQUESTS');
      const retryAfter = error.details?.['retryAfter'] as number;
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(60);
      expect(error.message).toBe(`Too many failed authentication attempts; retry after ${retryAfter} seconds`);
    }
  });
});

describe('the failed-auth limiter', () => {
  let t: TestVault;
  beforeEach(async () => {
    t = await openTestVault('memory');
  });
  afterEach(() => t.done());

  it('refuses an address that reached the limit before any store call, but never a key id', async () => {
    const limiter = new FailedAuthLimiter(t.vault.store, { maxFailures: 2, windowSeconds: 60 });
    const subjects = ['ip:192.0.2.1', 'key:0123456789abcdef'];
    expect(await limiter.recordFailure(subjects)).toBeUndefined();
    limiter.checkAddress('ip:192.0.2.1');
    // The second failure reaches the limit: still answered as itself, but the address is now known.
    expect(await limiter.recordFailure(subjects)).toBeUndefined();
    expect(() => limiter.checkAddress('ip:192.0.2.1')).toThrow(expect.objectContaining({ code: 'TOO_MANY_REQUESTS' }));
    // A key id over the limit does not lock the key's owner out.
    expect(() => limiter.checkAddress('key:0123456789abcdef')).not.toThrow();
    expect(() => limiter.checkAddress('ip:192.0.2.2')).not.toThrow();
    expect(() => limiter.checkAddress(undefined)).not.toThrow();
    expect((await limiter.recordFailure(['key:0123456789abcdef']))?.code).toBe('TOO_MANY_REQUESTS');
  });

  it('counts a failure against a key id only when the presented key names a real key', async () => {
    const { apiKey, keyId } = await createApiKey(t.vault, { org: 'acme' });
    const limiter = new FailedAuthLimiter(t.vault.store, { maxFailures: 3, windowSeconds: 60 });
    const presented = [
      `${apiKey.slice(0, -1)}${apiKey.endsWith('A') ? 'B' : 'A'}`, // real id, wrong secret
      `tk_${keyId === 'f'.repeat(16) ? 'e'.repeat(16) : 'f'.repeat(16)}_${'A'.repeat(43)}`, // unknown id
      ...Array.from({ length: 5 }, (_, i) => `tk_${i.toString(16).padStart(16, '0')}_${'B'.repeat(43)}`), // more unknown ids
      'tk_garbage', // malformed
    ];
    for (const key of presented) {
      const error = (await verifyApiKey(t.vault, key).catch((e: unknown) => e)) as VaultError;
      expect(error.code).toBe('INVALID_API_KEY');
      const id = presentedApiKeyId(error);
      await limiter.recordFailure(id === undefined ? [] : [`key:${id}`]);
    }
    expect(await limiter.recordFailure([])).toBeUndefined();
    // One counter, for the one real key: random ids add no rows.
    const groups = await limitGroups(t.store);
    expect(groups).toHaveLength(1);
    expect(groups[0]).toContain(keyId);
    expect((await countFailure(t.vault.store, `key:${keyId}`, 60_000)).count).toBe(2);
    // The correct key still verifies.
    expect((await verifyApiKey(t.vault, apiKey)).keyId).toBe(keyId);
  });

  it.each([
    [{ maxFailures: 0 }],
    [{ maxFailures: 1.5 }],
    [{ windowSeconds: 0 }],
    [{ windowSeconds: -1 }],
  ])('refuses the options %j', (options) => {
    expect(() => new FailedAuthLimiter(t.vault.store, options)).toThrow(RangeError);
  });
});

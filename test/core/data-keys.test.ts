/** Data keys: the stored record's shape, wrapping through a provider, and the bounded cache of unwrapped keys. */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  DataKeyCache,
  formatDataKeyRecord,
  newDataKey,
  parseDataKeyRecord,
  unwrapDataKey,
  type DataKeyRecord,
} from '../../src/core/data-keys.js';
import { openWithDataKey, sealWithDataKey } from '../../src/crypto/cipher.js';
import { localKeyProvider } from '../../src/crypto/key-provider.js';
import { generateKey, parseKeyring } from '../../src/crypto/keyring.js';

const ref = { org: 'acme', environment: 'test', accountId: 'cust-1' };
const dataKey = () => ({ id: randomBytes(8).toString('hex'), key: randomBytes(32) });

afterEach(() => {
  vi.useRealTimers();
});

describe('data key records', () => {
  it('a new data key is 32 random bytes under a fresh 16-hex id, wrapped by the primary KEK, and unwraps for its own account only', async () => {
    const provider = localKeyProvider(parseKeyring(generateKey('k1').entry));
    const { dataKey: fresh, stored } = await newDataKey(provider, ref);
    expect(fresh.id).toMatch(/^[0-9a-f]{16}$/);
    expect(fresh.key).toHaveLength(32);
    expect(stored).toMatchObject({ id: fresh.id, kek: 'local:k1' });
    expect(stored.wrapped).not.toContain(fresh.key.toString('base64url'));
    expect((await unwrapDataKey(provider, ref, stored)).key.equals(fresh.key)).toBe(true);
    await expect(unwrapDataKey(provider, { ...ref, accountId: 'cust-2' }, stored)).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
    await expect(unwrapDataKey(provider, ref, { ...stored, id: 'ffffffffffffffff' })).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
    const other = await newDataKey(provider, ref);
    expect(other.dataKey.id).not.toBe(fresh.id);
    expect(other.dataKey.key.equals(fresh.key)).toBe(false);
  });

  it('round-trips through its stored form, and anything not of its shape is refused', () => {
    const record: DataKeyRecord = { v: 1, keys: [{ id: '0123456789abcdef', kek: 'local:k1', wrapped: 'abc' }] };
    expect(parseDataKeyRecord(formatDataKeyRecord(record))).toEqual(record);
    for (const bad of [
      'not json',
      'null',
      '[]',
      '{"v":2,"keys":[{"id":"0123456789abcdef","kek":"local:k1","wrapped":"abc"}]}',
      '{"v":1,"keys":[]}',
      '{"v":1,"keys":[{"id":"XYZ","kek":"local:k1","wrapped":"abc"}]}',
      '{"v":1,"keys":[{"id":"0123456789abcdef","kek":"bad kek","wrapped":"abc"}]}',
      '{"v":1,"keys":[{"id":"0123456789abcdef","kek":"local:k1","wrapped":7}]}',
      '{"v":1,"keys":[null]}',
    ]) {
      expect(parseDataKeyRecord(bad)).toBeUndefined();
    }
  });
});

describe('the data key cache', () => {
  it('holds keys by group and id, and forgets a group on eviction', () => {
    const cache = new DataKeyCache();
    const a = dataKey();
    const b = dataKey();
    cache.set('g1', a);
    cache.set('g1', b);
    expect(cache.get('g1', a.id)).toEqual(a);
    expect(cache.get('g1', b.id)).toEqual(b);
    expect(cache.get('g2', a.id)).toBeUndefined();
    cache.evictGroup('g1');
    expect(cache.get('g1', a.id)).toBeUndefined();
    expect(cache.get('g1', b.id)).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it('keeps at most maxEntries, dropping the oldest first', () => {
    const cache = new DataKeyCache({ maxEntries: 3 });
    const keys = Array.from({ length: 5 }, dataKey);
    keys.forEach((key, i) => cache.set(`g${i}`, key));
    expect(cache.size).toBe(3);
    expect(cache.get('g0', keys[0]!.id)).toBeUndefined();
    expect(cache.get('g1', keys[1]!.id)).toBeUndefined();
    expect(cache.get('g4', keys[4]!.id)).toEqual(keys[4]);
  });

  it('forgets keys past their TTL, and zeroes every evicted key shortly after', () => {
    vi.useFakeTimers();
    const cache = new DataKeyCache({ ttlMs: 1000 });
    const key = dataKey();
    cache.set('g', key);
    vi.advanceTimersByTime(999);
    const held = cache.get('g', key.id) as ReturnType<typeof dataKey>;
    expect(held).toEqual(key);
    vi.advanceTimersByTime(1);
    expect(cache.get('g', key.id)).toBeUndefined();
    expect(held.key.some((byte) => byte !== 0)).toBe(true);
    vi.advanceTimersByTime(1000);
    // The cache's own copy is wiped; the buffer it was given is the caller's, left alone.
    expect(held.key.every((byte) => byte === 0)).toBe(true);
    expect(key.key.some((byte) => byte !== 0)).toBe(true);
    // A zeroed key never seals, and opening with one says it is a released key.
    expect(() => sealWithDataKey(held, 'v', { ...ref, name: 'k' })).toThrow(/released data key/);
    const sealed = sealWithDataKey(key, 'v', { ...ref, name: 'k' });
    expect(() => openWithDataKey(held, sealed, { ...ref, name: 'k' })).toThrow(/released data key/);
  });

  it('a TTL or size of 0 keeps nothing; bad bounds are refused', () => {
    const none = new DataKeyCache({ ttlMs: 0 });
    none.set('g', dataKey());
    expect(none.size).toBe(0);
    expect(() => new DataKeyCache({ ttlMs: -1 })).toThrow(/ttlMs/);
    expect(() => new DataKeyCache({ ttlMs: Number.POSITIVE_INFINITY })).toThrow(/ttlMs/);
    expect(() => new DataKeyCache({ maxEntries: 1.5 })).toThrow(/maxEntries/);
  });

  it('clear() forgets and zeroes everything it held', () => {
    vi.useFakeTimers();
    const cache = new DataKeyCache();
    const keys = [dataKey(), dataKey()];
    cache.set('a', keys[0]!);
    cache.set('b', keys[1]!);
    const held = [cache.get('a', keys[0]!.id)!, cache.get('b', keys[1]!.id)!];
    cache.clear();
    expect(cache.size).toBe(0);
    vi.advanceTimersByTime(1000);
    for (const key of held) expect(key.key.every((byte) => byte === 0)).toBe(true);
  });

  it('a key evicted and set again before the zeroing is not wiped: the cache holds a new copy', () => {
    vi.useFakeTimers();
    const cache = new DataKeyCache();
    const key = dataKey();
    cache.set('g', key);
    cache.evictGroup('g');
    cache.set('g', key);
    vi.advanceTimersByTime(1100);
    const current = cache.get('g', key.id);
    expect(current?.key.equals(key.key)).toBe(true);
    expect(() => sealWithDataKey(current!, 'v', { ...ref, name: 'k' })).not.toThrow();
  });

  it('refuses to seal under a data key whose id could not be read back, or of the wrong size', () => {
    expect(() => sealWithDataKey({ id: 'a.b', key: randomBytes(32) }, 'v', { ...ref, name: 'k' })).toThrow(/valid id and 32 bytes/);
    expect(() => sealWithDataKey({ id: 'abc', key: randomBytes(16) }, 'v', { ...ref, name: 'k' })).toThrow(/valid id and 32 bytes/);
  });
});

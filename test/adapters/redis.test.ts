/** The Redis store on a standalone server: the store conformance suite, namespace isolation, slot placement, expiry, and its option checks. */
import { createClient, type RedisClientType } from '@keyv/redis';
import { afterAll, expect, it } from 'vitest';
import { createRedisStore } from '../../adapters/redis.js';
import { runStoreConformance } from '../../src/testing/index.js';
import { batchFaultHook, openThenCut } from '../helpers/faults.js';
import { waitFor } from '../helpers/wait.js';
import { escapeGlob, REDIS_URL, redisUrlWithRandomDb, runId, serviceSuite } from '../helpers/services.js';

const service = await serviceSuite('Redis', REDIS_URL);
const suite = service.describe;
const url = redisUrlWithRandomDb();
// Every namespace of this run starts with one prefix, so cleanup finds exactly our keys.
const prefix = runId('cvredis');
const open = ({ namespace }: { namespace: string }) => createRedisStore({ url, namespace: `${prefix}:${namespace}` });

afterAll(async () => {
  if (!service.available) return;
  const raw = createClient({ url }) as RedisClientType;
  await raw.connect();
  try {
    const match = `${escapeGlob(encodeURIComponent(`${prefix}:`))}*`;
    for await (const keys of raw.scanIterator({ MATCH: match, COUNT: 500 })) {
      if (keys.length > 0) await raw.del(keys);
    }
  } finally {
    raw.destroy();
  }
});

runStoreConformance({ describe: suite, it, expect }, open, {
  name: 'redis',
  concurrencyFactory: open,
  faults: {
    factory: ({ namespace }, controls) => createRedisStore({ url, namespace: `${prefix}:${namespace}`, faults: batchFaultHook(controls) }),
  },
  unreachableFactory: ({ namespace }) =>
    createRedisStore({ url: 'redis://127.0.0.1:1', namespace: `${prefix}:${namespace}`, connectTimeoutMs: 300 }),
  failingFactory: ({ namespace }) =>
    openThenCut(url, (proxied) => createRedisStore({ url: proxied, namespace: `${prefix}:${namespace}`, connectTimeoutMs: 300, commandTimeoutMs: 1000 })),
});

suite('redis store: namespace isolation', () => {
  it('two namespaces in one database never see each other, and removeGroup and scan leave foreign keys alone', async () => {
    // Glob characters survive encodeURIComponent: a SCAN MATCH built from them would overreach.
    const mine = `${prefix}:iso*[a]?`;
    const theirs = `${prefix}:isoXYa`;
    const a = createRedisStore({ url, namespace: mine });
    const b = createRedisStore({ url, namespace: theirs });
    const raw = createClient({ url }) as RedisClientType;
    await raw.connect();
    const base = encodeURIComponent(mine);
    const foreign = [
      `${base}`,
      `${base}x{g}:m`,
      `${base}#groupsx`,
      `${encodeURIComponent(prefix)}:other{g}:m`,
      `${encodeURIComponent(prefix)}:{g}:m`,
      `${encodeURIComponent(prefix)}:g`,
    ];
    try {
      for (const key of foreign) await raw.set(key, 'foreign');
      await a.put('g', 'm', 'a');
      await b.put('g', 'm', 'b');
      await b.put('g', 'n', 'b');
      expect((await a.get('g', 'm'))?.value).toBe('a');
      expect((await a.list('g')).map((item) => item.member)).toEqual(['m']);
      expect((await a.scan(undefined, 100)).items.map((item) => item.entry.value)).toEqual(['a']);

      expect(await a.removeGroup('g')).toBe(1);
      expect((await b.list('g')).map((item) => item.entry.value)).toEqual(['b', 'b']);
      expect((await b.scan(undefined, 100)).items).toHaveLength(2);
      expect(await a.scan(undefined, 100)).toEqual({ items: [], cursor: undefined });
      for (const key of foreign) expect(await raw.get(key)).toBe('foreign');
    } finally {
      await raw.del(foreign);
      raw.destroy();
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('keeps all of a group on one hash slot', async () => {
    const store = createRedisStore({ url, namespace: `${prefix}:slots` });
    const raw = createClient({ url }) as RedisClientType;
    await raw.connect();
    try {
      await store.put('org%3Aacme', 'cred:a', 'v');
      await store.insert('org%3Aacme', 'token:1', 't', { ttlMs: 60_000 });
      const match = `${escapeGlob(encodeURIComponent(`${prefix}:slots`))}{*`;
      const keys: string[] = [];
      for await (const batch of raw.scanIterator({ MATCH: match })) keys.push(...batch);
      expect(keys.length).toBe(3); // two members and the group index
      // Redis Cluster hashes only the text between the first '{' and the next '}'.
      expect(new Set(keys.map(hashTag))).toEqual(new Set(['org%3Aacme']));
    } finally {
      raw.destroy();
      await store.close();
    }
  });

  it('a group of expiring members leaves no key behind once they expire; a lasting member keeps its index', async () => {
    const namespace = `${prefix}:expiry`;
    const store = createRedisStore({ url, namespace });
    const raw = createClient({ url }) as RedisClientType;
    await raw.connect();
    const keysOf = async (group: string): Promise<string[]> => {
      const keys: string[] = [];
      const match = `${escapeGlob(`${encodeURIComponent(namespace)}{${group}}`)}*`;
      for await (const batch of raw.scanIterator({ MATCH: match })) keys.push(...batch);
      return keys.sort();
    };
    try {
      // Long enough to look at every key before it expires, even on a loaded machine.
      const ttl = 2000;
      await store.increment('limit:ip%003a1', 'count', ttl);
      await store.increment('limit:ip%003a1', 'count', ttl);
      await store.batch('limit:ip%003a2', [{ op: 'insert', member: 'a', value: 'x', ttlMs: ttl }, { op: 'insert', member: 'b', value: 'y', ttlMs: ttl + 50 }]);
      await store.put('acct', 'profile', 'p');
      await store.insert('acct', 'session:1', 's', { ttlMs: ttl - 500 }); // gone before the groups above
      expect(await keysOf('limit:ip%003a1')).toHaveLength(2);
      expect(await keysOf('limit:ip%003a2')).toHaveLength(3);
      // Redis expires them itself: wait for it, bounded, instead of sleeping a guessed time.
      await waitFor(async () => (await keysOf('limit:ip%003a1')).length === 0 && (await keysOf('limit:ip%003a2')).length === 0, 'the expiring groups to leave no key', 15_000);
      // The profile never expires, so its index stays; the expired session is gone from lists.
      expect((await store.list('acct')).map((item) => item.member)).toEqual(['profile']);
      expect((await raw.pTTL(`${encodeURIComponent(namespace)}{acct}#idx`))).toBe(-1);
    } finally {
      raw.destroy();
      await store.close();
    }
  });
});

suite('redis store: options', () => {
  it('refuses an indexWaitMs or indexLeaseMs that is not a positive number of milliseconds, before connecting', async () => {
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => createRedisStore({ url, namespace: `${prefix}:opts`, indexWaitMs: bad })).toThrow(/^indexWaitMs must be a positive/);
      expect(() => createRedisStore({ url, namespace: `${prefix}:opts`, indexLeaseMs: bad })).toThrow(/^indexLeaseMs must be a positive/);
    }
    // A valid one opens a working store.
    const store = createRedisStore({ url, namespace: `${prefix}:opts`, indexWaitMs: 50 });
    try {
      expect(await store.put('g', 'm', 'v')).toBe('added');
      expect(await store.removeGroup('g')).toBe(1);
    } finally {
      await store.close();
    }
  });
});

function hashTag(key: string): string {
  const open = key.indexOf('{');
  return key.slice(open + 1, key.indexOf('}', open));
}

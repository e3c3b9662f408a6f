/**
 * The Redis store on a private three-master Cluster: the store conformance suite, slot
 * placement, client handling, and the Cluster index protocol (crashes, pauses, leases, and
 * the bound on waiting for a held entry).
 */
import { createCluster, type RedisClusterType } from '@keyv/redis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createRedisStore, type RedisStoreFaults, type RedisStoreOptions } from '../../adapters/redis.js';
import { DEFAULT_STORE_TIMEOUT_MS, withDeadline } from '../../src/core/deadline.js';
import type { BatchResult, IndexEntry, VaultStore } from '../../src/core/store.js';
import { runStoreConformance } from '../../src/testing/index.js';
import { batchFaultHook } from '../helpers/faults.js';
import { type ClusterTopology, cli, startCluster, topologySuite } from '../helpers/redis-topologies.js';
import { escapeGlob, freePort, runId, tcpProxy, waitFor } from '../helpers/services.js';
import { settle } from '../helpers/wait.js';

// A private three-master Redis Cluster from the installed redis-server (no docker).
const service = topologySuite('Redis Cluster');
const suite = service.describe;
const prefix = runId('cvcluster');
let topology: ClusterTopology | undefined;

beforeAll(async () => {
  if (service.available) topology = await startCluster(3);
}, 30_000);

afterAll(async () => {
  await topology?.stop();
});

/** A cluster client configured as the README advises: fail fast, reconnect for ever. */
function clusterClient(rootPort?: number): RedisClusterType {
  if (topology === undefined) throw new Error('the cluster did not start');
  const cluster = createCluster({
    rootNodes: [{ url: `redis://127.0.0.1:${rootPort ?? topology.ports[0]}` }],
    // Options for every node connection go in `defaults`.
    defaults: {
      disableOfflineQueue: true,
      socket: { connectTimeout: 2000, reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, 1000) },
    },
  }) as RedisClusterType;
  cluster.on('error', () => undefined);
  return cluster;
}

/** A store on its own cluster client; closing the store also closes the client (it is the caller's). */
async function openOwn(options: Omit<RedisStoreOptions, 'client'> & { namespace: string }, rootPort?: number): Promise<VaultStore> {
  const cluster = clusterClient(rootPort);
  if (rootPort === undefined) await cluster.connect();
  const store = createRedisStore({ ...options, client: cluster });
  return {
    ...store,
    async close(): Promise<void> {
      await store.close();
      cluster.destroy();
    },
  };
}

const open = ({ namespace }: { namespace: string }): Promise<VaultStore> => openOwn({ namespace: `${prefix}:${namespace}` });

runStoreConformance({ describe: suite, it, expect }, open, {
  name: 'redis cluster',
  concurrencyFactory: open,
  faults: { factory: ({ namespace }, controls) => openOwn({ namespace: `${prefix}:${namespace}`, faults: batchFaultHook(controls) }) },
  // Nothing listens on port 1: the cluster client never discovers a master.
  unreachableFactory: ({ namespace }) => openOwn({ namespace: `${prefix}:${namespace}`, connectTimeoutMs: 300 }, 1),
});

suite('redis store on Cluster: placement and client handling', () => {
  it('keeps every key of a group in one slot, and spreads groups over the masters', async () => {
    const cluster = clusterClient();
    await cluster.connect();
    const namespace = `${prefix}:slots`;
    const store = createRedisStore({ client: cluster, namespace });
    try {
      const groups = Array.from({ length: 24 }, (_, i) => `org%3Aacme${i}`);
      for (const group of groups) {
        await store.put(group, 'cred:a', 'v');
        await store.insert(group, 'token:1', 't', { ttlMs: 60_000 });
      }
      const match = `${escapeGlob(encodeURIComponent(namespace))}{*`;
      /** group -> ports of the masters holding any of its keys, and the keys' slots. */
      const nodes = new Map<string, Set<number>>();
      const slots = new Map<string, Set<number>>();
      for (const port of topology?.ports ?? []) {
        const keys = (await cli(port, '--scan', '--pattern', match)).split('\n').filter((key) => key !== '');
        for (const key of keys) {
          const group = key.slice(key.indexOf('{') + 1, key.indexOf('}'));
          const slot = Number((await cli(port, 'cluster', 'keyslot', key)).trim());
          if (!nodes.has(group)) nodes.set(group, new Set());
          if (!slots.has(group)) slots.set(group, new Set());
          nodes.get(group)?.add(port);
          slots.get(group)?.add(slot);
        }
      }
      expect([...nodes.keys()].sort()).toEqual([...groups].sort());
      for (const group of groups) {
        expect(slots.get(group)?.size).toBe(1);
        expect(nodes.get(group)?.size).toBe(1);
      }
      // 24 groups over 3 masters: all on one master would mean the hash tag is wrong.
      const used = new Set([...nodes.values()].flatMap((ports) => [...ports]));
      expect(used.size).toBeGreaterThan(1);

      const seen: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await store.scan(cursor, 5);
        seen.push(...page.items.map((item) => `${item.group}/${item.member}`));
        cursor = page.cursor;
      } while (cursor !== undefined);
      expect(seen).toHaveLength(48);
      for (const group of groups) expect(await store.removeGroup(group)).toBe(2);
      expect(await store.scan(undefined, 100)).toEqual({ items: [], cursor: undefined });
    } finally {
      await store.close();
      cluster.destroy();
    }
  });

  it('runs scripts on a master that has never seen them (NOSCRIPT falls back to EVAL per node)', async () => {
    const cluster = clusterClient();
    await cluster.connect();
    const store = createRedisStore({ client: cluster, namespace: `${prefix}:flush` });
    try {
      await store.put('a', 'm', '1');
      for (const port of topology?.ports ?? []) await cli(port, 'script', 'flush');
      for (let i = 0; i < 12; i += 1) expect(await store.put(`g${i}`, 'm', 'v')).toBe('added');
      expect(await store.put('a', 'm', '2')).toBe('updated');
      expect((await store.list('a')).map((item) => item.entry.value)).toEqual(['2']);
    } finally {
      await store.close();
      cluster.destroy();
    }
  });

  it('accepts a cluster client that is not connected yet, and leaves it open on close', async () => {
    const cluster = clusterClient();
    const store = createRedisStore({ client: cluster, namespace: `${prefix}:lazy` });
    try {
      expect(await store.put('g', 'm', 'v')).toBe('added');
      expect((await store.get('g', 'm'))?.value).toBe('v');
      await store.close();
      expect(cluster.isOpen).toBe(true);
      let rejected = false;
      await store.get('g', 'm').catch(() => (rejected = true));
      expect(rejected).toBe(true);
    } finally {
      await store.close();
      cluster.destroy();
    }
  });

  it('rejects an empty group, which cannot keep its keys in one slot', async () => {
    const cluster = clusterClient();
    await cluster.connect();
    const store = createRedisStore({ client: cluster, namespace: `${prefix}:empty` });
    try {
      await expect(store.put('', 'm', 'v')).rejects.toThrow(RangeError);
      await expect(store.list('')).rejects.toThrow(RangeError);
    } finally {
      await store.close();
      cluster.destroy();
    }
  });

  it('with no root node reachable, calls reject before one is, and the store connects once one is', async () => {
    const proxy = tcpProxy({ host: '127.0.0.1', port: topology?.ports[0] ?? 0 }, await freePort());
    const cluster = clusterClient(proxy.port);
    const store = createRedisStore({ client: cluster, namespace: `${prefix}:late`, connectTimeoutMs: 300 });
    try {
      // Awaited before the proxy starts: the call settles while no node is reachable.
      expect(await settle(() => store.get('g', 'm'))).toMatchObject({ ok: false, error: expect.not.stringMatching(/^RangeError$/) });

      await proxy.start();
      await waitFor(async () => (await store.put('g', 'm', 'v').catch(() => 'failed')) === 'added', 'the store to connect', 8000);
      expect((await store.get('g', 'm'))?.value).toBe('v');
    } finally {
      await store.close();
      cluster.destroy();
      await proxy.stop();
    }
  });
});

suite('redis store on Cluster: an index and its groups live in different slots', () => {
  /** Short, so that a test can outwait it; every store of one test shares it. */
  const LEASE_MS = 300;
  /** Long enough that a test never outlives it. */
  const LONG_LEASE_MS = 120_000;
  /** How long a test waits for leases to run out and be settled: only a hang reaches it. */
  const SETTLE_BOUND_MS = 15_000;

  /** The keys this namespace holds on every master, in order. */
  async function keysOf(namespace: string): Promise<string[]> {
    const match = `${escapeGlob(encodeURIComponent(namespace))}*`;
    const keys: string[] = [];
    for (const port of topology?.ports ?? []) {
      keys.push(...(await cli(port, '--scan', '--pattern', match)).split('\n').filter((key) => key !== ''));
    }
    return keys.sort();
  }

  /** One raw command, sent to whichever master owns its key (`-c` follows the redirect). */
  const raw = async (...args: string[]): Promise<string> => (await cli(topology?.ports[0] ?? 0, '-c', ...args)).trim();

  /** What the index holds in Redis itself, without a store call that could resolve an intent. */
  async function inRedis(namespace: string, index: string): Promise<{ entries: string; intents: string }> {
    const base = `${encodeURIComponent(namespace)}#ix{${index}}`;
    return {
      entries: await raw('zrange', base, '0', '-1'),
      intents: await raw('hlen', `${base}#pending`),
    };
  }

  /** A store whose indexed calls stop dead at `at` (its client destroyed, as if the process died). */
  async function crashingAt(at: 'intent' | 'group', namespace: string, indexLeaseMs: number): Promise<VaultStore> {
    const cluster = clusterClient();
    await cluster.connect();
    const faults: RedisStoreFaults = {
      afterIndexStep: (step) => {
        if (step !== at) return;
        cluster.destroy();
        throw new Error(`test crash after the ${at} step`);
      },
    };
    const store = createRedisStore({ client: cluster, namespace, indexLeaseMs, faults });
    return {
      ...store,
      async close(): Promise<void> {
        await store.close();
        if (cluster.isOpen) cluster.destroy();
      },
    };
  }

  const profile = [{ op: 'insert', member: 'profile', value: 'p' }] as const;

  it('a create cut off after taking its intent is undone: not listed, nothing written, and the next call on the entry proceeds after the lease', async () => {
    const namespace = `${prefix}:cut-intent`;
    const link: IndexEntry = { index: 'org', entry: 'acct1' };
    const crashing = await crashingAt('intent', namespace, LEASE_MS);
    // It must outwait the dead call's lease, however slowly this machine runs.
    const other = await openOwn({ namespace, indexWaitMs: SETTLE_BOUND_MS });
    try {
      expect(await settle(() => crashing.batch('acct1', profile, { index: link }))).toMatchObject({ ok: false });
      expect(await inRedis(namespace, 'org')).toEqual({ entries: '', intents: '1' });
      expect(await other.list('acct1')).toEqual([]);
      // Started at once, it waits out the dead call's lease, settles it, and goes on.
      expect(await other.batch('acct1', profile, { index: link })).toEqual({ committed: true, results: [true] });
      expect(await other.readIndex('org', 0, 10)).toEqual({ total: 1, entries: ['acct1'] });
      expect(await inRedis(namespace, 'org')).toEqual({ entries: 'acct1', intents: '0' });
    } finally {
      await crashing.close();
      await other.close();
    }
  });

  it('a create cut off after its group step is completed by a readIndex after the lease', async () => {
    const namespace = `${prefix}:cut-group`;
    const crashing = await crashingAt('group', namespace, LEASE_MS);
    const other = await openOwn({ namespace });
    try {
      expect(await settle(() => crashing.batch('acct1', profile, { index: { index: 'org', entry: 'acct1' } }))).toMatchObject({ ok: false });
      // The group is written; the index step never ran.
      expect((await other.list('acct1')).map((item) => item.member)).toEqual(['profile']);
      expect(await inRedis(namespace, 'org')).toEqual({ entries: '', intents: '1' });
      // Until the lease runs out (the master's clock) a read leaves the intent alone.
      await waitFor(async () => (await other.readIndex('org', 0, 10)).total === 1, 'a read to complete the cut-off create', SETTLE_BOUND_MS);
      expect(await other.readIndex('org', 0, 10)).toEqual({ total: 1, entries: ['acct1'] });
      expect(await inRedis(namespace, 'org')).toEqual({ entries: 'acct1', intents: '0' });
    } finally {
      await crashing.close();
      await other.close();
    }
  });

  it('a removal cut off before its group step is undone, and one cut off after it is completed, by a readIndex after the lease', async () => {
    const namespace = `${prefix}:cut-remove`;
    const other = await openOwn({ namespace });
    const early = await crashingAt('intent', namespace, LEASE_MS);
    const late = await crashingAt('group', namespace, LEASE_MS);
    try {
      for (const entry of ['kept', 'gone']) expect((await other.batch(entry, profile, { index: { index: 'org', entry } })).committed).toBe(true);
      expect(await settle(() => early.removeGroup('kept', { index: { index: 'org', entry: 'kept' } }))).toMatchObject({ ok: false });
      expect(await settle(() => late.removeGroup('gone', { index: { index: 'org', entry: 'gone' } }))).toMatchObject({ ok: false });
      expect(await inRedis(namespace, 'org')).toEqual({ entries: 'gone\nkept', intents: '2' });
      expect((await other.list('kept')).map((item) => item.member)).toEqual(['profile']);
      expect(await other.list('gone')).toEqual([]);
      // The two leases may run out one read apart: poll until reads have settled both.
      await waitFor(
        async () => {
          await other.readIndex('org', 0, 10);
          return (await inRedis(namespace, 'org')).intents === '0';
        },
        'reads to settle both cut-off removals',
        SETTLE_BOUND_MS,
      );
      expect(await other.readIndex('org', 0, 10)).toEqual({ total: 1, entries: ['kept'] });
      expect((await other.list('kept')).map((item) => item.member)).toEqual(['profile']);
      expect(await inRedis(namespace, 'org')).toEqual({ entries: 'kept', intents: '0' });
    } finally {
      await Promise.all([early.close(), late.close(), other.close()]);
    }
  });

  it('while a cut-off call holds its entry, readers do not count it, and another call on that entry waits, then rejects, writing nothing', async () => {
    const namespace = `${prefix}:held`;
    const crashing = await crashingAt('group', namespace, LONG_LEASE_MS);
    // Waits at most its indexWaitMs for the held entry.
    const impatient = await openOwn({ namespace, indexWaitMs: 400 });
    try {
      expect((await impatient.batch('acct0', profile, { index: { index: 'org', entry: 'acct0' } })).committed).toBe(true);
      expect(await settle(() => crashing.batch('acct1', profile, { index: { index: 'org', entry: 'acct1' } }))).toMatchObject({ ok: false });
      // The group is there, the entry is not yet: the listing moves at the index step.
      expect((await impatient.list('acct1')).map((item) => item.member)).toEqual(['profile']);
      expect(await impatient.readIndex('org', 0, 10)).toEqual({ total: 1, entries: ['acct0'] });
      const before = await impatient.list('acct1');
      const waited = await settle(() => impatient.removeGroup('acct1', { index: { index: 'org', entry: 'acct1' } }));
      expect(waited).toMatchObject({ ok: false, error: expect.not.stringMatching(/^RangeError$/) });
      expect(await impatient.list('acct1')).toEqual(before);
      // Other entries of the index are not held up.
      expect((await impatient.batch('acct2', profile, { index: { index: 'org', entry: 'acct2' } })).committed).toBe(true);
      expect(await impatient.readIndex('org', 0, 10)).toEqual({ total: 2, entries: ['acct0', 'acct2'] });
    } finally {
      await crashing.close();
      await impatient.close();
    }
  });

  it('a call that finds its entry held gives up within indexWaitMs, before the vault deadline, and never writes after the holder finishes', async () => {
    const namespace = `${prefix}:wait-bound`;
    const link: IndexEntry = { index: 'org', entry: 'acct1' };
    let release: (() => void) | undefined;
    const holder = await openOwn({
      namespace,
      indexLeaseMs: LONG_LEASE_MS,
      faults: { afterIndexStep: (step) => (step === 'intent' ? new Promise<void>((resolve) => (release = resolve)) : undefined) },
    });
    // The default command deadline (5000 ms), above the vault's: only indexWaitMs can end the wait in time.
    const waiter = await openOwn({ namespace, indexWaitMs: 200 });
    // The vault races the call against its deadline and does not cancel it: keep the call itself.
    let behind: Promise<BatchResult> | undefined;
    const vaultSide = withDeadline(
      { ...waiter, batch: (...args: Parameters<VaultStore['batch']>) => (behind = waiter.batch(...args)) },
      DEFAULT_STORE_TIMEOUT_MS,
    );
    try {
      const first = settle(() => holder.batch('acct1', profile, { index: link }));
      await waitFor(() => release !== undefined, 'the first call to hold the entry');
      const second = [{ op: 'put', member: 'second', value: 's' }] as const;
      expect(await settle(() => vaultSide.batch('acct1', second, { index: link }))).toMatchObject({ ok: false, error: 'VaultError STORE_UNAVAILABLE' });
      release?.();
      expect(await first).toMatchObject({ ok: true, value: { committed: true, results: [true] } });
      // The call behind the 503 had already given up: it does not take the freed entry and write.
      expect(behind).toBeDefined();
      expect(await settle(() => behind as Promise<BatchResult>)).toMatchObject({ ok: false, error: 'Error' });
      expect((await waiter.list('acct1')).map((item) => item.member)).toEqual(['profile']);
      expect(await waiter.readIndex('org', 0, 10)).toEqual({ total: 1, entries: ['acct1'] });
      expect(await inRedis(namespace, 'org')).toEqual({ entries: 'acct1', intents: '0' });
      // The entry is free for the next call, which the waiter may make at once.
      expect((await waiter.batch('acct1', second, { index: link })).committed).toBe(true);
      expect((await waiter.list('acct1')).map((item) => item.member)).toEqual(['profile', 'second']);
    } finally {
      release?.();
      await Promise.all([holder.close(), waiter.close()]);
    }
  });

  it('a call paused past its lease is resolved by a reader meanwhile: paused before its group step it then writes nothing and rejects, after it it returns its result', async () => {
    const namespace = `${prefix}:paused`;
    const gates = new Map<'intent' | 'group', () => void>();
    const paused = (at: 'intent' | 'group'): Promise<VaultStore> =>
      openOwn({
        namespace,
        indexLeaseMs: LEASE_MS,
        faults: {
          afterIndexStep: (step) => (step === at ? new Promise<void>((resolve) => gates.set(at, resolve)) : undefined),
        },
      });
    const [early, late, reader] = await Promise.all([paused('intent'), paused('group'), openOwn({ namespace })]);
    try {
      const earlyCall = settle(() => early.batch('acct1', profile, { index: { index: 'org', entry: 'acct1' } }));
      const lateCall = settle(() => late.batch('acct2', profile, { index: { index: 'org', entry: 'acct2' } }));
      await waitFor(() => gates.size === 2, 'both calls to pause');
      // Once their leases run out, reads settle both, while both calls are still paused.
      await waitFor(
        async () => {
          await reader.readIndex('org', 0, 10);
          return (await inRedis(namespace, 'org')).intents === '0';
        },
        'reads to settle both paused calls',
        SETTLE_BOUND_MS,
      );
      // acct1's group step never ran (now fenced), acct2's did.
      expect(await reader.readIndex('org', 0, 10)).toEqual({ total: 1, entries: ['acct2'] });
      for (const release of gates.values()) release();
      expect(await earlyCall).toMatchObject({ ok: false, error: expect.not.stringMatching(/^RangeError$/) });
      expect(await lateCall).toMatchObject({ ok: true, value: { committed: true, results: [true] } });
      expect(await reader.list('acct1')).toEqual([]);
      expect(await reader.readIndex('org', 0, 10)).toEqual({ total: 1, entries: ['acct2'] });
      expect(await inRedis(namespace, 'org')).toEqual({ entries: 'acct2', intents: '0' });
      // The fenced entry is free again.
      expect((await reader.batch('acct1', profile, { index: { index: 'org', entry: 'acct1' } })).committed).toBe(true);
      expect(await reader.readIndex('org', 0, 10)).toEqual({ total: 2, entries: ['acct1', 'acct2'] });
    } finally {
      for (const release of gates.values()) release();
      await Promise.all([early.close(), late.close(), reader.close()]);
    }
  });

  it('racing creates and removals of the same entries from two stores leave the total exact and nothing pending', async () => {
    const namespace = `${prefix}:race`;
    const stores = [await openOwn({ namespace }), await openOwn({ namespace })] as const;
    const entries = ['a', 'b', 'c'];
    try {
      const calls: Array<Promise<BatchResult | number>> = [];
      for (let round = 0; round < 8; round += 1) {
        for (const [i, entry] of entries.entries()) {
          const store = stores[(round + i) % 2] as VaultStore;
          const link = { index: 'org', entry };
          calls.push(store.batch(entry, [{ op: 'insert', member: 'profile', value: `r${round}` }], { index: link }));
          if ((round + i) % 3 === 0) calls.push((stores[(round + i + 1) % 2] as VaultStore).removeGroup(entry, { index: link }));
        }
      }
      await Promise.all(calls);
      const existing: string[] = [];
      for (const entry of entries) if ((await stores[0].list(entry)).length > 0) existing.push(entry);
      for (const store of stores) expect(await store.readIndex('org', 0, 10)).toEqual({ total: existing.length, entries: existing });
      expect((await inRedis(namespace, 'org')).intents).toBe('0');
    } finally {
      await Promise.all(stores.map((store) => store.close()));
    }
  });

  it('nothing of a created and removed account stays but the index counter and its group marks, which fade', async () => {
    const namespace = `${prefix}:residue`;
    const store = await openOwn({ namespace });
    try {
      for (let i = 0; i < 3; i += 1) {
        expect((await store.batch('acct1', profile, { index: { index: 'org', entry: 'acct1' } })).committed).toBe(true);
        expect(await store.removeGroup('acct1', { index: { index: 'org', entry: 'acct1' } })).toBe(1);
      }
      const base = encodeURIComponent(namespace);
      expect(await keysOf(namespace)).toEqual([`${base}#ix{org}#seq`, `${base}{acct1}#ixc`].sort());
      const marks = `${base}{acct1}#ixc`;
      expect(await raw('hlen', marks)).toBe('1');
      expect(Number(await raw('pttl', marks))).toBeGreaterThan(0);
      // Re-created, the account's marks last as long as it does.
      expect((await store.batch('acct1', profile, { index: { index: 'org', entry: 'acct1' } })).committed).toBe(true);
      expect(await raw('pttl', marks)).toBe('-1');
      expect(await store.readIndex('org', 0, 10)).toEqual({ total: 1, entries: ['acct1'] });
    } finally {
      await store.close();
    }
  });
});

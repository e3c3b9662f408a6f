import { createCluster, type RedisClusterType } from '@keyv/redis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createRedisStore } from '../../adapters/redis.js';
import type { VaultStore } from '../../src/core/store.js';
import { runStoreConformance } from '../../src/testing/index.js';
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
const open = async ({ namespace }: { namespace: string }): Promise<VaultStore> => {
  const cluster = clusterClient();
  await cluster.connect();
  const store = createRedisStore({ client: cluster, namespace: `${prefix}:${namespace}` });
  return {
    ...store,
    async close(): Promise<void> {
      await store.close();
      cluster.destroy();
    },
  };
};

runStoreConformance({ describe: suite, it, expect }, open, { name: 'redis cluster', concurrencyFactory: open });

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

import { createSentinel, type RedisSentinelType } from '@keyv/redis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createRedisStore, type RedisStoreFaults } from '../../adapters/redis.js';
import type { VaultStore } from '../../src/core/store.js';
import { runStoreConformance } from '../../src/testing/index.js';
import { batchFaultHook } from '../helpers/faults.js';
import { cli, type SentinelTopology, startSentinel, topologySuite } from '../helpers/redis-topologies.js';
import { runId, waitFor } from '../helpers/services.js';

// A private master, one replica and one Sentinel from the installed redis-server (no docker).
const service = topologySuite('Redis Sentinel');
const suite = service.describe;
const prefix = runId('cvsentinel');
let topology: SentinelTopology | undefined;

beforeAll(async () => {
  if (service.available) topology = await startSentinel('mymaster', 1);
}, 30_000);

afterAll(async () => {
  await topology?.stop();
});

/** A sentinel client configured as the README advises: fail fast, reconnect for ever. */
function sentinelClient(): RedisSentinelType {
  if (topology === undefined) throw new Error('the sentinel did not start');
  const sentinel = createSentinel({
    name: topology.name,
    sentinelRootNodes: [{ host: '127.0.0.1', port: topology.sentinelPort }],
    // Options for the connections to the master go in `nodeClientOptions`.
    nodeClientOptions: {
      // A database other than 0 works on Sentinel (not on Cluster).
      database: 3,
      disableOfflineQueue: true,
      socket: { connectTimeout: 2000, reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, 1000) },
    },
  }) as RedisSentinelType;
  sentinel.on('error', () => undefined);
  return sentinel;
}

/** A store on its own sentinel client; closing the store also closes the client (it is the caller's). */
async function openOwn(namespace: string, faults?: RedisStoreFaults): Promise<VaultStore> {
  const sentinel = sentinelClient();
  await sentinel.connect();
  const store = createRedisStore({ client: sentinel, namespace: `${prefix}:${namespace}`, faults });
  return {
    ...store,
    async close(): Promise<void> {
      await store.close();
      await sentinel.destroy();
    },
  };
}
const open = ({ namespace }: { namespace: string }): Promise<VaultStore> => openOwn(namespace);

runStoreConformance({ describe: suite, it, expect }, open, {
  name: 'redis sentinel',
  concurrencyFactory: open,
  faults: { factory: ({ namespace }, controls) => openOwn(namespace, batchFaultHook(controls)) },
});

suite('redis store on Sentinel: client handling', () => {
  it('writes through the master the sentinel names', async () => {
    const sentinel = sentinelClient();
    await sentinel.connect();
    const namespace = `${prefix}:master`;
    const store = createRedisStore({ client: sentinel, namespace });
    try {
      expect(sentinel.getMasterNode()?.port).toBe(topology?.masterPort);
      expect(await store.put('g', 'm', 'v')).toBe('added');
      const key = `${encodeURIComponent(namespace)}{g}:m`;
      expect(await cli(topology?.masterPort ?? 0, '-n', '3', 'exists', key)).toBe('1\n');
      expect(await cli(topology?.masterPort ?? 0, '-n', '0', 'exists', key)).toBe('0\n');
    } finally {
      await store.close();
      await sentinel.destroy();
    }
  });

  it('accepts a sentinel client that is not connected yet, and leaves it open on close', async () => {
    const sentinel = sentinelClient();
    const store = createRedisStore({ client: sentinel, namespace: `${prefix}:lazy` });
    try {
      expect(await store.put('g', 'm', 'v')).toBe('added');
      expect((await store.get('g', 'm'))?.value).toBe('v');
      await store.close();
      expect(sentinel.isOpen).toBe(true);
      let rejected = false;
      await store.get('g', 'm').catch(() => (rejected = true));
      expect(rejected).toBe(true);
    } finally {
      await store.close();
      await sentinel.destroy();
    }
  });

  // Last in the file: afterwards the replica is the master.
  it('after a failover, writes go to the promoted replica, which runs the scripts it never loaded', async () => {
    const sentinel = sentinelClient();
    await sentinel.connect();
    const store = createRedisStore({ client: sentinel, namespace: `${prefix}:failover` });
    const promoted = topology?.replicaPorts[0] ?? 0;
    try {
      expect(await store.put('g', 'm', 'before')).toBe('added');
      await waitFor(async () => (await cli(promoted, '-n', '3', 'exists', `${encodeURIComponent(`${prefix}:failover`)}{g}:m`)) === '1\n', 'replication');
      // Replicas get a script's effects, not the script; flushing makes sure of NOSCRIPT.
      await cli(promoted, 'script', 'flush');
      expect(await cli(topology?.sentinelPort ?? 0, 'sentinel', 'failover', 'mymaster')).toBe('OK\n');
      await waitFor(
        async () => (await cli(topology?.sentinelPort ?? 0, 'sentinel', 'get-master-addr-by-name', 'mymaster')).includes(String(promoted)),
        'the sentinel to promote the replica',
        20_000,
      );
      // The client follows the switch by itself (Sentinel's +switch-master message). Until it
      // has, writes may still reach the old master, and are lost when it is demoted.
      await waitFor(() => sentinel.getMasterNode()?.port === promoted, 'the client to follow the switch', 10_000);
      await waitFor(async () => (await store.put('g', 'n', 'after').catch(() => 'failed')) !== 'failed', 'a write to succeed', 10_000);
      expect((await store.get('g', 'm'))?.value).toBe('before');
      expect(await store.put('g', 'm', 'updated')).toBe('updated');
      expect((await store.list('g')).map((item) => [item.member, item.entry.value])).toEqual([
        ['m', 'updated'],
        ['n', 'after'],
      ]);
      expect(await store.removeGroup('g')).toBe(2);
    } finally {
      await store.close();
      await sentinel.destroy();
    }
  }, 45_000);
});

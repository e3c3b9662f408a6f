/**
 * The Redis adapter, for several server processes or machines sharing one vault, on a
 * standalone server, Cluster or Sentinel. This file is its public entry: options and the
 * factory. The connection (`redis/connection.ts`, a node-redis client owned by a
 * `@keyv/redis` Keyv store), the Lua scripts (`redis/scripts.ts`), the operations
 * (`redis/operations.ts`) and the store indexes (`redis/indexes.ts`) live beside it. It
 * relies on every multi-key step being one script over one group's hash tag, so it is atomic
 * and works on Cluster; the one exception, an index beside a group on Cluster, is described
 * on {@link createRedisStore}.
 */
import type { VaultStore } from '../src/core/store.js';
import { DEFAULT_NAMESPACE, defineStore, type StoreFaults } from './kernel.js';
import { openConnection, type RedisClient } from './redis/connection.js';
import type { IndexFaults } from './redis/indexes.js';
import { redisOperations } from './redis/operations.js';

/**
 * Test hooks of the Redis store: the kernel's `beforeWrite`, and `afterIndexStep`, awaited
 * on Cluster after each step of a batch or removeGroup with an index (`'intent'`, then
 * `'group'`); a throw there abandons the call at that point, as a crash would.
 */
export type RedisStoreFaults = StoreFaults & IndexFaults;

export interface RedisStoreOptions {
  /** `redis://[user:password@]host[:port][/db]` or `rediss://...` for TLS. Default `redis://127.0.0.1:6379`. */
  url?: string;
  /**
   * A node-redis client, Cluster client (`createCluster`) or Sentinel client (`createSentinel`)
   * you created, e.g. from `@keyv/redis`, which re-exports them. It stays yours: `close()`
   * leaves it open. It may be connected already or not: the store connects it if needed.
   * Configure it to fail fast yourself (`disableOfflineQueue`, in `defaults` for a cluster,
   * in `nodeClientOptions` for a sentinel); the store's own deadline still bounds every call.
   * Every command, reads included, goes to a master, so a caller always reads its own writes.
   *
   * @example Cluster (database 0 only; every key of a group shares one hash slot)
   * ```ts
   * import { createCluster } from '@keyv/redis';
   *
   * const cluster = createCluster({
   *   rootNodes: [{ url: 'redis://10.0.0.1:7000' }, { url: 'redis://10.0.0.2:7000' }],
   *   defaults: { password: 'secret', disableOfflineQueue: true, socket: { connectTimeout: 2000 } },
   * });
   * cluster.on('error', (error) => log.warn(error));
   * await cluster.connect();
   * const store = createRedisStore({ client: cluster, namespace: 'credvault' });
   * ```
   *
   * @example Sentinel
   * ```ts
   * import { createSentinel } from '@keyv/redis';
   *
   * const sentinel = createSentinel({
   *   name: 'mymaster',
   *   sentinelRootNodes: [{ host: '10.0.0.1', port: 26379 }, { host: '10.0.0.2', port: 26379 }],
   *   nodeClientOptions: { password: 'secret', database: 2, disableOfflineQueue: true, socket: { connectTimeout: 2000 } },
   * });
   * sentinel.on('error', (error) => log.warn(error));
   * await sentinel.connect();
   * const store = createRedisStore({ client: sentinel, namespace: 'credvault' });
   * ```
   */
  client?: RedisClient;
  /** Keeps this store's keys apart from other namespaces in the same database. Default `credvault`. */
  namespace?: string;
  /**
   * How long to wait for a TCP connection, and how long a call waits for a reconnecting
   * client before it rejects. Default 2000 ms.
   */
  connectTimeoutMs?: number;
  /** Upper bound on one store command once connected. Default 5000 ms. */
  commandTimeoutMs?: number;
  /**
   * Cluster only: how long a batch or removeGroup with an index holds its index entry before
   * another call may finish or undo it (after a crash, say). Longer than such a call takes
   * at its deadlines; default `connectTimeoutMs + 2 * commandTimeoutMs`. All stores of one
   * namespace should use the same value.
   */
  indexLeaseMs?: number;
  /**
   * Cluster only: how long a batch or removeGroup with an index may take to get its index
   * entry, waiting while another call holds it, before it rejects having written nothing.
   * Once this has passed none of its steps begins, and an entry it got only afterwards (a
   * slow reply) is let go at once. Keep it below the vault's store deadline
   * (`storeTimeoutMs` of `createVault`, default 2000 ms): the vault does not cancel a call
   * it gave up on, so a longer wait could still write after the vault answered 503.
   * Default 1000 ms.
   */
  indexWaitMs?: number;
  /**
   * Test hooks. When `beforeWrite` throws for write `i`, the batch script is told to fail
   * after its checks, before its first write (a Redis script cannot roll back a write).
   * `afterIndexStep` lets a Cluster test cut an indexed call off between its steps.
   */
  faults?: RedisStoreFaults;
}

/**
 * A {@link VaultStore} on Redis (standalone, Cluster or Sentinel), over `@keyv/redis`, for
 * several server processes or machines sharing one vault. For Cluster or Sentinel, create
 * the node-redis client yourself and pass it as `client` (see {@link RedisStoreOptions.client}).
 *
 * Keys are `<namespace>{<group>}:<member>` holding Keyv's `{"value":...,"expires":...}`
 * JSON, plus a sorted-set index per group, `<namespace>{<group>}#idx`. All keys of a group
 * share the hash tag `{<group>}`, so each operation runs as one Lua script in one slot, also
 * on Cluster (where a group must not be empty). A sorted set `<namespace>#groups` lists the
 * groups so that `scan` walks them in order without touching other namespaces' keys; on
 * Cluster it is one key, so it lives on one master.
 *
 * Calls never hang on an outage: commands are not queued while disconnected, a call waits
 * at most `connectTimeoutMs` for a reconnect and `commandTimeoutMs` for an answer, and the
 * client keeps reconnecting in the background, so service resumes by itself.
 *
 * **Indexes** (rule 10) are sorted sets `<namespace>#ix{<index>}` (score 0, so rank order is
 * code-unit order for these names); `readIndex` reads `ZCARD` and a `ZRANGE` by rank in one
 * script, so its total and page are of one instant, and it costs O(log n + limit).
 * Standalone and Sentinel change the group and the index in one script: truly one step.
 *
 * On Cluster an index and a group are in different slots, which no Redis command spans, so
 * a batch or removeGroup with an index takes three steps, each one atomic script:
 * 1. *Intent*, in the index's slot: the entry's intent (`<seq> <op> <group>`, in
 *    `#ix{<index>}#pending`) is taken like a lock with a lease (`indexLeaseMs`, timed by
 *    that master's clock); `seq` comes from the index's counter, so later intents on an
 *    entry always carry larger numbers. A call that finds the entry held waits, then
 *    rejects having written nothing once `indexWaitMs` (below the vault's deadline) has
 *    passed; one that finds the lease run out resolves it first.
 * 2. *Group step*, in the group's slot: the batch (or removal) as without an index, plus a
 *    mark `<seq>:c` in the group's `{<group>}#ixc` hash when it commits. It is *fenced*,
 *    writing nothing, when that hash already holds this or a later seq for the entry, or
 *    when its intent is more than 12 hours old (a paused process).
 * 3. *Index step*, in the index's slot: `ZADD` or `ZREM`, and the intent is cleared, only
 *    if the intent is still this call's.
 *
 * An intent whose lease ran out (its caller crashed, was cut off or is paused) is resolved
 * by `readIndex` of that index, or by the next call on that entry: the group's slot decides
 * in one script whether the group step ran, from the mark, and if it did not, fences it
 * (`<seq>:a`), so a late step can never run; then the index step applies what was decided.
 * So a call cut off halfway is **completed if its group step ran and undone otherwise**,
 * no later than the first such call after the lease. A caller that errs while unsure
 * whether its group step ran resolves its own intent the same way at once, and rejects.
 *
 * Against the vault's deadline: a call begins its group step only if it got its entry within
 * `indexWaitMs`, so one that waited for another call and was answered 503 by the vault
 * never writes afterwards. What remains is a call that got its entry in time and then is
 * slow (a reconnect, a slow master): it may still finish after the vault's deadline, like
 * any Redis script already sent, or else be settled by its lease as above.
 *
 * What a reader can see: `total` and the entries come from the sorted set only, and an entry
 * moves at the index step. Between the two steps (one round trip; after a crash, until the
 * intent is resolved) a created group can already be read with `get`/`list` but is not yet
 * listed or counted, and a removed group is still listed and counted though it is gone.
 * Calls on one entry are serialized by its intent, so concurrent creates and removals from
 * any number of processes leave the total exact. On Cluster only, an indexed batch that
 * rejects because Redis failed between its steps may have committed: it is then completed
 * as above, not rolled back. A group's marks hash holds one field per index entry; it fades
 * a day after the group is removed. The guarantee assumes the Redis masters' clocks agree
 * within 12 hours.
 *
 * @example
 * ```ts
 * import { createRedisStore } from 'credvault/adapters/redis';
 *
 * const store = createRedisStore({ url: 'redis://:secret@127.0.0.1:6379/2' });
 * await store.put('org%3Aacme', 'cred:api_key', sealed); // 'added'
 * // A group created and listed in an index in one step (three on Cluster, see above).
 * await store.batch('acct%3Au1', [{ op: 'insert', member: 'profile', value: sealed }], { index: { index: 'org%3Aacme', entry: 'u1' } });
 * await store.readIndex('org%3Aacme', 0, 10); // { total: 1, entries: ['u1'] }
 * await store.close();
 * ```
 *
 * @example Cluster or Sentinel: pass your own client; closing the store leaves it open.
 * ```ts
 * import { createCluster, createSentinel } from '@keyv/redis';
 *
 * const cluster = createCluster({
 *   rootNodes: [{ url: 'redis://10.0.0.1:7000' }],
 *   defaults: { disableOfflineQueue: true },
 * });
 * const onCluster = createRedisStore({ client: cluster });
 *
 * const sentinel = createSentinel({
 *   name: 'mymaster',
 *   sentinelRootNodes: [{ host: '10.0.0.1', port: 26379 }],
 *   nodeClientOptions: { disableOfflineQueue: true },
 * });
 * const onSentinel = createRedisStore({ client: sentinel });
 * // ...
 * await onCluster.close();
 * await cluster.close();
 * ```
 */
export function createRedisStore(options: RedisStoreOptions = {}): VaultStore {
  const connectTimeoutMs = options.connectTimeoutMs ?? 2000;
  const commandTimeoutMs = options.commandTimeoutMs ?? 5000;
  const leaseMs = options.indexLeaseMs ?? connectTimeoutMs + 2 * commandTimeoutMs;
  if (!(Number.isFinite(leaseMs) && leaseMs > 0)) throw new RangeError('indexLeaseMs must be a positive number of milliseconds');
  const waitMs = options.indexWaitMs ?? 1000;
  if (!(Number.isFinite(waitMs) && waitMs > 0)) throw new RangeError('indexWaitMs must be a positive number of milliseconds');
  const redis = openConnection({ url: options.url, client: options.client, connectTimeoutMs, commandTimeoutMs });
  return defineStore(
    {
      kind: 'redis',
      // On Cluster, `ns{}:member` hashes whole, so a member and its group index would land
      // in different slots (CROSSSLOT): an empty group cannot work there.
      checkGroup: (group) => {
        if (group === '' && redis.topology === 'cluster') throw new RangeError('group must not be empty on Redis Cluster');
      },
    },
    // A read that resolves others' intents writes nothing of its own, so it may retry for a
    // whole command deadline; a call waiting for an entry must give up before the vault does.
    redisOperations(redis, options.namespace ?? DEFAULT_NAMESPACE, options.faults, {
      leaseMs: Math.ceil(leaseMs),
      waitMs,
      readRetryMs: commandTimeoutMs,
    }),
  );
}

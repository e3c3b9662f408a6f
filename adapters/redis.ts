import { createHash, randomBytes } from 'node:crypto';
import KeyvRedis, {
  createClient,
  type RedisClientType,
  type RedisClusterType,
  type RedisConnectionClientType,
  type RedisConnectionClusterType,
  type RedisConnectionSentinelType,
  type RedisSentinelType,
} from '@keyv/redis';
import Keyv from 'keyv';
import { VaultError } from '../src/core/errors.js';
import type {
  InsertOptions,
  PutOptions,
  PutResult,
  ScanPage,
  StoreEntry,
  StoreListItem,
  VaultStore,
} from '../src/core/store.js';
import { assertName, DEFAULT_NAMESPACE, parseEntry as toEntry, upperBound, type Row, type Stored } from './record.js';

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
  client?: RedisConnectionClientType | RedisConnectionClusterType | RedisConnectionSentinelType;
  /** Keeps this store's keys apart from other namespaces in the same database. Default `credvault`. */
  namespace?: string;
  /**
   * How long to wait for a TCP connection, and how long a call waits for a reconnecting
   * client before it rejects. Default 2000 ms.
   */
  connectTimeoutMs?: number;
  /** Upper bound on one store call once connected. Default 5000 ms. */
  commandTimeoutMs?: number;
}

const DEFAULT_URL = 'redis://127.0.0.1:6379';
/** Members fetched per ZRANGEBYLEX inside the list script. */
const LIST_CHUNK = 100;
/** Groups fetched per registry read during a scan. */
const SCAN_GROUP_CHUNK = 64;

// Records are JSON.stringify output with a fixed key order, so Lua can splice them as text:
// inside the JSON string "v" every quote is escaped, so `,"c":` first occurs after v.
// Lua never decodes v, which keeps every value (lone surrogates included) byte for byte.
const LUA_ALIVE = `
local function alive(raw, now)
  if not raw then return false end
  local expires = string.match(raw, ',"expires":(%d+)}$')
  return expires == nil or tonumber(expires) >= now
end
`;

// KEYS: member key, group index, [required member key]. ARGV: member, now, record, v as JSON.
// Returns {result, 1 when the group's index did not exist before (a new or emptied group)}.
const PUT = `${LUA_ALIVE}
local now = tonumber(ARGV[2])
if KEYS[3] and not alive(redis.call('GET', KEYS[3]), now) then return {'missing', 0} end
local fresh = redis.call('EXISTS', KEYS[2]) == 0 and 1 or 0
local old = redis.call('GET', KEYS[1])
if alive(old, now) then
  local created = string.match(old, ',"c":(%d+),"u":')
  local writer = string.match(old, ',"w":("[^"]*")}')
  redis.call('SET', KEYS[1], '{"value":{"v":' .. ARGV[4] .. ',"c":' .. created .. ',"u":' .. ARGV[2] .. ',"w":' .. writer .. '}}')
  redis.call('ZADD', KEYS[2], 0, ARGV[1])
  return {'updated', fresh}
end
redis.call('SET', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return {'added', fresh}
`;

// KEYS: member key, group index, [required member key]. ARGV: member, now, record, expires or ''.
// Returns {1 if inserted, 1 when the group's index did not exist before}.
const INSERT = `${LUA_ALIVE}
local now = tonumber(ARGV[2])
if KEYS[3] and not alive(redis.call('GET', KEYS[3]), now) then return {0, 0} end
if alive(redis.call('GET', KEYS[1]), now) then return {0, 0} end
local fresh = redis.call('EXISTS', KEYS[2]) == 0 and 1 or 0
if ARGV[4] == '' then
  redis.call('SET', KEYS[1], ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[3], 'PXAT', ARGV[4])
end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return {1, fresh}
`;

// KEYS: member key. ARGV: now, expected v as JSON, new v as JSON. KEEPTTL keeps the expiry.
const REPLACE = `${LUA_ALIVE}
local old = redis.call('GET', KEYS[1])
if not alive(old, tonumber(ARGV[1])) then return 0 end
local rest = string.find(old, ',"c":', 1, true)
if string.sub(old, 15, rest - 1) ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], '{"value":{"v":' .. ARGV[3] .. string.sub(old, rest), 'KEEPTTL')
return 1
`;

// KEYS: member key, group index. ARGV: member, now.
const REMOVE = `${LUA_ALIVE}
local old = redis.call('GET', KEYS[1])
if old then redis.call('DEL', KEYS[1]) end
redis.call('ZREM', KEYS[2], ARGV[1])
if alive(old, tonumber(ARGV[2])) then return 1 end
return 0
`;

// KEYS: group index. ARGV: lex min, lex max, limit (0 = all), now, the group's key prefix.
// Member keys are not in KEYS, but share the index's hash tag, so they live in its slot.
// Index entries whose key Redis has expired are pruned on the way.
const LIST = `${LUA_ALIVE}
local now, limit, min, out = tonumber(ARGV[4]), tonumber(ARGV[3]), ARGV[1], {}
while true do
  local members = redis.call('ZRANGEBYLEX', KEYS[1], min, ARGV[2], 'LIMIT', 0, ${LIST_CHUNK})
  for _, member in ipairs(members) do
    local raw = redis.call('GET', ARGV[5] .. member)
    if not raw then
      redis.call('ZREM', KEYS[1], member)
    elseif alive(raw, now) then
      out[#out + 1] = member
      out[#out + 1] = raw
      if #out == 2 * limit then return out end
    end
  end
  if #members < ${LIST_CHUNK} then return out end
  min = '(' .. members[#members]
end
`;

// KEYS: group index. ARGV: now, the group's key prefix. Returns how many live members it removed.
const REMOVE_GROUP = `${LUA_ALIVE}
local now, removed = tonumber(ARGV[1]), 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local raw = redis.call('GET', ARGV[2] .. member)
  if raw then
    if alive(raw, now) then removed = removed + 1 end
    redis.call('DEL', ARGV[2] .. member)
  end
end
redis.call('DEL', KEYS[1])
return removed
`;

interface Script {
  source: string;
  sha: string;
}

const script = (source: string): Script => ({ source, sha: createHash('sha1').update(source).digest('hex') });
const SCRIPTS = {
  put: script(PUT),
  insert: script(INSERT),
  replace: script(REPLACE),
  remove: script(REMOVE),
  list: script(LIST),
  removeGroup: script(REMOVE_GROUP),
};

/** `[member, raw, member, raw, ...]` from the list script, as entries. */
function toItems(reply: unknown, now: number): StoreListItem[] {
  const flat = reply as string[];
  const items: StoreListItem[] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const entry = toEntry(flat[i + 1] as string, now);
    if (entry !== undefined) items.push({ member: flat[i] as string, entry });
  }
  return items;
}

/** Clients that already have this module's no-op 'error' listener. */
const quieted = new WeakSet<object>();

function unavailable(message: string): VaultError {
  return new VaultError('STORE_UNAVAILABLE', message);
}

/** Rejects with `STORE_UNAVAILABLE` when `promise` has not settled within `ms`. */
async function within<T>(ms: number, promise: Promise<T>, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(unavailable(message)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
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
 * @example
 * ```ts
 * import { createRedisStore } from 'credvault/adapters/redis';
 *
 * const store = createRedisStore({ url: 'redis://:secret@127.0.0.1:6379/2' });
 * await store.put('org%3Aacme', 'cred:api_key', sealed); // 'added'
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
  const ownsClient = options.client === undefined;
  const client: RedisConnectionClientType | RedisConnectionClusterType | RedisConnectionSentinelType =
    options.client ??
    (createClient({
      url: options.url ?? DEFAULT_URL,
      // Without this, commands issued while disconnected wait in a queue forever.
      disableOfflineQueue: true,
      socket: {
        connectTimeout: connectTimeoutMs,
        // Never give up: the store must come back by itself when Redis does.
        reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, 1000) + Math.floor(Math.random() * 50),
      },
    }) as RedisClientType);
  const adapter = new KeyvRedis<string>(client, {
    throwOnConnectError: true,
    throwOnErrors: true,
    connectionTimeout: connectTimeoutMs,
  });
  // Keys are ours in full: no Keyv namespace and no Keyv prefix, or they would be prefixed twice.
  const keyv = new Keyv<Row>({ store: adapter, namespace: undefined, useKeyPrefix: false, throwOnErrors: true });
  // Errors reach callers through rejected promises. An 'error' event without a listener
  // would crash the process, so every emitter in the chain gets one.
  if (!quieted.has(client)) {
    // Once per client: several stores may share one, and each listener counts towards Node's limit.
    quieted.add(client);
    client.on('error', () => undefined);
  }
  adapter.on('error', () => undefined);
  keyv.on('error', () => undefined);

  const topology: 'client' | 'cluster' | 'sentinel' = adapter.isCluster()
    ? 'cluster'
    : adapter.isSentinel()
      ? 'sentinel'
      : 'client';
  let closed = false;
  const single = client as RedisClientType;
  const clusterClient = client as RedisClusterType;
  const sentinelClient = client as RedisSentinelType;
  let readyWaiters: Array<() => void> = [];
  const wakeAll = (): void => {
    const waiters = readyWaiters;
    readyWaiters = [];
    for (const wake of waiters) wake();
  };
  // A plain client says 'ready' after every (re)connect. Cluster and sentinel clients have no
  // event for "commands can go now", so connected() polls them while a call waits.
  if (topology === 'client') single.on('ready', wakeAll);

  /**
   * Whether commands can be sent now. A cluster client is open before it has discovered the
   * slots, and sending then fails inside node-redis, so it also needs a known master.
   */
  function isReady(): boolean {
    switch (topology) {
      case 'client':
        return single.isReady;
      case 'cluster':
        return clusterClient.isOpen && clusterClient.masters.length > 0;
      case 'sentinel':
        return sentinelClient.isReady;
    }
  }

  // A client handed over unconnected is connected here, in the background: connect() only
  // settles once connected, and may retry for ever. A cluster's or sentinel's first connect
  // can fail for good (no root node reachable); then the next call starts another attempt.
  const connectsClient = !client.isOpen;
  let connecting: Promise<void> | undefined;
  function startConnect(): void {
    if (connecting !== undefined || closed || client.isOpen) return;
    connecting = client
      .connect()
      .then(
        () => undefined,
        () => undefined,
      )
      .finally(() => {
        connecting = undefined;
        wakeAll();
      });
  }

  const base = encodeURIComponent(options.namespace ?? DEFAULT_NAMESPACE);
  const registry = `${base}#groups`;
  const groupPrefix = (group: string): string => `${base}{${group}}:`;
  const indexKey = (group: string): string => `${base}{${group}}#idx`;
  if (connectsClient) startConnect();

  async function connected(): Promise<void> {
    if (closed) throw unavailable('The Redis store is closed');
    if (isReady()) return;
    if (connectsClient && topology !== 'client') startConnect();
    let wake: (() => void) | undefined;
    let poll: NodeJS.Timeout | undefined;
    const ready = new Promise<void>((resolve) => {
      wake = resolve;
      readyWaiters.push(resolve);
      if (topology !== 'client') {
        poll = setInterval(() => {
          if (isReady() || closed) resolve();
        }, 20);
      }
    });
    try {
      await within(connectTimeoutMs, ready, `Redis is not reachable within ${connectTimeoutMs} ms`);
    } finally {
      clearInterval(poll);
      readyWaiters = readyWaiters.filter((waiter) => waiter !== wake);
    }
    if (closed) throw unavailable('The Redis store is closed');
    if (!isReady()) throw unavailable('Redis is not reachable');
  }

  /**
   * Sends one command to the node that owns `firstKey`. Always as a write (`isReadonly`
   * false): with replicas in use, a read sent to a replica could miss the caller's own write.
   */
  function send(firstKey: string, args: string[]): Promise<unknown> {
    switch (topology) {
      case 'client':
        return single.sendCommand(args);
      case 'cluster':
        return clusterClient.sendCommand(firstKey, false, args);
      case 'sentinel':
        return sentinelClient.sendCommand(false, args);
    }
  }

  async function command(firstKey: string, args: string[]): Promise<unknown> {
    await connected();
    return within(commandTimeoutMs, send(firstKey, args), `Redis did not answer within ${commandTimeoutMs} ms`);
  }

  async function run(which: Script, keys: string[], args: string[]): Promise<unknown> {
    await connected();
    const firstKey = keys[0] as string;
    const call = async (): Promise<unknown> => {
      try {
        return await send(firstKey, ['EVALSHA', which.sha, String(keys.length), ...keys, ...args]);
      } catch (error) {
        // A restarted or flushed server, a cluster master that never ran the script, or a
        // promoted replica has not got the script: send it once in full to that node.
        if (!(error instanceof Error && error.message.startsWith('NOSCRIPT'))) throw error;
        return send(firstKey, ['EVAL', which.source, String(keys.length), ...keys, ...args]);
      }
    };
    return within(commandTimeoutMs, call(), `Redis did not answer within ${commandTimeoutMs} ms`);
  }

  /**
   * Lists a group in the registry. Writes do it only when their script found the group's
   * index missing (a new or emptied group), so a warm write stays one round trip; a scan
   * running in the instant between such a write and its registration may miss that brand-new
   * group, whose records were sealed just now, with the current key.
   */
  async function register(group: string): Promise<void> {
    await command(registry, ['ZADD', registry, '0', group]);
  }

  /**
   * Drops an emptied group from the registry. Remove first, then look: a writer that adds
   * a member meanwhile either is seen here or registers again after its write.
   */
  async function forget(group: string): Promise<void> {
    await command(registry, ['ZREM', registry, group]);
    if ((await command(indexKey(group), ['EXISTS', indexKey(group)])) === 1) await register(group);
  }

  /**
   * On Cluster an empty group cannot work: in `ns{}:member` Redis hashes the whole key, so
   * the member and the group index would land in different slots (CROSSSLOT).
   */
  function assertGroup(group: string): void {
    assertName('group', group);
    if (group === '' && topology === 'cluster') throw new RangeError('group must not be empty on Redis Cluster');
  }

  const keyOf = (group: string, member: string): string => `${groupPrefix(group)}${member}`;
  const newRow = (value: string, now: number): Row => ({ v: value, c: now, u: now, w: randomBytes(12).toString('hex') });

  async function listGroup(group: string, min: string, max: string, limit: number): Promise<StoreListItem[]> {
    const reply = await run(SCRIPTS.list, [indexKey(group)], [min, max, String(limit), String(Date.now()), groupPrefix(group)]);
    return toItems(reply, Date.now());
  }

  return {
    kind: 'redis',

    async get(group: string, member: string): Promise<StoreEntry | undefined> {
      assertGroup(group);
      assertName('member', member);
      const key = keyOf(group, member);
      const raw = (await command(key, ['GET', key])) as string | null;
      return raw === null ? undefined : toEntry(raw, Date.now());
    },

    async put(group: string, member: string, value: string, putOptions?: PutOptions): Promise<PutResult> {
      assertGroup(group);
      assertName('member', member);
      const requires = putOptions?.requires;
      if (requires !== undefined) assertName('requires', requires);
      const now = Date.now();
      const keys = [keyOf(group, member), indexKey(group)];
      if (requires !== undefined) keys.push(keyOf(group, requires));
      const record = JSON.stringify({ value: newRow(value, now) } satisfies Stored);
      const [result, fresh] = (await run(SCRIPTS.put, keys, [member, String(now), record, JSON.stringify(value)])) as [PutResult, number];
      if (fresh === 1) await register(group);
      return result;
    },

    async insert(group: string, member: string, value: string, insertOptions?: InsertOptions): Promise<boolean> {
      assertGroup(group);
      assertName('member', member);
      const ttlMs = insertOptions?.ttlMs;
      if (ttlMs !== undefined && !(Number.isFinite(ttlMs) && ttlMs > 0)) {
        throw new RangeError('ttlMs must be a positive number of milliseconds');
      }
      const requires = insertOptions?.requires;
      if (requires !== undefined) assertName('requires', requires);
      const now = Date.now();
      const stored: Stored = { value: newRow(value, now) };
      // Redis expires the key at the very instant the record says, so both agree.
      if (ttlMs !== undefined) stored.expires = now + Math.ceil(ttlMs);
      const keys = [keyOf(group, member), indexKey(group)];
      if (requires !== undefined) keys.push(keyOf(group, requires));
      const args = [member, String(now), JSON.stringify(stored), stored.expires === undefined ? '' : String(stored.expires)];
      const [inserted, fresh] = (await run(SCRIPTS.insert, keys, args)) as [number, number];
      if (fresh === 1) await register(group);
      return inserted === 1;
    },

    async replace(group: string, member: string, expected: string, value: string): Promise<boolean> {
      assertGroup(group);
      assertName('member', member);
      const args = [String(Date.now()), JSON.stringify(expected), JSON.stringify(value)];
      return (await run(SCRIPTS.replace, [keyOf(group, member)], args)) === 1;
    },

    async remove(group: string, member: string): Promise<boolean> {
      assertGroup(group);
      assertName('member', member);
      const args = [member, String(Date.now())];
      return (await run(SCRIPTS.remove, [keyOf(group, member), indexKey(group)], args)) === 1;
    },

    async list(group: string, prefix = ''): Promise<StoreListItem[]> {
      assertGroup(group);
      assertName('prefix', prefix);
      return prefix === ''
        ? listGroup(group, '-', '+', 0)
        : listGroup(group, `[${prefix}`, `(${upperBound(prefix)}`, 0);
    },

    async removeGroup(group: string): Promise<number> {
      assertGroup(group);
      const removed = (await run(SCRIPTS.removeGroup, [indexKey(group)], [String(Date.now()), groupPrefix(group)])) as number;
      await forget(group);
      return removed;
    },

    async scan(cursor: string | undefined, batchSize: number): Promise<ScanPage> {
      if (!Number.isInteger(batchSize) || batchSize < 1) {
        throw new RangeError('batchSize must be a positive integer');
      }
      // The cursor is the last (group, member) returned, as `group}member`; groups never hold '}'.
      const items: ScanPage['items'] = [];
      let nextGroups = '-';
      const take = async (group: string, min: string): Promise<boolean> => {
        const found = await listGroup(group, min, '+', batchSize - items.length);
        for (const { member, entry } of found) items.push({ group, member, entry });
        if (min === '-' && found.length === 0) await forget(group);
        return items.length === batchSize;
      };
      const page = (): ScanPage => {
        const last = items[items.length - 1];
        return { items, cursor: last === undefined ? undefined : `${last.group}}${last.member}` };
      };
      if (cursor !== undefined) {
        const split = cursor.indexOf('}');
        if (split < 0) throw new RangeError('invalid scan cursor');
        const group = cursor.slice(0, split);
        assertName('cursor', group);
        if (await take(group, `(${cursor.slice(split + 1)}`)) return page();
        nextGroups = `(${group}`;
      }
      for (;;) {
        const groups = (await command(registry, [
          'ZRANGEBYLEX', registry, nextGroups, '+', 'LIMIT', '0', String(SCAN_GROUP_CHUNK),
        ])) as string[];
        for (const group of groups) {
          if (await take(group, '-')) return page();
        }
        if (groups.length < SCAN_GROUP_CHUNK) return { items, cursor: undefined };
        nextGroups = `(${groups[groups.length - 1] as string}`;
      }
    },

    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      wakeAll();
      if (topology === 'client') single.off('ready', wakeAll);
      if (!ownsClient || !client.isOpen) return;
      if (single.isReady) {
        // A graceful close lets in-flight replies arrive, but must not outlast an outage.
        await within(connectTimeoutMs, keyv.disconnect(), 'close timed out').catch(() => undefined);
      }
      if (client.isOpen) client.destroy();
    },
  };
}

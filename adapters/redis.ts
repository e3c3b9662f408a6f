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
import { VaultError } from '../src/errors.js';
import {
  checkBatch,
  checkTtl,
  type BatchOptions,
  type BatchResult,
  type BatchWrite,
  type CounterState,
  type InsertOptions,
  type PutOptions,
  type PutResult,
  type ScanPage,
  type StoreEntry,
  type StoreListItem,
  type VaultStore,
} from '../src/core/store.js';
import {
  assertName,
  DEFAULT_NAMESPACE,
  parseEntry as toEntry,
  upperBound,
  type Row,
  type StoreFaults,
  type Stored,
} from './record.js';

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
  /**
   * Test hook: when `beforeWrite` throws for write `i`, the batch script is told to fail
   * after its checks, before its first write (a Redis script cannot roll back a write).
   */
  faults?: StoreFaults;
}

const DEFAULT_URL = 'redis://127.0.0.1:6379';
/** Members fetched per ZRANGEBYLEX inside the list script. */
const LIST_CHUNK = 100;
/** The COUNT hint of each SCAN during a store scan. */
const SCAN_COUNT = 200;

// Records are JSON.stringify output with a fixed key order, so Lua can splice them as text:
// inside the JSON string "v" every quote is escaped, so `,"c":` first occurs after v.
// Lua never decodes v, which keeps every value (lone surrogates included) byte for byte.
const LUA_ALIVE = `
local function alive(raw, now)
  if not raw then return false end
  local expires = string.match(raw, ',"expires":(%d+)}$')
  return expires == nil or tonumber(expires) >= now
end
-- A group's index lives as long as its members: it is made persistent by a member that
-- never expires, and otherwise expires with its last member, so expiring groups (counters)
-- leave nothing behind.
local function persist(idx) redis.call('PERSIST', idx) end
local function expiring(idx, at, now)
  local pttl = redis.call('PTTL', idx)
  if pttl == -1 then
    if redis.call('ZCARD', idx) == 1 then redis.call('PEXPIREAT', idx, at) end
  elseif now + pttl < at then
    redis.call('PEXPIREAT', idx, at)
  end
end
`;

// Writes a put: a live record keeps its createdAt and write id. Returns 'added' or 'updated'.
const LUA_PUT = `
local function put(key, idx, member, old, now, record, vjson)
  if alive(old, now) then
    local created = string.match(old, ',"c":(%d+),"u":')
    local writer = string.match(old, ',"w":("[^"]*")}')
    redis.call('SET', key, '{"value":{"v":' .. vjson .. ',"c":' .. created .. ',"u":' .. now .. ',"w":' .. writer .. '}}')
    redis.call('ZADD', idx, 0, member)
    persist(idx)
    return 'updated'
  end
  redis.call('SET', key, record)
  redis.call('ZADD', idx, 0, member)
  persist(idx)
  return 'added'
end
local function insert(key, idx, member, now, record, expires)
  if expires == '' then
    redis.call('SET', key, record)
    redis.call('ZADD', idx, 0, member)
    persist(idx)
  else
    redis.call('SET', key, record, 'PXAT', expires)
    redis.call('ZADD', idx, 0, member)
    expiring(idx, tonumber(expires), now)
  end
end
local function replace(key, old, vjson)
  local rest = string.find(old, ',"c":', 1, true)
  redis.call('SET', key, '{"value":{"v":' .. vjson .. string.sub(old, rest), 'KEEPTTL')
end
local function holds(old, expected)
  local rest = string.find(old, ',"c":', 1, true)
  return string.sub(old, 15, rest - 1) == expected
end
`;

// KEYS: member key, group index, [required member key]. ARGV: member, now, record, v as JSON.
const PUT = `${LUA_ALIVE}${LUA_PUT}
local now = tonumber(ARGV[2])
if KEYS[3] and not alive(redis.call('GET', KEYS[3]), now) then return 'missing' end
return put(KEYS[1], KEYS[2], ARGV[1], redis.call('GET', KEYS[1]), now, ARGV[3], ARGV[4])
`;

// KEYS: member key, group index, [required member key]. ARGV: member, now, record, expires or ''.
const INSERT = `${LUA_ALIVE}${LUA_PUT}
local now = tonumber(ARGV[2])
if KEYS[3] and not alive(redis.call('GET', KEYS[3]), now) then return 0 end
if alive(redis.call('GET', KEYS[1]), now) then return 0 end
insert(KEYS[1], KEYS[2], ARGV[1], now, ARGV[3], ARGV[4])
return 1
`;

// KEYS: group index, [required member key], then one member key per write.
// ARGV: now, has-required (0/1), fault (1 = fail after the checks), then four per write:
// op, member, a, b (put: record, v as JSON; insert: record, expires or ''; replace: new v
// as JSON, expected v as JSON; remove: -, -). Every check runs before the first write,
// and a script runs to completion, so the batch is all or nothing. Returns {1, results...}
// or {0, index of the failing write, -1 for the required member}.
const BATCH = `${LUA_ALIVE}${LUA_PUT}
local now, required, fault = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local idx, first = KEYS[1], 2 + required
if required == 1 and not alive(redis.call('GET', KEYS[2]), now) then return {0, -1} end
local olds = {}
for j = 0, #KEYS - first do
  local old, op = redis.call('GET', KEYS[first + j]), ARGV[4 + j * 4]
  olds[j + 1] = old
  local live = alive(old, now)
  if op == 'insert' and live then return {0, j} end
  if op == 'replace' and not (live and holds(old, ARGV[7 + j * 4])) then return {0, j} end
end
if fault == '1' then return redis.error_reply('ERR credvault injected fault') end
local out = {1}
for j = 0, #KEYS - first do
  local key, old = KEYS[first + j], olds[j + 1]
  local op, member, a, b = ARGV[4 + j * 4], ARGV[5 + j * 4], ARGV[6 + j * 4], ARGV[7 + j * 4]
  if op == 'put' then
    out[#out + 1] = put(key, idx, member, old, now, a, b)
  elseif op == 'insert' then
    insert(key, idx, member, now, a, b)
    out[#out + 1] = 1
  elseif op == 'replace' then
    replace(key, old, a)
    out[#out + 1] = 1
  else
    if old then redis.call('DEL', key) end
    redis.call('ZREM', idx, member)
    out[#out + 1] = alive(old, now) and 1 or 0
  end
end
return out
`;

// KEYS: member key, group index. ARGV: member, now, a fresh record at 1, its expiry.
// Returns {count, expiresAt}.
const INCREMENT = `${LUA_ALIVE}${LUA_PUT}
local now = tonumber(ARGV[2])
local old = redis.call('GET', KEYS[1])
if alive(old, now) then
  local count = (tonumber(string.match(old, '^{"value":{"v":"(%d+)"')) or 0) + 1
  local rest = string.find(old, ',"c":', 1, true)
  redis.call('SET', KEYS[1], '{"value":{"v":"' .. string.format('%d', count) .. '"' .. string.sub(old, rest), 'KEEPTTL')
  return {count, tonumber(string.match(old, ',"expires":(%d+)}$')) or -1}
end
insert(KEYS[1], KEYS[2], ARGV[1], now, ARGV[3], ARGV[4])
return {1, tonumber(ARGV[4])}
`;

// KEYS: member key. ARGV: now, expected v as JSON, new v as JSON. KEEPTTL keeps the expiry.
const REPLACE = `${LUA_ALIVE}${LUA_PUT}
local old = redis.call('GET', KEYS[1])
if not (alive(old, tonumber(ARGV[1])) and holds(old, ARGV[2])) then return 0 end
replace(KEYS[1], old, ARGV[3])
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
  batch: script(BATCH),
  increment: script(INCREMENT),
};

/** Where a store scan stands: node, that node's SCAN cursor, groups found and not yet finished, last member returned. */
interface ScanState {
  node: number;
  cursor: string;
  groups: string[];
  after: string;
}

/** Escapes the characters SCAN's MATCH treats as a glob. */
const globEscape = (text: string): string => text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);

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
  // Every group has an index; SCAN finds groups by their index keys, so discovery needs no
  // registry that a write would have to update in a second step (or, on Cluster, in another slot).
  const indexPattern = `${globEscape(base)}{*}#idx`;
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
   * On Cluster an empty group cannot work: in `ns{}:member` Redis hashes the whole key, so
   * the member and the group index would land in different slots (CROSSSLOT).
   */
  function assertGroup(group: string): void {
    assertName('group', group);
    if (group === '' && topology === 'cluster') throw new RangeError('group must not be empty on Redis Cluster');
  }

  const keyOf = (group: string, member: string): string => `${groupPrefix(group)}${member}`;

  /**
   * One command sender per node that holds data: every master of a Cluster (in a stable
   * order, so a cursor stays valid from page to page), else the one server.
   */
  async function scanNodes(): Promise<Array<(args: string[]) => Promise<unknown>>> {
    await connected();
    if (topology !== 'cluster') return [(args) => send('', args)];
    const masters = [...clusterClient.masters].sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
    return masters.map((master) => async (args) => (await clusterClient.nodeClient(master)).sendCommand(args));
  }

  function parseCursor(cursor: string): ScanState {
    try {
      const state = JSON.parse(Buffer.from(cursor, 'base64url').toString()) as ScanState;
      if (
        Number.isInteger(state.node) && typeof state.cursor === 'string' && /^[0-9]+$/.test(state.cursor) &&
        Array.isArray(state.groups) && typeof state.after === 'string'
      ) {
        for (const group of state.groups) assertName('cursor', group);
        assertName('cursor', state.after);
        return state;
      }
    } catch {
      // fall through to the one error below
    }
    throw new RangeError('invalid scan cursor');
  }
  const newRow = (value: string, now: number): Row => ({ v: value, c: now, u: now, w: randomBytes(12).toString('hex') });

  async function listGroup(group: string, min: string, max: string, limit: number): Promise<StoreListItem[]> {
    // One clock for the script's filter and ours: a member expiring between two readings
    // would shorten the page, and scan would take the group for finished.
    const now = Date.now();
    const reply = await run(SCRIPTS.list, [indexKey(group)], [min, max, String(limit), String(now), groupPrefix(group)]);
    return toItems(reply, now);
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
      return (await run(SCRIPTS.put, keys, [member, String(now), record, JSON.stringify(value)])) as PutResult;
    },

    async insert(group: string, member: string, value: string, insertOptions?: InsertOptions): Promise<boolean> {
      assertGroup(group);
      assertName('member', member);
      const ttlMs = insertOptions?.ttlMs;
      if (ttlMs !== undefined) checkTtl(ttlMs);
      const requires = insertOptions?.requires;
      if (requires !== undefined) assertName('requires', requires);
      const now = Date.now();
      const stored: Stored = { value: newRow(value, now) };
      // Redis expires the key at the very instant the record says, so both agree.
      if (ttlMs !== undefined) stored.expires = now + Math.ceil(ttlMs);
      const keys = [keyOf(group, member), indexKey(group)];
      if (requires !== undefined) keys.push(keyOf(group, requires));
      const args = [member, String(now), JSON.stringify(stored), stored.expires === undefined ? '' : String(stored.expires)];
      return (await run(SCRIPTS.insert, keys, args)) === 1;
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
      return (await run(SCRIPTS.removeGroup, [indexKey(group)], [String(Date.now()), groupPrefix(group)])) as number;
    },

    async batch(group: string, writes: readonly BatchWrite[], batchOptions?: BatchOptions): Promise<BatchResult> {
      assertGroup(group);
      checkBatch(writes, batchOptions, assertName);
      const requires = batchOptions?.requires;
      const now = Date.now();
      let fault = '0';
      try {
        for (let i = 0; i < writes.length; i++) options.faults?.beforeWrite?.(i);
      } catch {
        fault = '1';
      }
      const keys = [indexKey(group)];
      if (requires !== undefined) keys.push(keyOf(group, requires));
      const args = [String(now), requires === undefined ? '0' : '1', fault];
      for (const w of writes) {
        keys.push(keyOf(group, w.member));
        switch (w.op) {
          case 'put':
            args.push('put', w.member, JSON.stringify({ value: newRow(w.value, now) } satisfies Stored), JSON.stringify(w.value));
            break;
          case 'insert': {
            const stored: Stored = { value: newRow(w.value, now) };
            if (w.ttlMs !== undefined) stored.expires = now + Math.ceil(w.ttlMs);
            args.push('insert', w.member, JSON.stringify(stored), stored.expires === undefined ? '' : String(stored.expires));
            break;
          }
          case 'replace':
            args.push('replace', w.member, JSON.stringify(w.value), JSON.stringify(w.expected));
            break;
          case 'remove':
            args.push('remove', w.member, '', '');
            break;
        }
      }
      const [committed, ...rest] = (await run(SCRIPTS.batch, keys, args)) as Array<number | string>;
      if (committed !== 1) return { committed: false, failed: rest[0] as number };
      return {
        committed: true,
        results: rest.map((result, i) => (writes[i]?.op === 'put' ? (result as 'added' | 'updated') : result === 1)),
      };
    },

    async increment(group: string, member: string, ttlMs: number): Promise<CounterState> {
      assertGroup(group);
      assertName('member', member);
      checkTtl(ttlMs);
      const now = Date.now();
      const expires = now + Math.ceil(ttlMs);
      const record = JSON.stringify({ value: newRow('1', now), expires } satisfies Stored);
      const [count, expiresAt] = (await run(SCRIPTS.increment, [keyOf(group, member), indexKey(group)], [
        member, String(now), record, String(expires),
      ])) as [number, number];
      return { count, expiresAt: expiresAt < 0 ? Number.MAX_SAFE_INTEGER : expiresAt };
    },

    async purgeExpired(limit: number): Promise<number> {
      if (!Number.isInteger(limit) || limit < 1) throw new RangeError('limit must be a positive integer');
      // Redis deletes expired keys by itself, and an index expires with its last expiring member.
      await connected();
      return 0;
    },

    async scan(cursor: string | undefined, batchSize: number): Promise<ScanPage> {
      if (!Number.isInteger(batchSize) || batchSize < 1) {
        throw new RangeError('batchSize must be a positive integer');
      }
      const nodes = await scanNodes();
      const state: ScanState = cursor === undefined ? { node: 0, cursor: '0', groups: [], after: '' } : parseCursor(cursor);
      let started = cursor !== undefined;
      const items: ScanPage['items'] = [];
      while (items.length < batchSize) {
        const group = state.groups[0];
        if (group !== undefined) {
          const min = state.after === '' ? '-' : `(${state.after}`;
          const want = batchSize - items.length;
          const found = await listGroup(group, min, '+', want);
          for (const { member, entry } of found) items.push({ group, member, entry });
          if (found.length < want) {
            state.groups.shift();
            state.after = '';
          } else {
            state.after = (found[found.length - 1] as StoreListItem).member;
          }
          continue;
        }
        // This node's SCAN is done when its cursor comes back to 0.
        if (state.cursor === '0' && started) {
          state.node += 1;
          started = false;
        }
        const node = nodes[state.node];
        if (node === undefined) return { items, cursor: undefined };
        const [next, keys] = (await within(
          commandTimeoutMs,
          node(['SCAN', state.cursor, 'MATCH', indexPattern, 'COUNT', String(SCAN_COUNT), 'TYPE', 'zset']),
          `Redis did not answer within ${commandTimeoutMs} ms`,
        )) as [string, string[]];
        started = true;
        state.cursor = String(next);
        for (const key of [...keys].sort()) state.groups.push(key.slice(base.length + 1, -'}#idx'.length));
      }
      const more = state.groups.length > 0 || state.cursor !== '0' || state.node + 1 < nodes.length;
      return { items, cursor: more ? Buffer.from(JSON.stringify(state)).toString('base64url') : undefined };
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

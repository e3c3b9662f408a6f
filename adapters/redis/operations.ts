/**
 * The Redis adapter's operations: the store contract as keys, scripts and SCAN. A member is
 * the string key `<namespace>{<group>}:<member>` holding its record; each group also has a
 * sorted-set index `<namespace>{<group>}#idx` of its member names, so list and removeGroup
 * cost in proportion to the group and scan finds groups by their index keys. Store indexes
 * (rule 10) are in `indexes.ts`. It relies on the kernel for checks and key layout, and on
 * the scripts for atomicity. Internal.
 */
import type { BatchResult, BatchWrite, IndexEntry, StoreListItem } from '../../src/core/store.js';
import { assertName, keyLayout, upperBound, type StoreDriver, type StoreFaults } from '../kernel.js';
import { newRecord, parseEntry, type Stored } from '../record.js';
import type { RedisConnection } from './connection.js';
import { FENCE_MS, indexKeyLayout, redisIndexes, type IndexFaults, type IndexOptions, type Intent } from './indexes.js';
import { SCRIPTS } from './scripts.js';

/** The COUNT hint of each SCAN during a store scan. */
const SCAN_COUNT = 200;

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
    const entry = parseEntry(flat[i + 1] as string, now);
    if (entry !== undefined) items.push({ member: flat[i] as string, entry });
  }
  return items;
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

/** The record's expiry for a script: its PXAT time, or '' for none. */
const expiryArg = (stored: Stored): string => (stored.expires === undefined ? '' : String(stored.expires));

/** How a group script keeps an index: its mode, the one key the mode needs, and its three arguments. */
interface IndexMode {
  mode: '' | 'local' | 'cluster';
  key?: string;
  args: [string, string, string];
}
const NO_INDEX: IndexMode = { mode: '', args: ['', '', ''] };

/** The store driver over one connection and namespace. */
export function redisOperations(
  redis: RedisConnection,
  namespace: string,
  faults: (StoreFaults & IndexFaults) | undefined,
  indexOptions: Omit<IndexOptions, 'faults'>,
): StoreDriver {
  const keys = keyLayout(namespace);
  const indexKeys = indexKeyLayout(keys.prefix);
  const indexes = redisIndexes(redis, keys.prefix, { ...indexOptions, faults });
  // Outside Cluster one script can change a group and an index, so it does; on Cluster it cannot.
  const onCluster = redis.topology === 'cluster';
  const localMode = (link: IndexEntry): IndexMode => ({ mode: 'local', key: indexKeys.entries(link.index), args: [link.entry, '', ''] });
  const clusterMode = (group: string, link: IndexEntry, intent: Intent): IndexMode => ({
    mode: 'cluster',
    key: indexKeys.marks(group),
    args: [indexKeys.field(link), intent.seq, intent.last],
  });
  const indexKey = (group: string): string => `${keys.prefix}{${group}}#idx`;
  // SCAN finds groups by their index keys, so discovery needs no registry that a write
  // would have to update in a second step (or, on Cluster, in another slot).
  const indexPattern = `${globEscape(keys.prefix)}{*}#idx`;
  /** The member's key, the group index and, when given, the required member's key: one script's KEYS. */
  const scriptKeys = (group: string, member: string, requires?: string): string[] =>
    requires === undefined ? [keys.key(group, member), indexKey(group)] : [keys.key(group, member), indexKey(group), keys.key(group, requires)];

  async function listGroup(group: string, min: string, max: string, limit: number): Promise<StoreListItem[]> {
    // One clock for the script's filter and ours: a member expiring between two readings
    // would shorten the page, and scan would take the group for finished.
    const now = Date.now();
    const reply = await redis.run(SCRIPTS.list, [indexKey(group)], [min, max, String(limit), String(now), keys.group(group)]);
    return toItems(reply, now);
  }

  /** One batch script, keeping the index as `mode` says; 'fenced' when a cluster step was fenced. */
  async function runBatch(group: string, writes: readonly BatchWrite[], requires: string | undefined, mode: IndexMode): Promise<BatchResult | 'fenced'> {
    const now = Date.now();
    // A script cannot roll back a write, so an injected fault makes it fail after its checks.
    let fault = '0';
    try {
      for (let i = 0; i < writes.length; i++) faults?.beforeWrite?.(i);
    } catch {
      fault = '1';
    }
    const scriptKeyList = [indexKey(group)];
    if (requires !== undefined) scriptKeyList.push(keys.key(group, requires));
    if (mode.key !== undefined) scriptKeyList.push(mode.key);
    const args = [String(now), requires === undefined ? '0' : '1', fault, mode.mode, ...mode.args];
    for (const w of writes) {
      scriptKeyList.push(keys.key(group, w.member));
      switch (w.op) {
        case 'put':
          args.push('put', w.member, JSON.stringify(newRecord(w.value, now)), JSON.stringify(w.value));
          break;
        case 'insert': {
          const stored = newRecord(w.value, now, w.ttlMs);
          args.push('insert', w.member, JSON.stringify(stored), expiryArg(stored));
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
    const [committed, ...rest] = (await redis.run(SCRIPTS.batch, scriptKeyList, args)) as Array<number | string>;
    if (committed === 2) return 'fenced';
    if (committed !== 1) return { committed: false, failed: rest[0] as number };
    return {
      committed: true,
      results: rest.map((result, i) => (writes[i]?.op === 'put' ? (result as 'added' | 'updated') : result === 1)),
    };
  }

  return {
    async get(group, member) {
      // A plain GET, sent as a write like every command: @keyv/redis's read-only GET may
      // be answered by a replica (Sentinel with a replica pool) and miss the caller's own write.
      const key = keys.key(group, member);
      const raw = (await redis.command(key, ['GET', key])) as string | null;
      return raw === null ? undefined : parseEntry(raw, Date.now());
    },

    async put(group, member, value, requires) {
      const now = Date.now();
      const record = JSON.stringify(newRecord(value, now));
      return (await redis.run(SCRIPTS.put, scriptKeys(group, member, requires), [member, String(now), record, JSON.stringify(value)])) as
        'added' | 'updated' | 'missing';
    },

    async insert(group, member, value, ttlMs, requires) {
      const now = Date.now();
      // Redis expires the key at the very instant the record says, so both agree.
      const stored = newRecord(value, now, ttlMs);
      const args = [member, String(now), JSON.stringify(stored), expiryArg(stored)];
      return (await redis.run(SCRIPTS.insert, scriptKeys(group, member, requires), args)) === 1;
    },

    async replace(group, member, expected, value) {
      const args = [String(Date.now()), JSON.stringify(expected), JSON.stringify(value)];
      return (await redis.run(SCRIPTS.replace, [keys.key(group, member)], args)) === 1;
    },

    async remove(group, member) {
      return (await redis.run(SCRIPTS.remove, scriptKeys(group, member), [member, String(Date.now())])) === 1;
    },

    async list(group, prefix) {
      return prefix === '' ? listGroup(group, '-', '+', 0) : listGroup(group, `[${prefix}`, `(${upperBound(prefix)}`, 0);
    },

    async removeGroup(group, index) {
      const run = async (mode: IndexMode): Promise<number> => {
        const scriptKeys = [indexKey(group), indexKeys.marks(group)];
        if (mode.key !== undefined && mode.mode === 'local') scriptKeys.push(mode.key);
        const args = [String(Date.now()), keys.group(group), mode.mode, ...mode.args, String(FENCE_MS)];
        return (await redis.run(SCRIPTS.removeGroup, scriptKeys, args)) as number;
      };
      if (index === undefined) return run(NO_INDEX);
      if (!onCluster) return run(localMode(index));
      return indexes.withIntent<number>(index, 'remove', group, async (intent) => {
        const removed = await run(clusterMode(group, index, intent));
        return removed < 0 ? { fenced: true } : { fenced: false, committed: true, value: removed };
      });
    },

    async batch(group, writes: readonly BatchWrite[], requires, index) {
      if (index === undefined || !onCluster) {
        // Only a cluster step can be fenced.
        return (await runBatch(group, writes, requires, index === undefined ? NO_INDEX : localMode(index))) as BatchResult;
      }
      return indexes.withIntent<BatchResult>(index, 'add', group, async (intent) => {
        const result = await runBatch(group, writes, requires, clusterMode(group, index, intent));
        return result === 'fenced' ? { fenced: true } : { fenced: false, committed: result.committed, value: result };
      });
    },

    readIndex: (index, offset, limit) => indexes.read(index, offset, limit),

    async increment(group, member, ttlMs) {
      const now = Date.now();
      const stored = newRecord('1', now, ttlMs);
      const [count, expiresAt] = (await redis.run(SCRIPTS.increment, scriptKeys(group, member), [
        member, String(now), JSON.stringify(stored), expiryArg(stored),
      ])) as [number, number];
      return { count, expiresAt: expiresAt < 0 ? Number.MAX_SAFE_INTEGER : expiresAt };
    },

    async purgeExpired() {
      // Redis deletes expired keys by itself, and an index expires with its last expiring member.
      await redis.connected();
      return 0;
    },

    async scan(cursor, batchSize) {
      const nodes = await redis.scanNodes();
      const state: ScanState = cursor === undefined ? { node: 0, cursor: '0', groups: [], after: '' } : parseCursor(cursor);
      let started = cursor !== undefined;
      const items: Array<{ group: string; member: string; entry: StoreListItem['entry'] }> = [];
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
        const [next, found] = (await redis.bounded(
          node(['SCAN', state.cursor, 'MATCH', indexPattern, 'COUNT', String(SCAN_COUNT), 'TYPE', 'zset']),
        )) as [string, string[]];
        started = true;
        state.cursor = String(next);
        for (const key of [...found].sort()) state.groups.push(key.slice(keys.prefix.length + 1, -'}#idx'.length));
      }
      const more = state.groups.length > 0 || state.cursor !== '0' || state.node + 1 < nodes.length;
      return { items, cursor: more ? Buffer.from(JSON.stringify(state)).toString('base64url') : undefined };
    },

    close: () => redis.close(),
  };
}

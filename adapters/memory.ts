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
import { assertName, DEFAULT_NAMESPACE, entryOf as toEntry, type Row, type StoreFaults, type Stored } from './record.js';

function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The first index of a sorted array whose element is not below `value`. */
function lowerBound(sorted: readonly string[], value: string): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if ((sorted[mid] as string) < value) low = mid + 1;
    else high = mid;
  }
  return low;
}

/**
 * An in-process {@link VaultStore} over a `Keyv` whose store is a `Map`: for tests, demos
 * and single-process servers that can afford to lose everything on restart.
 *
 * Every operation runs synchronously on the Map, so each is atomic; a per-group index keeps
 * `list` and `removeGroup` in proportion to the group. Each call creates a separate store;
 * two memory stores never share data, whatever their namespaces.
 *
 * @example
 * ```ts
 * import { createMemoryStore } from 'credvault/adapters/memory';
 *
 * const store = createMemoryStore();
 * await store.put('org%3Aacme', 'cred:api_key', sealed); // 'added'
 * await store.list('org%3Aacme', 'cred:');               // [{ member: 'cred:api_key', entry }]
 * ```
 */
export function createMemoryStore(options: {
  namespace?: string;
  /** Test hook: asked about each write of a batch before any is applied; a throw aborts the batch. */
  faults?: StoreFaults;
} = {}): VaultStore {
  // Same key layout as the SQL adapters, so a Keyv reading this Map sees familiar keys.
  const base = `${encodeURIComponent(options.namespace ?? DEFAULT_NAMESPACE)}{`;
  const map = new Map<string, string>();
  const keyv = new Keyv<Row>({
    store: map,
    namespace: undefined,
    useKeyPrefix: false,
    throwOnErrors: true,
    serialize: JSON.stringify,
    deserialize: JSON.parse,
  });
  const groups = new Map<string, Set<string>>();
  // The groups in order, for scan; rebuilt only after a group appears or goes, so a walk
  // over a large, steady store (a key rotation) stays linear.
  let sortedGroups: string[] | undefined;
  // Entries that carry an expiry, by storage key, so purgeExpired never walks the rest.
  const expiring = new Map<string, [group: string, member: string]>();
  let closed = false;

  const keyOf = (group: string, member: string): string => `${base}${group}}:${member}`;

  function open(group: string, member?: string): void {
    if (closed) throw new VaultError('STORE_UNAVAILABLE', 'The memory store is closed');
    assertName('group', group);
    if (member !== undefined) assertName('member', member);
  }

  function drop(group: string, member: string): void {
    const key = keyOf(group, member);
    map.delete(key);
    expiring.delete(key);
    const members = groups.get(group);
    members?.delete(member);
    if (members?.size === 0) {
      groups.delete(group);
      sortedGroups = undefined;
    }
  }

  // Reads bypass Keyv.get: it deletes an expired key after an await, which could erase a
  // fresh insert made in between. Here the check and the purge happen in one synchronous step.
  function read(group: string, member: string, now: number): Stored | undefined {
    const raw = map.get(keyOf(group, member));
    if (raw === undefined) return undefined;
    const stored = JSON.parse(raw) as Stored;
    if (stored.expires !== undefined && stored.expires < now) {
      drop(group, member);
      return undefined;
    }
    return stored;
  }

  function write(group: string, member: string, stored: Stored): void {
    const key = keyOf(group, member);
    map.set(key, JSON.stringify(stored));
    if (stored.expires === undefined) expiring.delete(key);
    else expiring.set(key, [group, member]);
    let members = groups.get(group);
    if (members === undefined) {
      members = new Set();
      groups.set(group, members);
      sortedGroups = undefined;
    }
    members.add(member);
  }

  function fresh(value: string, now: number, ttlMs: number | undefined): Stored {
    const stored: Stored = { value: { v: value, c: now, u: now } };
    if (ttlMs !== undefined) stored.expires = now + ttlMs;
    return stored;
  }

  return {
    kind: 'memory',

    async get(group: string, member: string): Promise<StoreEntry | undefined> {
      open(group, member);
      const stored = read(group, member, Date.now());
      return stored === undefined ? undefined : toEntry(stored);
    },

    async put(group: string, member: string, value: string, putOptions?: PutOptions): Promise<PutResult> {
      open(group, member);
      const now = Date.now();
      if (putOptions?.requires !== undefined) {
        assertName('requires', putOptions.requires);
        if (read(group, putOptions.requires, now) === undefined) return 'missing';
      }
      const existing = read(group, member, now);
      write(group, member, { value: { v: value, c: existing?.value.c ?? now, u: now } });
      return existing === undefined ? 'added' : 'updated';
    },

    async insert(group: string, member: string, value: string, insertOptions?: InsertOptions): Promise<boolean> {
      open(group, member);
      const ttlMs = insertOptions?.ttlMs;
      if (ttlMs !== undefined && !(Number.isFinite(ttlMs) && ttlMs > 0)) {
        throw new RangeError('ttlMs must be a positive number of milliseconds');
      }
      const now = Date.now();
      const requires = insertOptions?.requires;
      if (requires !== undefined) {
        assertName('requires', requires);
        if (read(group, requires, now) === undefined) return false;
      }
      if (read(group, member, now) !== undefined) return false;
      write(group, member, fresh(value, now, ttlMs));
      return true;
    },

    async replace(group: string, member: string, expected: string, value: string): Promise<boolean> {
      open(group, member);
      const stored = read(group, member, Date.now());
      if (stored === undefined || stored.value.v !== expected) return false;
      write(group, member, { ...stored, value: { ...stored.value, v: value } });
      return true;
    },

    async remove(group: string, member: string): Promise<boolean> {
      open(group, member);
      if (read(group, member, Date.now()) === undefined) return false;
      drop(group, member);
      return true;
    },

    async list(group: string, prefix = ''): Promise<StoreListItem[]> {
      open(group);
      assertName('prefix', prefix);
      const members = groups.get(group);
      if (members === undefined) return [];
      const now = Date.now();
      const items: StoreListItem[] = [];
      // Copy first: read() may purge expired members from the set while we walk it.
      for (const member of [...members]) {
        if (!member.startsWith(prefix)) continue;
        const stored = read(group, member, now);
        if (stored !== undefined) items.push({ member, entry: toEntry(stored) });
      }
      return items.sort((a, b) => byCodeUnit(a.member, b.member));
    },

    async removeGroup(group: string): Promise<number> {
      open(group);
      const members = groups.get(group);
      if (members === undefined) return 0;
      const now = Date.now();
      let removed = 0;
      for (const member of members) {
        if (read(group, member, now) !== undefined) removed += 1;
        map.delete(keyOf(group, member));
        expiring.delete(keyOf(group, member));
      }
      groups.delete(group);
      sortedGroups = undefined;
      return removed;
    },

    async batch(group: string, writes: readonly BatchWrite[], batchOptions?: BatchOptions): Promise<BatchResult> {
      open(group);
      checkBatch(writes, batchOptions, assertName);
      const now = Date.now();
      // Every check runs before the first write, all in one synchronous step.
      if (batchOptions?.requires !== undefined && read(group, batchOptions.requires, now) === undefined) {
        return { committed: false, failed: -1 };
      }
      const before = writes.map((w) => read(group, w.member, now));
      for (const [i, w] of writes.entries()) {
        const current = before[i];
        if (w.op === 'insert' && current !== undefined) return { committed: false, failed: i };
        if (w.op === 'replace' && current?.value.v !== w.expected) return { committed: false, failed: i };
      }
      for (let i = 0; i < writes.length; i++) options.faults?.beforeWrite?.(i);
      const results = writes.map((w, i): 'added' | 'updated' | boolean => {
        const current = before[i];
        switch (w.op) {
          case 'put':
            write(group, w.member, { value: { v: w.value, c: current?.value.c ?? now, u: now } });
            return current === undefined ? 'added' : 'updated';
          case 'insert':
            write(group, w.member, fresh(w.value, now, w.ttlMs));
            return true;
          case 'replace':
            write(group, w.member, { ...(current as Stored), value: { ...(current as Stored).value, v: w.value } });
            return true;
          case 'remove':
            if (current !== undefined) drop(group, w.member);
            return current !== undefined;
        }
      });
      return { committed: true, results };
    },

    async increment(group: string, member: string, ttlMs: number): Promise<CounterState> {
      open(group, member);
      checkTtl(ttlMs);
      const now = Date.now();
      const current = read(group, member, now);
      if (current === undefined) {
        const stored = fresh('1', now, ttlMs);
        write(group, member, stored);
        return { count: 1, expiresAt: stored.expires as number };
      }
      const count = (Number.parseInt(current.value.v, 10) || 0) + 1;
      write(group, member, { ...current, value: { ...current.value, v: String(count), u: now } });
      return { count, expiresAt: current.expires ?? Number.MAX_SAFE_INTEGER };
    },

    async purgeExpired(limit: number): Promise<number> {
      if (closed) throw new VaultError('STORE_UNAVAILABLE', 'The memory store is closed');
      if (!Number.isInteger(limit) || limit < 1) throw new RangeError('limit must be a positive integer');
      const now = Date.now();
      let purged = 0;
      for (const [group, member] of expiring.values()) {
        if (purged === limit) break;
        const raw = map.get(keyOf(group, member));
        if (raw !== undefined && (JSON.parse(raw) as Stored).expires! < now) {
          drop(group, member);
          purged += 1;
        }
      }
      return purged;
    },

    async scan(cursor: string | undefined, batchSize: number): Promise<ScanPage> {
      if (closed) throw new VaultError('STORE_UNAVAILABLE', 'The memory store is closed');
      if (!Number.isInteger(batchSize) || batchSize < 1) {
        throw new RangeError('batchSize must be a positive integer');
      }
      // The cursor is the last (group, member) returned, as `group}member`; groups never hold '}'.
      let afterGroup: string | undefined;
      let afterMember = '';
      if (cursor !== undefined) {
        const split = cursor.indexOf('}');
        if (split < 0) throw new RangeError('invalid scan cursor');
        afterGroup = cursor.slice(0, split);
        afterMember = cursor.slice(split + 1);
      }
      const now = Date.now();
      const items: ScanPage['items'] = [];
      sortedGroups ??= [...groups.keys()].sort(byCodeUnit);
      const ordered = sortedGroups;
      for (let i = afterGroup === undefined ? 0 : lowerBound(ordered, afterGroup); i < ordered.length; i++) {
        const group = ordered[i] as string;
        const members = [...(groups.get(group) ?? [])].sort(byCodeUnit);
        for (const member of members) {
          if (group === afterGroup && member <= afterMember) continue;
          const stored = read(group, member, now);
          if (stored === undefined) continue;
          items.push({ group, member, entry: toEntry(stored) });
          if (items.length === batchSize) return { items, cursor: `${group}}${member}` };
        }
      }
      return { items, cursor: undefined };
    },

    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      map.clear();
      expiring.clear();
      groups.clear();
      await keyv.disconnect();
    },
  };
}

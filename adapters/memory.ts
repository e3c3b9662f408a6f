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
import { assertName, DEFAULT_NAMESPACE, entryOf as toEntry, type Row, type Stored } from './record.js';

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
export function createMemoryStore(options: { namespace?: string } = {}): VaultStore {
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
  let closed = false;

  const keyOf = (group: string, member: string): string => `${base}${group}}:${member}`;

  function open(group: string, member?: string): void {
    if (closed) throw new VaultError('STORE_UNAVAILABLE', 'The memory store is closed');
    assertName('group', group);
    if (member !== undefined) assertName('member', member);
  }

  function drop(group: string, member: string): void {
    map.delete(keyOf(group, member));
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
    map.set(keyOf(group, member), JSON.stringify(stored));
    let members = groups.get(group);
    if (members === undefined) {
      members = new Set();
      groups.set(group, members);
      sortedGroups = undefined;
    }
    members.add(member);
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
      const stored: Stored = { value: { v: value, c: now, u: now } };
      if (ttlMs !== undefined) stored.expires = now + ttlMs;
      write(group, member, stored);
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
      }
      groups.delete(group);
      sortedGroups = undefined;
      return removed;
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
      groups.clear();
      await keyv.disconnect();
    },
  };
}

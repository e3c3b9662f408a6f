/**
 * The in-memory adapter: a `Map` of records, for tests, demos and single-process servers
 * that can afford to lose everything on restart. It relies on the kernel for argument
 * checks and the key layout, and on JavaScript's single thread for atomicity: every write
 * runs synchronously on the Map, between two awaits of nobody else.
 */
import { markInProcess, type BatchWrite, type IndexEntry, type StoreEntry, type StoreListItem, type VaultStore } from '../src/core/store.js';
import { defineStore, DEFAULT_NAMESPACE, keyLayout, lowerBound, type StoreFaults } from './kernel.js';
import { isLive, newRecord, type Stored } from './record.js';

/**
 * Values are strings, which nobody can change. Anything else a caller slips past the types
 * is stored and returned as a JSON copy, as the text form of records did, so no caller ever
 * holds an object the store holds.
 */
function copyValue(value: unknown): string {
  if (typeof value === 'string') return value;
  const text = JSON.stringify(value) as string | undefined;
  return (text === undefined ? undefined : JSON.parse(text)) as string;
}

/** A fresh entry for a stored record: the caller gets its own object. */
function entryOf(stored: Stored): StoreEntry {
  const entry: StoreEntry = { value: copyValue(stored.value.v), createdAt: stored.value.c, updatedAt: stored.value.u };
  if (typeof stored.expires === 'number') entry.expiresAt = stored.expires;
  return entry;
}

const byCodeUnit = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * An in-process {@link VaultStore}. A per-group index keeps `list` and `removeGroup` in
 * proportion to the group, and an index of expiring entries keeps `purgeExpired` in
 * proportion to what it deletes. Each call creates a separate store; two memory stores
 * never share data, whatever their namespaces.
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
  const keyOf = keyLayout(options.namespace ?? DEFAULT_NAMESPACE).key;
  // Records as objects: every one is built here from strings and never handed out (entryOf
  // copies), so no caller can alias one, and no read or write pays for JSON.
  const map = new Map<string, Stored>();
  const groups = new Map<string, Set<string>>();
  // The groups in order, for scan; rebuilt only after a group appears or goes, so a walk
  // over a large, steady store (a key rotation) stays linear.
  let sortedGroups: string[] | undefined;
  // Entries that carry an expiry, by storage key, so purgeExpired never walks the rest.
  const expiring = new Map<string, [group: string, member: string]>();

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

  // The synchronous read every write decides on; an expired entry is dropped in the same step.
  function read(group: string, member: string, now: number): Stored | undefined {
    const stored = map.get(keyOf(group, member));
    if (stored === undefined) return undefined;
    if (isLive(stored, now)) return stored;
    drop(group, member);
    return undefined;
  }

  function write(group: string, member: string, stored: Stored): void {
    const key = keyOf(group, member);
    map.set(key, stored);
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

  /** A put over what is there: createdAt survives, any expiry is cleared. */
  function putOver(group: string, member: string, value: string, current: Stored | undefined, now: number): 'added' | 'updated' {
    // No write id: nothing here needs one to tell added from updated.
    write(group, member, { value: { v: copyValue(value), c: current?.value.c ?? now, u: now } });
    return current === undefined ? 'added' : 'updated';
  }

  /** A replace keeps every field but the value, the expiry included. */
  function replaceIn(group: string, member: string, current: Stored, value: string): void {
    write(group, member, { ...current, value: { ...current.value, v: copyValue(value) } });
  }

  // Indexes (rule 10): each a sorted array, changed in the same synchronous step as its group.
  const indexes = new Map<string, string[]>();
  function link({ index, entry }: IndexEntry): void {
    const entries = indexes.get(index) ?? [];
    const at = lowerBound(entries, entry);
    if (entries[at] !== entry) entries.splice(at, 0, entry);
    indexes.set(index, entries);
  }
  function unlink({ index, entry }: IndexEntry): void {
    const entries = indexes.get(index);
    if (entries === undefined) return;
    const at = lowerBound(entries, entry);
    if (entries[at] === entry) entries.splice(at, 1);
    if (entries.length === 0) indexes.delete(index);
  }

  const isMissing = (group: string, requires: string | undefined, now: number): boolean =>
    requires !== undefined && read(group, requires, now) === undefined;

  return markInProcess(defineStore({ kind: 'memory' }, {
    async get(group, member): Promise<StoreEntry | undefined> {
      // A read never drops an expired record: that is left to writes and purgeExpired.
      const stored = map.get(keyOf(group, member));
      return stored !== undefined && isLive(stored, Date.now()) ? entryOf(stored) : undefined;
    },

    async put(group, member, value, requires) {
      const now = Date.now();
      if (isMissing(group, requires, now)) return 'missing';
      return putOver(group, member, value, read(group, member, now), now);
    },

    async insert(group, member, value, ttlMs, requires) {
      const now = Date.now();
      if (isMissing(group, requires, now) || read(group, member, now) !== undefined) return false;
      write(group, member, newRecord(copyValue(value), now, ttlMs));
      return true;
    },

    async replace(group, member, expected, value) {
      const stored = read(group, member, Date.now());
      if (stored === undefined || stored.value.v !== expected) return false;
      replaceIn(group, member, stored, value);
      return true;
    },

    async remove(group, member) {
      if (read(group, member, Date.now()) === undefined) return false;
      drop(group, member);
      return true;
    },

    async list(group, prefix) {
      const members = groups.get(group);
      if (members === undefined) return [];
      const now = Date.now();
      const items: StoreListItem[] = [];
      // Copy first: read() may purge expired members from the set while we walk it.
      for (const member of [...members]) {
        if (!member.startsWith(prefix)) continue;
        const stored = read(group, member, now);
        if (stored !== undefined) items.push({ member, entry: entryOf(stored) });
      }
      return items.sort((a, b) => byCodeUnit(a.member, b.member));
    },

    async removeGroup(group, index) {
      if (index !== undefined) unlink(index);
      const members = groups.get(group);
      if (members === undefined) return 0;
      const now = Date.now();
      let removed = 0;
      for (const member of [...members]) {
        if (read(group, member, now) !== undefined) removed += 1;
        drop(group, member);
      }
      return removed;
    },

    async batch(group, writes: readonly BatchWrite[], requires, index) {
      const now = Date.now();
      // Every check runs before the first write, all in one synchronous step.
      if (isMissing(group, requires, now)) return { committed: false, failed: -1 };
      const before = writes.map((w) => read(group, w.member, now));
      for (const [i, w] of writes.entries()) {
        if (w.op === 'insert' && before[i] !== undefined) return { committed: false, failed: i };
        if (w.op === 'replace' && before[i]?.value.v !== w.expected) return { committed: false, failed: i };
      }
      for (let i = 0; i < writes.length; i++) options.faults?.beforeWrite?.(i);
      const results = writes.map((w, i): 'added' | 'updated' | boolean => {
        const current = before[i];
        switch (w.op) {
          case 'put':
            return putOver(group, w.member, w.value, current, now);
          case 'insert':
            write(group, w.member, newRecord(copyValue(w.value), now, w.ttlMs));
            return true;
          case 'replace':
            replaceIn(group, w.member, current as Stored, w.value);
            return true;
          case 'remove':
            if (current !== undefined) drop(group, w.member);
            return current !== undefined;
        }
      });
      if (index !== undefined) link(index);
      return { committed: true, results };
    },

    async readIndex(index, offset, limit) {
      const entries = indexes.get(index) ?? [];
      return { total: entries.length, entries: entries.slice(offset, offset + limit) };
    },

    async increment(group, member, ttlMs) {
      const now = Date.now();
      const current = read(group, member, now);
      if (current === undefined) {
        const stored = newRecord('1', now, ttlMs);
        write(group, member, stored);
        return { count: 1, expiresAt: stored.expires as number };
      }
      const count = (Number.parseInt(current.value.v, 10) || 0) + 1;
      write(group, member, { ...current, value: { ...current.value, v: String(count), u: now } });
      return { count, expiresAt: current.expires ?? Number.MAX_SAFE_INTEGER };
    },

    async purgeExpired(limit) {
      const now = Date.now();
      let purged = 0;
      for (const [group, member] of [...expiring.values()]) {
        if (purged === limit) break;
        const stored = map.get(keyOf(group, member));
        if (stored !== undefined && !isLive(stored, now)) {
          drop(group, member);
          purged += 1;
        }
      }
      return purged;
    },

    async scan(cursor, batchSize) {
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
      const items: Array<{ group: string; member: string; entry: StoreEntry }> = [];
      sortedGroups ??= [...groups.keys()].sort(byCodeUnit);
      const ordered = sortedGroups;
      for (let i = afterGroup === undefined ? 0 : lowerBound(ordered, afterGroup); i < ordered.length; i++) {
        const group = ordered[i] as string;
        for (const member of [...(groups.get(group) ?? [])].sort(byCodeUnit)) {
          if (group === afterGroup && member <= afterMember) continue;
          const stored = read(group, member, now);
          if (stored === undefined) continue;
          items.push({ group, member, entry: entryOf(stored) });
          if (items.length === batchSize) return { items, cursor: `${group}}${member}` };
        }
      }
      return { items, cursor: undefined };
    },

    async close() {
      map.clear();
      expiring.clear();
      groups.clear();
      indexes.clear();
    },
  }));
}

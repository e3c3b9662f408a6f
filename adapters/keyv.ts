/**
 * A credvault store over any Keyv instance the caller already has (Keyv's own Map,
 * `@keyv/sqlite`, `@keyv/mysql`, `@keyv/redis`, ...). Keyv gives only get, set with a TTL and
 * delete; the contract's atomicity comes from here: one queue per store, a rollback journal
 * in the same Keyv, and a lease that keeps every other store off the namespace.
 */
import { createHash, randomUUID } from 'node:crypto';
import type Keyv from 'keyv';
import { VaultError } from '../src/errors.js';
import type {
  BatchResult,
  BatchWrite,
  CounterState,
  IndexEntry,
  IndexPage,
  PutResult,
  ScanPage,
  StoreEntry,
  StoreListItem,
  VaultStore,
} from '../src/core/store.js';
import { assertName, DEFAULT_NAMESPACE, defineStore, lowerBound, namespacePrefix, storageKey, type StoreFaults } from './kernel.js';
import { entryOf, isLive, newRecord, type Stored } from './record.js';

/** Options of {@link createKeyvStore}. */
export interface KeyvStoreOptions {
  /** Keeps this store's keys apart from other namespaces in the same Keyv. Default `credvault`. */
  namespace?: string;
  /**
   * How long the namespace stays claimed without a refresh, in ms (refreshed every third of
   * it). After a crash, the next store can open the namespace once this has passed. Default 30 000.
   */
  leaseMs?: number;
  /**
   * The longest key handed to Keyv; longer ones are replaced by a SHA-256 digest key. Default
   * 200, which fits the `VARCHAR(255)` key column of Keyv's SQL stores with Keyv's `keyv:` prefix.
   */
  maxKeyLength?: number;
  /** Whether `close()` also disconnects the Keyv. Default `true`; pass `false` to keep using it. */
  disconnectOnClose?: boolean;
  /**
   * The most entries one record of an index (rule 10) holds before it splits in two; a
   * record that falls below a quarter of it joins a neighbour it fits in. Default 500. A larger one
   * means fewer records per `readIndex` and a smaller head record, but more bytes rewritten
   * per indexed write. At least 2.
   */
  indexChunkSize?: number;
  /** Test hook: asked about each write of a journaled step before it is applied; a throw rolls the step back. */
  faults?: StoreFaults;
}

/** One change of a step: a record to set (with a Keyv TTL, 0 for none), or `undefined` to delete. */
interface Change {
  record: string | undefined;
  ttl: number;
}

interface Lease {
  owner: string;
  until: number;
}

/** Groups are spread over this many directory records, so a new group rewrites only one of them. */
const SHARDS = 64;
/** Expiring entries are indexed by the minute they expire in. */
const BUCKET_MS = 60_000;
/** The most keys asked of Keyv in one getMany. */
const READ_CHUNK = 500;
/** Index records hold at most this many entries unless `indexChunkSize` says otherwise. */
const INDEX_CHUNK = 500;

/**
 * An index's head record: its exact total, the id the next chunk gets, and each chunk in
 * entry order as [id, its first entry, how many it holds]. An array, like every record here
 * but an entry, so that a journal restores it without an expiry.
 */
type IndexHead = [total: number, nextId: number, chunks: Array<[id: number, first: string, count: number]>];

/** The chunk an entry belongs in: the last whose first entry is not above it, or the first chunk. */
function chunkFor(chunks: IndexHead[2], entry: string): number {
  let low = 0;
  let high = chunks.length - 1;
  while (low < high) {
    const mid = (low + high + 1) >>> 1;
    if ((chunks[mid] as IndexHead[2][number])[1] <= entry) low = mid;
    else high = mid - 1;
  }
  return low;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** FNV-1a: a stable, cheap spread of group names over the directory shards. */
function shardOf(group: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < group.length; i++) hash = Math.imul(hash ^ group.charCodeAt(i), 0x01000193);
  return (hash >>> 0) % SHARDS;
}

/**
 * Spells each capital as `^` and its lower case, so that a store comparing keys without
 * case (MariaDB's default collation) still keeps `A` and `a` apart; no key holds `^` otherwise.
 */
function caseSafe(raw: string): string {
  return raw.replace(/[A-Z]/g, (c) => `^${c.toLowerCase()}`);
}

/** Adds `value` to an array kept in code-unit order (`sort()`'s own) unless present; returns whether it changed. */
function addSorted(sorted: string[], value: string): boolean {
  if (sorted.includes(value)) return false;
  sorted.push(value);
  sorted.sort();
  return true;
}

function removeSorted(sorted: string[], value: string): boolean {
  const at = sorted.indexOf(value);
  if (at < 0) return false;
  sorted.splice(at, 1);
  return true;
}

/** The Keyv TTL that keeps a record at least as long as its own expiry says. */
function ttlOf(stored: Stored): number {
  return stored.expires === undefined ? 0 : Math.max(1, stored.expires - Date.now() + 1);
}

/** Member lists, directories and index records are JSON arrays and never expire; entries are objects that carry their own expiry. */
function restoredTtl(record: string): number {
  const parsed = JSON.parse(record) as unknown;
  return Array.isArray(parsed) ? 0 : ttlOf(parsed as Stored);
}

/** A put's record: fresh timestamps, no expiry, and the createdAt of the live entry it replaces. */
function putRecord(value: string, now: number, current: Stored | undefined): Stored {
  const stored = newRecord(value, now);
  if (current !== undefined) stored.value.c = current.value.c;
  return stored;
}

function liveAt(stored: Stored | undefined, now: number): stored is Stored {
  return stored !== undefined && isLive(stored, now);
}

/**
 * A {@link VaultStore} over a Keyv instance you already hold, whatever its store.
 *
 * The Keyv must be created with `throwOnErrors: true`, so that a failing backend rejects
 * instead of reading as absent (anything else is refused with `INVALID_CONFIGURATION`).
 * Values are stored as credvault's own JSON record inside Keyv's value, so any serializer
 * that round-trips a string keeps them byte for byte. SQL stores must hold values of at
 * least 100 KiB (`@keyv/mysql` creates a `TEXT` column of 64 KiB: create its table first
 * with `value LONGTEXT`).
 *
 * Limits, exactly:
 * - **Atomic within one store.** Every call runs in one queue per store, one at a time; a
 *   call that writes several keys (a new member, a removal, a batch, a purge) first writes
 *   a rollback journal (the old records, in one Keyv `set`), then the new records, then
 *   deletes the journal. A failure part-way puts the old records back; if even that fails,
 *   the store restores them before its next call.
 * - **Crash.** What survives a crash is what the backend keeps (Keyv's Map keeps nothing).
 *   A call interrupted by a crash is undone from its journal by the next store that opens
 *   the namespace, before it serves anything: a batch is all or nothing across `kill -9`.
 * - **One store per namespace, across every process.** Opening takes a lease record (owner
 *   id, Keyv TTL `leaseMs`) refreshed on a timer that does not keep the process alive; any
 *   other store on the same namespace, in this process or another, gets
 *   `VaultError('INVALID_CONFIGURATION')` on each call until the lease is released by
 *   `close()` or expires. Keyv cannot take a lease atomically: the opener writes it, waits
 *   50 ms and reads it back, so two stores opening within that window of each other's
 *   read can both proceed. A store that could not refresh its lease for `leaseMs` (backend
 *   down, event loop blocked) stops serving until it takes the lease again. For several
 *   server processes, use the Redis or PostgreSQL adapter.
 * - **Cost.** `get`, `put` and `replace` of an existing member cost one or two Keyv calls.
 *   `list` and `removeGroup` read the group's member index and its members only. A write
 *   that adds or drops a member rewrites that group's index (grows with the group), a
 *   write that adds or empties a group rewrites one of 64 group-directory records (grows
 *   with groups / 64), and an expiring write rewrites the index of its expiry minute.
 *   `purgeExpired` reads only the minutes already past; `scan` reads the 64 directory
 *   records, then each group's index and members. A call's journal holds the old records
 *   it replaces, so a batch or `removeGroup` must fit one value of the Keyv store.
 * - **Indexes** (rule 10) live in the same Keyv and change in the same journaled step as
 *   the batch or `removeGroup` that carries them, so they commit, fail and recover with it.
 *   An index is a head record (its total and, per chunk, the chunk's first entry and count)
 *   plus sorted chunks of at most `indexChunkSize` entries (default 500). `readIndex` reads
 *   the head, then only the chunks its page overlaps (about `limit / indexChunkSize + 2`
 *   records at any offset), but the head holds one descriptor (a first entry and a count)
 *   per chunk, so it grows with the index, never with the rest of the store: one per
 *   `indexChunkSize / 2` to `indexChunkSize` entries while the index grows, more after many
 *   removals (a chunk below a quarter full joins its smaller neighbour only when both fit in
 *   one). Adding or dropping an entry rewrites the head and one chunk (two on a split or
 *   merge), and `total` is the head's counter, never a walk.
 * - Keys longer than `maxKeyLength` are stored under a SHA-256 digest; credvault never
 *   lists Keyv's keys, so nothing else changes.
 *
 * @example
 * ```ts
 * import Keyv from 'keyv';
 * import KeyvMysql from '@keyv/mysql';
 * import { createKeyvStore } from 'credvault/adapters/keyv';
 *
 * const keyv = new Keyv({ store: new KeyvMysql('mysql://root@127.0.0.1:3306/app'), throwOnErrors: true });
 * const vault = await createVault({ store: createKeyvStore(keyv), keys: process.env.CREDVAULT_KEYS });
 * ```
 */
export function createKeyvStore(keyv: Keyv, options: KeyvStoreOptions = {}): VaultStore {
  if (keyv.throwOnErrors !== true) {
    throw new VaultError('INVALID_CONFIGURATION', 'createKeyvStore needs a Keyv created with throwOnErrors: true, so store errors surface');
  }
  const namespace = options.namespace ?? DEFAULT_NAMESPACE;
  const leaseMs = options.leaseMs ?? 30_000;
  const maxKeyLength = options.maxKeyLength ?? 200;
  if (!(Number.isFinite(leaseMs) && leaseMs >= 300)) throw new VaultError('INVALID_CONFIGURATION', 'leaseMs must be at least 300');
  // The namespace part of the kernel's keys holds no brace: data keys go on with '{', this store's own records with '}'.
  const base = caseSafe(namespacePrefix(namespace));
  if (!(Number.isInteger(maxKeyLength) && maxKeyLength >= base.length + 67)) {
    throw new VaultError('INVALID_CONFIGURATION', 'maxKeyLength must leave room for the namespace and a 67-character digest key');
  }
  const faults = options.faults;
  const indexChunk = options.indexChunkSize ?? INDEX_CHUNK;
  if (!(Number.isInteger(indexChunk) && indexChunk >= 2)) throw new VaultError('INVALID_CONFIGURATION', 'indexChunkSize must be an integer of at least 2');
  const owner = randomUUID();
  // A Map lives in one process: no other process can race for its lease.
  const shared = !(keyv.store instanceof Map);

  const keyOf = (raw: string): string => {
    const key = caseSafe(raw);
    return key.length <= maxKeyLength ? key : `${base}}h:${createHash('sha256').update(raw).digest('hex')}`;
  };
  const entryKey = (group: string, member: string): string => keyOf(storageKey(namespace, group, member));
  const membersKey = (group: string): string => keyOf(`${base}}m:${group}`);
  // `base` is case-safe already and the rest of these names is lower case.
  const shardKey = (shard: number): string => `${base}}d:${shard}`;
  const bucketKey = (bucket: number): string => `${base}}x:${bucket}`;
  const BUCKETS = `${base}}xs`;
  const LEASE = `${base}}lease`;
  const JOURNAL = `${base}}journal`;
  // Index records: `i:` the head, `c:<id>:` a chunk; the id has no ':', so the index name follows it unambiguously.
  const headKey = (index: string): string => keyOf(`${base}}i:${index}`);
  const chunkKey = (index: string, id: number): string => keyOf(`${base}}c:${id}:${index}`);

  // ---- Keyv calls: every failure surfaces, nothing reads as absent ----

  async function readMany(keys: readonly string[]): Promise<Array<string | undefined>> {
    const out: Array<string | undefined> = [];
    // Keyv's getMany over a store without one swallows errors; ask key by key there.
    const many = typeof (keyv.store as { getMany?: unknown }).getMany === 'function';
    for (let i = 0; i < keys.length; i += READ_CHUNK) {
      const chunk = keys.slice(i, i + READ_CHUNK);
      const values: unknown[] = many ? await keyv.getMany<unknown>(chunk) : await Promise.all(chunk.map((key) => keyv.get<unknown>(key)));
      for (const value of values) {
        if (value !== undefined && value !== null && typeof value !== 'string') throw new Error('The Keyv store returned a value credvault did not write');
        out.push(value ?? undefined);
      }
    }
    return out;
  }

  async function apply(key: string, change: Change): Promise<void> {
    if (change.record === undefined) {
      await keyv.delete(key);
    } else if ((await keyv.set(key, change.record, change.ttl)) === false) {
      throw new Error('The Keyv store refused a write');
    }
  }

  // ---- Steps: reads through a cache, then one commit of every change ----

  class Step {
    private readonly seen = new Map<string, string | undefined>();
    readonly changes = new Map<string, Change>();

    async load(keys: readonly string[]): Promise<void> {
      const missing = [...new Set(keys)].filter((key) => !this.seen.has(key));
      const values = await readMany(missing);
      missing.forEach((key, i) => this.seen.set(key, values[i]));
    }

    raw(key: string): string | undefined {
      const change = this.changes.get(key);
      if (change !== undefined) return change.record;
      if (!this.seen.has(key)) throw new Error(`internal: ${key} read before it was loaded`);
      return this.seen.get(key);
    }

    json<T>(key: string): T | undefined {
      const raw = this.raw(key);
      return raw === undefined ? undefined : (JSON.parse(raw) as T);
    }

    set(key: string, value: unknown, ttl = 0): void {
      this.changes.set(key, { record: JSON.stringify(value), ttl });
    }

    delete(key: string): void {
      this.changes.set(key, { record: undefined, ttl: 0 });
    }

    /** The old record of every changed key, for the journal. */
    before(): Array<[string, string | null]> {
      return [...this.changes.keys()].map((key) => [key, this.seen.get(key) ?? null]);
    }
  }

  /** Writes a step: one change directly, several behind a rollback journal. */
  async function commit(step: Step): Promise<void> {
    const changes = [...step.changes.entries()];
    if (changes.length === 0) return;
    if (changes.length === 1 && faults === undefined) {
      const [key, change] = changes[0] as [string, Change];
      await apply(key, change);
      return;
    }
    await apply(JOURNAL, { record: JSON.stringify({ before: step.before() }), ttl: 0 });
    const settled = await Promise.allSettled(
      changes.map(async ([key, change], i) => {
        faults?.beforeWrite?.(i);
        await apply(key, change);
      }),
    );
    const failed = settled.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failed !== undefined) {
      // Undo now if the backend lets us; if not, the journal stays and the next call undoes it.
      await recover().catch(() => {
        pendingRecovery = true;
      });
      throw failed.reason;
    }
    await keyv.delete(JOURNAL);
  }

  /** Puts back what an interrupted step replaced, then drops its journal. */
  async function recover(): Promise<void> {
    const [raw] = await readMany([JOURNAL]);
    if (raw !== undefined) {
      const journal = JSON.parse(raw) as { before: Array<[string, string | null]> };
      await Promise.all(
        journal.before.map(([key, old]) =>
          apply(key, old === null ? { record: undefined, ttl: 0 } : { record: old, ttl: restoredTtl(old) }),
        ),
      );
      await keyv.delete(JOURNAL);
    }
    pendingRecovery = false;
  }

  // ---- The lease and the queue ----

  let closed = false;
  let lost = false;
  let pendingRecovery = true;
  let heldUntil = 0;
  let refresher: NodeJS.Timeout | undefined;
  let tail: Promise<unknown> = Promise.resolve();

  const refused = (until: number): VaultError =>
    new VaultError(
      'INVALID_CONFIGURATION',
      `Namespace "${namespace}" of this Keyv store is held by another credvault store (another process, or another store here) for up to ${Math.ceil((until - Date.now()) / 1000)} s more; createKeyvStore allows one at a time`,
    );

  async function readLease(): Promise<Lease | undefined> {
    const [raw] = await readMany([LEASE]);
    return raw === undefined ? undefined : (JSON.parse(raw) as Lease);
  }

  async function writeLease(): Promise<number> {
    const started = Date.now();
    await apply(LEASE, { record: JSON.stringify({ owner, until: started + leaseMs } satisfies Lease), ttl: leaseMs });
    return started + leaseMs;
  }

  /** Takes the lease (or confirms it is still ours), then undoes any interrupted step. */
  async function ensureOpen(): Promise<void> {
    if (lost) throw new VaultError('INVALID_CONFIGURATION', `This store lost namespace "${namespace}" to another credvault store; close it`);
    if (Date.now() >= heldUntil) {
      const current = await readLease();
      if (current !== undefined && current.owner !== owner && current.until >= Date.now()) throw refused(current.until);
      const until = await writeLease();
      if (shared && current?.owner !== owner) {
        await sleep(50);
        const again = await readLease();
        if (again?.owner !== owner) throw refused(again?.until ?? Date.now() + leaseMs);
      }
      heldUntil = until;
      refresher ??= setInterval(() => void refresh(), Math.floor(leaseMs / 3)).unref();
    }
    if (pendingRecovery) await recover();
  }

  async function refresh(): Promise<void> {
    if (closed || lost || Date.now() >= heldUntil) return;
    try {
      const current = await readLease();
      if (current !== undefined && current.owner !== owner) {
        lost = true;
        return;
      }
      heldUntil = await writeLease();
    } catch {
      // The backend is failing: calls fail too, and once heldUntil passes they take the lease again.
    }
  }

  /** Runs `task` after every earlier call of this store, with the lease held. */
  function serial<T>(task: () => Promise<T>): Promise<T> {
    const run = tail.then(async () => {
      await ensureOpen();
      return task();
    });
    tail = run.catch(() => undefined);
    return run;
  }


  // Claim the namespace now, so a second process is refused on its first call; errors wait for that call.
  serial(async () => undefined).catch(() => undefined);

  // ---- The data model over steps ----

  function entryIn(step: Step, group: string, member: string): Stored | undefined {
    return step.json<Stored>(entryKey(group, member));
  }

  /** Sets a member's record, adding it to its group's index (and the group to its shard) if new. */
  async function writeEntry(step: Step, group: string, member: string, stored: Stored): Promise<void> {
    const key = entryKey(group, member);
    const previous = step.json<Stored>(key);
    step.set(key, stored, ttlOf(stored));
    if (stored.expires !== undefined && stored.expires !== previous?.expires) await trackExpiry(step, group, member, stored.expires);
    if (previous !== undefined) return;
    const indexKey = membersKey(group);
    await step.load([indexKey]);
    const members = step.json<string[]>(indexKey) ?? [];
    if (!addSorted(members, member)) return;
    step.set(indexKey, members);
    if (members.length === 1) await updateShard(step, group, true);
  }

  /** Deletes a member's record and drops it from its group's index. */
  async function dropEntry(step: Step, group: string, member: string): Promise<void> {
    step.delete(entryKey(group, member));
    const indexKey = membersKey(group);
    await step.load([indexKey]);
    const members = step.json<string[]>(indexKey) ?? [];
    if (!removeSorted(members, member)) return;
    if (members.length > 0) {
      step.set(indexKey, members);
      return;
    }
    step.delete(indexKey);
    await updateShard(step, group, false);
  }

  async function updateShard(step: Step, group: string, add: boolean): Promise<void> {
    const key = shardKey(shardOf(group));
    await step.load([key]);
    const groups = step.json<string[]>(key) ?? [];
    const changed = add ? addSorted(groups, group) : removeSorted(groups, group);
    if (!changed) return;
    if (groups.length > 0) step.set(key, groups);
    else step.delete(key);
  }

  async function trackExpiry(step: Step, group: string, member: string, expiresAt: number): Promise<void> {
    const bucket = Math.floor(expiresAt / BUCKET_MS);
    await step.load([bucketKey(bucket), BUCKETS]);
    const items = step.json<Array<[string, string, number]>>(bucketKey(bucket)) ?? [];
    items.push([group, member, expiresAt]);
    step.set(bucketKey(bucket), items);
    const buckets = step.json<number[]>(BUCKETS) ?? [];
    if (!buckets.includes(bucket)) {
      buckets.push(bucket);
      buckets.sort((a, b) => a - b);
      step.set(BUCKETS, buckets);
    }
  }

  /** Loads the entries of `members` and every index a write to them may touch. */
  async function loadGroup(step: Step, group: string, members: readonly string[]): Promise<void> {
    const indexKey = membersKey(group);
    await step.load([...members.map((member) => entryKey(group, member)), indexKey]);
  }

  function chunkIn(step: Step, index: string, id: number): string[] {
    const entries = step.json<string[]>(chunkKey(index, id));
    // The head names only chunks a committed step wrote: a missing one is damage, not emptiness.
    if (entries === undefined) throw new Error('The Keyv store lost a record of a credvault index');
    return entries;
  }

  /** Adds an index entry within the step: one chunk and the head rewritten, plus a new chunk on a split. */
  async function linkEntry(step: Step, { index, entry }: IndexEntry): Promise<void> {
    const head = headKey(index);
    await step.load([head]);
    const current = step.json<IndexHead>(head);
    if (current === undefined) {
      step.set(chunkKey(index, 0), [entry]);
      step.set(head, [1, 1, [[0, entry, 1]]] satisfies IndexHead);
      return;
    }
    const [total, nextId, chunks] = current;
    const at = chunkFor(chunks, entry);
    const id = (chunks[at] as IndexHead[2][number])[0];
    await step.load([chunkKey(index, id)]);
    const entries = chunkIn(step, index, id);
    const position = lowerBound(entries, entry);
    if (entries[position] === entry) return;
    entries.splice(position, 0, entry);
    let next = nextId;
    if (entries.length > indexChunk) {
      const upper = entries.splice(entries.length >>> 1);
      step.set(chunkKey(index, next), upper);
      chunks.splice(at + 1, 0, [next, upper[0] as string, upper.length]);
      next += 1;
    }
    step.set(chunkKey(index, id), entries);
    chunks[at] = [id, entries[0] as string, entries.length];
    step.set(head, [total + 1, next, chunks] satisfies IndexHead);
  }

  /** Drops an index entry within the step: one chunk and the head rewritten, two chunks on a merge. */
  async function unlinkEntry(step: Step, { index, entry }: IndexEntry): Promise<void> {
    const head = headKey(index);
    await step.load([head]);
    const current = step.json<IndexHead>(head);
    if (current === undefined) return;
    const [total, nextId, chunks] = current;
    const at = chunkFor(chunks, entry);
    const id = (chunks[at] as IndexHead[2][number])[0];
    await step.load([chunkKey(index, id)]);
    const entries = chunkIn(step, index, id);
    const position = lowerBound(entries, entry);
    if (entries[position] !== entry) return;
    entries.splice(position, 1);
    if (total === 1) {
      step.delete(chunkKey(index, id));
      step.delete(head);
      return;
    }
    if (entries.length === 0) {
      step.delete(chunkKey(index, id));
      chunks.splice(at, 1);
    } else {
      // The smaller neighbour, so that two small chunks side by side join.
      const [before, after] = [chunks[at - 1], chunks[at + 1]];
      const neighbour = after === undefined || (before !== undefined && before[2] < after[2]) ? at - 1 : at + 1;
      const other = chunks[neighbour];
      // A small chunk joins a neighbour it fits in, so removals never leave a trail of tiny records.
      if (entries.length < indexChunk / 4 && other !== undefined && other[2] + entries.length <= indexChunk) {
        await step.load([chunkKey(index, other[0])]);
        const [low, high] = neighbour > at ? [at, neighbour] : [neighbour, at];
        const merged = neighbour > at ? [...entries, ...chunkIn(step, index, other[0])] : [...chunkIn(step, index, other[0]), ...entries];
        const kept = (chunks[low] as IndexHead[2][number])[0];
        const dropped = (chunks[high] as IndexHead[2][number])[0];
        step.set(chunkKey(index, kept), merged);
        step.delete(chunkKey(index, dropped));
        chunks[low] = [kept, merged[0] as string, merged.length];
        chunks.splice(high, 1);
      } else {
        step.set(chunkKey(index, id), entries);
        chunks[at] = [id, entries[0] as string, entries.length];
      }
    }
    step.set(head, [total - 1, nextId, chunks] satisfies IndexHead);
  }

  async function liveMembers(step: Step, group: string): Promise<string[]> {
    const indexKey = membersKey(group);
    await step.load([indexKey]);
    const members = step.json<string[]>(indexKey) ?? [];
    await step.load(members.map((member) => entryKey(group, member)));
    return members;
  }


  return defineStore({ kind: 'keyv' }, {
    get(group, member) {
      return serial(async (): Promise<StoreEntry | undefined> => {
        const [raw] = await readMany([entryKey(group, member)]);
        const stored = raw === undefined ? undefined : (JSON.parse(raw) as Stored);
        return liveAt(stored, Date.now()) ? entryOf(stored) : undefined;
      });
    },

    put(group, member, value, requires) {
      return serial(async (): Promise<PutResult> => {
        const step = new Step();
        await loadGroup(step, group, requires === undefined ? [member] : [member, requires]);
        const now = Date.now();
        if (requires !== undefined && !liveAt(entryIn(step, group, requires), now)) return 'missing';
        const current = entryIn(step, group, member);
        const live = liveAt(current, now);
        await writeEntry(step, group, member, putRecord(value, now, live ? current : undefined));
        await commit(step);
        return live ? 'updated' : 'added';
      });
    },

    insert(group, member, value, ttlMs, requires) {
      return serial(async (): Promise<boolean> => {
        const step = new Step();
        await loadGroup(step, group, requires === undefined ? [member] : [member, requires]);
        const now = Date.now();
        if (requires !== undefined && !liveAt(entryIn(step, group, requires), now)) return false;
        if (liveAt(entryIn(step, group, member), now)) return false;
        await writeEntry(step, group, member, newRecord(value, now, ttlMs));
        await commit(step);
        return true;
      });
    },

    replace(group, member, expected, value) {
      return serial(async (): Promise<boolean> => {
        const step = new Step();
        await step.load([entryKey(group, member)]);
        const current = entryIn(step, group, member);
        if (!liveAt(current, Date.now()) || current.value.v !== expected) return false;
        await writeEntry(step, group, member, { ...current, value: { ...current.value, v: value } });
        await commit(step);
        return true;
      });
    },

    remove(group, member) {
      return serial(async (): Promise<boolean> => {
        const step = new Step();
        await loadGroup(step, group, [member]);
        const current = entryIn(step, group, member);
        if (current === undefined) return false;
        await dropEntry(step, group, member);
        await commit(step);
        return liveAt(current, Date.now());
      });
    },

    list(group, prefix) {
      return serial(async (): Promise<StoreListItem[]> => {
        const step = new Step();
        const indexKey = membersKey(group);
        await step.load([indexKey]);
        const members = (step.json<string[]>(indexKey) ?? []).filter((member) => member.startsWith(prefix));
        await step.load(members.map((member) => entryKey(group, member)));
        const now = Date.now();
        const items: StoreListItem[] = [];
        for (const member of members) {
          const stored = entryIn(step, group, member);
          if (liveAt(stored, now)) items.push({ member, entry: entryOf(stored) });
        }
        return items;
      });
    },

    removeGroup(group, index) {
      return serial(async (): Promise<number> => {
        const step = new Step();
        const members = await liveMembers(step, group);
        const now = Date.now();
        let removed = 0;
        for (const member of members) {
          const stored = entryIn(step, group, member);
          if (liveAt(stored, now)) removed += 1;
          await dropEntry(step, group, member);
        }
        if (index !== undefined) await unlinkEntry(step, index);
        await commit(step);
        return removed;
      });
    },

    batch(group, writes: readonly BatchWrite[], requires, index) {
      return serial(async (): Promise<BatchResult> => {
        const step = new Step();
        const members = writes.map((write) => write.member);
        await loadGroup(step, group, requires === undefined ? members : [...members, requires]);
        const now = Date.now();
        if (requires !== undefined && !liveAt(entryIn(step, group, requires), now)) return { committed: false, failed: -1 };
        const before = writes.map((write) => {
          const stored = entryIn(step, group, write.member);
          return liveAt(stored, now) ? stored : undefined;
        });
        for (const [i, write] of writes.entries()) {
          if (write.op === 'insert' && before[i] !== undefined) return { committed: false, failed: i };
          if (write.op === 'replace' && before[i]?.value.v !== write.expected) return { committed: false, failed: i };
        }
        const results: Array<'added' | 'updated' | boolean> = [];
        for (const [i, write] of writes.entries()) {
          const current = before[i];
          switch (write.op) {
            case 'put':
              await writeEntry(step, group, write.member, putRecord(write.value, now, current));
              results.push(current === undefined ? 'added' : 'updated');
              break;
            case 'insert':
              await writeEntry(step, group, write.member, newRecord(write.value, now, write.ttlMs));
              results.push(true);
              break;
            case 'replace':
              await writeEntry(step, group, write.member, { ...(current as Stored), value: { ...(current as Stored).value, v: write.value } });
              results.push(true);
              break;
            case 'remove':
              if (entryIn(step, group, write.member) !== undefined) await dropEntry(step, group, write.member);
              results.push(current !== undefined);
              break;
          }
        }
        if (index !== undefined) await linkEntry(step, index);
        await commit(step);
        return { committed: true, results };
      });
    },

    readIndex(index, offset, limit) {
      return serial(async (): Promise<IndexPage> => {
        const step = new Step();
        await step.load([headKey(index)]);
        const head = step.json<IndexHead>(headKey(index));
        if (head === undefined) return { total: 0, entries: [] };
        const [total, , chunks] = head;
        // Skip whole chunks by their counts, then read only the chunks the page overlaps.
        let first = 0;
        let skipped = 0;
        while (first < chunks.length && skipped + (chunks[first] as IndexHead[2][number])[2] <= offset) {
          skipped += (chunks[first] as IndexHead[2][number])[2];
          first += 1;
        }
        const ids: number[] = [];
        for (let i = first, covered = skipped; i < chunks.length && covered < offset + limit; i += 1) {
          const [id, , count] = chunks[i] as IndexHead[2][number];
          ids.push(id);
          covered += count;
        }
        await step.load(ids.map((id) => chunkKey(index, id)));
        const entries = ids.flatMap((id) => chunkIn(step, index, id));
        return { total, entries: entries.slice(offset - skipped, offset - skipped + limit) };
      });
    },

    increment(group, member, ttlMs) {
      return serial(async (): Promise<CounterState> => {
        const step = new Step();
        await loadGroup(step, group, [member]);
        const now = Date.now();
        const current = entryIn(step, group, member);
        if (!liveAt(current, now)) {
          const stored = newRecord('1', now, ttlMs);
          await writeEntry(step, group, member, stored);
          await commit(step);
          return { count: 1, expiresAt: stored.expires as number };
        }
        const count = (Number.parseInt(current.value.v, 10) || 0) + 1;
        await writeEntry(step, group, member, { ...current, value: { ...current.value, v: String(count), u: now } });
        await commit(step);
        return { count, expiresAt: current.expires ?? Number.MAX_SAFE_INTEGER };
      });
    },

    purgeExpired(limit) {
      return serial(async (): Promise<number> => {
        const step = new Step();
        await step.load([BUCKETS]);
        const buckets = step.json<number[]>(BUCKETS) ?? [];
        const now = Date.now();
        let purged = 0;
        for (const bucket of buckets) {
          if (bucket * BUCKET_MS > now || purged === limit) break;
          await step.load([bucketKey(bucket)]);
          const items = step.json<Array<[string, string, number]>>(bucketKey(bucket)) ?? [];
          await step.load(items.map(([group, member]) => entryKey(group, member)));
          const kept: typeof items = [];
          for (const item of items) {
            const [group, member, expiresAt] = item;
            if (expiresAt >= now || purged === limit) {
              kept.push(item);
              continue;
            }
            // An index item whose entry was since removed, put or re-inserted is merely dropped.
            if (entryIn(step, group, member)?.expires !== expiresAt) continue;
            await loadGroup(step, group, []);
            await dropEntry(step, group, member);
            purged += 1;
          }
          if (kept.length > 0) {
            step.set(bucketKey(bucket), kept);
          } else {
            step.delete(bucketKey(bucket));
            const remaining = (step.json<number[]>(BUCKETS) ?? []).filter((b) => b !== bucket);
            if (remaining.length > 0) step.set(BUCKETS, remaining);
            else step.delete(BUCKETS);
          }
        }
        await commit(step);
        return purged;
      });
    },

    scan(cursor, batchSize) {
      return serial(async (): Promise<ScanPage> => {
        // The cursor is the last item returned: `shard}group}member`; names never hold '}'.
        let from = { shard: 0, group: '', member: '' };
        let started = false;
        if (cursor !== undefined) {
          const parts = cursor.split('}');
          const shard = Number(parts[0]);
          if (parts.length !== 3 || !Number.isInteger(shard) || shard < 0 || shard >= SHARDS) throw new RangeError('invalid scan cursor');
          assertName('cursor', parts[1] as string);
          assertName('cursor', parts[2] as string);
          from = { shard, group: parts[1] as string, member: parts[2] as string };
          started = true;
        }
        const step = new Step();
        const shards = Array.from({ length: SHARDS - from.shard }, (_, i) => from.shard + i);
        await step.load(shards.map(shardKey));
        const now = Date.now();
        const items: ScanPage['items'] = [];
        for (const shard of shards) {
          const resume = started && shard === from.shard;
          const groups = (step.json<string[]>(shardKey(shard)) ?? []).filter((group) => !resume || group >= from.group);
          // Prefetch as many group indexes as a page can use.
          for (let g = 0; g < groups.length; g += batchSize) {
            const chunk = groups.slice(g, g + batchSize);
            await step.load(chunk.map(membersKey));
            for (const group of chunk) {
              let members = step.json<string[]>(membersKey(group)) ?? [];
              if (resume && group === from.group) members = members.filter((member) => member > from.member);
              for (let m = 0; m < members.length; m += batchSize) {
                const slice = members.slice(m, m + batchSize);
                await step.load(slice.map((member) => entryKey(group, member)));
                for (const member of slice) {
                  const stored = entryIn(step, group, member);
                  if (!liveAt(stored, now)) continue;
                  items.push({ group, member, entry: entryOf(stored) });
                  if (items.length === batchSize) return { items, cursor: `${shard}}${group}}${member}` };
                }
              }
            }
          }
        }
        return { items, cursor: undefined };
      });
    },

    async close(): Promise<void> {
      closed = true;
      clearInterval(refresher);
      await tail;
      try {
        if (heldUntil > Date.now() && (await readLease())?.owner === owner) await keyv.delete(LEASE);
      } catch {
        // Unreleased, the lease still ends by its TTL.
      } finally {
        if (options.disconnectOnClose !== false) await keyv.disconnect();
      }
    },
  });
}

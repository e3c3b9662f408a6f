/**
 * The storage contract every credvault adapter implements (memory, SQLite, Redis,
 * PostgreSQL, or your own). `credvault/testing` runs one suite over every rule below;
 * pass it and the vault works on your backend.
 *
 * Data is addressed by a **group** and a **member**. The vault puts everything one linked
 * account owns (its profile, its default app, each credential, its session tokens) in one
 * group, so listing an account and deleting it cost in proportion to that account alone.
 *
 * Rules (each method's comment says how it applies them):
 *
 * 1. **Names.** Group, member, `requires` and list prefix arrive already escaped: only
 *    `A-Z a-z 0-9 _ . - % :`, never `{`, `}` or whitespace, and at most
 *    {@link MAX_NAME_LENGTH} UTF-16 units. An adapter accepts every such name (names like
 *    `__proto__` are ordinary) and refuses any other. Distinct (group, member) pairs map to
 *    distinct storage keys. The vault never passes an empty group or member; an adapter
 *    may refuse one.
 * 2. **Values** are opaque strings, stored and returned byte for byte (any UTF-16 content,
 *    control characters included, up to at least 64 KiB).
 * 3. **Atomicity.** Every method does all it says or nothing, and is atomic with respect
 *    to every other call, from this process or any other sharing the backend.
 * 4. **Expiry.** An entry whose `expiresAt` has passed is absent for every method: `get`,
 *    `list` and `scan` omit it, `remove` and `removeGroup` do not count it, `insert` and a
 *    batch insert treat its member as free, `replace` and a batch replace do not match it,
 *    `requires` does not see it, and `increment` starts it again at 1. Only `insert` (and
 *    `increment`) set an expiry; a `put` clears it; a `replace` keeps it.
 * 5. **Timestamps.** `createdAt` is set by the write that makes a member present and kept
 *    by every later write; `updatedAt` is set by each `put` and `insert`, and kept by
 *    `replace`. Both are milliseconds since the epoch from the adapter's clock.
 * 6. **Bad input** (a name outside rule 1, a non-positive or non-finite TTL, limit or batch
 *    size, a malformed batch, a cursor the store did not make) rejects the returned
 *    promise with a `RangeError`, before anything is written. Adapters never throw
 *    synchronously, so a caller has one failure path.
 * 7. **Errors surface.** A backend that is down, slow or failing rejects the promise (any
 *    `Error` but `RangeError`; the vault maps it to `STORE_UNAVAILABLE` and puts a deadline
 *    on every call). It never reads as absent, empty, `false` or `0`.
 * 8. **After close** every method but `close` rejects with a `VaultError` whose code is
 *    `STORE_UNAVAILABLE`; `close` itself may be called again and resolves.
 * 9. **Namespaces.** Two stores with different namespaces on one backend never see, count,
 *    remove, purge or scan each other's entries or indexes, nor anything else the backend holds.
 * 10. **Indexes.** An index is a sorted set of entry names (rule 1 names, never expiring),
 *    kept beside the groups so the vault can page through the linked accounts of an org
 *    without walking the store. It changes only together with a group: a `batch` with
 *    `index` adds its entry in the same atomic step as the batch's writes (and not at all if
 *    the batch does not commit), and a `removeGroup` with `index` removes its entry in the
 *    same atomic step as the group. Index names and group names are separate: an index
 *    named like a group has nothing to do with it, and `scan` never returns index entries.
 *    An adapter whose backend cannot make one step of a group and an index (Redis Cluster
 *    puts them in different slots) must still leave them agreeing once the call returns,
 *    and must complete or undo a call cut off halfway (a crash) no later than the next call
 *    that touches that entry or reads that index after a bounded delay; it says so in its
 *    documentation.
 *
 * @example
 * ```ts
 * // The vault's own use: one account's credential, written only while its profile exists.
 * const result = await store.put('acct:acme:test:u1', 'cred:api_key', sealed, { requires: 'profile' });
 * if (result === 'missing') throw new Error('no such account');
 * ```
 */
export interface VaultStore {
  /** A short name for messages, e.g. `sqlite` or `redis`. */
  readonly kind: string;

  /** The live entry, or `undefined` if absent or expired. */
  get(group: string, member: string): Promise<StoreEntry | undefined>;

  /**
   * Inserts or replaces, atomically, and says which: `'added'` if the member was absent or
   * expired, else `'updated'`. `createdAt` survives an update; `updatedAt` is now; any
   * expiry is cleared. With `requires`, the write happens only if that member of the same
   * group is live at the moment of writing; otherwise nothing is written and the result is
   * `'missing'`. When N writers race on one new member, exactly one sees `'added'`.
   */
  put(group: string, member: string, value: string, options?: PutOptions): Promise<PutResult>;

  /**
   * Inserts only if the member is absent or expired (and, with `requires`, only if that
   * member of the same group is live), with an expiry `ttlMs` from now when given. Returns
   * `true` if this call inserted. When N writers race, exactly one gets `true`.
   */
  insert(group: string, member: string, value: string, options?: InsertOptions): Promise<boolean>;

  /**
   * Compare-and-swap: replaces the value only if the live entry's value is exactly
   * `expected` (no trimming, no case folding). `createdAt`, `updatedAt` and any expiry are
   * kept (key rotation re-seals a value; that is not a user's write). Returns whether it
   * replaced; of N racing replaces of one value, exactly one returns `true`.
   */
  replace(group: string, member: string, expected: string, value: string): Promise<boolean>;

  /** Removes one member. Returns whether it was live; of N racing removes, one gets `true`. */
  remove(group: string, member: string): Promise<boolean>;

  /**
   * Every live member of the group whose name starts with `prefix` (all members when
   * omitted or `''`), sorted by member name in UTF-16 code-unit order (as `Array#sort`
   * without a comparator). Costs in proportion to the group, not the store.
   */
  list(group: string, prefix?: string): Promise<StoreListItem[]>;

  /**
   * Removes every member of the group and returns how many live ones it removed. Racing
   * calls count each member once. Costs in proportion to the group, never to the store;
   * it never touches another group, however alike their names. With `index`, that entry
   * leaves that index in the same atomic step, whether or not the group held anything
   * (rule 10).
   */
  removeGroup(group: string, options?: RemoveGroupOptions): Promise<number>;

  /**
   * Applies several writes to one group as one atomic step: all of them or none.
   *
   * First every condition is checked, before anything is written: `requires` (that member
   * is live), each `insert` (its member is absent or expired) and each `replace` (its
   * member's live value is exactly `expected`). If one fails, nothing is written and the
   * result is `{ committed: false, failed }`: the index of the first failing write in the
   * order given (`-1` for `requires`). Otherwise the writes are applied in order and
   * `results[i]` says what write `i` did: `'added'` or `'updated'` for a put, `true` for an
   * insert or a replace, whether the member was live for a remove. Each write means what
   * the single-member method of the same name means (timestamps, expiry). An empty batch
   * commits with no results. Refused with `RangeError`: a member written twice, `requires`
   * naming a written member, an unknown op, a bad TTL, more than {@link MAX_BATCH_WRITES}.
   *
   * A backend failure rejects the promise, and then none of the writes happened: no
   * reader, in any process, ever sees some of them without the others.
   *
   * With `index`, a batch that commits also puts that entry in that index (a no-op if it is
   * there already), in the same atomic step (rule 10); an uncommitted one leaves the index
   * as it was. An empty batch with `requires` and `index` adds the entry only while the
   * required member is live, which is how existing groups are indexed after the fact.
   */
  batch(group: string, writes: readonly BatchWrite[], options?: BatchOptions): Promise<BatchResult>;

  /**
   * Adds one to a counter and returns the new count. An absent or expired member starts
   * at 1 and expires `ttlMs` after that first increment; later increments keep that
   * expiry, so the window is fixed, not sliding. A member written by `put` (no expiry)
   * counts on from its decimal value and keeps no expiry (`expiresAt` is then
   * `Number.MAX_SAFE_INTEGER`). Exact under concurrency: N racing increments of one counter
   * return N distinct counts. The value is the count in decimal (`get` shows it).
   */
  increment(group: string, member: string, ttlMs: number): Promise<CounterState>;

  /**
   * One page of an index: `total`, the exact number of its entries, and the entries at
   * positions `offset` (a non-negative integer) to `offset + limit - 1` (`limit` a positive
   * integer, at most {@link MAX_INDEX_PAGE}) in UTF-16 code-unit order, both read at one
   * instant (a racing batch or removeGroup is in both or in neither). An index nobody wrote
   * reads as `{ total: 0, entries: [] }`; an offset past the end gives no entries. Costs in
   * proportion to `offset + limit` at worst (a B-tree walk), never to the store, and `total`
   * never walks the index (a counter kept with it, or the backend's own cardinality).
   */
  readIndex(index: string, offset: number, limit: number): Promise<IndexPage>;

  /**
   * Deletes at most `limit` (a positive integer) expired entries of this namespace and
   * returns how many it deleted; live entries and other namespaces are never touched.
   * Costs in proportion to what it deletes, never to the whole store (an index on expiry,
   * or the backend's own expiry). A store whose backend expires entries by itself (Redis)
   * may do nothing and return 0.
   */
  purgeExpired(limit: number): Promise<number>;

  /**
   * Walks every group of this store (this namespace only) in pages of at most `batchSize`
   * (a positive integer) items, for maintenance such as key rotation. Pass `undefined` to
   * start and the returned cursor to continue; `undefined` back means done (an empty page
   * with a cursor is allowed; keep going). The cursor is opaque: a string this store did
   * not return is refused with `RangeError`.
   *
   * Visibility is at-least-once: every member live for the whole walk is returned, and
   * returned with its current entry; a member written, updated or removed during the walk
   * may or may not be; expired members are not. A member may come twice (Redis SCAN does
   * during a rehash), so callers must be idempotent. Order is the adapter's own.
   */
  scan(cursor: string | undefined, batchSize: number): Promise<ScanPage>;

  /**
   * Releases connections. Afterwards every other method rejects with a `VaultError` coded
   * `STORE_UNAVAILABLE`. Resolves even if the backend is gone; calling it again resolves.
   */
  close(): Promise<void>;
}

export interface StoreEntry {
  value: string;
  /** Milliseconds since the epoch of the write that made the member present. */
  createdAt: number;
  /** Milliseconds since the epoch of the latest `put` or `insert` (a `replace` keeps it). */
  updatedAt: number;
  /** Milliseconds since the epoch after which the entry is gone; absent if it never expires. */
  expiresAt?: number;
}

export interface StoreListItem {
  member: string;
  entry: StoreEntry;
}

/** One page of {@link VaultStore.scan}. */
export interface ScanPage {
  items: Array<{ group: string; member: string; entry: StoreEntry }>;
  /** Pass back to continue; `undefined` when the walk is done. */
  cursor: string | undefined;
}

export interface PutOptions {
  /** Write only if this member of the same group is live. */
  requires?: string;
}

export interface InsertOptions {
  /** Lifetime in milliseconds: positive and finite. */
  ttlMs?: number;
  /** Insert only if this member of the same group is live (else `false`, nothing written). */
  requires?: string;
}

/** What {@link VaultStore.put} did. */
export type PutResult = 'added' | 'updated' | 'missing';

/** The most writes one {@link VaultStore.batch} call may carry. */
export const MAX_BATCH_WRITES = 1000;

/**
 * The longest group or member an adapter must accept, in UTF-16 units; longer names are
 * refused with `RangeError`. Two names at this bound, plus a namespace and separators, fit a
 * 2048-character key column (PostgreSQL's) and the 2704-byte limit of a B-tree entry.
 */
export const MAX_NAME_LENGTH = 960;

/** One write of a {@link VaultStore.batch}. */
export type BatchWrite =
  | { op: 'put'; member: string; value: string }
  | { op: 'insert'; member: string; value: string; ttlMs?: number }
  | { op: 'replace'; member: string; expected: string; value: string }
  | { op: 'remove'; member: string };

export interface BatchOptions {
  /** Apply the batch only if this member of the group is live (it must not be written by the batch). */
  requires?: string;
  /** When the batch commits, this entry is in this index, in the same atomic step (rule 10). */
  index?: IndexEntry;
}

export interface RemoveGroupOptions {
  /** This entry leaves this index in the same atomic step as the group (rule 10). */
  index?: IndexEntry;
}

/** One entry of one index (rule 10); both names follow rule 1. */
export interface IndexEntry {
  index: string;
  entry: string;
}

/** What {@link VaultStore.readIndex} returns. */
export interface IndexPage {
  /** How many entries the index holds. */
  total: number;
  /** The page's entries, in UTF-16 code-unit order. */
  entries: string[];
}

/** The most entries one {@link VaultStore.readIndex} call returns. */
export const MAX_INDEX_PAGE = 1000;

/** What {@link VaultStore.batch} did: every write, or none and the first that could not apply. */
export type BatchResult =
  | { committed: true; results: Array<'added' | 'updated' | boolean> }
  | { committed: false; failed: number };

/** What {@link VaultStore.increment} returns. */
export interface CounterState {
  count: number;
  /** Milliseconds since the epoch when the counter expires (`Number.MAX_SAFE_INTEGER` if never). */
  expiresAt: number;
}

/** Stores declared with {@link markInProcess}: this exact object, never a wrapper or a copy of it. */
const inProcessStores = new WeakSet<VaultStore>();

/**
 * Declares that `store` answers from this process's memory, without I/O, so none of its
 * calls can stall (the memory store does this). The vault then runs its calls without a
 * deadline (one would never fire, and its bookkeeping cost more than the memory store's
 * whole write); failures are still reported as `STORE_UNAVAILABLE`. The mark belongs to
 * this object alone: a Proxy or a copy around it, which may wait on something, keeps the
 * deadline. Never mark a store that waits on a backend.
 *
 * @example
 * ```ts
 * const store = markInProcess(createMyMapStore());
 * ```
 */
export function markInProcess<S extends VaultStore>(store: S): S {
  inProcessStores.add(store);
  return store;
}

/** Whether `store` itself was declared with {@link markInProcess}. */
export function isInProcess(store: VaultStore): boolean {
  return inProcessStores.has(store);
}

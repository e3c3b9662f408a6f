/**
 * The storage contract every credvault adapter implements (memory, SQLite, Redis,
 * PostgreSQL, or your own). The suite in `credvault/testing` checks each rule below.
 *
 * Data is addressed by a **group** and a **member**. The vault puts everything one linked
 * account owns (its profile, its default app, each credential, its session tokens) in one
 * group, so listing an account and deleting it cost in proportion to that account alone.
 * Group and member strings reach the adapter already escaped: they contain only
 * `A-Z a-z 0-9 _ . - % :` and never `{`, `}` or whitespace. An adapter must map distinct
 * (group, member) pairs to distinct storage keys, and keep two stores with different
 * namespaces fully apart.
 *
 * Rules:
 * - Every method either does all it says or nothing, and is atomic with respect to every
 *   other call, from this process or any other sharing the backend.
 * - Errors surface: a backend that is down, slow or failing rejects the promise. It
 *   never reads as "absent". (The vault puts a deadline on every call.)
 * - Values are opaque strings; adapters store them byte for byte.
 */
export interface VaultStore {
  /** A short name for messages, e.g. `sqlite` or `redis`. */
  readonly kind: string;

  /** The entry, or `undefined` if absent or expired. */
  get(group: string, member: string): Promise<StoreEntry | undefined>;

  /**
   * Insert or replace, atomically, and say which. `createdAt` survives a replace;
   * `updatedAt` is set to now. With `requires`, the write happens only if that member
   * of the same group exists at the moment of writing; otherwise nothing is written and
   * the result is `'missing'`. When N writers race on one new member, exactly one
   * sees `'added'`.
   */
  put(group: string, member: string, value: string, options?: PutOptions): Promise<PutResult>;

  /**
   * Insert only if absent (an expired entry counts as absent) and, with `requires`, only
   * if that member of the same group exists. Returns `true` if this call inserted. When N
   * writers race, exactly one gets `true`.
   */
  insert(group: string, member: string, value: string, options?: InsertOptions): Promise<boolean>;

  /**
   * Compare-and-swap: replace the value only if it is currently exactly `expected`.
   * `createdAt` and `updatedAt` are kept (key rotation re-seals a value; that is not a
   * user's write). Returns whether it replaced.
   */
  replace(group: string, member: string, expected: string, value: string): Promise<boolean>;

  /** Remove one member. Returns whether it existed. */
  remove(group: string, member: string): Promise<boolean>;

  /**
   * Every live member of the group whose name starts with `prefix` (all members when
   * omitted), sorted by member name. Costs in proportion to the group, not the store.
   */
  list(group: string, prefix?: string): Promise<StoreListItem[]>;

  /** Remove every member of the group. Returns how many were removed. */
  removeGroup(group: string): Promise<number>;

  /**
   * Applies several writes to one group as one atomic step: all of them or none.
   *
   * First every condition is checked: `requires` (that member exists), each `insert`
   * (its member is absent or expired) and each `replace` (its member's value is exactly
   * `expected`). If one fails, nothing is written and the result is
   * `{ committed: false, failed }`, the index of the first failing write (`-1` for
   * `requires`). Otherwise every write is applied and `results[i]` says what write `i`
   * did: `'added'` or `'updated'` for a put, `true` for an insert or a replace, whether the
   * member existed for a remove. Each write means what the single-member method of the
   * same name means (timestamps, expiry). Members must be distinct (else `RangeError`);
   * at most {@link MAX_BATCH_WRITES} writes.
   *
   * A backend failure rejects the promise, and then none of the writes happened: no
   * reader, in any process, ever sees some of them without the others.
   */
  batch(group: string, writes: readonly BatchWrite[], options?: BatchOptions): Promise<BatchResult>;

  /**
   * Adds one to a counter and returns the new count. An absent or expired member starts
   * at 1 and expires `ttlMs` after that first increment; later increments keep that
   * expiry, so the window is fixed. Exact under concurrency: N racing increments of one
   * counter return N distinct counts. The value is the count in decimal (`get` shows it).
   */
  increment(group: string, member: string, ttlMs: number): Promise<CounterState>;

  /**
   * Deletes up to `limit` expired entries of this namespace and returns how many it
   * deleted. Costs in proportion to what it deletes, never to the whole store (an index
   * on expiry, or the backend's own expiry). A store whose backend expires entries by
   * itself (Redis) may do nothing and return 0.
   */
  purgeExpired(limit: number): Promise<number>;

  /**
   * Walks every group of this store (this namespace only) in batches of at most
   * `batchSize` items, for maintenance such as key rotation. `cursor` is opaque: pass
   * `undefined` to start and the returned cursor to continue; `undefined` back means done.
   * Every member that is live for the whole walk is returned at least once; one written
   * during the walk may or may not be. An adapter may return a member twice (Redis SCAN
   * does during a rehash), so callers must be idempotent. Order is the adapter's own.
   */
  scan(cursor: string | undefined, batchSize: number): Promise<ScanPage>;

  /** Releases connections. The store is unusable afterwards. */
  close(): Promise<void>;
}

export interface StoreEntry {
  value: string;
  /** Milliseconds since the epoch of the first insert. */
  createdAt: number;
  /** Milliseconds since the epoch of the latest write. */
  updatedAt: number;
  /** Milliseconds since the epoch after which the entry is gone, if it expires. */
  expiresAt?: number;
}

export interface StoreListItem {
  member: string;
  entry: StoreEntry;
}

export interface ScanPage {
  items: Array<{ group: string; member: string; entry: StoreEntry }>;
  cursor: string | undefined;
}

export interface PutOptions {
  /** Write only if this member of the same group exists. */
  requires?: string;
}

export interface InsertOptions {
  /** Lifetime in milliseconds. */
  ttlMs?: number;
  /** Insert only if this member of the same group exists (else `false`, nothing written). */
  requires?: string;
}

export type PutResult = 'added' | 'updated' | 'missing';

/** The most writes one {@link VaultStore.batch} call may carry. */
export const MAX_BATCH_WRITES = 1000;

/** The longest group or member an adapter must accept, in UTF-16 units; longer names are refused with `RangeError`. */
export const MAX_NAME_LENGTH = 4096;

/** One write of a {@link VaultStore.batch}. */
export type BatchWrite =
  | { op: 'put'; member: string; value: string }
  | { op: 'insert'; member: string; value: string; ttlMs?: number }
  | { op: 'replace'; member: string; expected: string; value: string }
  | { op: 'remove'; member: string };

export interface BatchOptions {
  /** Apply the batch only if this member of the group exists (it must not be written by the batch). */
  requires?: string;
}

export type BatchResult =
  | { committed: true; results: Array<'added' | 'updated' | boolean> }
  | { committed: false; failed: number };

export interface CounterState {
  count: number;
  /** Milliseconds since the epoch when the counter expires. */
  expiresAt: number;
}

/**
 * Checks the arguments of a batch the same way on every adapter: names, distinct members,
 * the size bound and TTLs. Adapters call it first; it throws `RangeError`.
 */
export function checkBatch(
  writes: readonly BatchWrite[],
  options: BatchOptions | undefined,
  assertName: (what: string, name: string) => void,
): void {
  if (!Array.isArray(writes)) throw new RangeError('writes must be an array');
  if (writes.length > MAX_BATCH_WRITES) throw new RangeError(`a batch holds at most ${MAX_BATCH_WRITES} writes`);
  const seen = new Set<string>();
  for (const write of writes) {
    if (!['put', 'insert', 'replace', 'remove'].includes(write.op)) throw new RangeError(`unknown batch op ${String(write.op)}`);
    assertName('member', write.member);
    if (seen.has(write.member)) throw new RangeError('a batch must not write one member twice');
    seen.add(write.member);
    if (write.op === 'insert' && write.ttlMs !== undefined) checkTtl(write.ttlMs);
  }
  if (options?.requires !== undefined) {
    assertName('requires', options.requires);
    if (seen.has(options.requires)) throw new RangeError('a batch must not write its required member');
  }
}

/** A TTL must be a positive, finite number of milliseconds. */
export function checkTtl(ttlMs: number): void {
  if (!(Number.isFinite(ttlMs) && ttlMs > 0)) throw new RangeError('ttlMs must be a positive number of milliseconds');
}

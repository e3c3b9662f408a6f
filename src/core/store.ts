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
   * Walks every group of this store (this namespace only) in batches, for maintenance
   * such as key rotation. `cursor` is opaque: pass `undefined` to start and the returned
   * cursor to continue; `undefined` back means done.
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

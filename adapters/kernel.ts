/**
 * The adapter kernel: what every credvault adapter shares, written once. It owns the
 * storage-key layout (`storageKey`), checks every argument of the store contract (names,
 * TTLs, limits, batches, the closed state) before a backend sees it, and builds the Keyv
 * instance each adapter reads through. An adapter supplies a {@link StoreDriver} (only what
 * its backend does differently) and {@link defineStore} turns it into a `VaultStore`.
 * Internal to the adapters and their tests: not a public entry point.
 */
import Keyv, { type KeyvStoreAdapter } from 'keyv';
import { VaultError } from '../src/errors.js';
import {
  MAX_BATCH_WRITES,
  MAX_INDEX_PAGE,
  MAX_NAME_LENGTH,
  type BatchOptions,
  type IndexEntry,
  type IndexPage,
  type RemoveGroupOptions,
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
import type { Stored } from './record.js';

/** The namespace a store uses when none is given. */
export const DEFAULT_NAMESPACE = 'credvault';

/**
 * Test hooks an adapter accepts so that a conformance suite can make it fail on purpose.
 * `beforeWrite(i)` runs before write `i` of a batch reaches the backend; a throw there
 * must leave the store exactly as it was.
 */
export interface StoreFaults {
  beforeWrite?: (index: number) => void;
}

/**
 * The part of every storage key that names the namespace. `encodeURIComponent` never emits
 * `{`, so in a key the namespace ends at the first `{`.
 */
export function namespacePrefix(namespace: string): string {
  return encodeURIComponent(namespace);
}

/** The start of every storage key of one group: `<namespace>{<group>}:`. */
export function groupPrefix(namespace: string, group: string): string {
  return `${namespacePrefix(namespace)}{${group}}:`;
}

/**
 * The backend key of one (group, member): `encodeURIComponent(namespace) + '{' + group + '}:' + member`.
 * Every adapter stores under it (Redis reads `{group}` as the hash tag), so existing
 * databases keep opening; tests and the bench use it instead of re-encoding the layout.
 *
 * @example
 * ```ts
 * storageKey('credvault', 'acct:acme', 'cred:api_key'); // 'credvault{acct:acme}:cred:api_key'
 * ```
 */
export function storageKey(namespace: string, group: string, member: string): string {
  return `${groupPrefix(namespace, group)}${member}`;
}

/** The key layout of one namespace, with its encoded prefix worked out once. */
export interface KeyLayout {
  /** `encodeURIComponent(namespace)`: every key of the namespace starts with it, then `{`. */
  readonly prefix: string;
  /** `<prefix>{<group>}:`, the start of every key of the group. */
  group(group: string): string;
  /** The same as {@link storageKey}. */
  key(group: string, member: string): string;
}

export function keyLayout(namespace: string): KeyLayout {
  const prefix = namespacePrefix(namespace);
  return {
    prefix,
    group: (group) => `${prefix}{${group}}:`,
    key: (group, member) => `${prefix}{${group}}:${member}`,
  };
}

/** The first position of a sorted array whose element is not below `value`. */
export function lowerBound(sorted: readonly string[], value: string): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if ((sorted[mid] as string) < value) low = mid + 1;
    else high = mid;
  }
  return low;
}

/** The smallest string greater than every string that starts with `prefix` (which must not be empty). */
export function upperBound(prefix: string): string {
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}

const NAME = /^[A-Za-z0-9_.%:-]*$/;

/** Groups, members and prefixes arrive escaped and bounded (rule 1 of the contract); refuse any others. */
export function assertName(what: string, name: string): void {
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw new RangeError(`${what} must be pre-escaped to A-Z a-z 0-9 _ . - % :`);
  }
  if (name.length > MAX_NAME_LENGTH) throw new RangeError(`${what} must be at most ${MAX_NAME_LENGTH} characters`);
}

/** A TTL must be a positive, finite number of milliseconds. */
export function checkTtl(ttlMs: number): void {
  if (!(typeof ttlMs === 'number' && Number.isFinite(ttlMs) && ttlMs > 0)) {
    throw new RangeError('ttlMs must be a positive number of milliseconds');
  }
}

function checkCount(what: string, count: number): void {
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`${what} must be a positive integer`);
}

/** An index link (rule 10) names an index and an entry, both rule-1 names; returns it, or `undefined` when absent. */
export function checkIndexEntry(link: IndexEntry | undefined): IndexEntry | undefined {
  if (link === undefined) return undefined;
  if (typeof link !== 'object' || link === null) throw new RangeError('index must be an object { index, entry }');
  assertName('index', link.index);
  assertName('index entry', link.entry);
  if (link.index === '' || link.entry === '') throw new RangeError('index and entry must not be empty');
  return { index: link.index, entry: link.entry };
}

/** `readIndex` arguments: a rule-1 index name, an offset from 0, a limit from 1 to {@link MAX_INDEX_PAGE}. */
export function checkIndexRead(index: string, offset: number, limit: number): void {
  assertName('index', index);
  if (index === '') throw new RangeError('index must not be empty');
  if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError('offset must be a non-negative integer');
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_INDEX_PAGE) {
    throw new RangeError(`limit must be an integer from 1 to ${MAX_INDEX_PAGE}`);
  }
}

const OPS = new Set(['put', 'insert', 'replace', 'remove']);

/** Checks a batch's shape: an array of known ops on distinct members, within the size bound, with sane TTLs. */
export function checkBatch(writes: readonly BatchWrite[], options: BatchOptions | undefined): void {
  if (!Array.isArray(writes)) throw new RangeError('writes must be an array');
  if (writes.length > MAX_BATCH_WRITES) throw new RangeError(`a batch holds at most ${MAX_BATCH_WRITES} writes`);
  const seen = new Set<string>();
  for (const write of writes) {
    if (typeof write !== 'object' || write === null || !OPS.has(write.op)) {
      throw new RangeError(`unknown batch op ${String((write as { op?: unknown } | null)?.op)}`);
    }
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

/**
 * What an adapter supplies: the contract's operations for its backend, called only with
 * arguments the kernel has checked (names, TTLs, limits, batch shape) and only while the
 * store is open. `prefix` of `list` is always a string, possibly empty.
 */
export interface StoreDriver
  extends Pick<VaultStore, 'get' | 'replace' | 'remove' | 'increment' | 'purgeExpired' | 'scan' | 'readIndex'> {
  put(group: string, member: string, value: string, requires: string | undefined): Promise<PutResult>;
  insert(group: string, member: string, value: string, ttlMs: number | undefined, requires: string | undefined): Promise<boolean>;
  list(group: string, prefix: string): Promise<StoreListItem[]>;
  removeGroup(group: string, index: IndexEntry | undefined): Promise<number>;
  batch(group: string, writes: readonly BatchWrite[], requires: string | undefined, index: IndexEntry | undefined): Promise<BatchResult>;
  /** Called once, by the first `close`; the kernel already rejects every later call. */
  close(): Promise<void>;
}

export interface StoreDefinition {
  /** `VaultStore.kind`, also the name in the closed-store message. */
  kind: string;
  /** A backend's own extra rule on group names (e.g. Redis Cluster refuses an empty one); throws `RangeError`. */
  checkGroup?: (group: string) => void;
}

/**
 * Wraps a driver in the contract's shared rules: every argument is checked first (a
 * `RangeError` rejects before anything is written), a closed store rejects with
 * `STORE_UNAVAILABLE`, `close` runs the driver's close once, and nothing throws synchronously.
 *
 * @example
 * ```ts
 * return defineStore({ kind: 'memory' }, { get: async (group, member) => ..., ... });
 * ```
 */
export function defineStore(definition: StoreDefinition, driver: StoreDriver): VaultStore {
  const { kind, checkGroup } = definition;
  let closing: Promise<void> | undefined;

  function open(group?: string, member?: string): void {
    if (closing !== undefined) throw new VaultError('STORE_UNAVAILABLE', `The ${kind} store is closed`);
    if (group !== undefined) {
      assertName('group', group);
      checkGroup?.(group);
    }
    if (member !== undefined) assertName('member', member);
  }

  const requirement = (requires: string | undefined): string | undefined => {
    if (requires !== undefined) assertName('requires', requires);
    return requires;
  };

  return {
    kind,

    async get(group: string, member: string): Promise<StoreEntry | undefined> {
      open(group, member);
      return driver.get(group, member);
    },

    async put(group: string, member: string, value: string, options?: PutOptions): Promise<PutResult> {
      open(group, member);
      return driver.put(group, member, value, requirement(options?.requires));
    },

    async insert(group: string, member: string, value: string, options?: InsertOptions): Promise<boolean> {
      open(group, member);
      const ttlMs = options?.ttlMs;
      if (ttlMs !== undefined) checkTtl(ttlMs);
      return driver.insert(group, member, value, ttlMs, requirement(options?.requires));
    },

    async replace(group: string, member: string, expected: string, value: string): Promise<boolean> {
      open(group, member);
      return driver.replace(group, member, expected, value);
    },

    async remove(group: string, member: string): Promise<boolean> {
      open(group, member);
      return driver.remove(group, member);
    },

    async list(group: string, prefix = ''): Promise<StoreListItem[]> {
      open(group);
      assertName('prefix', prefix);
      return driver.list(group, prefix);
    },

    async removeGroup(group: string, options?: RemoveGroupOptions): Promise<number> {
      open(group);
      return driver.removeGroup(group, checkIndexEntry(options?.index));
    },

    async batch(group: string, writes: readonly BatchWrite[], options?: BatchOptions): Promise<BatchResult> {
      open(group);
      checkBatch(writes, options);
      return driver.batch(group, writes, options?.requires, checkIndexEntry(options?.index));
    },

    async readIndex(index: string, offset: number, limit: number): Promise<IndexPage> {
      open();
      checkIndexRead(index, offset, limit);
      return driver.readIndex(index, offset, limit);
    },

    async increment(group: string, member: string, ttlMs: number): Promise<CounterState> {
      open(group, member);
      checkTtl(ttlMs);
      return driver.increment(group, member, ttlMs);
    },

    async purgeExpired(limit: number): Promise<number> {
      open();
      checkCount('limit', limit);
      return driver.purgeExpired(limit);
    },

    async scan(cursor: string | undefined, batchSize: number): Promise<ScanPage> {
      open();
      checkCount('batchSize', batchSize);
      if (cursor !== undefined && typeof cursor !== 'string') throw new RangeError('invalid scan cursor');
      return driver.scan(cursor, batchSize);
    },

    async close(): Promise<void> {
      closing ??= driver.close();
      return closing;
    },
  };
}

/**
 * The Keyv instance an adapter reads through, over the Keyv store that owns its connection.
 * Keys are the kernel's in full (no Keyv namespace or prefix), `throwOnErrors` makes a
 * failing store reject instead of reading as absent, and errors are heard (a Keyv `error`
 * event without a listener would crash the process; callers get them as rejections).
 *
 * Keyv sees each record as a plain value with no expiry of its own: a Keyv read of an
 * expired record deletes it after an await, which could erase a record another writer has
 * just put in its place; the kernel checks expiry itself, with one clock per call.
 */
export function createKeyv(store: KeyvStoreAdapter | Map<string, unknown>): Keyv<Stored> {
  const keyv = new Keyv<Stored>({
    store,
    namespace: undefined,
    useKeyPrefix: false,
    throwOnErrors: true,
    serialize: (data) => JSON.stringify(data.value),
    deserialize: <Value>(text: string) => ({ value: JSON.parse(text) as Value }),
  });
  keyv.on('error', () => undefined);
  return keyv;
}

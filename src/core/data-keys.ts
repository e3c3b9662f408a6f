/**
 * Data keys (envelope encryption): each linked account's values are sealed under its own
 * 32-byte data key (DEK), stored in the account's group wrapped by a key-encryption key
 * (KEK) of the vault's {@link KeyProvider}. Unwrapped keys are kept in a bounded cache, so
 * an HSM or KMS is asked once per account per TTL, never per request.
 */
import { randomBytes } from 'node:crypto';
import { VaultError } from '../errors.js';
import type { DataKey } from '../crypto/cipher.js';
import { DATA_KEY_BYTES, isValidKekId, type KeyProvider, type WrapContext, type WrappedKey } from '../crypto/key-provider.js';
import type { AccountRef } from './layout.js';

/** Format version of a data key record. */
const RECORD_VERSION = 1;
const DATA_KEY_ID = /^[0-9a-f]{16}$/;

/** One wrapped data key as a record holds it. */
export interface StoredDataKey {
  /** The data key's id: 16 hex characters, random, never reused. */
  readonly id: string;
  /** The KEK that wraps it. */
  readonly kek: string;
  /** The provider's wrap, base64url. */
  readonly wrapped: string;
  /** The `keys rotate --reseal` run that made it, if one did (16 hex characters). */
  readonly run?: string;
}

/**
 * An account's data key record: its keys, the current one (which seals) first. It holds
 * more than one only while `keys rotate --reseal` moves the account to a new key.
 */
export interface DataKeyRecord {
  readonly v: typeof RECORD_VERSION;
  readonly keys: readonly StoredDataKey[];
}

/** Whether `run` is a well-formed reseal run id. */
export const isRunId = (run: unknown): run is string => typeof run === 'string' && DATA_KEY_ID.test(run);

/** The record as stored (JSON), or `undefined` when it is not one: never trusted further than its shape. */
export function parseDataKeyRecord(raw: string): DataKeyRecord | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const { v, keys } = parsed as { v?: unknown; keys?: unknown };
  if (v !== RECORD_VERSION || !Array.isArray(keys) || keys.length === 0) return undefined;
  const checked: StoredDataKey[] = [];
  for (const key of keys as unknown[]) {
    if (typeof key !== 'object' || key === null) return undefined;
    const { id, kek, wrapped, run } = key as Record<string, unknown>;
    if (typeof id !== 'string' || !DATA_KEY_ID.test(id) || typeof kek !== 'string' || !isValidKekId(kek) || typeof wrapped !== 'string') {
      return undefined;
    }
    if (run !== undefined && (typeof run !== 'string' || !DATA_KEY_ID.test(run))) return undefined;
    checked.push(run === undefined ? { id, kek, wrapped } : { id, kek, wrapped, run });
  }
  return { v: RECORD_VERSION, keys: checked };
}

export const formatDataKeyRecord = (record: DataKeyRecord): string =>
  JSON.stringify({ v: record.v, keys: record.keys.map(({ id, kek, wrapped, run }) => (run === undefined ? { id, kek, wrapped } : { id, kek, wrapped, run })) });

/** What a data key's wrap is bound to. */
export const wrapContextOf = (ref: AccountRef, dekId: string): WrapContext => ({
  org: ref.org,
  environment: ref.environment,
  accountId: ref.accountId,
  dekId,
});

/**
 * A fresh data key for `ref`, wrapped under the provider's primary KEK: the key (for the
 * caller to seal with at once) and its stored form.
 */
export async function newDataKey(provider: KeyProvider, ref: AccountRef, run?: string): Promise<{ dataKey: DataKey; stored: StoredDataKey }> {
  const id = randomBytes(8).toString('hex');
  const key = randomBytes(DATA_KEY_BYTES);
  const wrapped = await provider.wrap(key, wrapContextOf(ref, id));
  const stored: StoredDataKey = { id, kek: wrapped.kekId, wrapped: wrapped.wrapped };
  return { dataKey: { id, key }, stored: run === undefined ? stored : { ...stored, run } };
}

/** The run id a reseal run's record (JSON `{"id"}`) holds, or `undefined` when it is not one. */
export const runIdOf = (raw: string): string | undefined => {
  try {
    const { id } = JSON.parse(raw) as { id?: unknown };
    return isRunId(id) ? id : undefined;
  } catch {
    return undefined;
  }
};

/** A fresh id for a `keys rotate --reseal` run (the same shape as a data key id). */
export const newRunId = (): string => randomBytes(8).toString('hex');

/** Unwraps one stored data key of `ref`. */
export async function unwrapDataKey(provider: KeyProvider, ref: AccountRef, stored: StoredDataKey): Promise<DataKey> {
  const wrapped: WrappedKey = { kekId: stored.kek, wrapped: stored.wrapped };
  const key = await provider.unwrap(wrapped, wrapContextOf(ref, stored.id));
  if (key.length !== DATA_KEY_BYTES) throw new VaultError('DECRYPTION_FAILED', 'Stored data key could not be unwrapped');
  return { id: stored.id, key };
}

/** Bounds of the data key cache. */
export interface DataKeyCacheOptions {
  /** Most unwrapped keys held. Default 10,000 (about 1 MiB). */
  maxEntries?: number;
  /**
   * How long an unwrapped key is kept, in ms. Default 60,000. It also bounds how long
   * another process may keep opening values of an account this process deleted.
   */
  ttlMs?: number;
}

export const DEFAULT_DATA_KEY_CACHE_ENTRIES = 10_000;
export const DEFAULT_DATA_KEY_CACHE_TTL_MS = 60_000;
/**
 * Evicted keys are zeroed this long after eviction, so a call that took one just before
 * finishes first (the vault seals and opens in the same step as it gets the key).
 */
const ZERO_AFTER_MS = 1000;

interface CachedKey {
  readonly dataKey: DataKey;
  readonly expires: number;
  readonly group: string;
}

/**
 * Unwrapped data keys by account group and key id, bounded in count and age. Evicted keys
 * are overwritten with zeros (shortly after, so a call holding one can finish).
 */
export class DataKeyCache {
  readonly maxEntries: number;
  readonly ttlMs: number;
  /** Every entry by `group \0 id`, oldest first (Map keeps insertion order): for the bound. */
  readonly #entries = new Map<string, CachedKey>();
  /** The same entries by group, then id: the lookup on every read, with no string built. */
  readonly #byGroup = new Map<string, Map<string, CachedKey>>();
  /** Per group, the id of the key its data key record last named current: a hint, see {@link current}. */
  readonly #current = new Map<string, string>();
  #toZero: Buffer[] = [];
  #epoch = 0;

  /** Moves on at every group eviction: an unwrap that began before one does not cache its key. */
  get epoch(): number {
    return this.#epoch;
  }
  #zeroTimer: NodeJS.Timeout | undefined;

  constructor(options: DataKeyCacheOptions = {}) {
    this.maxEntries = options.maxEntries ?? DEFAULT_DATA_KEY_CACHE_ENTRIES;
    this.ttlMs = options.ttlMs ?? DEFAULT_DATA_KEY_CACHE_TTL_MS;
    if (!Number.isSafeInteger(this.maxEntries) || this.maxEntries < 0) {
      throw new VaultError('INVALID_CONFIGURATION', 'dataKeyCache.maxEntries must be a whole number from 0');
    }
    if (!Number.isSafeInteger(this.ttlMs) || this.ttlMs < 0 || this.ttlMs > 2 ** 31 - 1) {
      throw new VaultError('INVALID_CONFIGURATION', 'dataKeyCache.ttlMs must be a whole number of ms from 0 to 2147483647');
    }
  }

  /** How many keys are held now. */
  get size(): number {
    return this.#entries.size;
  }

  /** The live cached key `dekId` of `group`. */
  get(group: string, dekId: string): DataKey | undefined {
    const entry = this.#byGroup.get(group)?.get(dekId);
    if (entry === undefined) return undefined;
    if (entry.expires <= Date.now()) {
      this.#drop(entry);
      return undefined;
    }
    return entry.dataKey;
  }

  /**
   * Holds a copy of `dataKey` of `group`. Which key seals is decided by the account's data
   * key record and the fences on it; the cache keeps at most a hint of it ({@link markCurrent}).
   */
  set(group: string, dataKey: DataKey): void {
    if (this.maxEntries === 0 || this.ttlMs === 0) return;
    let ids = this.#byGroup.get(group);
    // Same id, same key: keep the bytes already held.
    if (ids?.has(dataKey.id) === true) return;
    while (this.#entries.size >= this.maxEntries) this.#evictOldest();
    // The cache zeroes what it evicts, so it keeps its own copy: the caller's buffer (or a
    // provider's) is never wiped under it, and a key set again is a new copy.
    const owned: DataKey = { id: dataKey.id, key: Buffer.from(dataKey.key) };
    const entry: CachedKey = { dataKey: owned, expires: Date.now() + this.ttlMs, group };
    this.#entries.set(`${group}\u0000${dataKey.id}`, entry);
    if (ids === undefined) this.#byGroup.set(group, (ids = new Map()));
    ids.set(dataKey.id, entry);
  }

  /**
   * Notes that `group`'s data key record named `dekId` current when last read. Only a hint:
   * a write sealed under it must still be fenced (the credential write requires the key's
   * `app-key` marker, which exists only while the key is current), and falls back to reading
   * the record when the fence says the key moved on.
   */
  markCurrent(group: string, dekId: string): void {
    if (this.#byGroup.get(group)?.has(dekId) === true) this.#current.set(group, dekId);
  }

  /** The cached key `group`'s record last named current (see {@link markCurrent}), if still held. */
  current(group: string): DataKey | undefined {
    const dekId = this.#current.get(group);
    return dekId === undefined ? undefined : this.get(group, dekId);
  }

  /** Forgets every key of `group` (its account was deleted or moved to a new key). */
  evictGroup(group: string): void {
    this.#epoch += 1;
    const ids = this.#byGroup.get(group);
    if (ids === undefined) return;
    for (const entry of [...ids.values()]) this.#drop(entry);
  }

  /** Forgets every key, zeroing them. */
  clear(): void {
    for (const group of [...this.#byGroup.keys()]) this.evictGroup(group);
  }

  #evictOldest(): void {
    // Map order is insertion order: the first entry is the oldest.
    const first = this.#entries.entries().next();
    if (first.done === true) return;
    this.#drop(first.value[1]);
  }

  #drop(entry: CachedKey): void {
    const { group } = entry;
    this.#entries.delete(`${group}\u0000${entry.dataKey.id}`);
    const ids = this.#byGroup.get(group);
    ids?.delete(entry.dataKey.id);
    if (ids?.size === 0) this.#byGroup.delete(group);
    if (this.#current.get(group) === entry.dataKey.id) this.#current.delete(group);
    this.zeroLater(entry.dataKey.key);
  }

  /**
   * Overwrites `key` with zeros shortly (a second) from now: for a key that callers of this
   * turn may still be sealing or opening with, such as a provider's unwrap that was shared
   * by several callers or a new account's key once the cache holds its own copy.
   */
  zeroLater(key: Buffer): void {
    this.#toZero.push(key);
    if (this.#zeroTimer === undefined) {
      this.#zeroTimer = setTimeout(() => {
        this.#zeroTimer = undefined;
        const due = this.#toZero;
        this.#toZero = [];
        for (const key of due) key.fill(0);
      }, ZERO_AFTER_MS);
      this.#zeroTimer.unref();
    }
  }
}

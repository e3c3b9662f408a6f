/**
 * What every credvault adapter shares: the record format inside Keyv's
 * `{"value":...,"expires":...}` envelope, the name rule of the store contract, and key ranges.
 * Internal: not a public entry point.
 */
import type { ScanPage, StoreEntry } from '../src/core/store.js';

/** The record: value, createdAt, updatedAt and (for adapters that report `added` by it) a write id. */
export interface Row {
  v: string;
  c: number;
  u: number;
  w?: string;
}

/** Keyv's envelope around a record. */
export interface Stored {
  value: Row;
  expires?: number;
}

/** A row of a SQL table in Keyv's `(key, value)` layout. */
export interface KeyValueRow {
  key: string;
  value: string;
}

export const DEFAULT_NAMESPACE = 'credvault';

/**
 * Test hooks an adapter accepts so that a conformance suite can make it fail on purpose.
 * `beforeWrite(i)` runs before write `i` of a batch reaches the backend; a throw there
 * must leave the store exactly as it was.
 */
export interface StoreFaults {
  beforeWrite?: (index: number) => void;
}

const NAME = /^[A-Za-z0-9_.%:-]*$/;

/** Groups, members and prefixes arrive escaped (see the store contract); refuse any that do not. */
export function assertName(what: string, name: string): void {
  if (!NAME.test(name)) {
    throw new RangeError(`${what} must be pre-escaped to A-Z a-z 0-9 _ . - % :`);
  }
}

/** The smallest string greater than every string that starts with `prefix`. */
export function upperBound(prefix: string): string {
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}

/** The entry a stored envelope holds. */
export function entryOf(stored: Stored): StoreEntry {
  const entry: StoreEntry = { value: stored.value.v, createdAt: stored.value.c, updatedAt: stored.value.u };
  if (typeof stored.expires === 'number') entry.expiresAt = stored.expires;
  return entry;
}

/** The entry a serialized envelope holds, or `undefined` once it has expired at `now`. */
export function parseEntry(raw: string, now: number): StoreEntry | undefined {
  const stored = JSON.parse(raw) as Stored;
  if (typeof stored.expires === 'number' && stored.expires < now) return undefined;
  return entryOf(stored);
}

/**
 * One page of a SQL `scan`: the live rows as (group, member, entry), and the cursor, the
 * last storage key read (expired rows advance it too), or `undefined` after a short page.
 */
export function scanPage(rows: readonly KeyValueRow[], base: string, batchSize: number, now: number): ScanPage {
  const items: ScanPage['items'] = [];
  for (const row of rows) {
    const entry = parseEntry(row.value, now);
    if (entry === undefined) continue;
    const rest = row.key.slice(base.length);
    const end = rest.indexOf('}');
    items.push({ group: rest.slice(0, end), member: rest.slice(end + 2), entry });
  }
  const last = rows[rows.length - 1];
  return { items, cursor: rows.length < batchSize || last === undefined ? undefined : last.key };
}

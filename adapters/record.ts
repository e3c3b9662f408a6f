/**
 * The kernel's row module: the record every credvault adapter stores, inside Keyv's
 * `{"value":...,"expires":...}` envelope, and how a stored text becomes a {@link StoreEntry}.
 * The key layout and the argument checks live in `kernel.ts`. Internal: not a public entry point.
 */
import { randomBytes } from 'node:crypto';
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

// Write ids only need to be unique: a random per-process part and a counter are, and cost
// no random bytes per write.
const WRITER = randomBytes(9).toString('base64url');
let writes = 0;

/**
 * A new record for `value` written at `now`, with a fresh write id (an upsert that returns
 * the stored id tells by it whether it inserted) and, with `ttlMs`, an expiry.
 */
export function newRecord(value: string, now: number, ttlMs?: number): Stored {
  writes = (writes + 1) % Number.MAX_SAFE_INTEGER;
  const stored: Stored = { value: { v: value, c: now, u: now, w: `${WRITER}${writes.toString(36)}` } };
  // Whole milliseconds: Redis PXAT and the SQL expiry patterns read digits only.
  if (ttlMs !== undefined) stored.expires = now + Math.ceil(ttlMs);
  return stored;
}

/** The entry a stored envelope holds. */
export function entryOf(stored: Stored): StoreEntry {
  const entry: StoreEntry = { value: stored.value.v, createdAt: stored.value.c, updatedAt: stored.value.u };
  if (typeof stored.expires === 'number') entry.expiresAt = stored.expires;
  return entry;
}

/** Whether a stored envelope is live at `now`. */
export function isLive(stored: Stored, now: number): boolean {
  return typeof stored.expires !== 'number' || stored.expires >= now;
}

/** The entry a serialized envelope holds, or `undefined` once it has expired at `now`. */
export function parseEntry(raw: string, now: number): StoreEntry | undefined {
  const stored = JSON.parse(raw) as Stored;
  return isLive(stored, now) ? entryOf(stored) : undefined;
}

/**
 * One page of a key-ordered `scan`: the live rows as (group, member, entry), and the cursor,
 * the last storage key read (expired rows advance it too), or `undefined` after a short page.
 * `base` is the namespace part of every key, up to and including its `{`.
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

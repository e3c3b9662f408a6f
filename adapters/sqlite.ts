import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import KeyvSqlite from '@keyv/sqlite';
import Keyv from 'keyv';
import { VaultError } from '../src/errors.js';
import {
  checkBatch,
  checkTtl,
  type BatchOptions,
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
import {
  assertName,
  DEFAULT_NAMESPACE,
  parseEntry as toEntry,
  scanPage,
  upperBound,
  type KeyValueRow,
  type Row,
  type StoreFaults,
  type Stored,
} from './record.js';

export interface SqliteStoreOptions {
  /** Database file; its parent directory is created if missing. */
  path: string;
  /** Keeps this store's rows apart from other namespaces in the same file. Default `credvault`. */
  namespace?: string;
  /** How long a write waits for another connection's lock before failing. Default 5000 ms. */
  busyTimeoutMs?: number;
  /** Test hook: called between the statements of a batch; a throw there aborts it. */
  faults?: StoreFaults;
}

const TABLE = 'keyv';

/** SQL that is true while the row in `column` has not expired at time `now`. */
function live(column: string, now: string): string {
  return `(json_extract(${column}, '$.expires') IS NULL OR json_extract(${column}, '$.expires') >= ${now})`;
}

// A replace of a live row keeps its createdAt and write id; an expired row counts as absent.
// RETURNING hands back the stored write id: ours means this statement inserted.
const UPSERT = `ON CONFLICT(key) DO UPDATE SET value = CASE WHEN ${live(`${TABLE}.value`, '?3')}
  THEN json_set(excluded.value,
    '$.value.c', json_extract(${TABLE}.value, '$.value.c'),
    '$.value.w', json_extract(${TABLE}.value, '$.value.w'))
  ELSE excluded.value END
  RETURNING json_extract(value, '$.value.w') AS w`;

// Overwrites only an expired row; RETURNING yields a row only when this statement wrote.
const INSERT_IF_ABSENT = `ON CONFLICT(key) DO UPDATE SET value = excluded.value WHERE NOT ${live(`${TABLE}.value`, '?3')}
  RETURNING 1 AS inserted`;

const SQL = {
  put: `INSERT INTO ${TABLE}(key, value) VALUES (?1, ?2) ${UPSERT}`,
  // The SELECT needs its WHERE clause anyway: without one SQLite misreads ON CONFLICT as a join.
  putRequires: `INSERT INTO ${TABLE}(key, value) SELECT ?1, ?2
    WHERE EXISTS (SELECT 1 FROM ${TABLE} WHERE key = ?4 AND ${live('value', '?3')}) ${UPSERT}`,
  insert: `INSERT INTO ${TABLE}(key, value) VALUES (?1, ?2) ${INSERT_IF_ABSENT}`,
  insertRequires: `INSERT INTO ${TABLE}(key, value) SELECT ?1, ?2
    WHERE EXISTS (SELECT 1 FROM ${TABLE} WHERE key = ?4 AND ${live('value', '?3')}) ${INSERT_IF_ABSENT}`,
  // Values travel as JSON text so lone surrogates survive; both sides of = are decoded alike.
  replace: `UPDATE ${TABLE} SET value = json_set(value, '$.value.v', json(?2))
    WHERE key = ?1 AND json_extract(value, '$.value.v') = json_extract(?3, '$') AND ${live('value', '?4')}
    RETURNING 1 AS replaced`,
  remove: `DELETE FROM ${TABLE} WHERE key = ?1 RETURNING ${live('value', '?2')} AS live`,
  range: `SELECT key, value FROM ${TABLE} WHERE key >= ?1 AND key < ?2 ORDER BY key`,
  removeRange: `DELETE FROM ${TABLE} WHERE key >= ?1 AND key < ?2 RETURNING ${live('value', '?3')} AS live`,
  scan: `SELECT key, value FROM ${TABLE} WHERE key >= ?1 AND key < ?2 AND key > ?3 ORDER BY key LIMIT ?4`,
  // Starts at 1 with the caller's expiry when absent or expired, else adds one and keeps it.
  increment: `INSERT INTO ${TABLE}(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = CASE
    WHEN ${live(`${TABLE}.value`, '?3')}
    THEN json_set(${TABLE}.value, '$.value.v', CAST(CAST(json_extract(${TABLE}.value, '$.value.v') AS INTEGER) + 1 AS TEXT), '$.value.u', ?3)
    ELSE excluded.value END
    RETURNING json_extract(value, '$.value.v') AS v, json_extract(value, '$.expires') AS e`,
  // Served by the partial index on expiry below, so its cost follows what it deletes.
  // (INDEXED BY: the planner would otherwise walk the namespace's key range instead.)
  purge: `DELETE FROM ${TABLE} WHERE key IN (SELECT key FROM ${TABLE} INDEXED BY ${TABLE}_expires
    WHERE json_extract(value, '$.expires') IS NOT NULL AND json_extract(value, '$.expires') < ?1
      AND key >= ?2 AND key < ?3 LIMIT ?4) RETURNING 1 AS purged`,
  expiryIndex: `CREATE INDEX IF NOT EXISTS ${TABLE}_expires ON ${TABLE}(json_extract(value, '$.expires'))
    WHERE json_extract(value, '$.expires') IS NOT NULL`,
  many: `SELECT key, value FROM ${TABLE} WHERE key IN (SELECT value FROM json_each(?1))`,
};

/**
 * A {@link VaultStore} in one SQLite file (the embedded default), over `@keyv/sqlite`.
 *
 * The database runs in WAL mode with `synchronous=FULL`, so an acknowledged write survives
 * `kill -9` and power loss. Every atomic operation is one SQL statement, so several
 * processes can share the file. Rows keep Keyv's `{"value":...,"expires":...}` format under
 * keys `<namespace>{<group>}:<member>`; a group is one contiguous key range.
 *
 * @example
 * ```ts
 * import { createSqliteStore } from 'credvault/adapters/sqlite';
 *
 * const store = createSqliteStore({ path: './data/credvault.db' });
 * await store.put('org%3Aacme', 'cred:api_key', sealed); // 'added'
 * await store.close();
 * ```
 */
export function createSqliteStore(options: SqliteStoreOptions): VaultStore {
  const { path, busyTimeoutMs = 5000 } = options;
  if (path !== ':memory:' && path !== '') mkdirSync(dirname(path), { recursive: true });

  // encodeURIComponent never emits '{', so the namespace ends at the first '{' of a key.
  const base = `${encodeURIComponent(options.namespace ?? DEFAULT_NAMESPACE)}{`;
  const sqlite = new KeyvSqlite({ uri: `sqlite://${path}`, table: TABLE, keySize: 2048, busyTimeout: busyTimeoutMs });
  const keyv = new Keyv<Row>({
    store: sqlite,
    namespace: undefined,
    useKeyPrefix: false,
    throwOnErrors: true,
    serialize: JSON.stringify,
    deserialize: JSON.parse,
  });
  // Errors reach callers through rejected promises; this keeps Keyv's emitter quiet.
  keyv.on('error', () => undefined);

  const ready = (async () => {
    // Switching a fresh file to WAL needs a lock that SQLite does not wait for (the busy
    // timeout does not apply): when another connection opens the same fresh file at that
    // instant, retry for up to the busy timeout rather than fail.
    const until = Date.now() + busyTimeoutMs;
    for (;;) {
      try {
        await sqlite.query('PRAGMA journal_mode=WAL');
        break;
      } catch (error) {
        const code = (error as { code?: unknown }).code;
        if (code !== 'SQLITE_BUSY' || Date.now() > until) throw error;
        await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 20));
      }
    }
    await sqlite.query('PRAGMA synchronous=FULL');
    await sqlite.query(SQL.expiryIndex);
  })();
  // Surfaced by the first call that awaits it; not an unhandled rejection meanwhile.
  ready.catch(() => undefined);

  let closing: Promise<void> | undefined;

  async function opened(): Promise<void> {
    if (closing !== undefined) throw new VaultError('STORE_UNAVAILABLE', 'The SQLite store is closed');
    await ready;
  }

  // One connection serves every call of this store, so a transaction must have it alone:
  // single statements share it freely, and a batch waits for them to finish and holds
  // back new ones until its COMMIT or ROLLBACK. Otherwise another caller's statement could
  // run inside the transaction and be rolled back with it after being acknowledged.
  let running = 0;
  let idle: Array<() => void> = [];
  let exclusive: Promise<void> | undefined;

  async function shared<T>(call: () => Promise<T>): Promise<T> {
    while (exclusive !== undefined) await exclusive;
    running += 1;
    try {
      return await call();
    } finally {
      running -= 1;
      if (running === 0) {
        const waiters = idle;
        idle = [];
        for (const wake of waiters) wake();
      }
    }
  }

  async function alone<T>(call: () => Promise<T>): Promise<T> {
    while (exclusive !== undefined) await exclusive;
    let release!: () => void;
    exclusive = new Promise<void>((resolve) => (release = resolve));
    try {
      while (running > 0) await new Promise<void>((resolve) => idle.push(resolve));
      return await call();
    } finally {
      exclusive = undefined;
      release();
    }
  }

  const raw = async <T>(sql: string, ...params: unknown[]): Promise<T[]> => (await sqlite.query(sql, ...params)) as T[];

  async function query<T>(sql: string, ...params: unknown[]): Promise<T[]> {
    await opened();
    return shared(() => raw<T>(sql, ...params));
  }

  const groupStart = (group: string): string => `${base}${group}}:`;
  const keyOf = (group: string, member: string): string => `${groupStart(group)}${member}`;
  const newRow = (value: string, now: number): Row => ({ v: value, c: now, u: now, w: randomBytes(12).toString('hex') });

  /** The body of a batch, inside its transaction: every check, then every write. */
  async function runBatch(group: string, writes: readonly BatchWrite[], requires: string | undefined): Promise<BatchResult> {
    const now = Date.now();
    const keys = writes.map((w) => keyOf(group, w.member));
    if (requires !== undefined) keys.push(keyOf(group, requires));
    const found = new Map<string, StoreEntry>();
    for (const row of await raw<KeyValueRow>(SQL.many, JSON.stringify(keys))) {
      const entry = toEntry(row.value, now);
      if (entry !== undefined) found.set(row.key, entry);
    }
    if (requires !== undefined && !found.has(keyOf(group, requires))) return { committed: false, failed: -1 };
    for (const [i, w] of writes.entries()) {
      const current = found.get(keys[i] as string);
      if (w.op === 'insert' && current !== undefined) return { committed: false, failed: i };
      if (w.op === 'replace' && current?.value !== w.expected) return { committed: false, failed: i };
    }
    const results: Array<'added' | 'updated' | boolean> = [];
    for (const [i, w] of writes.entries()) {
      options.faults?.beforeWrite?.(i);
      const key = keys[i] as string;
      switch (w.op) {
        case 'put': {
          const row = newRow(w.value, now);
          const [stored] = await raw<{ w: string }>(SQL.put, key, JSON.stringify({ value: row } satisfies Stored), now);
          results.push(stored?.w === row.w ? 'added' : 'updated');
          break;
        }
        case 'insert': {
          const stored: Stored = { value: newRow(w.value, now) };
          if (w.ttlMs !== undefined) stored.expires = now + Math.ceil(w.ttlMs);
          await raw(SQL.insert, key, JSON.stringify(stored), now);
          results.push(true);
          break;
        }
        case 'replace':
          await raw(SQL.replace, key, JSON.stringify(w.value), JSON.stringify(w.expected), now);
          results.push(true);
          break;
        case 'remove':
          await raw(SQL.remove, key, now);
          results.push(found.has(key));
          break;
      }
    }
    return { committed: true, results };
  }

  return {
    kind: 'sqlite',

    async get(group: string, member: string): Promise<StoreEntry | undefined> {
      assertName('group', group);
      assertName('member', member);
      await opened();
      // The adapter's own read, not Keyv.get: that one deletes expired rows after an await,
      // which could erase a row another writer has just inserted over the expired one.
      const found = await shared(() => sqlite.get<string>(keyOf(group, member)));
      return found === undefined ? undefined : toEntry(found, Date.now());
    },

    async put(group: string, member: string, value: string, putOptions?: PutOptions): Promise<PutResult> {
      assertName('group', group);
      assertName('member', member);
      const now = Date.now();
      const row = newRow(value, now);
      const stored = JSON.stringify({ value: row } satisfies Stored);
      const key = keyOf(group, member);
      const requires = putOptions?.requires;
      let rows: Array<{ w: string }>;
      if (requires === undefined) {
        rows = await query(SQL.put, key, stored, now);
      } else {
        assertName('requires', requires);
        rows = await query(SQL.putRequires, key, stored, now, keyOf(group, requires));
      }
      const [result] = rows;
      if (result === undefined) return 'missing';
      return result.w === row.w ? 'added' : 'updated';
    },

    async insert(group: string, member: string, value: string, insertOptions?: InsertOptions): Promise<boolean> {
      assertName('group', group);
      assertName('member', member);
      const ttlMs = insertOptions?.ttlMs;
      if (ttlMs !== undefined) checkTtl(ttlMs);
      const now = Date.now();
      const stored: Stored = { value: newRow(value, now) };
      if (ttlMs !== undefined) stored.expires = now + ttlMs;
      const key = keyOf(group, member);
      const requires = insertOptions?.requires;
      if (requires === undefined) return (await query(SQL.insert, key, JSON.stringify(stored), now)).length === 1;
      assertName('requires', requires);
      const rows = await query(SQL.insertRequires, key, JSON.stringify(stored), now, keyOf(group, requires));
      return rows.length === 1;
    },

    async replace(group: string, member: string, expected: string, value: string): Promise<boolean> {
      assertName('group', group);
      assertName('member', member);
      const rows = await query(
        SQL.replace,
        keyOf(group, member),
        JSON.stringify(value),
        JSON.stringify(expected),
        Date.now(),
      );
      return rows.length === 1;
    },

    async remove(group: string, member: string): Promise<boolean> {
      assertName('group', group);
      assertName('member', member);
      const rows = await query<{ live: number }>(SQL.remove, keyOf(group, member), Date.now());
      return rows[0]?.live === 1;
    },

    async list(group: string, prefix = ''): Promise<StoreListItem[]> {
      assertName('group', group);
      assertName('prefix', prefix);
      const start = groupStart(group);
      const from = start + prefix;
      const rows = await query<KeyValueRow>(SQL.range, from, upperBound(from));
      const now = Date.now();
      const items: StoreListItem[] = [];
      for (const row of rows) {
        const entry = toEntry(row.value, now);
        if (entry !== undefined) items.push({ member: row.key.slice(start.length), entry });
      }
      return items;
    },

    async removeGroup(group: string): Promise<number> {
      assertName('group', group);
      const start = groupStart(group);
      const rows = await query<{ live: number }>(SQL.removeRange, start, upperBound(start), Date.now());
      return rows.filter((row) => row.live === 1).length;
    },

    async batch(group: string, writes: readonly BatchWrite[], batchOptions?: BatchOptions): Promise<BatchResult> {
      assertName('group', group);
      checkBatch(writes, batchOptions, assertName);
      await opened();
      return alone(async () => {
        // IMMEDIATE takes the write lock now, so the checks below hold until COMMIT,
        // also against other processes on the same file.
        await raw('BEGIN IMMEDIATE');
        try {
          const result = await runBatch(group, writes, batchOptions?.requires);
          await raw(result.committed ? 'COMMIT' : 'ROLLBACK');
          return result;
        } catch (error) {
          await raw('ROLLBACK').catch(() => undefined);
          throw error;
        }
      });
    },

    async increment(group: string, member: string, ttlMs: number): Promise<CounterState> {
      assertName('group', group);
      assertName('member', member);
      checkTtl(ttlMs);
      const now = Date.now();
      const stored: Stored = { value: newRow('1', now), expires: now + Math.ceil(ttlMs) };
      const [row] = await query<{ v: string; e: number | null }>(SQL.increment, keyOf(group, member), JSON.stringify(stored), now);
      if (row === undefined) throw new Error('increment returned no row');
      return { count: Number(row.v), expiresAt: row.e ?? Number.MAX_SAFE_INTEGER };
    },

    async purgeExpired(limit: number): Promise<number> {
      if (!Number.isInteger(limit) || limit < 1) throw new RangeError('limit must be a positive integer');
      return (await query(SQL.purge, Date.now(), base, upperBound(base), limit)).length;
    },

    async scan(cursor: string | undefined, batchSize: number): Promise<ScanPage> {
      if (!Number.isInteger(batchSize) || batchSize < 1) {
        throw new RangeError('batchSize must be a positive integer');
      }
      // The cursor is the last storage key a page read, so it starts with this namespace.
      if (cursor !== undefined && !cursor.startsWith(base)) throw new RangeError('invalid scan cursor');
      const rows = await query<KeyValueRow>(SQL.scan, base, upperBound(base), cursor ?? '', batchSize);
      return scanPage(rows, base, batchSize, Date.now());
    },

    async close(): Promise<void> {
      closing ??= keyv.disconnect().catch(async (error: unknown) => {
        // A store whose connection never opened has nothing to release.
        if (await ready.then(() => false, () => true)) return;
        throw error;
      });
      return closing;
    },
  };
}

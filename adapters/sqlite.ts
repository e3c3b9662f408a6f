import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import KeyvSqlite from '@keyv/sqlite';
import Keyv from 'keyv';
import { VaultError } from '../src/core/errors.js';
import type {
  InsertOptions,
  PutOptions,
  PutResult,
  ScanPage,
  StoreEntry,
  StoreListItem,
  VaultStore,
} from '../src/core/store.js';
import { assertName, DEFAULT_NAMESPACE, parseEntry as toEntry, scanPage, upperBound, type KeyValueRow, type Row, type Stored } from './record.js';

export interface SqliteStoreOptions {
  /** Database file; its parent directory is created if missing. */
  path: string;
  /** Keeps this store's rows apart from other namespaces in the same file. Default `credvault`. */
  namespace?: string;
  /** How long a write waits for another connection's lock before failing. Default 5000 ms. */
  busyTimeoutMs?: number;
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
    await sqlite.query('PRAGMA journal_mode=WAL');
    await sqlite.query('PRAGMA synchronous=FULL');
  })();
  // Surfaced by the first call that awaits it; not an unhandled rejection meanwhile.
  ready.catch(() => undefined);

  let closing: Promise<void> | undefined;

  async function opened(): Promise<void> {
    if (closing !== undefined) throw new VaultError('STORE_UNAVAILABLE', 'The SQLite store is closed');
    await ready;
  }

  async function query<T>(sql: string, ...params: unknown[]): Promise<T[]> {
    await opened();
    return (await sqlite.query(sql, ...params)) as T[];
  }

  const groupStart = (group: string): string => `${base}${group}}:`;
  const keyOf = (group: string, member: string): string => `${groupStart(group)}${member}`;
  const newRow = (value: string, now: number): Row => ({ v: value, c: now, u: now, w: randomBytes(12).toString('hex') });

  return {
    kind: 'sqlite',

    async get(group: string, member: string): Promise<StoreEntry | undefined> {
      assertName('group', group);
      assertName('member', member);
      await opened();
      // The adapter's own read, not Keyv.get: that one deletes expired rows after an await,
      // which could erase a row another writer has just inserted over the expired one.
      const raw = await sqlite.get<string>(keyOf(group, member));
      return raw === undefined ? undefined : toEntry(raw, Date.now());
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
      if (ttlMs !== undefined && !(Number.isFinite(ttlMs) && ttlMs > 0)) {
        throw new RangeError('ttlMs must be a positive number of milliseconds');
      }
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

    async scan(cursor: string | undefined, batchSize: number): Promise<ScanPage> {
      if (!Number.isInteger(batchSize) || batchSize < 1) {
        throw new RangeError('batchSize must be a positive integer');
      }
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

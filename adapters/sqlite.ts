/**
 * The SQLite adapter, the embedded default: the shared SQL store (`sql.ts`) over one SQLite
 * file opened by `@keyv/sqlite`, whose Keyv reads records and whose database handle runs
 * every other statement. It relies on WAL with `synchronous=FULL` (an acknowledged write
 * survives `kill -9` and power loss), on each statement being atomic, on `BEGIN IMMEDIATE`
 * for batches (also against other processes on the file), and on a gate that gives a
 * transaction the one connection to itself.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import KeyvSqlite from '@keyv/sqlite';
import type { VaultStore } from '../src/core/store.js';
import { createKeyv, DEFAULT_NAMESPACE, type StoreFaults } from './kernel.js';
import { createSqlStore, type Run, type SqlDialect, type SqlStatements, type Statement } from './sql.js';

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

// The SELECT needs its WHERE clause anyway: without one SQLite misreads ON CONFLICT as a join.
const IF_REQUIRED = `SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM ${TABLE} WHERE key = ?4 AND ${live('value', '?3')})`;

const SQL: SqlStatements & { expiryIndex: string } = {
  put: `INSERT INTO ${TABLE}(key, value) VALUES (?1, ?2) ${UPSERT}`,
  putRequires: `INSERT INTO ${TABLE}(key, value) ${IF_REQUIRED} ${UPSERT}`,
  insert: `INSERT INTO ${TABLE}(key, value) VALUES (?1, ?2) ${INSERT_IF_ABSENT}`,
  insertRequires: `INSERT INTO ${TABLE}(key, value) ${IF_REQUIRED} ${INSERT_IF_ABSENT}`,
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
    RETURNING value`,
  // Served by the partial index on expiry below, so its cost follows what it deletes.
  // (INDEXED BY: the planner would otherwise walk the namespace's key range instead.)
  // Inside one statement nothing can make a selected row live again before it is deleted.
  purge: `DELETE FROM ${TABLE} WHERE key IN (SELECT key FROM ${TABLE} INDEXED BY ${TABLE}_expires
    WHERE json_extract(value, '$.expires') IS NOT NULL AND json_extract(value, '$.expires') < ?1
      AND key >= ?2 AND key < ?3 LIMIT ?4) RETURNING 1 AS purged`,
  expiryIndex: `CREATE INDEX IF NOT EXISTS ${TABLE}_expires ON ${TABLE}(json_extract(value, '$.expires'))
    WHERE json_extract(value, '$.expires') IS NOT NULL`,
  requireLive: `SELECT 1 AS live FROM ${TABLE} WHERE key = ?1 AND ${live('value', '?2')}`,
  // BEGIN IMMEDIATE already holds the write lock, so a plain read is a locked read.
  lockMany: `SELECT key, value FROM ${TABLE} WHERE key IN (SELECT value FROM json_each(?1))`,
  // Index rows (rule 10). A batch holds the write lock (BEGIN IMMEDIATE), so nothing runs
  // between the two statements: the count moves only when the entry row really comes or goes.
  addEntry: [
    {
      text: `INSERT INTO ${TABLE}(key, value) SELECT ?2, '1' WHERE NOT EXISTS (SELECT 1 FROM ${TABLE} WHERE key = ?1)
        ON CONFLICT(key) DO UPDATE SET value = CAST(${TABLE}.value AS INTEGER) + 1`,
      keys: ['entry', 'count'],
    },
    { text: `INSERT INTO ${TABLE}(key, value) VALUES (?1, '1') ON CONFLICT(key) DO NOTHING`, keys: ['entry'] },
  ],
  dropEntry: [
    {
      text: `UPDATE ${TABLE} SET value = CAST(value AS INTEGER) - 1 WHERE key = ?2 AND EXISTS (SELECT 1 FROM ${TABLE} WHERE key = ?1)`,
      keys: ['entry', 'count'],
    },
    { text: `DELETE FROM ${TABLE} WHERE key = ?1`, keys: ['entry'] },
  ],
  // One statement is one read transaction: the count and the page come from one snapshot.
  // The key is BINARY-collated, which for these ASCII names is UTF-16 code-unit order.
  readIndex: `SELECT NULL AS entry, (SELECT value FROM ${TABLE} WHERE key = ?1) AS total
    UNION ALL SELECT entry, NULL FROM (SELECT key AS entry FROM ${TABLE} WHERE key >= ?2 AND key < ?3 ORDER BY key LIMIT ?5 OFFSET ?4)`,
};

/**
 * A {@link VaultStore} in one SQLite file (the embedded default), over `@keyv/sqlite`.
 *
 * Rows keep Keyv's `{"value":...,"expires":...}` format under keys
 * `<namespace>{<group>}:<member>`; a group is one contiguous key range. An index (rule 10)
 * is a count row `<namespace>#ix{<index>}` and one row per entry under
 * `<namespace>#ix{<index>}:`, in the same table and written in the same transaction as the
 * batch or removal that changes it; files made before indexes existed open unchanged.
 * Several processes may share the file.
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

  const sqlite = new KeyvSqlite({ uri: `sqlite://${path}`, table: TABLE, keySize: 2048, busyTimeout: busyTimeoutMs });
  const keyv = createKeyv(sqlite);

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

  // One connection serves every call of this store, so a transaction must have it alone:
  // single statements share it freely, and a batch waits for them to finish and holds
  // back new ones until its COMMIT or ROLLBACK. Otherwise another caller's statement could
  // run inside the transaction and be rolled back with it after being acknowledged.
  let running = 0;
  let idle: Array<() => void> = [];
  let exclusive: Promise<void> | undefined;

  async function shared<T>(call: () => Promise<T>): Promise<T> {
    await ready;
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
    await ready;
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

  const run: Run = async <T>(s: Statement) => (await sqlite.query(s.text, ...s.params)) as T[];

  const dialect: SqlDialect = {
    kind: 'sqlite',
    sql: SQL,
    putTakesValue: false,
    // One writer at a time (BEGIN IMMEDIATE), reading what it wrote: no snapshot per statement.
    snapshotPerStatement: false,
    keyList: (keys) => JSON.stringify(keys),
    query: (s) => shared(() => run(s)),
    // Keyv's own read (a plain SELECT by key), through the gate like every other statement.
    read: (key) => shared(() => keyv.get(key)),
    transaction: (body) =>
      alone(async () => {
        // IMMEDIATE takes the write lock now, so the checks of the body hold until COMMIT,
        // also against other processes on the same file.
        await sqlite.query('BEGIN IMMEDIATE');
        try {
          const { commit, result } = await body(run);
          await sqlite.query(commit ? 'COMMIT' : 'ROLLBACK');
          return result;
        } catch (error) {
          await sqlite.query('ROLLBACK').catch(() => undefined);
          throw error;
        }
      }),
    async close() {
      await keyv.disconnect().catch(async (error: unknown) => {
        // A store whose connection never opened has nothing to release.
        if (await ready.then(() => false, () => true)) return;
        throw error;
      });
    },
  };
  return createSqlStore(dialect, { namespace: options.namespace ?? DEFAULT_NAMESPACE, faults: options.faults });
}

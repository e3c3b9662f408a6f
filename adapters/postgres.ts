/**
 * The PostgreSQL adapter, for several server processes or machines sharing one vault: the
 * shared SQL store (`sql.ts`) over one table in Keyv's `(key, value)` layout, opened by
 * `@keyv/postgres` on a pool of this store's own, whose Keyv reads records and whose pool
 * runs every other statement. It relies on each statement being atomic, on row locks
 * (`FOR UPDATE` in key order) inside a batch's transaction, on transaction-scoped advisory
 * locks (one per group: shared for a write that requires a member, exclusive for removeGroup;
 * one per index entry for indexed batches and removals) taken inside four PL/pgSQL functions
 * made with the table (their search_path pinned, their definitions checked at start), on a generated `expires_at` column with a partial index for purging,
 * and on an index on `key COLLATE "C"` so that a group is one index range.
 */
import KeyvPostgres from '@keyv/postgres';
import pg from 'pg';
import { VaultError } from '../src/errors.js';
import type { VaultStore } from '../src/core/store.js';
import { createKeyv, DEFAULT_NAMESPACE, type StoreFaults } from './kernel.js';
import { createSqlStore, type Run, type SqlDialect, type SqlStatements, type Statement } from './sql.js';

export interface PostgresStoreOptions {
  /** `postgres://user:password@host:port/database` (`postgresql://` too). */
  url: string;
  /** Keeps this store's rows apart from other namespaces in the same table. Default `credvault`. */
  namespace?: string;
  /** Schema of the table, created if missing. Default `public`. */
  schema?: string;
  /** Table in Keyv's `(key, value)` layout, created if missing. Default `keyv`. */
  table?: string;
  /** Most connections this store opens at once. Default 10. */
  poolSize?: number;
  /** How long opening a connection may take before the call rejects. Default 2000 ms. */
  connectTimeoutMs?: number;
  /** Upper bound on one query once connected. Default 5000 ms. */
  queryTimeoutMs?: number;
  /** Test hook: called between the statements of a batch; a throw there aborts it. */
  faults?: StoreFaults;
}

// Lower-case only: @keyv/postgres writes these names into its DDL unquoted.
const IDENTIFIER = /^[a-z_][a-z0-9_]{0,47}$/;
/** Long enough for any escaped (org, environment, account, key) tuple. */
const KEY_SIZE = 2048;
/** Deadlock and serialization failures: the statement rolled back, so running it again is safe. */
const RETRYABLE = new Set(['40P01', '40001']);
/** The first key of credvault's advisory locks (two-key form), so they keep apart from other users'. */
const ENTRY_LOCK_CLASS = 0x63766978; // 'cvix'
/**
 * The first key of the per-group advisory locks, a class apart from the entry locks. Every
 * transaction takes at most one entry lock, then at most one group lock, then rows (index rows
 * last), never the other way round, so these locks add no deadlock; a hash collision between
 * two groups only makes them wait for each other.
 */
const GROUP_LOCK_CLASS = 0x63766772; // 'cvgr'
/**
 * The search_path every store function runs with, whatever the caller's: the catalog first,
 * the session's temporary schema last (so no temporary object shadows anything); the table
 * is named with its schema.
 */
const PINNED_SEARCH_PATH = 'pg_catalog, pg_temp';
/** Concurrent `CREATE ... IF NOT EXISTS` (or `ADD COLUMN`) can still collide in the catalogs. */
const DDL_RACE = new Set(['23505', '42P07', '42P06', '42710', '42701', '42723']);

function assertIdentifier(what: string, name: string): void {
  if (!IDENTIFIER.test(name)) {
    throw new VaultError('INVALID_CONFIGURATION', `PostgreSQL ${what} must match ${IDENTIFIER.source}`);
  }
}

function sqlState(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string'
    ? error.code
    : undefined;
}

const retryable = (error: unknown): boolean => RETRYABLE.has(sqlState(error) ?? '');

/** Runs `step` again (up to `times` in all) while it fails with an error `again` accepts. */
async function retried<T>(times: number, again: (error: unknown) => boolean, step: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await step();
    } catch (error) {
      if (attempt >= times || !again(error)) throw error;
    }
  }
}

/** One PL/pgSQL function the store makes beside its table, and what it must look like in the catalog. */
interface StoreFunction {
  /** `"schema"."name"(types)`, with every type schema-qualified: what `to_regprocedure` finds it by. */
  signature: string;
  /** The exact text between the `$body$` quotes, as `pg_proc.prosrc` keeps it. */
  body: string;
  /** The element type of its `SETOF` result, schema-qualified. */
  returns: string;
  create: string;
}

/**
 * The SQL, for a table. Records are JSON.stringify output with a fixed key order, handled
 * as text: PostgreSQL's JSON types reject `\u0000` and lone surrogates, which values may hold.
 * Inside the JSON string "v" every quote is escaped, so `,"c":` first occurs right after v.
 */
function statements(schema: string, name: string): SqlStatements & { expiresColumn: string; functions: StoreFunction[] } {
  const table = `"${schema}"."${name}"`;
  // Named after the table (at most 48 + 7 characters, under PostgreSQL's 63), versioned:
  // a release that changes a definition gives it a new name, so old and new processes
  // coexist (version 2 pins its search_path; version 1, unpinned, is left to old processes).
  const fn = (suffix: string): string => `"${schema}"."${name}_${suffix}"`;
  const expires = (column: string): string => `substring(${column} from ',"expires":([0-9]+)}$')`;
  const live = (column: string, now: string): string =>
    `(${expires(column)} IS NULL OR ${expires(column)}::bigint >= ${now}::bigint)`;
  const writeId = (column: string): string => `substring(${column} from ',"w":"([^"]*)"}')`;
  // A replace of a live row keeps its createdAt and write id; an expired row counts as absent.
  // RETURNING hands back the stored write id: ours means this statement inserted.
  const upsert = `ON CONFLICT (key) DO UPDATE SET value = CASE WHEN ${live('t.value', '$3')}
    THEN '{"value":{"v":' || $4::text || ',"c":' || substring(t.value from ',"c":([0-9]+),"u":')
      || ',"u":' || $3::bigint::text || ',"w":"' || ${writeId('t.value')} || '"}}'
    ELSE excluded.value END
    RETURNING ${writeId('t.value')} AS w`;
  // Overwrites only an expired row; RETURNING yields a row only when this statement wrote.
  const insertIfAbsent = `ON CONFLICT (key) DO UPDATE SET value = excluded.value WHERE NOT ${live('t.value', '$3')}
    RETURNING 1 AS inserted`;
  // The start of a key's group, `<namespace>{<group>}:`: neither part ever holds `}`.
  const groupOf = (key: string): string => `left(${key}, strpos(${key}, '}') + 1)`;
  const groupLock = (mode: 'shared' | 'exclusive', key: string): string =>
    `PERFORM pg_advisory_xact_lock${mode === 'shared' ? '_shared' : ''}(${GROUP_LOCK_CLASS}, hashtext(${key}));`;
  // A write that requires a member holds its group's lock shared until it commits, and reads
  // the required row only once the lock is granted. A VOLATILE function's every statement
  // reads from a fresh snapshot at READ COMMITTED, so that read sees a removeGroup that
  // committed while this writer waited; a lock taken inside one plain statement would not
  // (its snapshot dates from before the wait). The lock lives in memory: unlike FOR SHARE on
  // the required row, many writers per group create no MultiXact on disk.
  const requiring = (requiredKey: string, now: string, write: string): string => `
    BEGIN
      ${groupLock('shared', groupOf(requiredKey))}
      PERFORM 1 FROM ${table} r WHERE r.key = ${requiredKey} AND ${live('r.value', now)};
      IF FOUND THEN
        RETURN QUERY ${write};
      END IF;
    END`;
  // Byte order (COLLATE "C") matches the index below, so group ranges are index range scans.
  const range = (from: string, to: string): string => `key COLLATE "C" >= ${from} AND key COLLATE "C" < ${to}`;
  const vStart = '{"value":{"v":'.length + 1;
  const deleteRange = `DELETE FROM ${table} WHERE ${range('$1', '$2')} RETURNING ${live('value', '$3')}`;
  // Made in setup when missing. Parameters are positional, so no name can shadow a column;
  // types are schema-qualified and the search_path pinned, so no object of another schema
  // (one listed first in the caller's search_path, a temporary one) stands in for the catalog's.
  const define = (suffix: string, args: readonly string[], returns: string, body: string): StoreFunction => {
    const signature = `${fn(suffix)}(${args.join(', ')})`;
    return {
      signature,
      body,
      returns,
      create: `CREATE FUNCTION ${signature} RETURNS SETOF ${returns}
      LANGUAGE plpgsql VOLATILE SET search_path = ${PINNED_SEARCH_PATH} AS $body$${body}$body$`,
    };
  };
  const [VARCHAR, TEXT, BIGINT] = ['pg_catalog.varchar', 'pg_catalog.text', 'pg_catalog.int8'];
  const functions: StoreFunction[] = [
    define('cvput2', [VARCHAR, TEXT, BIGINT, TEXT, VARCHAR], TEXT, requiring('$5', '$3', `INSERT INTO ${table} AS t (key, value) VALUES ($1, $2) ${upsert}`)),
    define('cvins2', [VARCHAR, TEXT, BIGINT, VARCHAR], 'pg_catalog.int4', requiring('$4', '$3', `INSERT INTO ${table} AS t (key, value) VALUES ($1, $2) ${insertIfAbsent}`)),
    define('cvreq2', [VARCHAR, BIGINT], 'pg_catalog.int4', requiring('$1', '$2', 'SELECT 1')),
    // The group's lock exclusive: it waits for every writer holding the group to commit, and
    // the DELETE after it (a fresh snapshot) sees what they wrote; writers that come later wait
    // for this transaction and then find the required member gone.
    define('cvdel2', [VARCHAR, VARCHAR, BIGINT], 'pg_catalog.bool', `
      BEGIN
        ${groupLock('exclusive', '$1')}
        RETURN QUERY ${deleteRange};
      END`),
  ];
  return {
    functions,
    put: `INSERT INTO ${table} AS t (key, value) VALUES ($1, $2) ${upsert}`,
    putRequires: `SELECT w FROM ${fn('cvput2')}($1::varchar, $2::text, $3::bigint, $4::text, $5::varchar) AS w`,
    insert: `INSERT INTO ${table} AS t (key, value) VALUES ($1, $2) ${insertIfAbsent}`,
    insertRequires: `SELECT inserted FROM ${fn('cvins2')}($1::varchar, $2::text, $3::bigint, $4::varchar) AS inserted`,
    replace: `UPDATE ${table} SET value = '{"value":{"v":' || $2::text || substring(value from position(',"c":' in value))
      WHERE key = $1 AND substring(value from ${vStart} for position(',"c":' in value) - ${vStart}) = $3::text
        AND ${live('value', '$4')}
      RETURNING 1 AS replaced`,
    remove: `DELETE FROM ${table} WHERE key = $1 RETURNING ${live('value', '$2')} AS live`,
    range: `SELECT key, value FROM ${table} WHERE ${range('$1', '$2')} ORDER BY key COLLATE "C"`,
    // (from, to, now) where from is a group's start: every removeRange is a removeGroup.
    removeRange: `SELECT live FROM ${fn('cvdel2')}($1::varchar, $2::varchar, $3::bigint) AS live`,
    scan: `SELECT key, value FROM ${table} WHERE ${range('$1', '$2')} AND key COLLATE "C" > $3
      ORDER BY key COLLATE "C" LIMIT $4`,
    // Holds the group's lock shared until the batch's transaction ends.
    requireLive: `SELECT live FROM ${fn('cvreq2')}($1::varchar, $2::bigint) AS live`,
    // Starts at 1 with the caller's expiry when absent or expired, else adds one and keeps it.
    increment: `INSERT INTO ${table} AS t (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = CASE
      WHEN ${live('t.value', '$3')}
      THEN '{"value":{"v":"' || (COALESCE(substring(t.value from '^\\{"value":\\{"v":"([0-9]+)",')::bigint, 0) + 1)::text
        || '","c":' || substring(t.value from ',"c":([0-9]+),"u":') || ',"u":' || $3::bigint::text
        || ',"w":"' || COALESCE(${writeId('t.value')}, '') || '"}' || COALESCE(',"expires":' || ${expires('t.value')}, '') || '}'
      ELSE excluded.value END
      RETURNING value`,
    // Served by the partial index on expires_at made in setup, so its cost follows what it deletes.
    // The outer condition is checked again on the locked row: a row made live again by a
    // concurrent writer after the subquery read it is left alone.
    purge: `DELETE FROM ${table} WHERE key IN (SELECT key FROM ${table}
      WHERE expires_at < $1::bigint AND ${range('$2', '$3')} LIMIT $4) AND expires_at < $1::bigint
      RETURNING 1 AS purged`,
    lockMany: `SELECT key, value FROM ${table} WHERE key = ANY($1::varchar[]) ORDER BY key COLLATE "C" FOR UPDATE`,
    // Index rows (rule 10), one statement each way. ON CONFLICT DO NOTHING waits for a racing
    // transaction's uncommitted entry and then skips it, and a DELETE of a row another
    // transaction deleted first returns nothing: so the count moves only by the entry rows this
    // statement really inserted or deleted, and the upsert of the count row locks it till commit.
    addEntry: [
      {
        text: `WITH added AS (INSERT INTO ${table} (key, value) VALUES ($1, '1') ON CONFLICT (key) DO NOTHING RETURNING 1)
          INSERT INTO ${table} AS n (key, value) SELECT $2, '1' FROM added
          ON CONFLICT (key) DO UPDATE SET value = (n.value::bigint + 1)::text`,
        keys: ['entry', 'count'],
      },
    ],
    dropEntry: [
      {
        text: `WITH gone AS (DELETE FROM ${table} WHERE key = $1 RETURNING 1)
          UPDATE ${table} SET value = (value::bigint - 1)::text WHERE key = $2 AND EXISTS (SELECT 1 FROM gone)`,
        keys: ['entry', 'count'],
      },
    ],
    // A transaction-scoped advisory lock per entry key (in a class of credvault's own): an
    // indexed batch and an indexed removeGroup of one entry never interleave, so a removal
    // cannot miss a group whose entry it then deletes, nor the reverse. Unindexed calls skip it.
    lockEntry: { text: `SELECT pg_catalog.pg_advisory_xact_lock(${ENTRY_LOCK_CLASS}, pg_catalog.hashtext($1))`, keys: ['entry'] },
    // One statement, so one snapshot for the count and the page, even at READ COMMITTED.
    readIndex: `SELECT NULL::text AS entry, (SELECT value FROM ${table} WHERE key = $1) AS total
      UNION ALL (SELECT key, NULL FROM ${table} WHERE ${range('$2', '$3')} ORDER BY key COLLATE "C" OFFSET $4 LIMIT $5)`,
    /** The record's expiry as a column PostgreSQL keeps itself, so no statement writes it. */
    expiresColumn: `expires_at bigint GENERATED ALWAYS AS ((${expires('value')})::bigint) STORED`,
  };
}

/** What the catalog says of one store function, for {@link changesOf}. */
interface FunctionRow {
  /** Its position in the list asked about, from 1. */
  i: number;
  prosrc: string;
  proconfig: string[] | null;
  returns: boolean;
  lanname: string;
  prokind: string;
  provolatile: string;
  prosecdef: boolean;
  proisstrict: boolean;
}

/** One row per store function present, found by its exact signature; every name qualified, so no schema on the caller's search_path takes part. */
const INSPECT_FUNCTIONS = `SELECT s.i::pg_catalog.int4 AS i, p.prosrc, p.proconfig, p.proretset AND p.prorettype = pg_catalog.to_regtype(s.returns) AS returns,
    l.lanname, p.prokind, p.provolatile, p.prosecdef, p.proisstrict
  FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.text[])) WITH ORDINALITY AS s(signature, returns, i)
  JOIN pg_catalog.pg_proc p ON p.oid = pg_catalog.to_regprocedure(s.signature)
  JOIN pg_catalog.pg_language l ON l.oid = p.prolang`;

/** What differs between a function in the catalog and the one this version creates; empty when they are the same. */
function changesOf(row: FunctionRow, made: StoreFunction): string[] {
  const changed: string[] = [];
  // Compared here, not in SQL: text equality in JavaScript involves no operator or collation of the server's.
  if (row.prosrc !== made.body) changed.push('body');
  if (row.proconfig?.length !== 1 || row.proconfig[0] !== `search_path=${PINNED_SEARCH_PATH}`) changed.push('settings');
  if (row.returns !== true) changed.push('return type');
  if (row.lanname !== 'plpgsql' || row.prokind !== 'f' || row.provolatile !== 'v' || row.prosecdef || row.proisstrict) {
    changed.push('attributes');
  }
  return changed;
}

/**
 * A {@link VaultStore} in one PostgreSQL table, over `@keyv/postgres`.
 *
 * Rows keep Keyv's `(key, value)` layout and `{"value":...,"expires":...}` format under keys
 * `<namespace>{<group>}:<member>`. An index (rule 10) is a count row `<namespace>#ix{<index>}`
 * and one row per entry under `<namespace>#ix{<index>}:`, in the same table and written in
 * the same transaction as the batch or removal that changes it, so the count stays exact with
 * many processes sharing the table; tables made before indexes existed open unchanged. A server that is down or unreachable rejects each call
 * within `connectTimeoutMs`; the pool reconnects by itself.
 *
 * Beside the table the store makes four PL/pgSQL functions (`<table>_cvput2`, `_cvins2`,
 * `_cvreq2`, `_cvdel2`) that run with `search_path` pinned to `pg_catalog, pg_temp` and name
 * the table with its schema, so a role's search_path cannot redirect them. When it opens,
 * it checks that those already there are exactly what it would create (body, settings,
 * return type, attributes) and refuses one that is not: every call then fails (the vault
 * answers STORE_UNAVAILABLE; the cause names the function) until it is dropped, when the
 * store makes it afresh. The `_cv*1` functions of earlier releases are left to their processes.
 *
 * @example
 * ```ts
 * import { createPostgresStore } from 'credvault/adapters/postgres';
 *
 * const store = createPostgresStore({ url: 'postgres://vault@db.internal/vault' });
 * await store.put('org%3Aacme', 'cred:api_key', sealed); // 'added'
 * await store.close();
 * ```
 */
export function createPostgresStore(options: PostgresStoreOptions): VaultStore {
  const { url, schema = 'public', table = 'keyv', poolSize = 10 } = options;
  const { connectTimeoutMs = 2000, queryTimeoutMs = 5000 } = options;
  assertIdentifier('schema', schema);
  assertIdentifier('table', table);

  // One pool per store: @keyv/postgres shares one module-wide pool between all its
  // instances, so closing one store would end every other store's connections.
  const pool = new pg.Pool({
    connectionString: url,
    max: poolSize,
    connectionTimeoutMillis: connectTimeoutMs,
    query_timeout: queryTimeoutMs,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
    // The advisory-lock checks rely on each statement of their functions taking a fresh
    // snapshot after the lock is granted: READ COMMITTED, whatever the server's default.
    options: '-c default_transaction_isolation=read\\ committed',
  });
  // An idle connection that dies emits 'error' on the pool; unheard, it would crash the
  // process. The pool drops that connection and opens a fresh one when next needed.
  pool.on('error', () => undefined);

  class PooledPostgres extends KeyvPostgres {
    override async connect(): Promise<(sql: string, values?: unknown[]) => Promise<never[]>> {
      return async (sql, values) => (await pool.query(sql, values)).rows as never[];
    }

    override async disconnect(): Promise<void> {
      await pool.end();
    }
  }

  // Its Keyv (errors heard there) reads records; @keyv/postgres also runs its own CREATE TABLE.
  const keyv = createKeyv(new PooledPostgres({ uri: url, schema, table, keySize: KEY_SIZE }));

  const qualified = `"${schema}"."${table}"`;
  const SQL = statements(schema, table);

  async function setup(): Promise<void> {
    const ddl = [
      ...(schema === 'public' ? [] : [`CREATE SCHEMA IF NOT EXISTS "${schema}"`]),
      `CREATE TABLE IF NOT EXISTS ${qualified}(key VARCHAR(${KEY_SIZE}) PRIMARY KEY, value TEXT)`,
      `CREATE INDEX IF NOT EXISTS "${table}_key_c" ON ${qualified} (key COLLATE "C")`,
    ];
    // The expiry column and its index, for purgeExpired. A generated column: Keyv's own writes
    // fill it too, and an index on it (unlike one on an expression of value) leaves updates
    // of value eligible for HOT. Added only when missing: ALTER TABLE locks the whole table.
    const hasColumn = async () =>
      (
        await pool.query(
          'SELECT 1 FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 AND column_name = $3',
          [schema, table, 'expires_at'],
        )
      ).rowCount === 1;
    const expiry = [
      async () => (await hasColumn() ? undefined : pool.query(`ALTER TABLE ${qualified} ADD COLUMN IF NOT EXISTS ${SQL.expiresColumn}`)),
      () => pool.query(`CREATE INDEX IF NOT EXISTS "${table}_expires_at" ON ${qualified} (expires_at) WHERE expires_at IS NOT NULL`),
    ];
    // The functions the conditional writes and removeGroup call, made only when missing
    // (CREATE OR REPLACE would race other processes opening the same table), and used only
    // when the catalog holds exactly what this version makes: one changed by anyone else
    // (another body, search_path or return type, SECURITY DEFINER, STRICT) is refused.
    const functions = async (): Promise<unknown> => {
      let missing = await missingFunctions();
      if (missing.length > 0) {
        for (const made of missing) await pool.query(made.create);
        missing = await missingFunctions();
        if (missing.length > 0) throw new Error(`PostgreSQL: function ${missing[0]?.signature} could not be created`);
      }
      return undefined;
    };
    /** The functions not in the catalog; throws if one is there but is not what this version creates. */
    const missingFunctions = async (): Promise<StoreFunction[]> => {
      const { rows } = await pool.query<FunctionRow>(INSPECT_FUNCTIONS, [
        SQL.functions.map((made) => made.signature),
        SQL.functions.map((made) => made.returns),
      ]);
      const missing: StoreFunction[] = [];
      for (const [i, made] of SQL.functions.entries()) {
        const row = rows.find((candidate) => candidate.i === i + 1);
        if (row === undefined) missing.push(made);
        else {
          const changed = changesOf(row, made);
          if (changed.length > 0) {
            throw new Error(
              `PostgreSQL: function ${made.signature} is not the one this version of credvault creates (${changed.join(', ')} differ); ` +
                'the store will not call it. Drop it, and the store creates it again.',
            );
          }
        }
      }
      return missing;
    };
    for (const step of [...ddl.map((text) => () => pool.query(text)), ...expiry, functions]) {
      await retried(5, (error) => DDL_RACE.has(sqlState(error) ?? ''), step);
    }
  }

  // Retried by the next call when it fails, so a store opened during an outage recovers.
  let ready: Promise<void> | undefined;
  function opened(): Promise<void> {
    ready ??= setup().catch((error: unknown) => {
      ready = undefined;
      throw error;
    });
    return ready;
  }

  const dialect: SqlDialect = {
    kind: 'postgres',
    sql: SQL,
    putTakesValue: true,
    // Transactions run at READ COMMITTED. An indexed removeGroup's second pass is kept for
    // writers of an earlier release, which hold the required row FOR SHARE instead of the
    // lock. (The reverse does not hold: an earlier release's removeGroup takes no group lock,
    // so it can miss a member this release's writer adds. Upgrade every process together.)
    snapshotPerStatement: true,
    keyList: (keys) => keys,
    async query<T>(s: Statement): Promise<T[]> {
      await opened();
      return retried(3, retryable, async () => (await pool.query(s.text, s.params)).rows as T[]);
    },
    async read(key) {
      await opened();
      return keyv.get(key);
    },
    /** One transaction on one pooled connection, run again whole after a deadlock or serialization failure. */
    async transaction(body) {
      await opened();
      return retried(3, retryable, async () => {
        const client = await pool.connect();
        let broken: unknown;
        try {
          await client.query('BEGIN');
          const run: Run = async <T>(s: Statement) => (await client.query(s.text, s.params)).rows as T[];
          const { commit, result } = await body(run);
          await client.query(commit ? 'COMMIT' : 'ROLLBACK');
          return result;
        } catch (error) {
          broken = error;
          await client.query('ROLLBACK').catch(() => undefined);
          throw error;
        } finally {
          // A connection that failed mid-transaction is not handed out again.
          client.release(broken !== undefined && !retryable(broken) ? (broken as Error) : undefined);
        }
      });
    },
    close: () => keyv.disconnect(),
  };
  return createSqlStore(dialect, { namespace: options.namespace ?? DEFAULT_NAMESPACE, faults: options.faults });
}

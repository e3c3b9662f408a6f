import { randomBytes } from 'node:crypto';
import KeyvPostgres from '@keyv/postgres';
import Keyv from 'keyv';
import pg from 'pg';
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
/** Concurrent `CREATE ... IF NOT EXISTS` (or `ADD COLUMN`) can still collide in the catalogs. */
const DDL_RACE = new Set(['23505', '42P07', '42P06', '42710', '42701']);

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

/**
 * The SQL, for a table. Records are JSON.stringify output with a fixed key order, handled
 * as text: PostgreSQL's JSON types reject `\u0000` and lone surrogates, which values may hold.
 * Inside the JSON string "v" every quote is escaped, so `,"c":` first occurs right after v.
 */
function statements(table: string) {
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
  // FOR SHARE holds the required row until commit, so a concurrent delete cannot slip between.
  const requires = `SELECT $1::varchar, $2::text WHERE EXISTS (
    SELECT 1 FROM ${table} r WHERE r.key = $4 AND ${live('r.value', '$3')} FOR SHARE)`;
  // Byte order (COLLATE "C") matches the index below, so group ranges are index range scans.
  const range = (from: string, to: string): string => `key COLLATE "C" >= ${from} AND key COLLATE "C" < ${to}`;
  const vStart = '{"value":{"v":'.length + 1;
  return {
    put: `INSERT INTO ${table} AS t (key, value) VALUES ($1, $2) ${upsert}`,
    putRequires: `INSERT INTO ${table} AS t (key, value) ${requires.replace('$4', '$5')} ${upsert}`,
    insert: `INSERT INTO ${table} AS t (key, value) VALUES ($1, $2) ${insertIfAbsent}`,
    insertRequires: `INSERT INTO ${table} AS t (key, value) ${requires} ${insertIfAbsent}`,
    replace: `UPDATE ${table} SET value = '{"value":{"v":' || $2::text || substring(value from position(',"c":' in value))
      WHERE key = $1 AND substring(value from ${vStart} for position(',"c":' in value) - ${vStart}) = $3::text
        AND ${live('value', '$4')}
      RETURNING 1 AS replaced`,
    remove: `DELETE FROM ${table} WHERE key = $1 RETURNING ${live('value', '$2')} AS live`,
    range: `SELECT key, value FROM ${table} WHERE ${range('$1', '$2')} ORDER BY key COLLATE "C"`,
    removeRange: `DELETE FROM ${table} WHERE ${range('$1', '$2')} RETURNING ${live('value', '$3')} AS live`,
    scan: `SELECT key, value FROM ${table} WHERE ${range('$1', '$2')} AND key COLLATE "C" > $3
      ORDER BY key COLLATE "C" LIMIT $4`,
    requireLive: `SELECT 1 FROM ${table} r WHERE r.key = $1 AND ${live('r.value', '$2')} FOR SHARE`,
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
    /** The record's expiry as a column PostgreSQL keeps itself, so no statement writes it. */
    expiresColumn: `expires_at bigint GENERATED ALWAYS AS ((${expires('value')})::bigint) STORED`,
  };
}

/**
 * A {@link VaultStore} in one PostgreSQL table, over `@keyv/postgres`, for several server
 * processes or machines sharing one vault.
 *
 * Rows keep Keyv's `(key, value)` layout and `{"value":...,"expires":...}` format under keys
 * `<namespace>{<group>}:<member>`; a group is one contiguous key range, read through an index
 * on `key COLLATE "C"`. Every atomic operation is one SQL statement. A server that is down
 * or unreachable rejects each call within `connectTimeoutMs`; the pool reconnects by itself.
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

  const adapter = new PooledPostgres({ uri: url, schema, table, keySize: KEY_SIZE });
  const keyv = new Keyv<Row>({
    store: adapter,
    namespace: undefined,
    useKeyPrefix: false,
    throwOnErrors: true,
    serialize: JSON.stringify,
    deserialize: JSON.parse,
  });
  // Errors reach callers through rejected promises; @keyv/postgres also emits them, e.g.
  // when its own CREATE TABLE fails because the server is down.
  adapter.on('error', () => undefined);
  keyv.on('error', () => undefined);

  const qualified = `"${schema}"."${table}"`;
  const SQL = statements(qualified);

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
    const steps = [...ddl.map((statement) => () => pool.query(statement)), ...expiry];
    for (const step of steps) {
      for (let attempt = 1; ; attempt += 1) {
        try {
          await step();
          break;
        } catch (error) {
          if (attempt >= 5 || !DDL_RACE.has(sqlState(error) ?? '')) throw error;
        }
      }
    }
  }

  // Retried by the next call when it fails, so a store opened during an outage recovers.
  let ready: Promise<void> | undefined;
  let closing: Promise<void> | undefined;

  async function opened(): Promise<void> {
    if (closing !== undefined) throw new VaultError('STORE_UNAVAILABLE', 'The PostgreSQL store is closed');
    ready ??= setup().catch((error: unknown) => {
      ready = undefined;
      throw error;
    });
    await ready;
  }

  async function query<T>(sql: string, ...params: unknown[]): Promise<T[]> {
    await opened();
    for (let attempt = 1; ; attempt += 1) {
      try {
        return (await adapter.query(sql, params)) as T[];
      } catch (error) {
        if (attempt >= 3 || !RETRYABLE.has(sqlState(error) ?? '')) throw error;
      }
    }
  }

  /**
   * A batch is one transaction on one pooled connection: each write is the single-member
   * statement of its kind, and a condition that fails (an insert that finds its member, a
   * replace that finds another value, a missing required row) rolls everything back.
   * Writes run in key order, so two batches on one group cannot deadlock each other.
   */
  async function transaction(group: string, writes: readonly BatchWrite[], requires: string | undefined): Promise<BatchResult> {
    await opened();
    for (let attempt = 1; ; attempt += 1) {
      const client = await pool.connect();
      let broken: unknown;
      try {
        await client.query('BEGIN');
        const result = await batchBody(client, group, writes, requires);
        await client.query(result.committed ? 'COMMIT' : 'ROLLBACK');
        return result;
      } catch (error) {
        broken = error;
        await client.query('ROLLBACK').catch(() => undefined);
        if (attempt >= 3 || !RETRYABLE.has(sqlState(error) ?? '')) throw error;
      } finally {
        // A connection that failed mid-transaction is not handed out again.
        client.release(broken !== undefined && !RETRYABLE.has(sqlState(broken) ?? '') ? (broken as Error) : undefined);
      }
    }
  }

  async function batchBody(client: pg.PoolClient, group: string, writes: readonly BatchWrite[], requires: string | undefined): Promise<BatchResult> {
    const now = Date.now();
    const run = async (sql: string, params: unknown[]): Promise<Array<Record<string, unknown>>> =>
      (await client.query(sql, params)).rows as Array<Record<string, unknown>>;
    if (requires !== undefined && (await run(SQL.requireLive, [keyOf(group, requires), now])).length === 0) {
      return { committed: false, failed: -1 };
    }
    const order = writes.map((_, i) => i).sort((a, b) => {
      const x = (writes[a] as BatchWrite).member;
      const y = (writes[b] as BatchWrite).member;
      return Buffer.compare(Buffer.from(x), Buffer.from(y));
    });
    // Every condition is checked first, in write order, on rows locked (in key order) until
    // commit; an insert racing a concurrent insert of an absent member is still caught below.
    const keys = writes.map((w) => keyOf(group, w.member));
    const current = new Map<string, string>();
    for (const row of await run(SQL.lockMany, [keys])) {
      const entry = toEntry(row['value'] as string, now);
      if (entry !== undefined) current.set(row['key'] as string, entry.value);
    }
    for (const [i, w] of writes.entries()) {
      const value = current.get(keys[i] as string);
      if (w.op === 'insert' && value !== undefined) return { committed: false, failed: i };
      if (w.op === 'replace' && value !== w.expected) return { committed: false, failed: i };
    }
    const results: Array<'added' | 'updated' | boolean> = new Array(writes.length);
    for (const [step, i] of order.entries()) {
      options.faults?.beforeWrite?.(step);
      const w = writes[i] as BatchWrite;
      const key = keyOf(group, w.member);
      switch (w.op) {
        case 'put': {
          const row = newRow(w.value, now);
          const [stored] = await run(SQL.put, [key, JSON.stringify({ value: row } satisfies Stored), now, JSON.stringify(w.value)]);
          results[i] = stored?.w === row.w ? 'added' : 'updated';
          break;
        }
        case 'insert': {
          const stored: Stored = { value: newRow(w.value, now) };
          if (w.ttlMs !== undefined) stored.expires = now + Math.ceil(w.ttlMs);
          if ((await run(SQL.insert, [key, JSON.stringify(stored), now])).length === 0) return { committed: false, failed: i };
          results[i] = true;
          break;
        }
        case 'replace': {
          const rows = await run(SQL.replace, [key, JSON.stringify(w.value), JSON.stringify(w.expected), now]);
          if (rows.length === 0) return { committed: false, failed: i };
          results[i] = true;
          break;
        }
        case 'remove': {
          const [removed] = await run(SQL.remove, [key, now]);
          results[i] = removed?.live === true;
          break;
        }
      }
    }
    return { committed: true, results };
  }

  const base = `${encodeURIComponent(options.namespace ?? DEFAULT_NAMESPACE)}{`;
  const groupStart = (group: string): string => `${base}${group}}:`;
  const keyOf = (group: string, member: string): string => `${groupStart(group)}${member}`;
  const newRow = (value: string, now: number): Row => ({ v: value, c: now, u: now, w: randomBytes(12).toString('hex') });

  return {
    kind: 'postgres',

    async get(group: string, member: string): Promise<StoreEntry | undefined> {
      assertName('group', group);
      assertName('member', member);
      await opened();
      const raw = (await adapter.get(keyOf(group, member))) as string | undefined;
      return raw === undefined ? undefined : toEntry(raw, Date.now());
    },

    async put(group: string, member: string, value: string, putOptions?: PutOptions): Promise<PutResult> {
      assertName('group', group);
      assertName('member', member);
      const now = Date.now();
      const row = newRow(value, now);
      const args = [keyOf(group, member), JSON.stringify({ value: row } satisfies Stored), now, JSON.stringify(value)];
      const requires = putOptions?.requires;
      let rows: Array<{ w: string }>;
      if (requires === undefined) {
        rows = await query(SQL.put, ...args);
      } else {
        assertName('requires', requires);
        rows = await query(SQL.putRequires, ...args, keyOf(group, requires));
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
      if (ttlMs !== undefined) stored.expires = now + Math.ceil(ttlMs);
      const args = [keyOf(group, member), JSON.stringify(stored), now];
      const requires = insertOptions?.requires;
      if (requires === undefined) return (await query(SQL.insert, ...args)).length === 1;
      assertName('requires', requires);
      return (await query(SQL.insertRequires, ...args, keyOf(group, requires))).length === 1;
    },

    async replace(group: string, member: string, expected: string, value: string): Promise<boolean> {
      assertName('group', group);
      assertName('member', member);
      const args = [keyOf(group, member), JSON.stringify(value), JSON.stringify(expected), Date.now()];
      return (await query(SQL.replace, ...args)).length === 1;
    },

    async remove(group: string, member: string): Promise<boolean> {
      assertName('group', group);
      assertName('member', member);
      const rows = await query<{ live: boolean }>(SQL.remove, keyOf(group, member), Date.now());
      return rows[0]?.live === true;
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
      const rows = await query<{ live: boolean }>(SQL.removeRange, start, upperBound(start), Date.now());
      return rows.filter((row) => row.live).length;
    },

    async batch(group: string, writes: readonly BatchWrite[], batchOptions?: BatchOptions): Promise<BatchResult> {
      assertName('group', group);
      checkBatch(writes, batchOptions, assertName);
      return transaction(group, writes, batchOptions?.requires);
    },

    async increment(group: string, member: string, ttlMs: number): Promise<CounterState> {
      assertName('group', group);
      assertName('member', member);
      checkTtl(ttlMs);
      const now = Date.now();
      const stored: Stored = { value: newRow('1', now), expires: now + Math.ceil(ttlMs) };
      const [row] = await query<{ value: string }>(SQL.increment, keyOf(group, member), JSON.stringify(stored), now);
      if (row === undefined) throw new Error('increment returned no row');
      const counter = JSON.parse(row.value) as Stored;
      return { count: Number(counter.value.v), expiresAt: counter.expires ?? Number.MAX_SAFE_INTEGER };
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
      closing ??= keyv.disconnect();
      return closing;
    },
  };
}

/**
 * The SQLite adapter, the embedded default: the shared SQL store (`sql.ts`) over one SQLite
 * file in Keyv's `(key, value)` layout, through `sqlite3` (the driver `@keyv/sqlite` uses).
 * It relies on WAL with `synchronous=FULL` (an acknowledged write survives `kill -9` and
 * power loss), on each statement being atomic, on `BEGIN IMMEDIATE` (also against other
 * processes on the file), and on two connections: a writer that commits the writes waiting
 * for it together (group commit: one transaction, one fsync, each call in its own
 * savepoint), and a reader with prepared statements that WAL lets run beside the writer.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import sqlite3 from 'sqlite3';
import type { VaultStore } from '../src/core/store.js';
import { DEFAULT_NAMESPACE, type StoreFaults } from './kernel.js';
import type { KeyValueRow, Stored } from './record.js';
import { createSqlStore, type Run, type SqlDialect, type SqlStatements, type Statement } from './sql.js';

export interface SqliteStoreOptions {
  /** Database file; its parent directory is created if missing. */
  path: string;
  /** Keeps this store's rows apart from other namespaces in the same file. Default `credvault`. */
  namespace?: string;
  /** How long a write waits for another connection's lock before failing. Default 5000 ms. */
  busyTimeoutMs?: number;
  /**
   * How long a call may wait for the writer (behind other calls' commits, another
   * connection's lock, the file being opened) before it rejects, having written nothing:
   * a call is started only within this time after it was made, and one still waiting then
   * is failed at once. Keep it below the vault's store deadline (`storeTimeoutMs` of
   * `createVault`, default 2000 ms): the vault does not cancel a call it gave up on, so a
   * longer wait could still write after the vault answered 503. A call started in time may
   * still commit a little after it (its group's COMMIT). An integer number of milliseconds
   * from 1 to 2147483647. Default 1000 ms.
   */
  queueWaitMs?: number;
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

/** The most calls one group commit holds, so a steady stream of writes still commits often. */
const MAX_GROUP = 128;

// The DDL @keyv/sqlite runs, so files made by either open alike.
const CREATE_TABLE = `CREATE TABLE IF NOT EXISTS ${TABLE}(key VARCHAR(2048) PRIMARY KEY, value TEXT )`;
const GET = `SELECT value FROM ${TABLE} WHERE key = ?1`;

/** One `sqlite3` connection whose statements are prepared once and kept. */
interface Connection {
  all<T>(text: string, params?: readonly unknown[]): Promise<T[]>;
  /** Runs one statement and returns its rows without keeping it prepared (pragmas). */
  once<T>(text: string): Promise<T[]>;
  /** Runs SQL without preparing it for later (transaction control, pragmas, DDL). */
  exec(text: string): Promise<void>;
  /** Lets every call already made finish, then closes; later calls reject. */
  close(): Promise<void>;
}

function openConnection(path: string, busyTimeoutMs: number): Promise<Connection> {
  return new Promise((resolve, reject) => {
    const db = new sqlite3.Database(path, sqlite3.OPEN_READWRITE | sqlite3.OPEN_CREATE, (error) => {
      if (error !== null) return reject(error);
      db.configure('busyTimeout', busyTimeoutMs);
      const prepared = new Map<string, Promise<sqlite3.Statement>>();
      const prepare = (text: string): Promise<sqlite3.Statement> => {
        let statement = prepared.get(text);
        if (statement === undefined) {
          statement = new Promise<sqlite3.Statement>((done, fail) => {
            const made: sqlite3.Statement = db.prepare(text, (failure: Error | null) => (failure === null ? done(made) : fail(failure)));
          });
          prepared.set(text, statement);
          // A statement that did not prepare (the table not there yet) is prepared afresh next time.
          statement.catch(() => prepared.delete(text));
        }
        return statement;
      };
      // Close waits for these rather than relying on the order callbacks were registered in,
      // so no statement is prepared or stepped on a handle being finalized or closed.
      const inFlight = new Set<Promise<unknown>>();
      let closing: Promise<void> | undefined;
      const tracked = <T>(work: () => Promise<T>): Promise<T> => {
        if (closing !== undefined) return Promise.reject(new Error('SQLite: the connection is closed'));
        const running = work();
        inFlight.add(running);
        const forget = (): void => void inFlight.delete(running);
        running.then(forget, forget);
        return running;
      };
      const rowsOf =
        <T>(done: (rows: T[]) => void, fail: (error: Error) => void) =>
        (failure: Error | null, rows: T[]) =>
          failure === null ? done(rows) : fail(failure);
      resolve({
        all: <T>(text: string, params: readonly unknown[] = []) =>
          tracked(async () => {
            const statement = await prepare(text);
            return new Promise<T[]>((done, fail) => statement.all<T>([...params], rowsOf(done, fail)));
          }),
        once: <T>(text: string) => tracked(() => new Promise<T[]>((done, fail) => db.all<T>(text, rowsOf(done, fail)))),
        exec: (text) => tracked(() => new Promise<void>((done, fail) => db.exec(text, (failure) => (failure === null ? done() : fail(failure))))),
        close() {
          closing ??= (async () => {
            await Promise.allSettled(inFlight);
            const statements = await Promise.allSettled(prepared.values());
            prepared.clear();
            for (const settled of statements) {
              if (settled.status === 'fulfilled') await new Promise<void>((done) => settled.value.finalize(() => done()));
            }
            await new Promise<void>((done, fail) => db.close((failure) => (failure === null ? done() : fail(failure))));
          })();
          return closing;
        },
      });
    });
  });
}

/** One call waiting for the writer: its statements, and how to answer it once its group ends. */
interface Job {
  /** `statement`: one statement, atomic by itself; `body`: a transaction body, run in a savepoint; `read`: a read (databases not in WAL mode only). */
  kind: 'statement' | 'body' | 'read';
  statement?: Statement;
  body?: (run: Run) => Promise<{ commit: boolean; result: unknown }>;
  /** `performance.now()` from which the call is no longer started (`queueWaitMs` after it was made). */
  due: number;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** The largest delay a Node timer takes. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** What a call learns when its group's transaction was lost: nothing of it was committed. */
function groupRolledBack(cause: unknown): Error {
  return new Error('SQLite rolled back the transaction this call was part of; nothing of it was written', { cause });
}

/**
 * A {@link VaultStore} in one SQLite file (the embedded default).
 *
 * Rows keep Keyv's `{"value":...,"expires":...}` format under keys
 * `<namespace>{<group>}:<member>`; a group is one contiguous key range. An index (rule 10)
 * is a count row `<namespace>#ix{<index>}` and one row per entry under
 * `<namespace>#ix{<index>}:`, in the same table and written in the same transaction as the
 * batch or removal that changes it; files made before indexes existed open unchanged.
 * Several processes may share the file.
 *
 * Writes that arrive while a commit is under way share the next transaction and its one
 * fsync (group commit), each in its own savepoint: a call that fails is undone alone, and
 * every call resolves only once the COMMIT that holds it has returned. A call that waited
 * for the writer longer than `queueWaitMs` (default 1000 ms, below the vault's store
 * deadline) rejects without being started, so a call the vault already answered 503 never
 * writes afterwards. Reads run on a second connection, so they never wait for writes, and
 * see every write acknowledged before they began. That takes WAL mode: where SQLite keeps
 * the database in another journal mode (an in-memory or temporary database, an SQLite
 * built without WAL), reads queue with the writes on the one connection instead.
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
  const { path, busyTimeoutMs = 5000, queueWaitMs = 1000 } = options;
  if (!Number.isInteger(queueWaitMs) || queueWaitMs < 1 || queueWaitMs > MAX_TIMER_MS) {
    throw new RangeError(`queueWaitMs must be an integer number of milliseconds from 1 to ${MAX_TIMER_MS}`);
  }
  // A private in-memory or temporary database has no file of its own to create a directory for.
  if (path !== ':memory:' && path !== '') mkdirSync(dirname(path), { recursive: true });

  const opened = (async () => {
    const connection = await openConnection(path, busyTimeoutMs);
    try {
      // Switching a fresh file to WAL needs a lock that SQLite does not wait for (the busy
      // timeout does not apply): when another connection opens the same fresh file at that
      // instant, retry for up to the busy timeout rather than fail.
      const until = Date.now() + busyTimeoutMs;
      let mode: unknown;
      for (;;) {
        try {
          const [row] = await connection.once<{ journal_mode?: unknown }>('PRAGMA journal_mode=WAL');
          mode = row?.journal_mode;
          break;
        } catch (error) {
          const code = (error as { code?: unknown }).code;
          if (code !== 'SQLITE_BUSY' || Date.now() > until) throw error;
          await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 20));
        }
      }
      await connection.exec('PRAGMA synchronous=FULL');
      await connection.exec(CREATE_TABLE);
      await connection.exec(SQL.expiryIndex);
      // SQLite answers with the mode it is in; anything but WAL refused the switch.
      return { connection, wal: typeof mode === 'string' && mode.toLowerCase() === 'wal' };
    } catch (error) {
      await connection.close().catch(() => undefined);
      throw error;
    }
  })();
  const writer = opened.then(({ connection }) => connection);
  // Opened once the writer made the file WAL and the table exists. query_only: it never
  // writes. Without WAL there is none (undefined): an in-memory or temporary database lives
  // on the writer's connection only, and a rollback journal would make it wait for commits.
  const reader: Promise<Connection | undefined> = opened.then(async ({ wal }) => {
    if (!wal) return undefined;
    const connection = await openConnection(path, busyTimeoutMs);
    try {
      await connection.exec('PRAGMA query_only=1');
    } catch (error) {
      await connection.close().catch(() => undefined);
      throw error;
    }
    return connection;
  });
  // Surfaced by the first call that awaits them; not unhandled rejections meanwhile.
  writer.catch(() => undefined);
  reader.catch(() => undefined);

  const queue: Job[] = [];
  let draining: Promise<void> | undefined;
  /** Armed for the head of the queue, whose deadline is the earliest: calls are queued in order and all wait alike. */
  let expiry: NodeJS.Timeout | undefined;

  const waitedTooLong = (): Error =>
    new Error(`SQLite: this call waited more than ${queueWaitMs} ms for the writer and was not started; nothing was written`);

  function watchQueue(): void {
    const head = queue[0];
    if (head === undefined || expiry !== undefined) return;
    // Never early (a timer may fire up to a millisecond before its delay); an early one re-arms.
    expiry = setTimeout(expireWaiting, Math.max(1, Math.ceil(head.due - performance.now())));
    expiry.unref();
  }

  /** Fails the calls that are still waiting past their deadline, so their callers hear at once, not after the lock. */
  function expireWaiting(): void {
    expiry = undefined;
    const now = performance.now();
    while (queue.length > 0 && (queue[0] as Job).due <= now) (queue.shift() as Job).reject(waitedTooLong());
    watchQueue();
  }

  function enqueue<T>(job: Omit<Job, 'resolve' | 'reject' | 'due'>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      queue.push({ ...job, due: performance.now() + queueWaitMs, resolve: resolve as (value: unknown) => void, reject });
      watchQueue();
      // A microtask, not a timer: calls made in the same tick join the group, an idle store waits for nothing.
      draining ??= Promise.resolve().then(drain);
    });
  }

  async function drain(): Promise<void> {
    try {
      const connection = await writer;
      while (queue.length > 0) await commitGroup(connection);
    } catch (error) {
      for (const job of queue.splice(0)) job.reject(error);
    } finally {
      // In the same step as the last look at the queue, so a call queued later starts a new drain.
      draining = undefined;
    }
  }

  /**
   * One transaction for the calls queued now and those that arrive while it runs, up to
   * MAX_GROUP: each runs in arrival order (so it sees the earlier ones' writes), and all are
   * answered after COMMIT returned, or all rejected when the transaction is lost.
   */
  async function commitGroup(connection: Connection): Promise<void> {
    try {
      // IMMEDIATE takes the write lock now, so every check of the group holds until COMMIT,
      // also against other processes on the same file (they wait up to the busy timeout).
      await connection.exec('BEGIN IMMEDIATE');
    } catch (error) {
      for (const job of queue.splice(0, MAX_GROUP)) job.reject(error);
      return;
    }
    const group: Array<{ job: Job; outcome: Outcome }> = [];
    let lost: unknown;
    while (queue.length > 0 && group.length < MAX_GROUP && lost === undefined) {
      const job = queue.shift() as Job;
      // Only a call still within its deadline starts: past it, its caller may have been answered already.
      if (performance.now() >= job.due) {
        job.reject(waitedTooLong());
        continue;
      }
      const outcome = await runJob(connection, job);
      group.push({ job, outcome });
      if (!outcome.ok) lost = await transactionLost(connection, job);
    }
    let failure: unknown = lost === undefined ? undefined : groupRolledBack(lost);
    if (failure === undefined) {
      try {
        await connection.exec('COMMIT');
      } catch (error) {
        failure = error;
      }
    }
    if (failure !== undefined) await connection.exec('ROLLBACK').catch(() => undefined);
    for (const { job, outcome } of group) {
      if (!outcome.ok) job.reject(outcome.error);
      else if (failure !== undefined) job.reject(failure);
      else job.resolve(outcome.value);
    }
  }

  async function runJob(connection: Connection, job: Job): Promise<Outcome> {
    try {
      if (job.kind !== 'body') return { ok: true, value: await connection.all(job.statement!.text, job.statement!.params) };
      await connection.exec('SAVEPOINT call');
      const { commit, result } = await job.body!((s) => connection.all(s.text, s.params));
      await connection.exec(commit ? 'RELEASE call' : 'ROLLBACK TO call; RELEASE call');
      return { ok: true, value: result };
    } catch (error) {
      return { ok: false, error };
    }
  }

  /**
   * After a call failed: undoes it, and says why the whole transaction is gone if it is.
   * A single statement that fails is undone by SQLite itself (each statement is atomic
   * within its transaction); a body is rolled back to its savepoint. Some errors (disk
   * full, I/O) make SQLite roll back the whole transaction instead: then `BEGIN` succeeds.
   */
  async function transactionLost(connection: Connection, job: Job): Promise<unknown> {
    try {
      if (job.kind === 'body') await connection.exec('ROLLBACK TO call; RELEASE call');
      else {
        try {
          await connection.exec('BEGIN');
        } catch {
          return undefined; // "cannot start a transaction within a transaction": still open.
        }
        return new Error('SQLite ended the transaction after a failed statement');
      }
      return undefined;
    } catch (error) {
      return error;
    }
  }

  const readRun: Run = async <T>(s: Statement): Promise<T[]> => {
    const connection = await reader;
    if (connection === undefined) return enqueue<T[]>({ kind: 'read', statement: s });
    return connection.all<T>(s.text, s.params);
  };

  const dialect: SqlDialect = {
    kind: 'sqlite',
    sql: SQL,
    putTakesValue: false,
    // One writer at a time (BEGIN IMMEDIATE), reading what it wrote: no snapshot per statement.
    snapshotPerStatement: false,
    keyList: (keys) => JSON.stringify(keys),
    query: <T>(s: Statement) => enqueue<T[]>({ kind: 'statement', statement: s }),
    readQuery: readRun,
    async read(key) {
      const [row] = await readRun<Pick<KeyValueRow, 'value'>>({ text: GET, params: [key] });
      return row === undefined ? undefined : (JSON.parse(row.value) as Stored);
    },
    transaction: <T>(body: (run: Run) => Promise<{ commit: boolean; result: T }>) => enqueue<T>({ kind: 'body', body }),
    async close() {
      // First the connections: a read made before close that waited for them joins the queue meanwhile.
      const connections = await Promise.allSettled([writer, reader]);
      while (draining !== undefined) await draining;
      if (expiry !== undefined) clearTimeout(expiry);
      for (const settled of connections) if (settled.status === 'fulfilled') await settled.value?.close();
    },
  };
  return createSqlStore(dialect, { namespace: options.namespace ?? DEFAULT_NAMESPACE, faults: options.faults });
}

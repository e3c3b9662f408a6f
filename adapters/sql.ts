/**
 * The SQL store: the one implementation of the store contract over a table in Keyv's
 * `(key, value)` layout, shared by SQLite and PostgreSQL. Each backend file supplies a
 * {@link SqlDialect} (its statements, its connection, how it runs a transaction); this file
 * turns the contract's operations into those statements. It relies on the kernel for
 * argument checks and the key layout, on each statement being atomic by itself, and on the
 * dialect's transaction for the steps that join several (batches, indexed removals).
 * Internal: not a public entry point.
 */
import type { BatchResult, BatchWrite, IndexEntry, StoreEntry, StoreListItem, VaultStore } from '../src/core/store.js';
import { defineStore, keyLayout, namespacePrefix, upperBound, type StoreFaults } from './kernel.js';
import { entryOf, isLive, newRecord, parseEntry, scanPage, type KeyValueRow, type Stored } from './record.js';

/** One statement and its parameters, in the dialect's placeholder syntax. */
export interface Statement {
  text: string;
  params: unknown[];
}

/** Runs one statement and returns its rows. */
export type Run = <T = Record<string, unknown>>(statement: Statement) => Promise<T[]>;

/** The statement texts of a dialect, in its placeholder syntax; parameters come in the order listed. */
export interface SqlStatements {
  /** (key, record, now[, valueJson]): see {@link SqlDialect.putTakesValue}. */
  put: string;
  /** As `put`, then the required key. */
  putRequires: string;
  /** (key, record, now). */
  insert: string;
  /** (key, record, now, required key). */
  insertRequires: string;
  /** (key, valueJson, expectedJson, now). */
  replace: string;
  /** (key, now). */
  remove: string;
  /** (from, to). */
  range: string;
  /** (from, to, now). */
  removeRange: string;
  /** (from, to, after, limit). */
  scan: string;
  /** (key, record, now). */
  increment: string;
  /** (now, from, to, limit). */
  purge: string;
  /** (key, now). */
  requireLive: string;
  /** (keys): the dialect's own encoding of a list of keys, see {@link SqlDialect.keyList}. */
  lockMany: string;
  /** Run in order inside a transaction, each with the keys it names. */
  addEntry: readonly IndexStatement[];
  /** Run in order inside a transaction, each with the keys it names. */
  dropEntry: readonly IndexStatement[];
  /** (count key, from, to, offset, limit). */
  readIndex: string;
  /**
   * Taken first by every indexed batch and indexed removeGroup, held until the transaction
   * ends, so two of them on one entry never overlap; omitted where transactions already
   * exclude each other (SQLite's single writer).
   */
  lockEntry?: IndexStatement;
}

/** One statement of an index change and the keys it takes, in placeholder order. */
export interface IndexStatement {
  text: string;
  keys: ReadonlyArray<'entry' | 'count'>;
}

/**
 * What differs between SQL backends. The statements receive the record as JSON text, the
 * time in ms, and values as JSON string literals, and must keep these promises:
 * - `put`: upsert; a live row keeps its `c` and `w`, an expired one is replaced whole; with
 *   a required key, writes only while that key is live; returns one row `{ w }` (the stored
 *   write id) when it wrote, none when the required key was missing.
 * - `insert`: writes only over an absent or expired row (and while the required key is
 *   live); returns one row when it wrote.
 * - `replace`: sets `v` of a live row whose `v` is exactly `expected`, keeping the rest; a row when it did.
 * - `remove` / `removeRange`: delete and return one row `{ live }` per deleted row.
 * - `range` / `scan`: rows `{ key, value }` in byte order of key.
 * - `increment`: as the contract says; returns the stored `{ value }`.
 * - `purge`: deletes at most `limit` expired rows of the key range, one row each, at a cost
 *   that follows what it deletes; a row made live again meanwhile is left alone.
 * - `requireLive`: a row when the key is live, holding it until the transaction ends.
 * - `lockMany`: rows `{ key, value }` for the keys, locked until the transaction ends.
 * - `addEntry` / `dropEntry`: insert (delete) the entry row, and add one to (subtract one
 *   from) the count row only when that row was really inserted (deleted), so the count stays
 *   exact when other transactions add or drop the same entry at the same time.
 * - `readIndex`: from one snapshot, one row `{ entry: null, total }` (the count row's value,
 *   or null) and one row `{ entry: key }` per entry key of the range at `offset`, at most `limit`.
 */
export interface SqlDialect {
  readonly kind: string;
  readonly sql: SqlStatements;
  /** Whether `put` takes the value's JSON as a fourth parameter (to splice it into a kept record). */
  readonly putTakesValue: boolean;
  /**
   * Whether each statement of a transaction reads from its own snapshot (PostgreSQL's READ
   * COMMITTED): a deletion that waited for a writer's lock then misses the rows that writer
   * added, so an indexed removeGroup deletes the group's range a second time.
   */
  readonly snapshotPerStatement: boolean;
  /** The `lockMany` parameter for a list of keys. */
  keyList(keys: string[]): unknown;
  /** One statement outside any transaction (waits for the connection to be ready). */
  query: Run;
  /**
   * One statement that only reads (`range`, `scan`, `readIndex`), where the dialect has a
   * way to run reads that writes do not hold up (SQLite's read connection); else `query`.
   */
  readQuery?: Run;
  /** The stored record of one key, read through the dialect's Keyv. */
  read(key: string): Promise<Stored | undefined>;
  /**
   * Runs `body` in one transaction that holds every row it reads until it ends: commit when
   * `body` says so, roll back when it says not or throws.
   */
  transaction<T>(body: (run: Run) => Promise<{ commit: boolean; result: T }>): Promise<T>;
  close(): Promise<void>;
}

const statement = (text: string, ...params: unknown[]): Statement => ({ text, params });

// SQLite answers a boolean expression with 1, PostgreSQL with true.
const truthy = (value: unknown): boolean => value === 1 || value === true;

const byBytes = (a: string, b: string): number => Buffer.compare(Buffer.from(a), Buffer.from(b));

const byCodeUnit = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Where one index (rule 10) lives in the table: its count row, and the start of its entry rows. */
export interface IndexKeys {
  /** `<namespace>#ix{<index>}`: the exact number of entries, as decimal text. */
  count: string;
  /** `<namespace>#ix{<index>}:`: each entry's row is this plus the entry, with the value `1`. */
  entries: string;
}

/**
 * The rows of one index, beside the records in the same `(key, value)` table. The namespace
 * is `encodeURIComponent` output, which never holds `#` or `{`: so these keys never equal a
 * record key `<namespace>{<group>}:<member>` of any namespace, and every range this store
 * reads or deletes by group, scan or purge (all under `<namespace>{`) passes them by.
 *
 * @example
 * ```ts
 * indexKeys('credvault', 'accounts:acme:test');
 * // { count: 'credvault#ix{accounts:acme:test}', entries: 'credvault#ix{accounts:acme:test}:' }
 * ```
 */
export function indexKeys(namespace: string, index: string): IndexKeys {
  const count = `${namespacePrefix(namespace)}#ix{${index}}`;
  return { count, entries: `${count}:` };
}

/**
 * A {@link VaultStore} over a dialect. A group is one contiguous key range, so `list`,
 * `removeGroup` and `scan` are range reads; a batch is one transaction that locks its rows,
 * checks every condition, then writes in key order (so two batches cannot deadlock).
 */
export function createSqlStore(dialect: SqlDialect, options: { namespace: string; faults?: StoreFaults }): VaultStore {
  const keys = keyLayout(options.namespace);
  const base = `${keys.prefix}{`;
  const { sql } = dialect;
  // The statements with their parameters in the order SqlStatements lists.
  const S = {
    put: (key: string, record: string, now: number, valueJson: string, requires: string | undefined): Statement => {
      const params: unknown[] = dialect.putTakesValue ? [key, record, now, valueJson] : [key, record, now];
      if (requires === undefined) return statement(sql.put, ...params);
      return statement(sql.putRequires, ...params, requires);
    },
    insert: (key: string, record: string, now: number, requires: string | undefined): Statement =>
      requires === undefined ? statement(sql.insert, key, record, now) : statement(sql.insertRequires, key, record, now, requires),
    replace: (key: string, valueJson: string, expectedJson: string, now: number) => statement(sql.replace, key, valueJson, expectedJson, now),
    remove: (key: string, now: number) => statement(sql.remove, key, now),
    range: (from: string, to: string) => statement(sql.range, from, to),
    removeRange: (from: string, to: string, now: number) => statement(sql.removeRange, from, to, now),
    scan: (from: string, to: string, after: string, limit: number) => statement(sql.scan, from, to, after, limit),
    increment: (key: string, record: string, now: number) => statement(sql.increment, key, record, now),
    purge: (now: number, from: string, to: string, limit: number) => statement(sql.purge, now, from, to, limit),
    requireLive: (key: string, now: number) => statement(sql.requireLive, key, now),
    lockMany: (list: string[]) => statement(sql.lockMany, dialect.keyList(list)),
    readIndex: (count: string, from: string, offset: number, limit: number) =>
      statement(sql.readIndex, count, from, upperBound(from), offset, limit),
  };
  const indexOf = (index: string): IndexKeys => indexKeys(options.namespace, index);
  const readQuery: Run = dialect.readQuery ?? dialect.query;

  /** Runs index statements (lock, add or drop) for one link, inside the caller's transaction. */
  async function runIndexSteps(run: Run, steps: readonly IndexStatement[], link: IndexEntry): Promise<void> {
    const { count, entries } = indexOf(link.index);
    const key = { entry: entries + link.entry, count };
    for (const step of steps) await run(statement(step.text, ...step.keys.map((which) => key[which])));
  }
  const entryLock: readonly IndexStatement[] = sql.lockEntry === undefined ? [] : [sql.lockEntry];
  const liveCount = (rows: ReadonlyArray<{ live: unknown }>): number => rows.filter((row) => truthy(row.live)).length;
  const requiresKey = (group: string, requires: string | undefined): string | undefined =>
    requires === undefined ? undefined : keys.key(group, requires);

  async function batchBody(run: Run, group: string, writes: readonly BatchWrite[], requires: string | undefined): Promise<BatchResult> {
    const now = Date.now();
    if (requires !== undefined && (await run(S.requireLive(keys.key(group, requires), now))).length === 0) {
      return { committed: false, failed: -1 };
    }
    const writeKeys = writes.map((w) => keys.key(group, w.member));
    const current = new Map<string, string>();
    for (const row of await run<KeyValueRow>(S.lockMany(writeKeys))) {
      const entry = parseEntry(row.value, now);
      if (entry !== undefined) current.set(row.key, entry.value);
    }
    // Every condition, in write order, before the first write.
    for (const [i, w] of writes.entries()) {
      const value = current.get(writeKeys[i] as string);
      if (w.op === 'insert' && value !== undefined) return { committed: false, failed: i };
      if (w.op === 'replace' && value !== w.expected) return { committed: false, failed: i };
    }
    const order = writes.map((_, i) => i).sort((a, b) => byBytes(writeKeys[a] as string, writeKeys[b] as string));
    const results: Array<'added' | 'updated' | boolean> = new Array(writes.length);
    for (const [step, i] of order.entries()) {
      options.faults?.beforeWrite?.(step);
      const w = writes[i] as BatchWrite;
      const key = writeKeys[i] as string;
      switch (w.op) {
        case 'put': {
          const record = newRecord(w.value, now);
          const [stored] = await run<{ w: string }>(S.put(key, JSON.stringify(record), now, JSON.stringify(w.value), undefined));
          results[i] = stored?.w === record.value.w ? 'added' : 'updated';
          break;
        }
        case 'insert':
          // A concurrent insert of a member that was absent (so not locked) is still caught here.
          if ((await run(S.insert(key, JSON.stringify(newRecord(w.value, now, w.ttlMs)), now, undefined))).length === 0) {
            return { committed: false, failed: i };
          }
          results[i] = true;
          break;
        case 'replace':
          if ((await run(S.replace(key, JSON.stringify(w.value), JSON.stringify(w.expected), now))).length === 0) {
            return { committed: false, failed: i };
          }
          results[i] = true;
          break;
        case 'remove': {
          const [removed] = await run<{ live: unknown }>(S.remove(key, now));
          results[i] = truthy(removed?.live);
          break;
        }
      }
    }
    return { committed: true, results };
  }

  return defineStore({ kind: dialect.kind }, {
    async get(group, member): Promise<StoreEntry | undefined> {
      const stored = await dialect.read(keys.key(group, member));
      return stored !== undefined && isLive(stored, Date.now()) ? entryOf(stored) : undefined;
    },

    async put(group, member, value, requires) {
      const now = Date.now();
      const record = newRecord(value, now);
      const statement = S.put(keys.key(group, member), JSON.stringify(record), now, JSON.stringify(value), requiresKey(group, requires));
      const [result] = await dialect.query<{ w: string }>(statement);
      if (result === undefined) return 'missing';
      return result.w === record.value.w ? 'added' : 'updated';
    },

    async insert(group, member, value, ttlMs, requires) {
      const now = Date.now();
      const record = JSON.stringify(newRecord(value, now, ttlMs));
      return (await dialect.query(S.insert(keys.key(group, member), record, now, requiresKey(group, requires)))).length === 1;
    },

    async replace(group, member, expected, value) {
      const statement = S.replace(keys.key(group, member), JSON.stringify(value), JSON.stringify(expected), Date.now());
      return (await dialect.query(statement)).length === 1;
    },

    async remove(group, member) {
      const [row] = await dialect.query<{ live: unknown }>(S.remove(keys.key(group, member), Date.now()));
      return truthy(row?.live);
    },

    async list(group, prefix) {
      const start = keys.group(group);
      const from = start + prefix;
      const rows = await readQuery<KeyValueRow>(S.range(from, upperBound(from)));
      const now = Date.now();
      const items: StoreListItem[] = [];
      for (const row of rows) {
        const entry = parseEntry(row.value, now);
        if (entry !== undefined) items.push({ member: row.key.slice(start.length), entry });
      }
      return items;
    },

    async removeGroup(group, index) {
      const start = keys.group(group);
      const removeRange = S.removeRange(start, upperBound(start), Date.now());
      // Without an index the removal stays one statement; with one, group and entry go in one transaction.
      if (index === undefined) return liveCount(await dialect.query<{ live: unknown }>(removeRange));
      return dialect.transaction(async (run) => {
        // No indexed batch of this entry runs meanwhile, so the group and the entry go together.
        await runIndexSteps(run, entryLock, index);
        let removed = liveCount(await run<{ live: unknown }>(removeRange));
        // The second pass takes what writers the first one waited for added (a credential put
        // that held the profile): they came first, and every later one that requires a deleted
        // member now waits for this transaction and then finds it missing.
        if (dialect.snapshotPerStatement) removed += liveCount(await run<{ live: unknown }>(removeRange));
        await runIndexSteps(run, sql.dropEntry, index);
        return { commit: true, result: removed };
      });
    },

    async batch(group, writes, requires, index) {
      return dialect.transaction(async (run) => {
        if (index !== undefined) await runIndexSteps(run, entryLock, index);
        const result = await batchBody(run, group, writes, requires);
        // Last, after the group's rows: indexed writers lock in the order entry lock, group rows, entry row, count row.
        if (result.committed && index !== undefined) await runIndexSteps(run, sql.addEntry, index);
        return { commit: result.committed, result };
      });
    },

    async readIndex(index, offset, limit) {
      const { count, entries: from } = indexOf(index);
      const rows = await readQuery<{ entry: string | null; total: unknown }>(S.readIndex(count, from, offset, limit));
      let total = 0;
      const entries: string[] = [];
      for (const row of rows) {
        if (row.entry === null) total = row.total === null || row.total === undefined ? 0 : Number(row.total);
        else entries.push(row.entry.slice(from.length));
      }
      // A UNION's row order is not promised; the page itself was cut in key order.
      return { total, entries: entries.sort(byCodeUnit) };
    },

    async increment(group, member, ttlMs) {
      const now = Date.now();
      const record = JSON.stringify(newRecord('1', now, ttlMs));
      const [row] = await dialect.query<{ value: string }>(S.increment(keys.key(group, member), record, now));
      if (row === undefined) throw new Error('increment returned no row');
      const counter = JSON.parse(row.value) as Stored;
      return { count: Number(counter.value.v), expiresAt: counter.expires ?? Number.MAX_SAFE_INTEGER };
    },

    async purgeExpired(limit) {
      return (await dialect.query(S.purge(Date.now(), base, upperBound(base), limit))).length;
    },

    async scan(cursor, batchSize) {
      // The cursor is the last storage key a page read, so it starts with this namespace.
      if (cursor !== undefined && !cursor.startsWith(base)) throw new RangeError('invalid scan cursor');
      const rows = await readQuery<KeyValueRow>(S.scan(base, upperBound(base), cursor ?? '', batchSize));
      return scanPage(rows, base, batchSize, Date.now());
    },

    close: () => dialect.close(),
  });
}

import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient, type RedisClientType } from '@keyv/redis';
import pg from 'pg';
import sqlite3 from 'sqlite3';
import { describe } from 'vitest';
import { createMemoryStore } from '../../adapters/memory.js';
import { createSqliteStore } from '../../adapters/sqlite.js';
import { createRedisStore } from '../../adapters/redis.js';
import { createPostgresStore } from '../../adapters/postgres.js';
import type { BatchResult, PutResult, ScanPage, StoreEntry, VaultStore } from '../../src/core/store.js';
import { namespacePrefix, storageKey } from '../../adapters/kernel.js';
import { escapeGlob, POSTGRES_URL, REDIS_URL, redisUrlWithRandomDb, runId, serviceSuite } from '../helpers/services.js';
import { dropSchema } from '../helpers/postgres.js';

export type BackendKind = 'memory' | 'sqlite' | 'redis' | 'postgres';
export const ALL_BACKENDS: readonly BackendKind[] = ['memory', 'sqlite', 'redis', 'postgres'];

/** One raw record as the backend holds it. */
export interface RawRecord {
  key: string;
  /** The record text (Keyv's `{"value":{"v":...}}` envelope), or for Redis non-strings a rendering of the contents. */
  value: string;
}

/**
 * One isolated backend for one test: its own SQLite file, Redis namespace (in a random
 * database), PostgreSQL schema, or memory store. Stores opened from it share its data.
 */
export interface Backend {
  readonly kind: BackendKind;
  readonly namespace: string;
  /** A new store over this backend's data (memory: always the one store). */
  openStore(): VaultStore;
  /** The backend's own storage key for a (group, member), as the adapter kernel's `storageKey` builds it. */
  storageKey(group: string, member: string): string;
  /** The sealed value `v` of one record, read straight from the backend (memory: through the store). */
  readSealed(group: string, member: string): Promise<string | undefined>;
  /**
   * Replaces the sealed value `v` of an existing record directly in the backend, keeping
   * the rest of its envelope (memory: through the store's `replace`, which keeps timestamps and expiry).
   */
  writeSealed(group: string, member: string, sealed: string): Promise<void>;
  /** Every record of this backend's namespace, sorted by key: to compare before and after. */
  rawRecords(): Promise<RawRecord[]>;
  /**
   * Everything the backend holds at rest that a test could see, as bytes: the SQLite file
   * with its -wal and -shm, every Redis key and value of the test's database, every row of
   * every table in the test's PostgreSQL schema, every memory record.
   */
  atRest(): Promise<Array<{ where: string; bytes: Buffer }>>;
  /** Closes the stores opened so far, keeping the data (memory: does nothing, closing would erase it). */
  closeStores(): Promise<void>;
  /** Closes every store and client it opened and removes what it created. */
  cleanup(): Promise<void>;
}

function envelopeWith(text: string, sealed: string): string {
  const record = JSON.parse(text) as { value: { v: string } };
  record.value.v = sealed;
  return JSON.stringify(record);
}

function sealedOf(text: string | undefined): string | undefined {
  return text === undefined ? undefined : (JSON.parse(text) as { value: { v: string } }).value.v;
}

async function memoryBackend(): Promise<Backend> {
  const namespace = runId('cvsec');
  const store = createMemoryStore({ namespace });
  const records = async (): Promise<RawRecord[]> => {
    const out: RawRecord[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 10_000; page++) {
      const result = await store.scan(cursor, 500);
      for (const { group, member, entry } of result.items) {
        out.push({ key: `${group}}:${member}`, value: JSON.stringify(entry) });
      }
      cursor = result.cursor;
      if (cursor === undefined) break;
    }
    return out;
  };
  return {
    kind: 'memory',
    namespace,
    openStore: () => store,
    storageKey: (group, member) => storageKey(namespace, group, member),
    readSealed: async (group, member) => (await store.get(group, member))?.value,
    async writeSealed(group, member, sealed) {
      // replace, not put: it keeps the timestamps and the expiry, as a raw edit would.
      const current = await store.get(group, member);
      if (current === undefined || !(await store.replace(group, member, current.value, sealed))) {
        throw new Error(`no record ${group} ${member}`);
      }
    },
    rawRecords: records,
    async atRest() {
      return (await records()).map((r) => ({ where: `memory ${r.key}`, bytes: Buffer.from(`${r.key}\n${r.value}`, 'utf8') }));
    },
    closeStores: async () => undefined,
    cleanup: () => store.close(),
  };
}

/** A promise-returning handle on a SQLite file, outside the adapter. */
function openRawSqlite(path: string) {
  const db = new sqlite3.Database(path);
  const all = <T>(sql: string, ...params: unknown[]) =>
    new Promise<T[]>((resolve, reject) => db.all(sql, params, (error: Error | null, rows: T[]) => (error ? reject(error) : resolve(rows))));
  const run = (sql: string, ...params: unknown[]) =>
    new Promise<number>((resolve, reject) =>
      db.run(sql, params, function (this: sqlite3.RunResult, error: Error | null) {
        if (error) reject(error);
        else resolve(this.changes);
      }),
    );
  const close = () => new Promise<void>((resolve, reject) => db.close((error) => (error ? reject(error) : resolve())));
  return { all, run, close };
}

async function sqliteBackend(): Promise<Backend> {
  const namespace = runId('cvsec');
  const dir = mkdtempSync(join(tmpdir(), 'credvault-security-'));
  const path = join(dir, 'vault.db');
  const stores: VaultStore[] = [];
  const keyOf = (group: string, member: string) => storageKey(namespace, group, member);
  let raw: ReturnType<typeof openRawSqlite> | undefined;
  const rawDb = () => (raw ??= openRawSqlite(path));
  const tableExists = async () =>
    (await rawDb().all<{ name: string }>(`SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'keyv'`)).length === 1;
  return {
    kind: 'sqlite',
    namespace,
    openStore() {
      const store = createSqliteStore({ path, namespace });
      stores.push(store);
      return store;
    },
    storageKey: keyOf,
    async readSealed(group, member) {
      const rows = await rawDb().all<{ value: string }>('SELECT value FROM keyv WHERE key = ?', keyOf(group, member));
      return sealedOf(rows[0]?.value);
    },
    async writeSealed(group, member, sealed) {
      const key = keyOf(group, member);
      const rows = await rawDb().all<{ value: string }>('SELECT value FROM keyv WHERE key = ?', key);
      const text = rows[0]?.value;
      if (text === undefined) throw new Error(`no row ${key}`);
      const changed = await rawDb().run('UPDATE keyv SET value = ? WHERE key = ?', envelopeWith(text, sealed), key);
      if (changed !== 1) throw new Error(`UPDATE of ${key} changed ${changed} rows`);
    },
    async rawRecords() {
      if (!existsSync(path) || !(await tableExists())) return [];
      return rawDb().all<RawRecord>('SELECT key, value FROM keyv ORDER BY key');
    },
    async atRest() {
      const out: Array<{ where: string; bytes: Buffer }> = [];
      for (const file of [path, `${path}-wal`, `${path}-shm`, `${path}-journal`]) {
        if (existsSync(file)) out.push({ where: file, bytes: readFileSync(file) });
      }
      return out;
    },
    async closeStores() {
      await Promise.all(stores.splice(0).map((s) => s.close()));
    },
    async cleanup() {
      await Promise.all(stores.map((s) => s.close().catch(() => undefined)));
      await raw?.close().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function redisBackend(): Promise<Backend> {
  const namespace = runId('cvsec');
  const url = redisUrlWithRandomDb();
  const base = namespacePrefix(namespace);
  const keyOf = (group: string, member: string) => storageKey(namespace, group, member);
  const stores: VaultStore[] = [];
  const client = createClient({ url }) as RedisClientType;
  client.on('error', () => undefined);
  await client.connect();
  const keysMatching = async (match: string): Promise<string[]> => {
    const keys: string[] = [];
    for await (const batch of client.scanIterator({ MATCH: match, COUNT: 500 })) keys.push(...batch);
    return [...new Set(keys)].sort();
  };
  /** A key and its contents, whatever its type, as text. */
  const render = async (key: string): Promise<string> => {
    const type = await client.type(key);
    switch (type) {
      case 'string':
        return (await client.get(key)) ?? '';
      case 'zset':
        return JSON.stringify(await client.zRangeWithScores(key, 0, -1));
      case 'hash':
        return JSON.stringify(await client.hGetAll(key));
      case 'set':
        return JSON.stringify((await client.sMembers(key)).sort());
      case 'list':
        return JSON.stringify(await client.lRange(key, 0, -1));
      case 'none':
        return '';
      default:
        return `<${type}>`;
    }
  };
  const ours = `${escapeGlob(base)}*`;
  return {
    kind: 'redis',
    namespace,
    openStore() {
      const store = createRedisStore({ url, namespace });
      stores.push(store);
      return store;
    },
    storageKey: keyOf,
    readSealed: async (group, member) => sealedOf((await client.get(keyOf(group, member))) ?? undefined),
    async writeSealed(group, member, sealed) {
      const key = keyOf(group, member);
      const text = await client.get(key);
      if (text === null) throw new Error(`no key ${key}`);
      // KEEPTTL: a session record keeps its expiry.
      await client.set(key, envelopeWith(text, sealed), { KEEPTTL: true });
    },
    async rawRecords() {
      const out: RawRecord[] = [];
      for (const key of await keysMatching(ours)) out.push({ key, value: await render(key) });
      return out;
    },
    async atRest() {
      // The whole database, not just our namespace: a leak under another key counts too.
      const out: Array<{ where: string; bytes: Buffer }> = [];
      for (const key of await keysMatching('*')) {
        out.push({ where: `redis ${key}`, bytes: Buffer.from(`${key}\n${await render(key)}`, 'utf8') });
      }
      return out;
    },
    async closeStores() {
      await Promise.all(stores.splice(0).map((s) => s.close()));
    },
    async cleanup() {
      await Promise.all(stores.map((s) => s.close().catch(() => undefined)));
      try {
        const keys = await keysMatching(ours);
        for (let i = 0; i < keys.length; i += 500) await client.del(keys.slice(i, i + 500));
      } finally {
        client.destroy();
      }
    },
  };
}

async function postgresBackend(): Promise<Backend> {
  const namespace = runId('cvsec');
  const schema = runId('cvsec');
  const keyOf = (group: string, member: string) => storageKey(namespace, group, member);
  const stores: VaultStore[] = [];
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  client.on('error', () => undefined);
  await client.connect();
  const table = `"${schema}"."keyv"`;
  const tableExists = async () =>
    (await client.query(`SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'keyv'`, [schema])).rowCount === 1;
  return {
    kind: 'postgres',
    namespace,
    openStore() {
      const store = createPostgresStore({ url: POSTGRES_URL, schema, namespace, poolSize: 4 });
      stores.push(store);
      return store;
    },
    storageKey: keyOf,
    async readSealed(group, member) {
      const result = await client.query<{ value: string }>(`SELECT value FROM ${table} WHERE key = $1`, [keyOf(group, member)]);
      return sealedOf(result.rows[0]?.value);
    },
    async writeSealed(group, member, sealed) {
      const key = keyOf(group, member);
      const result = await client.query<{ value: string }>(`SELECT value FROM ${table} WHERE key = $1`, [key]);
      const text = result.rows[0]?.value;
      if (text === undefined) throw new Error(`no row ${key}`);
      const updated = await client.query(`UPDATE ${table} SET value = $1 WHERE key = $2`, [envelopeWith(text, sealed), key]);
      if (updated.rowCount !== 1) throw new Error(`UPDATE of ${key} changed ${updated.rowCount} rows`);
    },
    async rawRecords() {
      if (!(await tableExists())) return [];
      const result = await client.query<RawRecord>(`SELECT key, value FROM ${table} ORDER BY key COLLATE "C"`);
      return result.rows;
    },
    async atRest() {
      // Every row of every table in the test's schema, whole.
      const tables = await client.query<{ table_name: string }>(
        `SELECT table_name FROM information_schema.tables WHERE table_schema = $1`,
        [schema],
      );
      const out: Array<{ where: string; bytes: Buffer }> = [];
      for (const { table_name } of tables.rows) {
        const rows = await client.query<{ row: string }>(`SELECT row_to_json(t)::text AS row FROM "${schema}"."${table_name}" t`);
        for (const { row } of rows.rows) out.push({ where: `postgres ${schema}.${table_name}`, bytes: Buffer.from(row, 'utf8') });
      }
      return out;
    },
    async closeStores() {
      await Promise.all(stores.splice(0).map((s) => s.close()));
    },
    async cleanup() {
      await Promise.all(stores.map((s) => s.close().catch(() => undefined)));
      await client.end();
      await dropSchema(schema);
    },
  };
}

export function createBackend(kind: BackendKind): Promise<Backend> {
  switch (kind) {
    case 'memory':
      return memoryBackend();
    case 'sqlite':
      return sqliteBackend();
    case 'redis':
      return redisBackend();
    case 'postgres':
      return postgresBackend();
  }
}

/** A backend kind with the `describe` that runs or skips its suite (see test/helpers/services.ts). */
export interface BackendSuite {
  kind: BackendKind;
  describe(name: string, body: () => void): void;
}

/** The suites for these kinds: Redis and PostgreSQL skip with a notice when down, or fail under CREDVAULT_REQUIRE_SERVICES=1. */
export async function backendSuites(kinds: readonly BackendKind[] = ALL_BACKENDS): Promise<BackendSuite[]> {
  const out: BackendSuite[] = [];
  for (const kind of kinds) {
    if (kind === 'redis') {
      out.push({ kind, describe: (await serviceSuite('Redis', REDIS_URL)).describe });
    } else if (kind === 'postgres') {
      out.push({ kind, describe: (await serviceSuite('PostgreSQL', POSTGRES_URL)).describe });
    } else {
      out.push({ kind, describe: (name, body) => describe(name, body) });
    }
  }
  return out;
}

/** A fresh keyring entry `id:base64`. */
export function keyEntry(id: string): { id: string; material: string; entry: string } {
  const material = randomBytes(32).toString('base64');
  return { id, material, entry: `${id}:${material}` };
}

/** A distinctive random marker for a secret. */
export function marker(label: string): string {
  return `${label}-${randomBytes(12).toString('hex')}`;
}

/** The secret part of an API key `tk_<id>_<secret>` (the secret may hold `_`). */
export function apiKeySecret(apiKey: string): string {
  const match = /^(?:tk|pk)_[0-9a-f]{16}_(.+)$/.exec(apiKey);
  if (match === null) throw new Error('not an API key');
  return match[1] as string;
}

/** The secret part of a session token `cvs_<locator>.<id>.<secret>`. */
export function tokenSecret(token: string): string {
  return token.slice(token.lastIndexOf('.') + 1);
}

/** A store that forwards to `inner`, with hooks around `get`, `scan`, `put`, `replace` and `batch`. */
export function wrapStore(
  inner: VaultStore,
  hooks: {
    get?: (args: Parameters<VaultStore['get']>, forward: () => Promise<StoreEntry | undefined>) => Promise<StoreEntry | undefined>;
    scan?: (args: Parameters<VaultStore['scan']>, forward: () => Promise<ScanPage>) => Promise<ScanPage>;
    put?: (args: Parameters<VaultStore['put']>, forward: () => Promise<PutResult>) => Promise<PutResult>;
    replace?: (args: Parameters<VaultStore['replace']>, forward: () => Promise<boolean>) => Promise<boolean>;
    batch?: (args: Parameters<VaultStore['batch']>, forward: () => Promise<BatchResult>) => Promise<BatchResult>;
  },
): VaultStore {
  return {
    kind: inner.kind,
    get: (...a) => (hooks.get ? hooks.get(a, () => inner.get(...a)) : inner.get(...a)),
    put: (...a) => (hooks.put ? hooks.put(a, () => inner.put(...a)) : inner.put(...a)),
    insert: (...a) => inner.insert(...a),
    replace: (...a) => (hooks.replace ? hooks.replace(a, () => inner.replace(...a)) : inner.replace(...a)),
    remove: (...a) => inner.remove(...a),
    list: (...a) => inner.list(...a),
    removeGroup: (...a) => inner.removeGroup(...a),
    batch: (...a) => (hooks.batch ? hooks.batch(a, () => inner.batch(...a)) : inner.batch(...a)),
    increment: (...a) => inner.increment(...a),
    purgeExpired: (...a) => inner.purgeExpired(...a),
    scan: (...a) => (hooks.scan ? hooks.scan(a, () => inner.scan(...a)) : inner.scan(...a)),
    readIndex: (...a) => inner.readIndex(...a),
    close: () => inner.close(),
  };
}

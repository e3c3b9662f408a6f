import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import KeyvSqlite from '@keyv/sqlite';
import KeyvMysql from '@keyv/mysql';
import Keyv from 'keyv';
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKeyvStore } from '../../adapters/keyv.js';
import { MAX_NAME_LENGTH } from '../../src/core/store.js';
import { createVault, deleteDefaultAppCredential, createLinkedAccount, getDefaultAppCredential, upsertDefaultAppCredential, VaultError } from '../../src/index.js';
import { runIndexConformance, runStoreConformance } from '../../src/testing/index.js';
import { freePort, runId, serviceSuite } from '../helpers/services.js';
import { MARIADB_URL } from './keyv-mariadb.js';

const faultHook = (controls: { failAt: number }) => ({
  beforeWrite: (i: number) => {
    if (i === controls.failAt) throw new Error('injected fault');
  },
});

// ---- Keyv's own in-memory Map: one Map behind every store, so namespaces share a backend ----

const map = new Map();
const memoryKeyv = () => new Keyv({ store: map, throwOnErrors: true });

runStoreConformance({ describe, it, expect }, ({ namespace }) => createKeyvStore(memoryKeyv(), { namespace }), {
  name: "keyv over Keyv's in-memory Map",
  faults: { factory: ({ namespace }, controls) => createKeyvStore(memoryKeyv(), { namespace, faults: faultHook(controls) }) },
});

// ---- @keyv/sqlite on a temporary file: one Keyv (one connection) for every store ----

const dir = mkdtempSync(join(tmpdir(), 'credvault-keyv-'));
const sqliteKeyv = new Keyv({ store: new KeyvSqlite({ uri: `sqlite://${join(dir, 'vault.db')}` }), throwOnErrors: true });
// @keyv/sqlite leaves SQLite's rollback journal on: one fsync per Keyv set, seconds for a full batch.
await (sqliteKeyv.store as KeyvSqlite).query('PRAGMA journal_mode = WAL');
afterAll(async () => {
  await sqliteKeyv.disconnect();
  rmSync(dir, { recursive: true, force: true });
});

runStoreConformance({ describe, it, expect }, ({ namespace }) => createKeyvStore(sqliteKeyv, { namespace, disconnectOnClose: false }), {
  name: '@keyv/sqlite',
  faults: { factory: ({ namespace }, controls) => createKeyvStore(sqliteKeyv, { namespace, disconnectOnClose: false, faults: faultHook(controls) }) },
  // A directory is no database file: every call fails to open it.
  unreachableFactory: ({ namespace }) =>
    createKeyvStore(new Keyv({ store: new KeyvSqlite({ uri: `sqlite://${dir}` }), throwOnErrors: true }), { namespace }),
});

// ---- @keyv/mysql on MariaDB ----

const mariadb = await serviceSuite('MariaDB', MARIADB_URL);
const table = runId('cv_keyv');

// @keyv/mysql keeps one module-wide pool and ends whichever is current on disconnect, so the
// unreachable Keyv is made first and never disconnected, and the shared one last.
const unreachableUrl = `mysql://root@127.0.0.1:${await freePort()}/test`;
const unreachableKeyv = new Keyv({ store: new KeyvMysql({ uri: unreachableUrl, table }), throwOnErrors: true });
unreachableKeyv.on('error', () => undefined);
await unreachableKeyv.get('warm-up').catch(() => undefined);

let sharedKeyv: Keyv | undefined;
/** One Keyv (one pool) for every store of the suite; each store keeps it open on close. */
const mysqlKeyv = (): Keyv => {
  if (sharedKeyv === undefined) throw new Error('MariaDB Keyv not opened');
  return sharedKeyv;
};

mariadb.describe('keyv over @keyv/mysql on MariaDB', () => {
  beforeAll(async () => {
    // A TEXT column (what @keyv/mysql creates) holds 64 KiB of bytes: too little for 64 KiB of text.
    const connection = await mysql.createConnection(MARIADB_URL);
    await connection.query(`CREATE TABLE \`${table}\` (id VARCHAR(255) PRIMARY KEY, value LONGTEXT)`);
    await connection.end();
    sharedKeyv = new Keyv({ store: new KeyvMysql({ uri: MARIADB_URL, table }), throwOnErrors: true });
  });
  afterAll(async () => {
    await sharedKeyv?.disconnect();
    const connection = await mysql.createConnection(MARIADB_URL);
    await connection.query(`DROP TABLE IF EXISTS \`${table}\``);
    await connection.end();
  });

  runStoreConformance({ describe, it, expect }, ({ namespace }) => createKeyvStore(mysqlKeyv(), { namespace, disconnectOnClose: false }), {
    name: '@keyv/mysql',
    faults: {
      factory: ({ namespace }, controls) => createKeyvStore(mysqlKeyv(), { namespace, disconnectOnClose: false, faults: faultHook(controls) }),
    },
    unreachableFactory: ({ namespace }) => createKeyvStore(unreachableKeyv, { namespace, disconnectOnClose: false }),
  });

  // Index chunks of 3 entries split and merge within every index test, on a real SQL backend.
  runIndexConformance(
    { describe, it, expect },
    ({ namespace }) => createKeyvStore(mysqlKeyv(), { namespace, disconnectOnClose: false, indexChunkSize: 3 }),
    {
      name: '@keyv/mysql, index chunks of 3',
      faults: {
        factory: ({ namespace }, controls) =>
          createKeyvStore(mysqlKeyv(), { namespace, disconnectOnClose: false, indexChunkSize: 3, faults: faultHook(controls) }),
      },
    },
  );

  it('accepts names of the longest length the contract allows, under keys of at most 255 characters', async () => {
    const store = createKeyvStore(mysqlKeyv(), { namespace: runId('long'), disconnectOnClose: false });
    try {
      const group = `g${'a'.repeat(MAX_NAME_LENGTH - 1)}`;
      const member = `m${'b'.repeat(MAX_NAME_LENGTH - 1)}`;
      expect(await store.put(group, member, 'v')).toBe('added');
      expect(await store.put(group, 'short', 'w')).toBe('added');
      expect((await store.get(group, member))?.value).toBe('v');
      expect((await store.list(group)).map((item) => item.member)).toEqual([member, 'short']);
      expect(await store.removeGroup(group)).toBe(2);
      expect(await store.put(group, `${member}b`, 'v').catch((error: unknown) => error)).toBeInstanceOf(RangeError);
    } finally {
      await store.close();
    }
  });

  it('refuses a second store on the same namespace while the first is open, and admits one after close', async () => {
    const namespace = runId('lease');
    const first = createKeyvStore(mysqlKeyv(), { namespace, disconnectOnClose: false });
    await first.put('g', 'm', 'v');
    const second = createKeyvStore(mysqlKeyv(), { namespace, disconnectOnClose: false });
    try {
      const refused = await second.get('g', 'm').catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(VaultError);
      expect((refused as VaultError).code).toBe('INVALID_CONFIGURATION');
      await first.close();
      expect((await second.get('g', 'm'))?.value).toBe('v');
    } finally {
      await first.close();
      await second.close();
    }
  });
});

describe('keyv store: configuration', () => {
  it('refuses a Keyv that would swallow store errors', () => {
    expect(() => createKeyvStore(new Keyv())).toThrow(/throwOnErrors/);
  });

  it('a vault over it adds, reads and deletes a credential', async () => {
    const keyv = new Keyv({ store: new Map(), throwOnErrors: true });
    const vault = await createVault({ store: createKeyvStore(keyv), keys: `k1:${randomBytes(32).toString('base64')}` });
    try {
      const principal = { org: 'acme', environment: 'test' as const, accountId: 'u1' };
      await createLinkedAccount(vault, principal, { credentials: {} });
      expect(await upsertDefaultAppCredential(vault, principal, 'api_key', 'sk_live_1')).toEqual({ action: 'added' });
      expect(await getDefaultAppCredential(vault, principal, 'api_key')).toBe('sk_live_1');
      await deleteDefaultAppCredential(vault, principal, 'api_key');
      expect(await getDefaultAppCredential(vault, principal, 'api_key')).toBeUndefined();
    } finally {
      await vault.close();
    }
  });
});

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import KeyvSqlite from '@keyv/sqlite';
import { afterAll, describe, expect, it } from 'vitest';
import { createSqliteStore } from '../../adapters/sqlite.js';
import { runStoreConformance } from '../../src/testing/index.js';
import { batchFaultHook } from '../helpers/faults.js';

// Every store opens its own connection to one shared file, nested to exercise mkdir.
const dir = mkdtempSync(join(tmpdir(), 'credvault-sqlite-'));
const path = join(dir, 'nested', 'vault.db');
const open = ({ namespace }: { namespace: string }) => createSqliteStore({ path, namespace });

afterAll(() => rmSync(dir, { recursive: true, force: true }));

runStoreConformance({ describe, it, expect }, open, {
  name: 'sqlite',
  concurrencyFactory: open,
  faults: { factory: ({ namespace }, controls) => createSqliteStore({ path, namespace, faults: batchFaultHook(controls) }) },
  // A directory is no database file: every call fails to open it.
  unreachableFactory: ({ namespace }) => createSqliteStore({ path: dir, namespace }),
});

describe('sqlite store: query plans', () => {
  it('purgeExpired finds expired rows through the partial index on expiry', async () => {
    const store = open({ namespace: 'plans' });
    await store.insert('g', 'm', 'v', { ttlMs: 60_000 }); // creates the table and its indexes
    const raw = new KeyvSqlite({ uri: `sqlite://${path}`, table: 'keyv' });
    try {
      const rows = (await raw.query(`EXPLAIN QUERY PLAN SELECT key FROM keyv INDEXED BY keyv_expires
        WHERE json_extract(value, '$.expires') IS NOT NULL AND json_extract(value, '$.expires') < 1
          AND key >= 'plans{' AND key < 'plans|' LIMIT 10`)) as Array<{ detail: string }>;
      const plan = rows.map((row) => row.detail).join('\n');
      expect(plan).toMatch(/SEARCH keyv USING INDEX keyv_expires \(<expr><\?\)/);
      expect(plan).not.toMatch(/SCAN/);
    } finally {
      await raw.disconnect();
      await store.close();
    }
  });
});

describe('sqlite store: index rows', () => {
  it('live beside the records under <namespace>#ix{<index>}, written only by indexed calls, and a file from before indexes gets indexed after the fact', async () => {
    const layoutPath = join(dir, 'layout.db');
    // A file as the previous release left it: Keyv's table, one account's records, no index rows.
    const raw = new KeyvSqlite({ uri: `sqlite://${layoutPath}`, table: 'keyv', keySize: 2048 });
    const record = (v: string) => JSON.stringify({ value: { v, c: 1, u: 1, w: 'old' } });
    await raw.query('INSERT INTO keyv(key, value) VALUES (?, ?), (?, ?)', 'lay%3Aout{acct:a}:profile', record('p'), 'lay%3Aout{acct:a}:cred:k', record('c'));
    const store = createSqliteStore({ path: layoutPath, namespace: 'lay:out' });
    const indexRows = async () =>
      (await raw.query("SELECT key, value FROM keyv WHERE key LIKE 'lay%3Aout#ix{%' ORDER BY key")) as Array<{ key: string; value: string }>;
    try {
      expect((await store.list('acct:a')).map((item) => item.entry.value)).toEqual(['c', 'p']);
      expect(await store.readIndex('accounts', 0, 10)).toEqual({ total: 0, entries: [] });

      // Calls without an index write no index rows.
      await store.batch('acct:b', [{ op: 'put', member: 'profile', value: 'p' }]);
      await store.removeGroup('acct:b');
      await store.put('acct:a', 'cred:j', 'v');
      expect(await indexRows()).toEqual([]);

      // The existing account is indexed by an empty batch that requires its profile.
      expect(await store.batch('acct:a', [], { requires: 'profile', index: { index: 'accounts', entry: 'a' } })).toEqual({ committed: true, results: [] });
      await store.batch('acct:c', [{ op: 'insert', member: 'profile', value: 'p' }], { index: { index: 'accounts', entry: 'c' } });
      expect(await indexRows()).toEqual([
        { key: 'lay%3Aout#ix{accounts}', value: '2' },
        { key: 'lay%3Aout#ix{accounts}:a', value: '1' },
        { key: 'lay%3Aout#ix{accounts}:c', value: '1' },
      ]);
      expect(await store.readIndex('accounts', 0, 10)).toEqual({ total: 2, entries: ['a', 'c'] });
      expect((await store.scan(undefined, 100)).items.map((item) => `${item.group} ${item.member}`)).toEqual([
        'acct:a cred:j',
        'acct:a cred:k',
        'acct:a profile',
        'acct:c profile',
      ]);
      expect(await store.purgeExpired(100)).toBe(0);

      expect(await store.removeGroup('acct:a', { index: { index: 'accounts', entry: 'a' } })).toBe(3);
      expect(await indexRows()).toEqual([
        { key: 'lay%3Aout#ix{accounts}', value: '1' },
        { key: 'lay%3Aout#ix{accounts}:c', value: '1' },
      ]);
      // The records written meanwhile keep the previous release's format.
      const [row] = (await raw.query("SELECT value FROM keyv WHERE key = 'lay%3Aout{acct:c}:profile'")) as Array<{ value: string }>;
      expect(Object.keys(JSON.parse(row?.value ?? '{}') as object)).toEqual(['value']);
    } finally {
      await store.close();
      await raw.disconnect();
    }
  });

  it('readIndex walks the primary key range in order, never the table and never a sort', async () => {
    const store = open({ namespace: 'ixplan' });
    await store.batch('g', [], { index: { index: 'i', entry: 'e' } }); // opens the file
    const raw = new KeyvSqlite({ uri: `sqlite://${path}`, table: 'keyv' });
    try {
      const rows = (await raw.query(`EXPLAIN QUERY PLAN SELECT NULL AS entry, (SELECT value FROM keyv WHERE key = 'ixplan#ix{i}') AS total
        UNION ALL SELECT entry, NULL FROM (SELECT key AS entry FROM keyv WHERE key >= 'ixplan#ix{i}:' AND key < 'ixplan#ix{i};'
          ORDER BY key LIMIT 10 OFFSET 5)`)) as Array<{ detail: string }>;
      const plan = rows.map((row) => row.detail).join('\n');
      expect(plan).toMatch(/SEARCH keyv USING (COVERING )?INDEX sqlite_autoindex_keyv_1 \(key>\? AND key<\?\)/);
      expect(plan).toMatch(/SEARCH keyv USING INDEX sqlite_autoindex_keyv_1 \(key=\?\)/);
      expect(plan).not.toMatch(/SCAN keyv|TEMP B-TREE/);
    } finally {
      await raw.disconnect();
      await store.close();
    }
  });
});

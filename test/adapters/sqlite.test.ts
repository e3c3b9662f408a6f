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

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createSqliteStore } from '../../adapters/sqlite.js';
import { runStoreConformance } from '../../src/testing/index.js';

// Every store opens its own connection to one shared file, nested to exercise mkdir.
const dir = mkdtempSync(join(tmpdir(), 'credvault-sqlite-'));
const path = join(dir, 'nested', 'vault.db');
const open = ({ namespace }: { namespace: string }) => createSqliteStore({ path, namespace });

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const faultHook = (controls: { failAt: number }) => ({ beforeWrite: (i: number) => { if (i === controls.failAt) throw new Error('injected fault'); } });

runStoreConformance({ describe, it, expect }, open, {
  name: 'sqlite',
  concurrencyFactory: open,
  faults: { factory: ({ namespace }, controls) => createSqliteStore({ path, namespace, faults: faultHook(controls) }) },
  // A directory is no database file: every call fails to open it.
  unreachableFactory: ({ namespace }) => createSqliteStore({ path: dir, namespace }),
});

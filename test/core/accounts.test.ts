import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLinkedAccount, createVault, getLinkedAccount, upsertLinkedAccount, type VaultStore } from '../../src/index.js';
import { createMemoryStore } from '../../adapters/memory.js';
import { createSqliteStore } from '../../adapters/sqlite.js';
import { PROFILE, accountGroup } from '../../src/core/layout.js';

const stores: Array<[string, () => { store: VaultStore; cleanup(): void }]> = [
  ['memory', () => ({ store: createMemoryStore(), cleanup: () => undefined })],
  [
    'sqlite',
    () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'credvault-accounts-'));
      return { store: createSqliteStore({ path: path.join(dir, 'vault.db') }), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
    },
  ],
];

describe.each(stores)('concurrent account updates on %s', (_name, open) => {
  it('keeps every field written by racing updates of one account', async () => {
    const { store, cleanup } = open();
    const vault = await createVault({ store, keys: `k:${randomBytes(32).toString('base64')}` });
    const ref = { org: 'acme', environment: 'test', accountId: 'racy' };
    try {
      await createLinkedAccount(vault, ref);
      await Promise.all(Array.from({ length: 20 }, (_, i) => upsertLinkedAccount(vault, ref, { udf: { [`field_${i}`]: `v${i}` } })));
      await upsertLinkedAccount(vault, ref, { name: 'Renamed' });
      const profile = JSON.parse((await store.get(accountGroup(ref), PROFILE))?.value ?? '{}') as { udf: Array<{ key_name: string }> };
      expect(profile.udf.map((entry) => entry.key_name).sort()).toEqual(Array.from({ length: 20 }, (_, i) => `field_${i}`).sort());
      expect((await getLinkedAccount(vault, ref)).name).toBe('Renamed');
    } finally {
      await vault.close();
      cleanup();
    }
  });
});

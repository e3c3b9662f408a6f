import KeyvSqlite from '@keyv/sqlite';
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLinkedAccount, createVault, getLinkedAccount, issueSessionToken, listDefaultAppCredentials, upsertLinkedAccount, type VaultStore } from '../../src/index.js';
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

describe('expired session tokens on SQLite', () => {
  it('are deleted from the file by a later sweep, not only hidden', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'credvault-sessions-'));
    const file = path.join(dir, 'vault.db');
    const keys = `k:${randomBytes(32).toString('base64')}`;
    const ref = { org: 'acme', environment: 'test', accountId: 'tokens' };
    const sessionRows = async (store: VaultStore): Promise<number> => {
      // Live session records, as the store reports them.
      let n = 0;
      let cursor: string | undefined;
      do {
        const page = await store.scan(cursor, 500);
        n += page.items.filter((item) => item.member.startsWith('session:')).length;
        cursor = page.cursor;
      } while (cursor !== undefined);
      return n;
    };
    try {
      const first = await createVault({ store: createSqliteStore({ path: file }), keys });
      await createLinkedAccount(first, ref);
      for (let i = 0; i < 10; i++) await issueSessionToken(first, ref, { ttlSeconds: 1, forceRefresh: true });
      expect(await sessionRows(first.store)).toBe(10);
      await first.close();
      await new Promise((resolve) => setTimeout(resolve, 1100));
      const raw = new KeyvSqlite({ uri: `sqlite://${file}`, table: 'keyv' });
      const rowsOnDisk = async () =>
        ((await raw.query("SELECT count(*) AS n FROM keyv WHERE key LIKE '%}:session:%'")) as Array<{ n: number }>)[0]?.n;
      expect(await rowsOnDisk()).toBe(10);
      // Another process (or a restart) issuing a token sweeps the expired ones.
      const second = await createVault({ store: createSqliteStore({ path: file }), keys });
      await issueSessionToken(second, ref, { ttlSeconds: 60 });
      for (let i = 0; i < 100 && (await rowsOnDisk()) !== 1; i++) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(await rowsOnDisk()).toBe(1);
      expect(await sessionRows(second.store)).toBe(1);
      await second.close();
      await raw.disconnect();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('claiming a fresh store', () => {
  it('a server that lost the claim refuses and takes nothing back, so servers already running on the winner keep it', async () => {
    const shared = createMemoryStore();
    const k1 = `k1:${randomBytes(32).toString('base64')}`;
    const k2 = `k2:${randomBytes(32).toString('base64')}`;
    let releaseZ!: () => void;
    const zMayWrite = new Promise<void>((resolve) => (releaseZ = resolve));
    // Z listed an empty store, then is held back while X claims it and Y starts on X's key.
    const slowZ = new Proxy(shared, {
      get(target, prop, receiver) {
        const original = Reflect.get(target, prop, receiver) as unknown;
        if (prop === 'close') return async () => undefined;
        if (prop !== 'batch' || typeof original !== 'function') return typeof original === 'function' ? original.bind(target) : original;
        return async (...args: unknown[]) => {
          await zMayWrite;
          return (original as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        };
      },
    });
    const z = createVault({ store: slowZ, keys: k2, log: () => undefined });
    const x = await createVault({ store: new Proxy(shared, { get: (t, p) => (p === 'close' ? async () => undefined : (Reflect.get(t, p) as unknown)) }), keys: k1, log: () => undefined });
    const y = await createVault({ store: new Proxy(shared, { get: (t, p) => (p === 'close' ? async () => undefined : (Reflect.get(t, p) as unknown)) }), keys: k1, log: () => undefined });
    releaseZ();
    await expect(z).rejects.toMatchObject({ code: 'KEYRING_MISMATCH' });
    // X's canary is still there: a fourth server with k1 starts, one with k2 is refused.
    const again = await createVault({ store: new Proxy(shared, { get: (t, p) => (p === 'close' ? async () => undefined : (Reflect.get(t, p) as unknown)) }), keys: k1, log: () => undefined });
    await expect(createVault({ store: new Proxy(shared, { get: (t, p) => (p === 'close' ? async () => undefined : (Reflect.get(t, p) as unknown)) }), keys: k2, log: () => undefined })).rejects.toMatchObject({ code: 'KEYRING_MISMATCH' });
    for (const vault of [x, y, again]) await vault.close();
    await shared.close();
  });
});

describe('account writes and their limits', () => {
  it('failing closed, a refused credential event takes back every added credential not yet reported', async () => {
    let refuse = false;
    const vault = await createVault({
      store: createMemoryStore(),
      keys: `k:${randomBytes(32).toString('base64')}`,
      failClosedEvents: true,
      onEvent: (event) => {
        if (refuse && event.type === 'credential.added') throw new Error('sink down');
      },
    });
    const ref = { org: 'acme', environment: 'test', accountId: 'audited' };
    try {
      await createLinkedAccount(vault, ref, { credentials: {} });
      refuse = true;
      await expect(upsertLinkedAccount(vault, ref, { credentials: { a: '1', b: '2' } })).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
      expect(await listDefaultAppCredentials(vault, ref)).toEqual([]);
    } finally {
      await vault.close();
    }
  });

  it('more credentials than one atomic write holds is a validation error, and nothing is written', async () => {
    const vault = await createVault({ store: createMemoryStore(), keys: `k:${randomBytes(32).toString('base64')}` });
    const ref = { org: 'acme', environment: 'test', accountId: 'many' };
    try {
      const credentials = Object.fromEntries(Array.from({ length: 997 }, (_, i) => [`k${i}`, 'v']));
      await expect(createLinkedAccount(vault, ref, { credentials })).rejects.toMatchObject({ code: 'VALIDATION_ERROR' });
      await expect(getLinkedAccount(vault, ref)).rejects.toMatchObject({ code: 'LINKED_ACCOUNT_NOT_FOUND' });
      // The profile, the data key, the default app and its key marker take four of the batch's 1000 writes.
      const fits = Object.fromEntries(Array.from({ length: 996 }, (_, i) => [`k${i}`, 'v']));
      await createLinkedAccount(vault, ref, { credentials: fits });
      expect(await listDefaultAppCredentials(vault, ref)).toHaveLength(996);
      // An update that also renames the account fills a batch the same way: profile, fence, app, marker.
      await upsertLinkedAccount(vault, ref, { name: 'renamed', credentials: fits });
      expect(await listDefaultAppCredentials(vault, ref)).toHaveLength(996);
    } finally {
      await vault.close();
    }
  });
});

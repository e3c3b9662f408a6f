/**
 * Core: listing linked accounts a page at a time (exact totals, order, scopes, validation,
 * under concurrent creates and deletes), the account index kept by every path that creates
 * or removes an account, the one-time indexing of accounts an older release stored, and the
 * repair of accounts such a release creates during a rolling upgrade (by an update, or by
 * `reindexLinkedAccounts`); on memory and SQLite.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  createLinkedAccount,
  createVault,
  deleteLinkedAccount,
  generateKey,
  getLinkedAccount,
  linkedAccountExists,
  listLinkedAccounts,
  reindexLinkedAccounts,
  upsertDefaultAppCredential,
  upsertLinkedAccount,
  VaultError,
  DEFAULT_ACCOUNT_PAGE_LIMIT,
  MAX_ACCOUNT_PAGE_LIMIT,
  type Vault,
  type VaultStore,
} from '../../src/index.js';
import { ACCOUNTS_INDEXED, DEFAULT_APP, META_GROUP, PROFILE, accountGroup, accountIndexEntry } from '../../src/core/layout.js';
import { BACKENDS, openTestVault, reopenableStore, type Backend, type TestVault } from './vaults.js';
import { rejection } from '../helpers/rejection.js';

const scope = { org: 'acme', environment: 'test' };
const ref = (accountId: string, where: { org: string; environment: string } = scope) => ({ ...where, accountId });

/** Every live record of the store, for "nothing changed" checks. */
async function dump(store: VaultStore): Promise<string[]> {
  const rows: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await store.scan(cursor, 500);
    rows.push(...page.items.map((item) => `${item.group} ${item.member} ${item.entry.value} ${item.entry.updatedAt}`));
    cursor = page.cursor;
  } while (cursor !== undefined);
  return rows.sort();
}

/** Every account id of the scope, read page by page through the public call. */
async function allListed(vault: Vault, where = scope, limit = MAX_ACCOUNT_PAGE_LIMIT): Promise<{ ids: string[]; totals: number[] }> {
  const ids: string[] = [];
  const totals: number[] = [];
  for (let page = 1; ; page++) {
    const listed = await listLinkedAccounts(vault, where, { page, limit });
    totals.push(listed.total);
    ids.push(...listed.accounts.map((a) => a.accountId));
    if (listed.accounts.length < limit) return { ids, totals };
  }
}

/** A profile as the release before account indexes wrote it: no timestamps of its own, no index entry. */
function legacyProfile(accountId: string, where = scope): string {
  return JSON.stringify({
    _id: 'ab'.repeat(12),
    account_id: accountId,
    name: `Legacy ${accountId}`,
    environment: where.environment,
    associated_org: where.org,
    udf: [{ key_name: 'plan', key_value: 'gold' }],
  });
}

describe.each(BACKENDS)('listing linked accounts on %s', (backend) => {
  let t: TestVault;
  beforeEach(async () => {
    t = await openTestVault(backend);
  });
  afterEach(() => t.done());

  const create = (ids: readonly string[], where = scope) => Promise.all(ids.map((id) => createLinkedAccount(t.vault, ref(id, where))));
  const ids = (n: number) => Array.from({ length: n }, (_, i) => `cust-${String(i).padStart(3, '0')}`);

  it.each([0, 1, 3, 4])('pages %i accounts with limit 3: exact total, each account once, then a page past the end', async (n) => {
    await create(ids(n));
    const first = await listLinkedAccounts(t.vault, scope, { page: 1, limit: 3 });
    expect(first).toMatchObject({ total: n, page: 1, limit: 3 });
    expect(first.accounts.map((a) => a.accountId)).toEqual(ids(n).slice(0, 3));
    const second = await listLinkedAccounts(t.vault, scope, { page: 2, limit: 3 });
    expect(second).toMatchObject({ total: n, page: 2, limit: 3 });
    expect(second.accounts.map((a) => a.accountId)).toEqual(ids(n).slice(3, 6));
    const past = await listLinkedAccounts(t.vault, scope, { page: 7, limit: 3 });
    expect(past).toEqual({ accounts: [], total: n, page: 7, limit: 3 });
  });

  it('defaults to page 1 and a limit of 10', async () => {
    await create(ids(12));
    const listed = await listLinkedAccounts(t.vault, scope);
    expect(DEFAULT_ACCOUNT_PAGE_LIMIT).toBe(10);
    expect(listed).toMatchObject({ total: 12, page: 1, limit: 10 });
    expect(listed.accounts.map((a) => a.accountId)).toEqual(ids(10));
  });

  it('takes a full page of the largest limit', async () => {
    await create(ids(MAX_ACCOUNT_PAGE_LIMIT + 1));
    const listed = await listLinkedAccounts(t.vault, scope, { limit: MAX_ACCOUNT_PAGE_LIMIT });
    expect(listed.accounts.map((a) => a.accountId)).toEqual(ids(MAX_ACCOUNT_PAGE_LIMIT));
    expect(listed.total).toBe(MAX_ACCOUNT_PAGE_LIMIT + 1);
  });

  it('orders accounts by id, whatever order they were created in', async () => {
    for (const id of ['c', 'a', 'B', 'b', '0', 'a-2', 'a.1', 'a_3']) await createLinkedAccount(t.vault, ref(id));
    const listed = await listLinkedAccounts(t.vault, scope, { limit: 100 });
    expect(listed.accounts.map((a) => a.accountId)).toEqual(['0', 'B', 'a', 'a-2', 'a.1', 'a_3', 'b', 'c']);
  });

  it('lists ids with any characters, each exactly as created', async () => {
    const odd = ['user:1', 'a/b', 'ünï', '__proto__', 'x y', '%0041'];
    await create(odd);
    const listed = await listLinkedAccounts(t.vault, scope, { limit: 100 });
    expect(listed.total).toBe(odd.length);
    expect(listed.accounts.map((a) => a.accountId).sort()).toEqual([...odd].sort());
  });

  it('never lists the accounts of another org or environment, however alike their names', async () => {
    await create(['mine-1', 'mine-2']);
    await create(['prod-1'], { org: 'acme', environment: 'production' });
    await create(['other-1'], { org: 'acme2', environment: 'test' });
    await create(['colon-1'], { org: 'acme:test', environment: 'test' });
    await create(['short-1'], { org: 'acm', environment: 'test' });
    const listed = await listLinkedAccounts(t.vault, scope, { limit: 100 });
    expect(listed.total).toBe(2);
    expect(listed.accounts.map((a) => [a.org, a.environment, a.accountId])).toEqual([
      ['acme', 'test', 'mine-1'],
      ['acme', 'test', 'mine-2'],
    ]);
    expect((await listLinkedAccounts(t.vault, { org: 'acme', environment: 'production' })).accounts.map((a) => a.accountId)).toEqual(['prod-1']);
    expect((await listLinkedAccounts(t.vault, { org: 'acme:test', environment: 'test' })).total).toBe(1);
    expect(await listLinkedAccounts(t.vault, { org: 'nobody', environment: 'test' })).toEqual({ accounts: [], total: 0, page: 1, limit: 10 });
  });

  it.each([
    ['limit 0', { limit: 0 }, 'limit must be an integer from 1 to 100'],
    ['limit 101', { limit: 101 }, 'limit must be an integer from 1 to 100'],
    ['limit 1.5', { limit: 1.5 }, 'limit must be an integer from 1 to 100'],
    ['limit NaN', { limit: Number.NaN }, 'limit must be an integer from 1 to 100'],
    ['limit as text', { limit: '5' as unknown as number }, 'limit must be an integer from 1 to 100'],
    ['page 0', { page: 0 }, 'page must be an integer of at least 1'],
    ['page -1', { page: -1 }, 'page must be an integer of at least 1'],
    ['page 2.5', { page: 2.5 }, 'page must be an integer of at least 1'],
    ['page Infinity', { page: Number.POSITIVE_INFINITY }, 'page must be an integer of at least 1'],
    ['page beyond safe integers', { page: 2 ** 53 }, 'page must be an integer of at least 1'],
  ])('%s is VALIDATION_ERROR saying so, and the store is unchanged', async (_name, options, message) => {
    await create(ids(2));
    const before = await dump(t.store);
    const error = await rejection(listLinkedAccounts(t.vault, scope, options));
    expect(error.code).toBe('VALIDATION_ERROR');
    expect(error.message).toBe(message);
    expect(await dump(t.store)).toEqual(before);
  });

  it('a page whose offset is past the safe integers is VALIDATION_ERROR, not a store failure', async () => {
    const error = await rejection(listLinkedAccounts(t.vault, scope, { page: 2 ** 52, limit: 100 }));
    expect(error.code).toBe('VALIDATION_ERROR');
    expect(error.message).toMatch(/^page is too large/);
    // The largest page whose offset is still exact reads as past the end.
    const last = Math.floor(Number.MAX_SAFE_INTEGER / 100) + 1;
    expect(await listLinkedAccounts(t.vault, scope, { page: last, limit: 100 })).toMatchObject({ accounts: [], total: 0 });
  });

  it('a bad org or environment is VALIDATION_ERROR naming the field', async () => {
    expect(await rejection(listLinkedAccounts(t.vault, { org: '', environment: 'test' }))).toMatchObject({ code: 'VALIDATION_ERROR', message: 'org must not be empty' });
    expect(await rejection(listLinkedAccounts(t.vault, { org: 'acme', environment: 'staging' }))).toMatchObject({ code: 'VALIDATION_ERROR', message: expect.stringMatching(/^environment /) as unknown });
  });

  it('a deleted account disappears; created again, it comes back once', async () => {
    await create(['a', 'b', 'c']);
    await deleteLinkedAccount(t.vault, ref('b'));
    expect(await allListed(t.vault)).toEqual({ ids: ['a', 'c'], totals: [2] });
    await createLinkedAccount(t.vault, ref('b'));
    await expect(createLinkedAccount(t.vault, ref('b'))).rejects.toMatchObject({ code: 'LINKED_ACCOUNT_EXISTS' });
    expect(await allListed(t.vault)).toEqual({ ids: ['a', 'b', 'c'], totals: [3] });
  });

  it('an account created through upsert is listed, and updating it does not list it twice', async () => {
    const { created } = await upsertLinkedAccount(t.vault, ref('via-upsert'), { name: 'First' });
    expect(created).toBe(true);
    await upsertLinkedAccount(t.vault, ref('via-upsert'), { name: 'Second', credentials: { api_key: 'k' } });
    const listed = await listLinkedAccounts(t.vault, scope);
    expect(listed.total).toBe(1);
    expect(listed.accounts.map((a) => [a.accountId, a.name])).toEqual([['via-upsert', 'Second']]);
  });

  it('lists each account as getLinkedAccount reads it, never with a credential', async () => {
    await createLinkedAccount(t.vault, ref('with-app'), { name: 'With', udf: { tier: 'gold' }, credentials: { api_key: 'sk_listing_secret' } });
    await createLinkedAccount(t.vault, ref('without-app'));
    const listed = await listLinkedAccounts(t.vault, scope);
    expect(listed.accounts).toEqual([await getLinkedAccount(t.vault, ref('with-app')), await getLinkedAccount(t.vault, ref('without-app'))]);
    expect(JSON.stringify(listed)).not.toContain('sk_listing_secret');
  });

  it('racing creates of one id list it once; of different ids, each once', async () => {
    const same = await Promise.allSettled(Array.from({ length: 20 }, () => createLinkedAccount(t.vault, ref('same'))));
    expect(same.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    await Promise.all([...ids(40).map((id) => createLinkedAccount(t.vault, ref(id))), ...ids(40).map((id) => upsertLinkedAccount(t.vault, ref(`u-${id}`)))]);
    const { ids: listed, totals } = await allListed(t.vault, scope, 30);
    expect(listed).toEqual(['same', ...ids(40), ...ids(40).map((id) => `u-${id}`)].sort());
    expect(new Set(totals)).toEqual(new Set([81]));
  });

  it('under racing creates and deletes the total stays exact and the index holds exactly the existing accounts', async () => {
    const pool = ids(24);
    await create(pool.filter((_, i) => i % 2 === 0));
    for (let round = 0; round < 4; round++) {
      await Promise.allSettled(
        pool.flatMap((id, i) => [
          (i + round) % 3 === 0 ? deleteLinkedAccount(t.vault, ref(id)) : createLinkedAccount(t.vault, ref(id)),
          (i + round) % 2 === 0 ? deleteLinkedAccount(t.vault, ref(id)) : upsertLinkedAccount(t.vault, ref(id), { name: `r${round}` }),
        ]),
      );
      const existing = [];
      for (const id of pool) if (await linkedAccountExists(t.vault, ref(id))) existing.push(id);
      const { ids: listed, totals } = await allListed(t.vault, scope, 5);
      expect(listed).toEqual(existing);
      expect(new Set(totals)).toEqual(new Set([existing.length]));
    }
  });

  it('an account deleted between the index read and its own read is left out of the page (the total was read before)', async () => {
    await t.done();
    const reopenable = reopenableStore(backend);
    let afterIndexRead: (() => Promise<unknown>) | undefined;
    const inner = reopenable.open();
    const store = new Proxy(inner, {
      get(target, prop) {
        const original = Reflect.get(target, prop) as unknown;
        if (prop !== 'readIndex' || typeof original !== 'function') return original;
        return async (...args: unknown[]) => {
          const page = await (original as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          await afterIndexRead?.();
          return page;
        };
      },
    });
    const vault = await createVault({ store, keys: generateKey('k').entry });
    t = { vault, store: inner, events: [], done: () => reopenable.cleanup() };
    await create(['a', 'b', 'c']);
    afterIndexRead = () => deleteLinkedAccount(vault, ref('b'));
    const listed = await listLinkedAccounts(vault, scope);
    expect(listed.total).toBe(3);
    expect(listed.accounts.map((a) => a.accountId)).toEqual(['a', 'c']);
    afterIndexRead = undefined;
    expect((await listLinkedAccounts(vault, scope)).total).toBe(2);
  });
});

describe.each(BACKENDS)('the account index under failing audit events on %s', (backend) => {
  it('a create taken back because its event was refused is not listed, and creating it again lists it once', async () => {
    let refuse = true;
    const t = await openTestVault(backend, {
      failClosedEvents: true,
      onEvent: (event) => {
        if (refuse && event.type === 'account.created') throw new Error('sink down');
      },
    });
    try {
      expect((await rejection(createLinkedAccount(t.vault, ref('undone')))).code).toBe('STORE_UNAVAILABLE');
      expect((await rejection(upsertLinkedAccount(t.vault, ref('undone-upsert')))).code).toBe('STORE_UNAVAILABLE');
      expect(await listLinkedAccounts(t.vault, scope)).toEqual({ accounts: [], total: 0, page: 1, limit: 10 });
      refuse = false;
      await createLinkedAccount(t.vault, ref('undone'));
      expect(await allListed(t.vault)).toEqual({ ids: ['undone'], totals: [1] });
    } finally {
      await t.done();
    }
  });

  it('a delete refused by its event leaves the account listed', async () => {
    let refuse = false;
    const t = await openTestVault(backend, {
      failClosedEvents: true,
      onEvent: (event) => {
        if (refuse && event.type === 'account.deleted') throw new Error('sink down');
      },
    });
    try {
      await createLinkedAccount(t.vault, ref('kept'));
      refuse = true;
      expect((await rejection(deleteLinkedAccount(t.vault, ref('kept')))).code).toBe('STORE_UNAVAILABLE');
      expect(await allListed(t.vault)).toEqual({ ids: ['kept'], totals: [1] });
    } finally {
      await t.done();
    }
  });
});

describe.each(BACKENDS)('the account shape on %s', (backend) => {
  let t: TestVault;
  beforeEach(async () => {
    t = await openTestVault(backend);
  });
  afterEach(() => t.done());

  const iso = (s: string) => expect(new Date(s).toISOString()).toBe(s);

  it('create returns the account as a later read sees it: ISO times, equal at first, and no default app without one', async () => {
    const created = await createLinkedAccount(t.vault, ref('plain'), { name: 'Plain', udf: { a: '1' } });
    iso(created.createdAt);
    expect(created.updatedAt).toBe(created.createdAt);
    expect(created.defaultApp).toBeUndefined();
    expect(created).toEqual({
      id: expect.stringMatching(/^[0-9a-f]{24}$/) as unknown,
      org: 'acme',
      environment: 'test',
      accountId: 'plain',
      name: 'Plain',
      udf: [{ name: 'a', value: '1' }],
      createdAt: created.createdAt,
      updatedAt: created.createdAt,
      defaultApp: undefined,
    });
    expect(await getLinkedAccount(t.vault, ref('plain'))).toEqual(created);
  });

  it('updatedAt moves on every name or udf change, createdAt never; a credential write moves neither', async () => {
    const created = await createLinkedAccount(t.vault, ref('moving'), { credentials: {} });
    const renamed = (await upsertLinkedAccount(t.vault, ref('moving'), { name: 'New name' })).account;
    expect(renamed.createdAt).toBe(created.createdAt);
    expect(Date.parse(renamed.updatedAt)).toBeGreaterThan(Date.parse(created.updatedAt));
    expect(await getLinkedAccount(t.vault, ref('moving'))).toEqual(renamed);
    // At once again, with the same name: still a change of the profile, still later.
    const again = (await upsertLinkedAccount(t.vault, ref('moving'), { name: 'New name' })).account;
    expect(Date.parse(again.updatedAt)).toBeGreaterThan(Date.parse(renamed.updatedAt));
    const udf = (await upsertLinkedAccount(t.vault, ref('moving'), { udf: { plan: 'pro' } })).account;
    expect(Date.parse(udf.updatedAt)).toBeGreaterThan(Date.parse(again.updatedAt));
    expect(udf.createdAt).toBe(created.createdAt);
    const credential = (await upsertLinkedAccount(t.vault, ref('moving'), { credentials: { api_key: 'v' } })).account;
    expect(credential.updatedAt).toBe(udf.updatedAt);
    expect(await getLinkedAccount(t.vault, ref('moving'))).toEqual(credential);
  });

  it('the default app has a 24-hex id that stays the same across credential writes, and times of its own', async () => {
    const created = await createLinkedAccount(t.vault, ref('app'), { credentials: { api_key: 'v1' } });
    const app = created.defaultApp;
    expect(app?.id).toMatch(/^[0-9a-f]{24}$/);
    expect(app?.id).not.toBe(created.id);
    iso(app?.createdAt ?? '');
    iso(app?.updatedAt ?? '');
    const read = await getLinkedAccount(t.vault, ref('app'));
    expect(read.defaultApp?.id).toBe(app?.id);
    const upserted = (await upsertLinkedAccount(t.vault, ref('app'), { credentials: { api_key: 'v2', other: 'x' } })).account;
    expect(upserted.defaultApp?.id).toBe(app?.id);
    expect(upserted.defaultApp?.createdAt).toBe(read.defaultApp?.createdAt);
    expect(Date.parse(upserted.defaultApp?.updatedAt ?? '')).toBeGreaterThanOrEqual(Date.parse(read.defaultApp?.updatedAt ?? ''));
    expect(await getLinkedAccount(t.vault, ref('app'))).toEqual(upserted);
    // Another account's default app is another integration.
    const other = await createLinkedAccount(t.vault, ref('app-2'), { credentials: {} });
    expect(other.defaultApp?.id).toMatch(/^[0-9a-f]{24}$/);
    expect(other.defaultApp?.id).not.toBe(app?.id);
  });

  it('an account without a default app gets one through upsert with credentials, even empty ones', async () => {
    await createLinkedAccount(t.vault, ref('later'));
    const same = (await upsertLinkedAccount(t.vault, ref('later'), { name: 'x' })).account;
    expect(same.defaultApp).toBeUndefined();
    const withApp = (await upsertLinkedAccount(t.vault, ref('later'), { credentials: {} })).account;
    expect(withApp.defaultApp?.id).toMatch(/^[0-9a-f]{24}$/);
    expect((await getLinkedAccount(t.vault, ref('later'))).defaultApp).toEqual(withApp.defaultApp);
    // A new account of the same id is a new account, with a new default app.
    await deleteLinkedAccount(t.vault, ref('later'));
    const reborn = await createLinkedAccount(t.vault, ref('later'), { credentials: {} });
    expect(reborn.defaultApp?.id).not.toBe(withApp.defaultApp?.id);
  });
});

describe.each(BACKENDS)('accounts stored by the release before indexes, on %s', (backend: Backend) => {
  const keys = generateKey('k1').entry;

  /** A store as that release left it: one account with a default app, one without, and a group with no profile. */
  async function legacyStore(store: VaultStore): Promise<void> {
    for (const [id, withApp] of [['old-1', true], ['old-2', false]] as const) {
      const writes = [{ op: 'insert' as const, member: PROFILE, value: legacyProfile(id) }];
      if (withApp) writes.push({ op: 'insert', member: DEFAULT_APP, value: JSON.stringify({ type: 'default_app' }) });
      expect(await store.batch(accountGroup(ref(id)), writes)).toMatchObject({ committed: true });
    }
    await store.put(accountGroup(ref('orphan')), 'cred:stray', 'not an account');
  }

  /** Counts the store's scan calls, so a test can see whether an open walked the store. */
  function counting(store: VaultStore): { store: VaultStore; scans: () => number } {
    let scans = 0;
    const wrapped = new Proxy(store, {
      get(target, prop) {
        const original = Reflect.get(target, prop) as unknown;
        if (prop !== 'scan' || typeof original !== 'function') return original;
        return (...args: unknown[]) => {
          scans += 1;
          return (original as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        };
      },
    });
    return { store: wrapped, scans: () => scans };
  }

  it('are indexed by the first open, listed once, said once on the log; later opens do not walk the store', async () => {
    const data = reopenableStore(backend);
    try {
      await legacyStore(data.open());
      const lines: string[] = [];
      const first = counting(data.open());
      const vault = await createVault({ store: first.store, keys, log: (line) => lines.push(line) });
      expect(first.scans()).toBeGreaterThan(0);
      expect(lines).toEqual(['credvault: indexed 2 existing linked accounts for listing']);
      const listed = await listLinkedAccounts(vault, scope);
      expect(listed.total).toBe(2);
      expect(listed.accounts.map((a) => [a.accountId, a.name, a.udf])).toEqual([
        ['old-1', 'Legacy old-1', [{ name: 'plan', value: 'gold' }]],
        ['old-2', 'Legacy old-2', [{ name: 'plan', value: 'gold' }]],
      ]);
      await vault.close();

      const second = counting(data.open());
      const again = await createVault({ store: second.store, keys, log: (line) => lines.push(line) });
      expect(second.scans()).toBe(0);
      expect(lines).toHaveLength(1);
      expect(await allListed(again)).toEqual({ ids: ['old-1', 'old-2'], totals: [2] });
      // The old accounts now live like new ones: deleted, they leave the index.
      await deleteLinkedAccount(again, ref('old-1'));
      expect(await allListed(again)).toEqual({ ids: ['old-2'], totals: [1] });
      await again.close();
    } finally {
      await data.cleanup();
    }
  });

  it('read with the times of their records, and take their own times once changed', async () => {
    const data = reopenableStore(backend);
    try {
      const raw = data.open();
      await legacyStore(raw);
      const profile = await raw.get(accountGroup(ref('old-1')), PROFILE);
      const app = await raw.get(accountGroup(ref('old-1')), DEFAULT_APP);
      const vault = await createVault({ store: data.open(), keys, log: () => undefined });
      const read = await getLinkedAccount(vault, ref('old-1'));
      expect(read.createdAt).toBe(new Date(profile?.createdAt ?? 0).toISOString());
      expect(read.updatedAt).toBe(new Date(profile?.updatedAt ?? 0).toISOString());
      expect(read.defaultApp?.createdAt).toBe(new Date(app?.createdAt ?? 0).toISOString());
      expect((await getLinkedAccount(vault, ref('old-2'))).defaultApp).toBeUndefined();
      const renamed = (await upsertLinkedAccount(vault, ref('old-1'), { name: 'Renamed' })).account;
      expect(renamed.createdAt).toBe(read.createdAt);
      expect(Date.parse(renamed.updatedAt)).toBeGreaterThan(Date.parse(read.updatedAt));
      expect(await getLinkedAccount(vault, ref('old-1'))).toEqual(renamed);
      await vault.close();
    } finally {
      await data.cleanup();
    }
  });

  it('a fresh store costs the first open one scan page and logs nothing; it is marked at once', async () => {
    const data = reopenableStore(backend);
    try {
      const lines: string[] = [];
      const first = counting(data.open());
      const vault = await createVault({ store: first.store, keys, log: (line) => lines.push(line) });
      expect(first.scans()).toBe(1);
      expect(lines).toEqual([]);
      expect(await data.open().get(META_GROUP, ACCOUNTS_INDEXED)).toBeDefined();
      await vault.close();
    } finally {
      await data.cleanup();
    }
  });

  it('an account deleted while the walk runs is not indexed', async () => {
    const data = reopenableStore(backend);
    try {
      await legacyStore(data.open());
      const inner = data.open();
      // Right after the walk's page is read, another server deletes old-2 (as this release deletes).
      const racing = new Proxy(inner, {
        get(target, prop) {
          const original = Reflect.get(target, prop) as unknown;
          if (prop !== 'scan' || typeof original !== 'function') return original;
          return async (...args: unknown[]) => {
            const page = await (original as (...a: unknown[]) => Promise<unknown>).apply(target, args);
            await inner.removeGroup(accountGroup(ref('old-2')), { index: accountIndexEntry(ref('old-2')) });
            return page;
          };
        },
      });
      const lines: string[] = [];
      const vault = await createVault({ store: racing, keys, log: (line) => lines.push(line) });
      expect(lines).toEqual(['credvault: indexed 1 existing linked account for listing']);
      expect(await allListed(vault)).toEqual({ ids: ['old-1'], totals: [1] });
      await vault.close();
    } finally {
      await data.cleanup();
    }
  });

  it('two vaults opening one older store at once index each account once', async () => {
    const data = reopenableStore(backend);
    try {
      await legacyStore(data.open());
      const vaults = await Promise.all([0, 1, 2].map(() => createVault({ store: data.open(), keys, log: () => undefined })));
      for (const vault of vaults) expect(await allListed(vault, scope, 1)).toEqual({ ids: ['old-1', 'old-2'], totals: [2, 2, 2] });
      await Promise.all(vaults.map((vault) => vault.close()));
    } finally {
      await data.cleanup();
    }
  });

  it('an open cut off before the walk ends leaves the store unmarked, and the next open finishes the job', async () => {
    const data = reopenableStore(backend);
    try {
      await legacyStore(data.open());
      const inner = data.open();
      // Fails the marker's write: the walk ran, the open fails, the store stays unmarked.
      const failing = new Proxy(inner, {
        get(target, prop) {
          const original = Reflect.get(target, prop) as unknown;
          if (prop !== 'insert' || typeof original !== 'function') return original;
          return (group: string, member: string, ...rest: unknown[]) =>
            member === ACCOUNTS_INDEXED
              ? Promise.reject(new Error('backend down'))
              : (original as (...a: unknown[]) => Promise<unknown>).apply(target, [group, member, ...rest]);
        },
      });
      expect((await rejection(createVault({ store: failing, keys, log: () => undefined }))).code).toBe('STORE_UNAVAILABLE');
      expect(await data.open().get(META_GROUP, ACCOUNTS_INDEXED)).toBeUndefined();
      const lines: string[] = [];
      const vault = await createVault({ store: data.open(), keys, log: (line) => lines.push(line) });
      expect(lines).toEqual(['credvault: indexed 2 existing linked accounts for listing']);
      expect(await allListed(vault)).toEqual({ ids: ['old-1', 'old-2'], totals: [2] });
      await vault.close();
    } finally {
      await data.cleanup();
    }
  });
});

describe.each(BACKENDS)('accounts an older release creates after the first open (a rolling upgrade), on %s', (backend: Backend) => {
  const keys = generateKey('k1').entry;
  const other = { org: 'acme', environment: 'production' };

  /** Writes an account as a process still on the release before indexes does: its records, no index entry. */
  async function createTheOldWay(store: VaultStore, accountId: string, where = scope): Promise<void> {
    const writes = [
      { op: 'insert' as const, member: PROFILE, value: legacyProfile(accountId, where) },
      { op: 'insert' as const, member: DEFAULT_APP, value: JSON.stringify({ type: 'default_app' }) },
    ];
    expect(await store.batch(accountGroup(ref(accountId, where)), writes)).toMatchObject({ committed: true });
  }

  /** A vault over this data, opened (and so marked) before the older release writes anything. */
  async function markedVault(data: ReturnType<typeof reopenableStore>, store: VaultStore = data.open()): Promise<Vault> {
    const vault = await createVault({ store, keys, log: () => undefined });
    expect(await data.open().get(META_GROUP, ACCOUNTS_INDEXED)).toBeDefined();
    return vault;
  }

  it.each([
    ['without any change', {}],
    ['with a new name', { name: 'Renamed' }],
    ['with a udf field', { udf: { tier: 'silver' } }],
    ['with a credential', { credentials: { api_key: 'sk_test_upgrade' } }],
  ])('is not listed until an update %s lists it, exactly once with an exact total', async (_name, input) => {
    const data = reopenableStore(backend);
    try {
      const vault = await markedVault(data);
      await createLinkedAccount(vault, ref('new-1'));
      await createTheOldWay(data.open(), 'old-1');
      expect(await linkedAccountExists(vault, ref('old-1'))).toBe(true);
      expect(await allListed(vault)).toEqual({ ids: ['new-1'], totals: [1] });

      const { created } = await upsertLinkedAccount(vault, ref('old-1'), input);
      expect(created).toBe(false);
      expect(await allListed(vault)).toEqual({ ids: ['new-1', 'old-1'], totals: [2] });
      expect(await allListed(vault, scope, 1)).toEqual({ ids: ['new-1', 'old-1'], totals: [2, 2, 2] });
      // A second update adds nothing; the account reads as the update left it.
      await upsertLinkedAccount(vault, ref('old-1'), input);
      expect(await allListed(vault)).toEqual({ ids: ['new-1', 'old-1'], totals: [2] });
      const listed = (await listLinkedAccounts(vault, scope)).accounts.find((a) => a.accountId === 'old-1');
      expect(listed).toEqual(await getLinkedAccount(vault, ref('old-1')));
      await vault.close();
    } finally {
      await data.cleanup();
    }
  });

  it('a credential write alone does not list it (the hot path carries no index); an update then does', async () => {
    const data = reopenableStore(backend);
    try {
      const vault = await markedVault(data);
      await createTheOldWay(data.open(), 'old-1');
      expect(await upsertDefaultAppCredential(vault, ref('old-1'), 'api_key', 'sk_test_hot')).toMatchObject({ action: 'added' });
      expect(await allListed(vault)).toEqual({ ids: [], totals: [0] });
      await upsertLinkedAccount(vault, ref('old-1'));
      expect(await allListed(vault)).toEqual({ ids: ['old-1'], totals: [1] });
      await vault.close();
    } finally {
      await data.cleanup();
    }
  });

  it.each([
    ['a profile change', { name: 'Renamed' }],
    ['no profile change', {}],
  ])('an update with %s racing an older release deleting the account lists nothing and says not found', async (_name, input) => {
    const data = reopenableStore(backend);
    try {
      const inner = data.open();
      let armed = false;
      // Right before the update's batch, a process on the older release deletes the account (no index).
      const racing = new Proxy(inner, {
        get(target, prop) {
          const original = Reflect.get(target, prop) as unknown;
          if (prop !== 'batch' || typeof original !== 'function') return original;
          return async (...args: unknown[]) => {
            if (armed && args[0] === accountGroup(ref('old-1'))) {
              armed = false;
              expect(await inner.removeGroup(accountGroup(ref('old-1')))).toBe(2);
            }
            return (original as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          };
        },
      });
      const vault = await markedVault(data, racing);
      await createTheOldWay(inner, 'old-1');
      armed = true;
      expect((await rejection(upsertLinkedAccount(vault, ref('old-1'), input))).code).toBe('LINKED_ACCOUNT_NOT_FOUND');
      expect(armed).toBe(false);
      expect(await inner.readIndex(accountIndexEntry(ref('old-1')).index, 0, 10)).toEqual({ total: 0, entries: [] });
      await vault.close();
    } finally {
      await data.cleanup();
    }
  });

  it('reindexLinkedAccounts lists them, each once, in their own org and environment, and counts the live accounts it walked', async () => {
    const data = reopenableStore(backend);
    try {
      const vault = await markedVault(data);
      await createLinkedAccount(vault, ref('new-1'));
      const raw = data.open();
      await createTheOldWay(raw, 'old-2');
      await createTheOldWay(raw, 'old-1');
      await createTheOldWay(raw, 'old-p', other);
      // A group the older release left without a profile is no account.
      await raw.put(accountGroup(ref('orphan')), 'cred:stray', 'not an account');
      expect(await allListed(vault)).toEqual({ ids: ['new-1'], totals: [1] });
      expect(await allListed(vault, other)).toEqual({ ids: [], totals: [0] });

      const progress: number[] = [];
      expect(await reindexLinkedAccounts(vault, { onProgress: (n) => progress.push(n) })).toEqual({ accounts: 4 });
      expect(progress.at(-1)).toBe(4);
      expect(await allListed(vault)).toEqual({ ids: ['new-1', 'old-1', 'old-2'], totals: [3] });
      expect(await allListed(vault, scope, 1)).toEqual({ ids: ['new-1', 'old-1', 'old-2'], totals: [3, 3, 3, 3] });
      expect(await allListed(vault, other)).toEqual({ ids: ['old-p'], totals: [1] });
      expect((await listLinkedAccounts(vault, scope)).accounts.find((a) => a.accountId === 'old-1')).toEqual(await getLinkedAccount(vault, ref('old-1')));

      // Again: the same count (it counts accounts seen, not entries added), and nothing listed twice.
      expect(await reindexLinkedAccounts(vault)).toEqual({ accounts: 4 });
      expect(await allListed(vault)).toEqual({ ids: ['new-1', 'old-1', 'old-2'], totals: [3] });
      // Reindexed accounts now live like new ones: deleted, they leave the index.
      await deleteLinkedAccount(vault, ref('old-2'));
      expect(await allListed(vault)).toEqual({ ids: ['new-1', 'old-1'], totals: [2] });
      await vault.close();
    } finally {
      await data.cleanup();
    }
  });

  it('an account deleted while reindexLinkedAccounts walks is not put back in the index', async () => {
    const data = reopenableStore(backend);
    try {
      const inner = data.open();
      let armed = false;
      // Right after the walk's page is read, another server deletes old-2 (as this release deletes).
      const racing = new Proxy(inner, {
        get(target, prop) {
          const original = Reflect.get(target, prop) as unknown;
          if (prop !== 'scan' || typeof original !== 'function') return original;
          return async (...args: unknown[]) => {
            const page = await (original as (...a: unknown[]) => Promise<unknown>).apply(target, args);
            if (armed) {
              armed = false;
              expect(await inner.removeGroup(accountGroup(ref('old-2')), { index: accountIndexEntry(ref('old-2')) })).toBe(2);
            }
            return page;
          };
        },
      });
      const vault = await markedVault(data, racing);
      await createTheOldWay(inner, 'old-1');
      await createTheOldWay(inner, 'old-2');
      armed = true;
      expect(await reindexLinkedAccounts(vault)).toEqual({ accounts: 1 });
      expect(armed).toBe(false);
      expect(await allListed(vault)).toEqual({ ids: ['old-1'], totals: [1] });
      expect(await linkedAccountExists(vault, ref('old-2'))).toBe(false);
      await vault.close();
    } finally {
      await data.cleanup();
    }
  });

  it('a listed account an older release deletes still counts in the total but is never in a page; created again, it is listed once', async () => {
    const data = reopenableStore(backend);
    try {
      const vault = await markedVault(data);
      await Promise.all(['a-1', 'a-2', 'a-3'].map((id) => createLinkedAccount(vault, ref(id))));
      // The older release deletes without touching the index (the profile and the data key go).
      expect(await data.open().removeGroup(accountGroup(ref('a-2')))).toBe(2);
      const first = await listLinkedAccounts(vault, scope, { page: 1, limit: 2 });
      expect(first.accounts.map((a) => a.accountId)).toEqual(['a-1']);
      expect(first.total).toBe(3);
      expect((await listLinkedAccounts(vault, scope, { page: 2, limit: 2 })).accounts.map((a) => a.accountId)).toEqual(['a-3']);
      // A reindex cannot drop the entry either, and leaves the rest as it was.
      expect(await reindexLinkedAccounts(vault)).toEqual({ accounts: 2 });
      expect((await listLinkedAccounts(vault, scope)).total).toBe(3);
      await createLinkedAccount(vault, ref('a-2'));
      expect(await allListed(vault)).toEqual({ ids: ['a-1', 'a-2', 'a-3'], totals: [3] });
      await vault.close();
    } finally {
      await data.cleanup();
    }
  });
});

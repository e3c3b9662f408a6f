/** Core credentials: upsert, read, list and delete through the public surface, on memory and SQLite. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  createLinkedAccount,
  deleteDefaultAppCredential,
  getDefaultAppCredential,
  listDefaultAppCredentials,
  upsertDefaultAppCredential,
  VaultError,
} from '../../src/index.js';
import { BACKENDS, openTestVault, type TestVault } from './vaults.js';
import { rejection } from '../helpers/rejection.js';

const acct = { org: 'acme', environment: 'test', accountId: 'cust-1' };

/** The thrown VaultError, so a test can assert its code and message. */
describe.each(BACKENDS)('credentials on %s', (backend) => {
  let t: TestVault;
  beforeEach(async () => {
    t = await openTestVault(backend);
    await createLinkedAccount(t.vault, acct, { credentials: {} });
  });
  afterEach(() => t.done());

  it('says added the first time and updated after, and reads back the latest value', async () => {
    expect(await upsertDefaultAppCredential(t.vault, acct, 'api_key', 'v1')).toEqual({ action: 'added' });
    expect(await upsertDefaultAppCredential(t.vault, acct, 'api_key', 'v2')).toEqual({ action: 'updated' });
    expect(await upsertDefaultAppCredential(t.vault, acct, 'other', 'x')).toEqual({ action: 'added' });
    expect(await getDefaultAppCredential(t.vault, acct, 'api_key')).toBe('v2');
    expect(await getDefaultAppCredential(t.vault, acct, 'missing')).toBeUndefined();
  });

  it('counts added exactly once when many writers race on one new key', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => upsertDefaultAppCredential(t.vault, acct, 'raced', `v${i}`)));
    expect(results.filter((r) => r.action === 'added')).toHaveLength(1);
    expect(results.filter((r) => r.action === 'updated')).toHaveLength(19);
  });

  it('lists names sorted with timestamps, and values only when revealed', async () => {
    await upsertDefaultAppCredential(t.vault, acct, 'zeta', 'z');
    await upsertDefaultAppCredential(t.vault, acct, 'alpha', 'a');
    await upsertDefaultAppCredential(t.vault, acct, 'alpha', 'a2');
    const list = await listDefaultAppCredentials(t.vault, acct);
    expect(list.map((c) => c.key)).toEqual(['alpha', 'zeta']);
    for (const info of list) {
      expect(info).not.toHaveProperty('value');
      expect(new Date(info.createdAt).toISOString()).toBe(info.createdAt);
      expect(Date.parse(info.updatedAt)).toBeGreaterThanOrEqual(Date.parse(info.createdAt));
    }
    const revealed = await listDefaultAppCredentials(t.vault, acct, { reveal: true });
    expect(revealed.map((c) => [c.key, c.value])).toEqual([
      ['alpha', 'a2'],
      ['zeta', 'z'],
    ]);
  });

  it('keeps createdAt across an update', async () => {
    await upsertDefaultAppCredential(t.vault, acct, 'k', 'one');
    const [before] = await listDefaultAppCredentials(t.vault, acct);
    await upsertDefaultAppCredential(t.vault, acct, 'k', 'two');
    const [after] = await listDefaultAppCredentials(t.vault, acct);
    expect(after?.createdAt).toBe(before?.createdAt);
  });

  it('deletes a stored key, and a second delete is CREDENTIAL_NOT_FOUND naming the key', async () => {
    await upsertDefaultAppCredential(t.vault, acct, 'api_key', 'v');
    await deleteDefaultAppCredential(t.vault, acct, 'api_key');
    expect(await getDefaultAppCredential(t.vault, acct, 'api_key')).toBeUndefined();
    expect(await listDefaultAppCredentials(t.vault, acct)).toEqual([]);
    const error = await rejection(deleteDefaultAppCredential(t.vault, acct, 'api_key'));
    expect(error.code).toBe('CREDENTIAL_NOT_FOUND');
    expect(error.message).toBe("Auth credential key 'api_key' not found");
  });

  it.each(['__proto__', 'constructor', 'prototype', 'hasOwnProperty', 'toString', 'a.b-c_D9', 'x'.repeat(128)])(
    'round-trips the key name %s like any other',
    async (key) => {
      expect(await upsertDefaultAppCredential(t.vault, acct, key, 'value-1')).toEqual({ action: 'added' });
      expect(await upsertDefaultAppCredential(t.vault, acct, key, 'value-2')).toEqual({ action: 'updated' });
      expect(await getDefaultAppCredential(t.vault, acct, key)).toBe('value-2');
      expect((await listDefaultAppCredentials(t.vault, acct, { reveal: true })).map((c) => [c.key, c.value])).toEqual([[key, 'value-2']]);
      await deleteDefaultAppCredential(t.vault, acct, key);
      expect(await listDefaultAppCredentials(t.vault, acct)).toEqual([]);
    },
  );

  it('keeps accounts whose ids contain : and / apart from accounts they could be confused with', async () => {
    const tricky = [
      { org: 'acme', environment: 'test', accountId: 'a:b' },
      { org: 'acme:a', environment: 'test', accountId: 'b' },
      { org: 'acme', environment: 'test', accountId: 'a/b' },
      { org: 'acme', environment: 'test', accountId: 'a%003ab' },
    ];
    for (const [i, ref] of tricky.entries()) {
      await createLinkedAccount(t.vault, ref, { credentials: {} });
      await upsertDefaultAppCredential(t.vault, ref, 'k', `v${i}`);
    }
    for (const [i, ref] of tricky.entries()) {
      expect(await getDefaultAppCredential(t.vault, ref, 'k')).toBe(`v${i}`);
      expect(await listDefaultAppCredentials(t.vault, ref)).toHaveLength(1);
    }
  });
});

describe('credential values and key names', () => {
  let t: TestVault;
  beforeEach(async () => {
    t = await openTestVault('memory', { maxValueBytes: 8 });
    await createLinkedAccount(t.vault, acct, { credentials: {} });
  });
  afterEach(() => t.done());

  it.each([
    [42, '42'],
    [0, '0'],
    [-1.5, '-1.5'],
    [true, 'true'],
    [false, 'false'],
    [' spaced ', ' spaced '],
  ])('stores %j as %j', async (input, stored) => {
    await upsertDefaultAppCredential(t.vault, acct, 'k', input);
    expect(await getDefaultAppCredential(t.vault, acct, 'k')).toBe(stored);
  });

  it.each([
    ['null', null],
    ['undefined', undefined],
    ['an object', { a: 1 }],
    ['an array', ['a']],
    ['the empty string', ''],
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['a lone surrogate', '\ud800'],
    ['a bigint', 1n],
  ])('refuses %s as a value with VALIDATION_ERROR, and stores nothing', async (_what, input) => {
    const error = await rejection(upsertDefaultAppCredential(t.vault, acct, 'k', input));
    expect(error.code).toBe('VALIDATION_ERROR');
    expect(error.message).toMatch(/^value /);
    expect(await listDefaultAppCredentials(t.vault, acct)).toEqual([]);
  });

  it('caps a value in UTF-8 bytes, not characters', async () => {
    // 'é' is two bytes: four of them fill the 8-byte cap exactly, a ninth byte is over.
    await upsertDefaultAppCredential(t.vault, acct, 'fits', 'éééé');
    expect(await getDefaultAppCredential(t.vault, acct, 'fits')).toBe('éééé');
    const error = await rejection(upsertDefaultAppCredential(t.vault, acct, 'over', 'éééé!'));
    expect(error.code).toBe('VALIDATION_ERROR');
    expect(error.message).toBe('value must be at most 8 bytes');
  });

  it('never echoes a refused value in the message', async () => {
    const secret = 'sk_live_'.repeat(4);
    const error = await rejection(upsertDefaultAppCredential(t.vault, acct, 'k', secret));
    expect(error.code).toBe('VALIDATION_ERROR');
    expect(error.message).not.toContain('sk_live_');
  });

  it('a refused update leaves the stored value as it was', async () => {
    await upsertDefaultAppCredential(t.vault, acct, 'k', 'old');
    await expect(upsertDefaultAppCredential(t.vault, acct, 'k', null)).rejects.toMatchObject({ code: 'VALIDATION_ERROR' });
    expect(await getDefaultAppCredential(t.vault, acct, 'k')).toBe('old');
  });

  it.each(['', 'x'.repeat(129), 'a b', 'a/b', 'a:b', 'é', 'a\nb', 'key%41'])('refuses the key name %j with VALIDATION_ERROR', async (key) => {
    for (const call of [
      upsertDefaultAppCredential(t.vault, acct, key, 'v'),
      getDefaultAppCredential(t.vault, acct, key),
      deleteDefaultAppCredential(t.vault, acct, key),
    ]) {
      const error = await rejection(call);
      expect(error.code).toBe('VALIDATION_ERROR');
      expect(error.message).toBe('key must be 1 to 128 characters of A-Z a-z 0-9 _ . -');
    }
  });

  it('refuses a key that is not a string', async () => {
    await expect(upsertDefaultAppCredential(t.vault, acct, 7 as unknown as string, 'v')).rejects.toMatchObject({ code: 'VALIDATION_ERROR' });
  });
});

describe('the account a credential belongs to', () => {
  let t: TestVault;
  beforeEach(async () => {
    t = await openTestVault('memory');
  });
  afterEach(() => t.done());

  it('an unknown account is LINKED_ACCOUNT_NOT_FOUND naming account, org and environment, for every operation', async () => {
    const ghost = { org: 'acme', environment: 'test', accountId: 'ghost' };
    const message = 'Linked Account with account id ghost for org acme in environment test not found';
    for (const call of [
      upsertDefaultAppCredential(t.vault, ghost, 'k', 'v'),
      deleteDefaultAppCredential(t.vault, ghost, 'k'),
      listDefaultAppCredentials(t.vault, ghost),
    ]) {
      const error = await rejection(call);
      expect([error.code, error.message]).toEqual(['LINKED_ACCOUNT_NOT_FOUND', message]);
    }
    expect(await getDefaultAppCredential(t.vault, ghost, 'k')).toBeUndefined();
  });

  it('the same account id in another org or environment is another account', async () => {
    await createLinkedAccount(t.vault, acct, { credentials: { k: 'mine' } });
    const otherOrg = { ...acct, org: 'globex' };
    const otherEnv = { ...acct, environment: 'production' };
    for (const ref of [otherOrg, otherEnv]) {
      expect(await getDefaultAppCredential(t.vault, ref, 'k')).toBeUndefined();
      await expect(upsertDefaultAppCredential(t.vault, ref, 'k', 'theirs')).rejects.toMatchObject({ code: 'LINKED_ACCOUNT_NOT_FOUND' });
      await expect(deleteDefaultAppCredential(t.vault, ref, 'k')).rejects.toMatchObject({ code: 'LINKED_ACCOUNT_NOT_FOUND' });
    }
    expect(await getDefaultAppCredential(t.vault, acct, 'k')).toBe('mine');
  });

  it.each([
    ['an unknown environment', { ...acct, environment: 'staging' }, /^environment /],
    ['an empty org', { ...acct, org: '' }, /^org /],
    ['an empty account id', { ...acct, accountId: '' }, /^linked_account_id /],
    ['a control character in the account id', { ...acct, accountId: 'a\u0000b' }, /^linked_account_id /],
    ['an account id over 256 characters', { ...acct, accountId: 'a'.repeat(257) }, /^linked_account_id /],
  ])('%s is VALIDATION_ERROR naming the field', async (_what, ref, field) => {
    const error = await rejection(upsertDefaultAppCredential(t.vault, ref, 'k', 'v'));
    expect(error.code).toBe('VALIDATION_ERROR');
    expect(error.message).toMatch(field);
  });

  it('an account without a default app is DEFAULT_APP_NOT_FOUND for writes and deletes, and lists nothing', async () => {
    await createLinkedAccount(t.vault, acct);
    const message = 'Default app integration not found for linked account cust-1';
    for (const call of [upsertDefaultAppCredential(t.vault, acct, 'k', 'v'), deleteDefaultAppCredential(t.vault, acct, 'k')]) {
      const error = await rejection(call);
      expect([error.code, error.message]).toEqual(['DEFAULT_APP_NOT_FOUND', message]);
    }
    expect(await listDefaultAppCredentials(t.vault, acct)).toEqual([]);
  });
});

describe('credential events', () => {
  it('report added, updated and deleted with who, where and which key, and never the value', async () => {
    const t = await openTestVault('memory');
    try {
      await createLinkedAccount(t.vault, acct, { credentials: {} });
      t.events.length = 0;
      const actor = { type: 'api_key', keyId: '0123456789abcdef' } as const;
      const principal = { ...acct, actor };
      await upsertDefaultAppCredential(t.vault, principal, 'api_key', 'sk_secret_value_1');
      await upsertDefaultAppCredential(t.vault, principal, 'api_key', 'sk_secret_value_2');
      await deleteDefaultAppCredential(t.vault, principal, 'api_key');
      await expect(deleteDefaultAppCredential(t.vault, principal, 'api_key')).rejects.toMatchObject({ code: 'CREDENTIAL_NOT_FOUND' });
      expect(t.events.map(({ time, ...rest }) => rest)).toEqual(
        ['credential.added', 'credential.updated', 'credential.deleted'].map((type) => ({ type, ...acct, key: 'api_key', actor })),
      );
      for (const event of t.events) expect(new Date(event.time).toISOString()).toBe(event.time);
      expect(JSON.stringify(t.events)).not.toContain('sk_secret_value');
    } finally {
      await t.done();
    }
  });

  it('a refused write emits nothing', async () => {
    const t = await openTestVault('memory');
    try {
      await createLinkedAccount(t.vault, acct);
      t.events.length = 0;
      await expect(upsertDefaultAppCredential(t.vault, acct, 'k', 'v')).rejects.toMatchObject({ code: 'DEFAULT_APP_NOT_FOUND' });
      await expect(upsertDefaultAppCredential(t.vault, acct, 'k', '')).rejects.toMatchObject({ code: 'VALIDATION_ERROR' });
      expect(t.events).toEqual([]);
    } finally {
      await t.done();
    }
  });

  it('a system caller is the actor when the principal names none', async () => {
    const t = await openTestVault('memory');
    try {
      await createLinkedAccount(t.vault, acct, { credentials: {} });
      t.events.length = 0;
      await upsertDefaultAppCredential(t.vault, acct, 'k', 'v');
      expect(t.events.map((e) => e.actor)).toEqual([{ type: 'system' }]);
    } finally {
      await t.done();
    }
  });
});

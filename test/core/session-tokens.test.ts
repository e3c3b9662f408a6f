/** Core session tokens: issue, verify, reuse unless forced, revoke, expiry, binding to one account; on memory and SQLite. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  createLinkedAccount,
  deleteLinkedAccount,
  issueSessionToken,
  revokeSessionToken,
  verifySessionToken,
  VaultError,
} from '../../src/index.js';
import { settle, waitFor } from '../helpers/wait.js';
import { BACKENDS, openTestVault, type TestVault } from './vaults.js';

const acct = { org: 'acme', environment: 'test', accountId: 'cust-1' };
const other = { org: 'acme', environment: 'test', accountId: 'cust-2' };

/** The three dot-separated parts after `cvs_`. */
function partsOf(token: string): [locator: string, id: string, secret: string] {
  expect(token.startsWith('cvs_')).toBe(true);
  const parts = token.slice(4).split('.');
  expect(parts).toHaveLength(3);
  return parts as [string, string, string];
}

async function invalid(vault: TestVault['vault'], token: string): Promise<void> {
  const error = await verifySessionToken(vault, token).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(VaultError);
  expect((error as VaultError).code).toBe('INVALID_SESSION_TOKEN');
  expect((error as VaultError).message).toBe('Invalid token');
}

describe.each(BACKENDS)('session tokens on %s', (backend) => {
  let t: TestVault;
  beforeEach(async () => {
    t = await openTestVault(backend, { sessionTokenTtlSeconds: 600 });
    await createLinkedAccount(t.vault, acct);
    await createLinkedAccount(t.vault, other);
  });
  afterEach(() => t.done());

  it('issues a token for the vault TTL that verifies as its account', async () => {
    const issued = await issueSessionToken(t.vault, acct);
    expect(issued.expiresIn).toBe(600);
    const [, tokenId] = partsOf(issued.token);
    expect(await verifySessionToken(t.vault, issued.token)).toEqual({ ...acct, tokenId });
  });

  it('hands back the still-valid token unless forced, and a forced one is new while the old still works', async () => {
    const first = await issueSessionToken(t.vault, acct);
    const again = await issueSessionToken(t.vault, acct);
    expect(again.token).toBe(first.token);
    expect(again.expiresIn).toBeLessThanOrEqual(first.expiresIn);
    expect(again.expiresIn).toBeGreaterThan(60);
    const forced = await issueSessionToken(t.vault, acct, { forceRefresh: true });
    expect(forced.token).not.toBe(first.token);
    expect(forced.expiresIn).toBe(600);
    expect((await verifySessionToken(t.vault, first.token)).accountId).toBe('cust-1');
    expect((await verifySessionToken(t.vault, forced.token)).accountId).toBe('cust-1');
  });

  it('does not hand back a token too close to its expiry', async () => {
    // A 30 s token is under the 60 s a token must have left to be reused by a 600 s request.
    const short = await issueSessionToken(t.vault, acct, { ttlSeconds: 30 });
    const next = await issueSessionToken(t.vault, acct);
    expect(next.token).not.toBe(short.token);
    expect(next.expiresIn).toBe(600);
  });

  it('never hands one account another account’s token', async () => {
    const mine = await issueSessionToken(t.vault, acct);
    const theirs = await issueSessionToken(t.vault, other);
    expect(theirs.token).not.toBe(mine.token);
    expect((await verifySessionToken(t.vault, theirs.token)).accountId).toBe('cust-2');
  });

  it('revokes one token at once, leaving the account’s others valid', async () => {
    const a = await issueSessionToken(t.vault, acct);
    const b = await issueSessionToken(t.vault, acct, { forceRefresh: true });
    expect(await revokeSessionToken(t.vault, a.token)).toBe(1);
    await invalid(t.vault, a.token);
    expect((await verifySessionToken(t.vault, b.token)).accountId).toBe('cust-1');
    // A revoked token cannot be revoked again: it no longer authenticates.
    expect(await settle(() => revokeSessionToken(t.vault, a.token))).toMatchObject({ ok: false, error: 'VaultError INVALID_SESSION_TOKEN' });
    // Nor is it handed out again.
    expect((await issueSessionToken(t.vault, acct)).token).toBe(b.token);
  });

  it('expires: a one-second token stops verifying and is not handed back', async () => {
    const issued = await issueSessionToken(t.vault, acct, { ttlSeconds: 1 });
    expect(issued.expiresIn).toBe(1);
    await waitFor(async () => !(await settle(() => verifySessionToken(t.vault, issued.token))).ok, 'the token to expire');
    await invalid(t.vault, issued.token);
    const next = await issueSessionToken(t.vault, acct, { ttlSeconds: 1 });
    expect(next.token).not.toBe(issued.token);
  });

  it('dies with its account, and does not come back with a new account of the same id', async () => {
    const issued = await issueSessionToken(t.vault, acct);
    await deleteLinkedAccount(t.vault, acct);
    await invalid(t.vault, issued.token);
    await createLinkedAccount(t.vault, acct);
    await invalid(t.vault, issued.token);
    expect((await issueSessionToken(t.vault, acct)).token).not.toBe(issued.token);
  });
});

describe('session token refusals', () => {
  let t: TestVault;
  beforeEach(async () => {
    t = await openTestVault('memory');
    await createLinkedAccount(t.vault, acct);
    await createLinkedAccount(t.vault, other);
  });
  afterEach(() => t.done());

  it('an unknown account is UNKNOWN_LINKED_ACCOUNT with the upstream message', async () => {
    const outcome = await issueSessionToken(t.vault, { ...acct, accountId: 'ghost' }).catch((e: unknown) => e);
    expect(outcome).toBeInstanceOf(VaultError);
    expect((outcome as VaultError).code).toBe('UNKNOWN_LINKED_ACCOUNT');
    expect((outcome as VaultError).message).toBe('No linked account found for account id : ghost in environment test');
    // The same id in production is another account.
    await expect(issueSessionToken(t.vault, { ...acct, environment: 'production' })).rejects.toMatchObject({ code: 'UNKNOWN_LINKED_ACCOUNT' });
  });

  it.each([0, -5, 1.5, Number.NaN])('a TTL of %s seconds is VALIDATION_ERROR', async (ttlSeconds) => {
    await expect(issueSessionToken(t.vault, acct, { ttlSeconds })).rejects.toMatchObject({ code: 'VALIDATION_ERROR' });
  });

  it('a token moved onto another account (its locator swapped) is refused', async () => {
    const [mineLocator, mineId, mineSecret] = partsOf((await issueSessionToken(t.vault, acct)).token);
    const [theirLocator] = partsOf((await issueSessionToken(t.vault, other)).token);
    expect(theirLocator).not.toBe(mineLocator);
    await invalid(t.vault, `cvs_${theirLocator}.${mineId}.${mineSecret}`);
  });

  it('a token with its secret or id changed is refused, and the message never holds the token', async () => {
    const { token } = await issueSessionToken(t.vault, acct);
    const [locator, id, secret] = partsOf(token);
    const flip = (s: string) => (s[0] === 'A' ? 'B' : 'A') + s.slice(1);
    await invalid(t.vault, `cvs_${locator}.${id}.${flip(secret)}`);
    await invalid(t.vault, `cvs_${locator}.${flip(id)}.${secret}`);
    const error = (await verifySessionToken(t.vault, `cvs_${locator}.${id}.${flip(secret)}`).catch((e: unknown) => e)) as Error;
    expect(error.message).not.toContain(secret.slice(1));
  });

  it.each([
    ['empty', ''],
    ['no prefix', 'abc.def.ghi'],
    ['a locator that is not JSON', `cvs_${Buffer.from('nope').toString('base64url')}.${'A'.repeat(22)}.${'A'.repeat(43)}`],
    ['a locator with an unknown environment', `cvs_${Buffer.from('["acme","staging","cust-1"]').toString('base64url')}.${'A'.repeat(22)}.${'A'.repeat(43)}`],
    ['a well-formed token never issued', `cvs_${Buffer.from('["acme","test","cust-1"]').toString('base64url')}.${'A'.repeat(22)}.${'A'.repeat(43)}`],
  ])('%s is INVALID_SESSION_TOKEN', async (_what, token) => {
    await invalid(t.vault, token);
  });

  it('events report issue and revoke by account and token id, never the token', async () => {
    t.events.length = 0;
    const { token } = await issueSessionToken(t.vault, acct, { actor: { type: 'api_key', keyId: '0123456789abcdef' } });
    const { tokenId } = await verifySessionToken(t.vault, token);
    await revokeSessionToken(t.vault, token);
    expect(t.events.map(({ time, ...rest }) => rest)).toEqual([
      { type: 'session_token.issued', ...acct, actor: { type: 'api_key', keyId: '0123456789abcdef' } },
      { type: 'session_token.revoked', ...acct, actor: { type: 'session_token', tokenId } },
    ]);
    const [, , secret] = partsOf(token);
    expect(JSON.stringify(t.events)).not.toContain(secret);
  });
});

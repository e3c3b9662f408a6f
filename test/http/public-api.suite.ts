import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import {
  createApiKey,
  createLinkedAccount,
  createVault,
  getDefaultAppCredential,
  listDefaultAppCredentials,
  type Vault,
  type VaultStore,
} from '../../src/index.js';
import { createMemoryStore } from '../../adapters/memory.js';
import { accountGroup } from '../../src/core/layout.js';
import { call, startBinding, type BindingName, type CallResult, type RunningServer } from './harness.js';

const BASE = '/api/v2/public';
const ACME = { org: 'acme', environment: 'test' } as const;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const HEX24 = /^[0-9a-f]{24}$/;
const ACCOUNT_FIELDS = ['_id', 'associated_org', 'account_id', 'name', 'environment', 'udf', 'integrations', 'createdAt', 'updatedAt'];

type WireAccount = {
  _id: string;
  associated_org: string;
  account_id: string;
  name: string;
  environment: string;
  udf: Array<{ key_name: string; key_value: string }>;
  integrations: Array<{ _id: string; type: string; name: string; createdAt: string; updatedAt: string }>;
  createdAt: string;
  updatedAt: string;
};

/** An account answer: exactly the wire fields, in order, with well-formed ids and times. */
function expectAccount(body: unknown, expected: { account_id: string; name?: string; environment?: string; org?: string; defaultApp: boolean }): WireAccount {
  const account = body as WireAccount;
  expect(Object.keys(account).filter((k) => k !== 'new_account')).toEqual(ACCOUNT_FIELDS);
  expect(account._id).toMatch(HEX24);
  expect(account.associated_org).toBe(expected.org ?? 'acme');
  expect(account.account_id).toBe(expected.account_id);
  if (expected.name !== undefined) expect(account.name).toBe(expected.name);
  expect(account.environment).toBe(expected.environment ?? 'test');
  expect(account.createdAt).toMatch(ISO);
  expect(account.updatedAt).toMatch(ISO);
  expect(account.updatedAt >= account.createdAt).toBe(true);
  if (expected.defaultApp) {
    expect(account.integrations).toEqual([
      { _id: expect.stringMatching(HEX24), type: 'default_app', name: 'Default App', createdAt: expect.stringMatching(ISO), updatedAt: expect.stringMatching(ISO) },
    ]);
    expect(Object.keys(account.integrations[0] as object)).toEqual(['_id', 'type', 'name', 'createdAt', 'updatedAt']);
  } else {
    expect(account.integrations).toEqual([]);
  }
  return account;
}

/**
 * Every endpoint of the public API beyond the credential PUT, with the exact bodies of
 * DESIGN section 1, through a real HTTP server running one binding.
 */
export function publicApiSuite(binding: BindingName): void {
  describe(`public API on ${binding}`, () => {
    let vault: Vault;
    let store: VaultStore;
    let server: RunningServer;
    let apiKey: string;
    let prodKey: string;

    const request = (method: string, path: string, init: { headers?: Record<string, string>; body?: unknown } = {}) =>
      call(`${server.url}${BASE}${path}`, {
        method,
        headers: { 'content-type': 'application/json', ...init.headers },
        ...(init.body !== undefined ? { body: typeof init.body === 'string' ? init.body : JSON.stringify(init.body) } : {}),
      });
    const withKey = (extra: Record<string, string> = {}) => ({ 'x-api-key': apiKey, ...extra });
    const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
    const fresh = (prefix: string) => `${prefix}-${randomBytes(4).toString('hex')}`;

    function expectError(result: CallResult, status: number, error: string, message?: string | RegExp) {
      expect(result.status).toBe(status);
      expect(result.headers.get('content-type')).toMatch(/^application\/json/);
      expect(result.body).toMatchObject({ status_code: status, error });
      const text = (result.body as { message: string }).message;
      if (typeof message === 'string') expect(text).toBe(message);
      else if (message !== undefined) expect(text).toMatch(message);
    }

    async function tokenFor(accountId: string, query = ''): Promise<CallResult> {
      return request('POST', `/session-token${query}`, { headers: withKey(), body: { linked_account_id: accountId } });
    }

    beforeAll(async () => {
      store = createMemoryStore();
      vault = await createVault({ store, keys: `k1:${randomBytes(32).toString('base64')}` });
      apiKey = (await createApiKey(vault, ACME)).apiKey;
      prodKey = (await createApiKey(vault, { org: 'acme', environment: 'production' })).apiKey;
      server = await startBinding(binding, vault);
    });
    afterAll(async () => {
      await server.close();
      await vault.close();
    });

    describe('DELETE /linked-account/default-app/auth-credentials/:key', () => {
      it('deletes a stored key, then answers 404 for it', async () => {
        const id = fresh('del');
        await createLinkedAccount(vault, { ...ACME, accountId: id }, { credentials: { api_key: 'v1', other: 'v2' } });
        const path = '/linked-account/default-app/auth-credentials/api_key';
        const first = await request('DELETE', path, { headers: withKey({ linked_account_id: id }) });
        expect(first.status).toBe(200);
        expect(first.body).toEqual({ success: true, message: "Auth credential 'api_key' deleted successfully" });
        expect(await getDefaultAppCredential(vault, { ...ACME, accountId: id }, 'api_key')).toBeUndefined();
        expect(await getDefaultAppCredential(vault, { ...ACME, accountId: id }, 'other')).toBe('v2');
        const again = await request('DELETE', path, { headers: withKey({ linked_account_id: id }) });
        expectError(again, 404, 'RESOURCE_NOT_FOUND', "Auth credential key 'api_key' not found");
      });

      it('works with a session token, and answers 404 without a default app', async () => {
        const id = fresh('del-s');
        await createLinkedAccount(vault, { ...ACME, accountId: id }, { credentials: { k: 'v' } });
        const token = ((await tokenFor(id)).body as { token: string }).token;
        const ok = await request('DELETE', '/linked-account/default-app/auth-credentials/k', { headers: bearer(token) });
        expect(ok.body).toEqual({ success: true, message: "Auth credential 'k' deleted successfully" });
        const bare = fresh('bare');
        await createLinkedAccount(vault, { ...ACME, accountId: bare });
        const none = await request('DELETE', '/linked-account/default-app/auth-credentials/k', { headers: withKey({ linked_account_id: bare }) });
        expectError(none, 404, 'RESOURCE_NOT_FOUND', `Default app integration not found for linked account ${bare}`);
      });
    });

    describe('POST /linked-account', () => {
      it('creates an account and seeds its default app', async () => {
        const id = fresh('new');
        const result = await request('POST', '/linked-account', {
          headers: withKey(),
          body: { account_id: id, name: 'New Customer', udf: { plan: 'gold' }, your_app: { auth_credentials: { api_key: 'seeded-1', __proto__x: 'p' } } },
        });
        expect(result.status).toBe(200);
        const body = expectAccount(result.body, { account_id: id, name: 'New Customer', defaultApp: true });
        expect(body.udf).toEqual([{ key_name: 'plan', key_value: 'gold' }]);
        expect(result.text).not.toContain('seeded-1');
        expect(await getDefaultAppCredential(vault, { ...ACME, accountId: id }, 'api_key')).toBe('seeded-1');
      });

      it('takes linked_account_id as an alias, and keeps __proto__ as an ordinary key', async () => {
        const id = fresh('alias');
        const result = await request('POST', '/linked-account', {
          headers: withKey(),
          body: `{"linked_account_id":"${id}","your_app":{"auth_credentials":{"__proto__":"proto-value","constructor":"c"}}}`,
        });
        expect(result.status).toBe(200);
        expect(result.body).toMatchObject({ account_id: id, name: id });
        expect(await getDefaultAppCredential(vault, { ...ACME, accountId: id }, '__proto__')).toBe('proto-value');
        expect(await getDefaultAppCredential(vault, { ...ACME, accountId: id }, 'constructor')).toBe('c');
      });

      it('creates an account without a default app when your_app is absent: integrations is []', async () => {
        const id = fresh('noapp');
        const created = await request('POST', '/linked-account', { headers: withKey(), body: { account_id: id } });
        expect(created.status).toBe(200);
        expectAccount(created.body, { account_id: id, name: id, defaultApp: false });
        expect((created.body as WireAccount).udf).toEqual([]);
        const put = await request('PUT', '/linked-account/default-app/auth-credentials/k', { headers: withKey({ linked_account_id: id }), body: { value: 'v' } });
        expectError(put, 404, 'RESOURCE_NOT_FOUND');
      });

      it('409 for an existing id, leaving it as it was', async () => {
        const id = fresh('dup');
        await createLinkedAccount(vault, { ...ACME, accountId: id }, { name: 'Original', credentials: { k: 'original' } });
        const result = await request('POST', '/linked-account', { headers: withKey(), body: { account_id: id, name: 'Other', your_app: { auth_credentials: { k: 'overwritten' } } } });
        expectError(result, 409, 'CONFLICT', `Linked account ${id} already exists`);
        expect(await getDefaultAppCredential(vault, { ...ACME, accountId: id }, 'k')).toBe('original');
      });

      it('400 for your_app without auth_credentials, a missing id, or ids that disagree; nothing created', async () => {
        const id = fresh('bad');
        for (const body of [
          { account_id: id, your_app: {} },
          { name: 'no id' },
          { account_id: id, linked_account_id: `${id}-other` },
          { account_id: id, your_app: { auth_credentials: { 'bad key': 'v' } } },
          { account_id: id, your_app: { auth_credentials: { k: null } } },
          { account_id: id, udf: { k: 5 } },
          [],
        ]) {
          expectError(await request('POST', '/linked-account', { headers: withKey(), body }), 400, 'VALIDATION_ERROR');
        }
        expect(await store.list(accountGroup({ ...ACME, accountId: id }))).toEqual([]);
      });

      it('403 for a session token', async () => {
        const id = fresh('owner');
        await createLinkedAccount(vault, { ...ACME, accountId: id });
        const token = ((await tokenFor(id)).body as { token: string }).token;
        const result = await request('POST', '/linked-account', { headers: bearer(token), body: { account_id: fresh('x') } });
        expectError(result, 403, 'FORBIDDEN', /API key/);
      });
    });

    describe('PUT /linked-account', () => {
      it('creates, then updates, with flat fields', async () => {
        const id = fresh('up');
        const created = await request('PUT', '/linked-account', { headers: withKey(), body: { account_id: id, name: 'First' } });
        expect(created.status).toBe(200);
        expectAccount(created.body, { account_id: id, name: 'First', defaultApp: false });
        expect((created.body as { new_account: boolean }).new_account).toBe(true);
        expect(Object.keys(created.body as object).at(-1)).toBe('new_account');
        const updated = await request('PUT', '/linked-account', { headers: withKey(), body: { account_id: id, name: 'Second', udf: { tier: 'b' } } });
        const after = expectAccount(updated.body, { account_id: id, name: 'Second', defaultApp: false });
        expect((updated.body as { new_account: boolean }).new_account).toBe(false);
        expect(after.udf).toEqual([{ key_name: 'tier', key_value: 'b' }]);
        expect(after._id).toBe((created.body as WireAccount)._id);
        expect(after.createdAt).toBe((created.body as WireAccount).createdAt);
      });

      it('needs no your_app: {account_id, name} renames an account that has a default app, keeping its credentials', async () => {
        const id = fresh('rename');
        await createLinkedAccount(vault, { ...ACME, accountId: id }, { credentials: { k: 'kept' } });
        const result = await request('PUT', '/linked-account', { headers: withKey(), body: { account_id: id, name: 'Renamed' } });
        expect(result.status).toBe(200);
        expectAccount(result.body, { account_id: id, name: 'Renamed', defaultApp: true });
        expect(await getDefaultAppCredential(vault, { ...ACME, accountId: id }, 'k')).toBe('kept');
      });

      it('your_app: {} gives an account a default app with no credential, on create and on update', async () => {
        for (const existing of [false, true]) {
          const id = fresh(existing ? 'app-up' : 'app-new');
          if (existing) await createLinkedAccount(vault, { ...ACME, accountId: id });
          const result = await request('PUT', '/linked-account', { headers: withKey(), body: { account_id: id, your_app: {} } });
          expect(result.status).toBe(200);
          expectAccount(result.body, { account_id: id, defaultApp: true });
          expect((result.body as { new_account: boolean }).new_account).toBe(!existing);
          expect(await listDefaultAppCredentials(vault, { ...ACME, accountId: id })).toEqual([]);
          // The default app now takes credentials.
          const put = await request('PUT', '/linked-account/default-app/auth-credentials/k', { headers: withKey({ linked_account_id: id }), body: { value: 'v' } });
          expect(put.body).toMatchObject({ action: 'added' });
          // And reading the account again shows the same integration.
          const read = await request('GET', `/linked-account/${id}`, { headers: withKey() });
          expect((read.body as WireAccount).integrations[0]?._id).toBe((result.body as WireAccount).integrations[0]?._id);
        }
      });

      it('lets payload win over flat fields, and adds the default app with credentials', async () => {
        const id = fresh('nested');
        await createLinkedAccount(vault, { ...ACME, accountId: id });
        const result = await request('PUT', '/linked-account', {
          headers: withKey(),
          body: { account_id: id, name: 'Flat', your_app: { auth_credentials: { k: 'flat' } }, payload: { name: 'Nested', your_app: { auth_credentials: { k: 'nested' } } } },
        });
        expect(result.body).toMatchObject({ name: 'Nested', new_account: false });
        expectAccount(result.body, { account_id: id, name: 'Nested', defaultApp: true });
        expect(await getDefaultAppCredential(vault, { ...ACME, accountId: id }, 'k')).toBe('nested');
      });

      it('takes each field from payload when it names it, and from the flat body when it does not', async () => {
        const id = fresh('per-field');
        await createLinkedAccount(vault, { ...ACME, accountId: id });
        const result = await request('PUT', '/linked-account', {
          headers: withKey(),
          body: { account_id: id, name: 'Flat', udf: { plan: 'flat' }, your_app: { auth_credentials: { flat_key: 'flat-value' } }, payload: { name: 'Nested' } },
        });
        expect(result.status).toBe(200);
        expectAccount(result.body, { account_id: id, name: 'Nested', defaultApp: true });
        expect((result.body as WireAccount).udf).toEqual([{ key_name: 'plan', key_value: 'flat' }]);
        expect(await getDefaultAppCredential(vault, { ...ACME, accountId: id }, 'flat_key')).toBe('flat-value');
        const udfNested = await request('PUT', '/linked-account', {
          headers: withKey(),
          body: { account_id: id, udf: { plan: 'flat-2' }, payload: { udf: { plan: 'nested' } } },
        });
        expect((udfNested.body as WireAccount).udf).toEqual([{ key_name: 'plan', key_value: 'nested' }]);
        expect((udfNested.body as WireAccount).name).toBe('Nested');
      });

      it('takes linked_account_id as another name for account_id; both naming different accounts is 400', async () => {
        const id = fresh('put-alias');
        const result = await request('PUT', '/linked-account', { headers: withKey(), body: { linked_account_id: id, payload: { name: 'Aliased' } } });
        expect(result.status).toBe(200);
        expectAccount(result.body, { account_id: id, name: 'Aliased', defaultApp: false });
        const both = await request('PUT', '/linked-account', { headers: withKey(), body: { account_id: id, linked_account_id: `${id}-2`, name: 'x' } });
        expectError(both, 400, 'VALIDATION_ERROR', 'account_id and linked_account_id name different accounts');
        expect((await request('GET', `/linked-account/${id}`, { headers: withKey() })).body).toMatchObject({ name: 'Aliased' });
      });

      it('with a session token, acts on the token\'s account and refuses another', async () => {
        const id = fresh('self');
        await createLinkedAccount(vault, { ...ACME, accountId: id }, { name: 'Before' });
        const token = ((await tokenFor(id)).body as { token: string }).token;
        const own = await request('PUT', '/linked-account', { headers: bearer(token), body: { payload: { name: 'After', your_app: { auth_credentials: { s: 'self' } } } } });
        expect(own.body).toMatchObject({ account_id: id, name: 'After', new_account: false });
        expect(await getDefaultAppCredential(vault, { ...ACME, accountId: id }, 's')).toBe('self');
        const other = await request('PUT', '/linked-account', { headers: bearer(token), body: { account_id: 'someone-else', name: 'x' } });
        expectError(other, 403, 'FORBIDDEN');
      });

      it('400 without an account id for an API key, or for an ill-typed your_app; nothing created', async () => {
        expectError(await request('PUT', '/linked-account', { headers: withKey(), body: { name: 'x' } }), 400, 'VALIDATION_ERROR');
        const id = fresh('put-bad');
        for (const body of [
          { account_id: id, your_app: 'x' },
          { account_id: id, your_app: { auth_credentials: 'x' } },
          { account_id: id, payload: { your_app: { auth_credentials: { k: null } } } },
        ]) {
          expectError(await request('PUT', '/linked-account', { headers: withKey(), body }), 400, 'VALIDATION_ERROR');
        }
        expect(await store.list(accountGroup({ ...ACME, accountId: id }))).toEqual([]);
      });
    });

    describe('GET /linked-account', () => {
      /** A fresh org with `count` accounts in test (and one in production, and one in another org, which must not show). */
      async function orgWith(count: number): Promise<{ org: string; key: string; ids: string[] }> {
        const org = fresh('org');
        const key = (await createApiKey(vault, { org, environment: 'test' })).apiKey;
        const ids = Array.from({ length: count }, (_, i) => `acct-${String(i).padStart(3, '0')}`);
        for (const id of ids) await createLinkedAccount(vault, { org, environment: 'test', accountId: id }, i(id));
        await createLinkedAccount(vault, { org, environment: 'production', accountId: 'prod-only' });
        await createLinkedAccount(vault, { org: `${org}-other`, environment: 'test', accountId: 'acct-000x' });
        return { org, key, ids };
      }
      // Every other account gets a default app.
      const i = (id: string) => (Number(id.slice(-1)) % 2 === 0 ? { credentials: { secret: `value-of-${id}` } } : {});
      const list = (key: string, query = '') => request('GET', `/linked-account${query}`, { headers: { 'x-api-key': key } });
      type Page = { docs: WireAccount[]; totalDocs: number; limit: number; page: number; totalPages: number; hasNextPage: boolean; hasPrevPage: boolean; nextPage: number | null; prevPage: number | null; pagingCounter: number };
      const PAGE_FIELDS = ['docs', 'totalDocs', 'limit', 'page', 'totalPages', 'hasNextPage', 'hasPrevPage', 'nextPage', 'prevPage', 'pagingCounter'];

      it('no accounts: one empty page', async () => {
        const { key } = await orgWith(0);
        const result = await list(key);
        expect(result.status).toBe(200);
        expect(Object.keys(result.body as object)).toEqual(PAGE_FIELDS);
        expect(result.body).toEqual({ docs: [], totalDocs: 0, limit: 10, page: 1, totalPages: 1, hasNextPage: false, hasPrevPage: false, nextPage: null, prevPage: null, pagingCounter: 1 });
      });

      it('one account, with the account shape and no credential', async () => {
        const { org, key, ids } = await orgWith(1);
        const result = await list(key);
        const page = result.body as Page;
        expect(page).toMatchObject({ totalDocs: 1, limit: 10, page: 1, totalPages: 1, hasNextPage: false, nextPage: null, pagingCounter: 1 });
        expect(page.docs).toHaveLength(1);
        expectAccount(page.docs[0], { account_id: ids[0] as string, org, defaultApp: true });
        expect(result.text).not.toContain('value-of-');
      });

      it('exactly limit accounts: one full page; limit + 1: a second page of one', async () => {
        const { org, key, ids } = await orgWith(4);
        const full = (await list(key, '?page=1&limit=4')).body as Page;
        expect(full.docs.map((d) => d.account_id)).toEqual(ids);
        expect(full).toMatchObject({ totalDocs: 4, limit: 4, page: 1, totalPages: 1, hasNextPage: false, hasPrevPage: false, nextPage: null, prevPage: null, pagingCounter: 1 });
        const first = (await list(key, '?limit=3')).body as Page;
        expect(first.docs.map((d) => d.account_id)).toEqual(ids.slice(0, 3));
        expect(first).toMatchObject({ totalDocs: 4, limit: 3, page: 1, totalPages: 2, hasNextPage: true, hasPrevPage: false, nextPage: 2, prevPage: null, pagingCounter: 1 });
        const second = (await list(key, '?limit=3&page=2')).body as Page;
        expect(second.docs.map((d) => d.account_id)).toEqual(ids.slice(3));
        expect(second).toMatchObject({ totalDocs: 4, limit: 3, page: 2, totalPages: 2, hasNextPage: false, hasPrevPage: true, nextPage: null, prevPage: 1, pagingCounter: 4 });
        for (const doc of [...first.docs, ...second.docs]) {
          expectAccount(doc, { account_id: doc.account_id, org, defaultApp: Number(doc.account_id.slice(-1)) % 2 === 0 });
        }
      });

      it('a page past the end has no accounts and an exact total', async () => {
        const { key } = await orgWith(2);
        const result = await list(key, '?page=7&limit=1');
        expect(result.body).toEqual({ docs: [], totalDocs: 2, limit: 1, page: 7, totalPages: 2, hasNextPage: false, hasPrevPage: true, nextPage: null, prevPage: 6, pagingCounter: 7 });
      });

      it('accounts of another org or environment never appear', async () => {
        const { org, key, ids } = await orgWith(3);
        const page = (await list(key, '?limit=100')).body as Page;
        expect(page.totalDocs).toBe(3);
        expect(page.docs.map((d) => d.account_id)).toEqual(ids);
        expect(page.docs.map((d) => [d.associated_org, d.environment])).toEqual(ids.map(() => [org, 'test']));
      });

      it('400 VALIDATION_ERROR stating the bound for a page or limit that is not a decimal integer in range, or repeated', async () => {
        const { key } = await orgWith(0);
        for (const [query, message] of [
          ['?page=0', 'page must be an integer from 1 to 1000000000'],
          ['?page=1.5', 'page must be an integer from 1 to 1000000000'],
          ['?page=abc', 'page must be an integer from 1 to 1000000000'],
          ['?page=', 'page must be an integer from 1 to 1000000000'],
          ['?page=1e2', 'page must be an integer from 1 to 1000000000'],
          ['?page=-1', 'page must be an integer from 1 to 1000000000'],
          ['?page=%201', 'page must be an integer from 1 to 1000000000'],
          ['?page=99999999999999999999', 'page must be an integer from 1 to 1000000000'],
          ['?page=1&page=2', 'page must be given once, as an integer from 1 to 1000000000'],
          ['?limit=0', 'limit must be an integer from 1 to 100'],
          ['?limit=101', 'limit must be an integer from 1 to 100'],
          ['?limit=1.5', 'limit must be an integer from 1 to 100'],
          ['?limit=abc', 'limit must be an integer from 1 to 100'],
          ['?limit=', 'limit must be an integer from 1 to 100'],
          ['?limit=0x10', 'limit must be an integer from 1 to 100'],
          ['?limit=5&limit=5', 'limit must be given once, as an integer from 1 to 100'],
        ] as const) {
          expectError(await list(key, query), 400, 'VALIDATION_ERROR', message);
        }
        expect(((await list(key, '?limit=100')).body as Page).limit).toBe(100);
      });

      it('400 for the env_variable_name / env_variable_value filters, which credvault does not support', async () => {
        const { key } = await orgWith(1);
        for (const query of ['?env_variable_name=REGION', '?env_variable_value=eu', '?env_variable_name=REGION&env_variable_value=eu', '?env_variable_name=']) {
          expectError(
            await list(key, query),
            400,
            'VALIDATION_ERROR',
            'The env_variable_name and env_variable_value filters are not supported: credvault keeps no environment variables on linked accounts',
          );
        }
      });

      it('403 for a session token; 401 without credentials', async () => {
        const id = fresh('lister');
        await createLinkedAccount(vault, { ...ACME, accountId: id });
        const token = ((await tokenFor(id)).body as { token: string }).token;
        expectError(await request('GET', '/linked-account', { headers: bearer(token) }), 403, 'FORBIDDEN', /API key/);
        expectError(await request('GET', '/linked-account'), 401, 'INVALID_TOKEN', 'Authorization Token Missing');
      });
    });

    describe('GET /linked-account/:id', () => {
      it('answers the account, never a credential or a token', async () => {
        const id = fresh('get');
        await createLinkedAccount(vault, { ...ACME, accountId: id }, { name: 'Readable', credentials: { secret_key: 'never-shown-value' } });
        const token = ((await tokenFor(id)).body as { token: string }).token;
        for (const headers of [withKey(), bearer(token)]) {
          const result = await request('GET', `/linked-account/${encodeURIComponent(id)}`, { headers });
          expect(result.status).toBe(200);
          expectAccount(result.body, { account_id: id, name: 'Readable', defaultApp: true });
          expect(result.text).not.toContain('never-shown-value');
          expect(result.text).not.toContain(token);
        }
      });

      it('404 for an unknown or foreign account, 403 for another account\'s token', async () => {
        const id = fresh('get2');
        await createLinkedAccount(vault, { ...ACME, accountId: id });
        expectError(await request('GET', '/linked-account/ghost', { headers: withKey() }), 404, 'INVALID_LINKED_ACCOUNT_ID');
        expectError(await request('GET', `/linked-account/${id}`, { headers: { 'x-api-key': prodKey } }), 404, 'INVALID_LINKED_ACCOUNT_ID');
        const token = ((await tokenFor(id)).body as { token: string }).token;
        const other = fresh('get3');
        await createLinkedAccount(vault, { ...ACME, accountId: other });
        expectError(await request('GET', `/linked-account/${other}`, { headers: bearer(token) }), 403, 'FORBIDDEN');
      });

      it('round-trips ids with ":" and "/" through the path', async () => {
        const id = `odd:${fresh('a')}/b`;
        await createLinkedAccount(vault, { ...ACME, accountId: id });
        const result = await request('GET', `/linked-account/${encodeURIComponent(id)}`, { headers: withKey() });
        expect(result.body).toMatchObject({ account_id: id });
      });
    });

    describe('DELETE /linked-account/:id', () => {
      it('deletes the account with its credentials and tokens, from the store itself', async () => {
        const id = fresh('gone');
        await createLinkedAccount(vault, { ...ACME, accountId: id }, { credentials: { a: '1', b: '2' } });
        const token = ((await tokenFor(id)).body as { token: string }).token;
        expect((await store.list(accountGroup({ ...ACME, accountId: id }))).length).toBeGreaterThan(3);
        const result = await request('DELETE', `/linked-account/${id}`, { headers: withKey() });
        expect(result.status).toBe(200);
        expect(result.body).toEqual({ message: 'User deleted successfully' });
        expect(await store.list(accountGroup({ ...ACME, accountId: id }))).toEqual([]);
        expectError(await request('GET', '/session/active-linked-account', { headers: bearer(token) }), 401, 'INVALID_TOKEN', 'Invalid token');
        expectError(await request('DELETE', `/linked-account/${id}`, { headers: withKey() }), 404, 'INVALID_LINKED_ACCOUNT_ID');
        // Recreating the id starts empty.
        await createLinkedAccount(vault, { ...ACME, accountId: id }, { credentials: {} });
        expect(await listDefaultAppCredentials(vault, { ...ACME, accountId: id })).toEqual([]);
        expectError(await request('GET', '/session/active-linked-account', { headers: bearer(token) }), 401, 'INVALID_TOKEN');
      });

      it('403 for a session token', async () => {
        const id = fresh('keep');
        await createLinkedAccount(vault, { ...ACME, accountId: id });
        const token = ((await tokenFor(id)).body as { token: string }).token;
        expectError(await request('DELETE', `/linked-account/${id}`, { headers: bearer(token) }), 403, 'FORBIDDEN');
        expect((await request('GET', `/linked-account/${id}`, { headers: withKey() })).status).toBe(200);
      });
    });

    describe('session tokens', () => {
      it('issues a token, hands the same one back, and a new one with force_refresh=true', async () => {
        const id = fresh('tok');
        await createLinkedAccount(vault, { ...ACME, accountId: id });
        const first = await tokenFor(id);
        expect(first.status).toBe(200);
        const body = first.body as { token: string; expires_in: number };
        expect(Object.keys(body).sort()).toEqual(['expires_in', 'token']);
        expect(body.expires_in).toBeGreaterThan(86_000);
        expect(body.expires_in).toBeLessThanOrEqual(86_400);
        const again = (await tokenFor(id)).body as { token: string };
        expect(again.token).toBe(body.token);
        const refreshed = (await tokenFor(id, '?force_refresh=true')).body as { token: string };
        expect(refreshed.token).not.toBe(body.token);
        const notForced = (await tokenFor(id, '?force_refresh=false')).body as { token: string };
        expect([body.token, refreshed.token]).toContain(notForced.token);
      });

      it('400 INVALID_LINKED_ACCOUNT_ID for an unknown account, 400 for a bad force_refresh, 403 for a session token', async () => {
        expectError(await tokenFor('nobody'), 400, 'INVALID_LINKED_ACCOUNT_ID', 'No linked account found for account id : nobody in environment test');
        const id = fresh('tok2');
        await createLinkedAccount(vault, { ...ACME, accountId: id });
        expectError(await tokenFor(id, '?force_refresh=yes'), 400, 'VALIDATION_ERROR');
        expectError(await request('POST', '/session-token', { headers: withKey(), body: {} }), 400, 'VALIDATION_ERROR');
        const token = ((await tokenFor(id)).body as { token: string }).token;
        expectError(await request('POST', '/session-token', { headers: bearer(token), body: { linked_account_id: id } }), 403, 'FORBIDDEN');
      });

      it('revokes the token in use, at once', async () => {
        const id = fresh('rev');
        await createLinkedAccount(vault, { ...ACME, accountId: id });
        const token = ((await tokenFor(id)).body as { token: string }).token;
        const revoked = await request('POST', '/session-token/revoke', { headers: bearer(token) });
        expect(revoked.status).toBe(200);
        expect(revoked.body).toEqual({ success: true, revoked_count: 1 });
        expectError(await request('POST', '/session-token/revoke', { headers: bearer(token) }), 401, 'INVALID_TOKEN', 'Invalid token');
        expectError(await request('GET', '/session/active-linked-account', { headers: bearer(token) }), 401, 'INVALID_TOKEN');
        const next = ((await tokenFor(id)).body as { token: string }).token;
        expect(next).not.toBe(token);
      });

      it('403 for revoke with an API key; 401 without credentials', async () => {
        expectError(await request('POST', '/session-token/revoke', { headers: withKey() }), 403, 'FORBIDDEN', /session token/);
        expectError(await request('POST', '/session-token/revoke'), 401, 'INVALID_TOKEN', 'Authorization Token Missing');
      });
    });

    describe('GET /session/active-linked-account', () => {
      it("answers the token's account; 403 for an API key", async () => {
        const id = fresh('active');
        await createLinkedAccount(vault, { ...ACME, accountId: id }, { name: 'Active One' });
        const token = ((await tokenFor(id)).body as { token: string }).token;
        const result = await request('GET', '/session/active-linked-account', { headers: bearer(token) });
        expect(result.status).toBe(200);
        expectAccount(result.body, { account_id: id, name: 'Active One', defaultApp: false });
        expectError(await request('GET', '/session/active-linked-account', { headers: withKey() }), 403, 'FORBIDDEN');
      });
    });
  });
}

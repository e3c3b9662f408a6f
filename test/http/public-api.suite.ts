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
        const body = result.body as Record<string, unknown>;
        expect(Object.keys(body).sort()).toEqual(['_id', 'account_id', 'environment', 'integrations', 'name']);
        expect(body).toMatchObject({ account_id: id, name: 'New Customer', environment: 'test', integrations: null });
        expect(body['_id']).toMatch(/^[0-9a-f]{24}$/);
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

      it('creates an account without a default app when your_app is absent', async () => {
        const id = fresh('noapp');
        expect((await request('POST', '/linked-account', { headers: withKey(), body: { account_id: id } })).status).toBe(200);
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
        expect(created.body).toMatchObject({ account_id: id, name: 'First', environment: 'test', integrations: null, new_account: true });
        const updated = await request('PUT', '/linked-account', { headers: withKey(), body: { account_id: id, name: 'Second' } });
        expect(updated.body).toMatchObject({ account_id: id, name: 'Second', new_account: false });
        expect((updated.body as { _id: string })._id).toBe((created.body as { _id: string })._id);
      });

      it('lets payload win over flat fields, and adds the default app with credentials', async () => {
        const id = fresh('nested');
        await createLinkedAccount(vault, { ...ACME, accountId: id });
        const result = await request('PUT', '/linked-account', {
          headers: withKey(),
          body: { account_id: id, name: 'Flat', your_app: { auth_credentials: { k: 'flat' } }, payload: { name: 'Nested', your_app: { auth_credentials: { k: 'nested' } } } },
        });
        expect(result.body).toMatchObject({ name: 'Nested', new_account: false });
        expect(await getDefaultAppCredential(vault, { ...ACME, accountId: id }, 'k')).toBe('nested');
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

      it('400 without an account id for an API key', async () => {
        expectError(await request('PUT', '/linked-account', { headers: withKey(), body: { name: 'x' } }), 400, 'VALIDATION_ERROR');
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
          expect(result.body).toMatchObject({ account_id: id, name: 'Readable', environment: 'test', integrations: null });
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
        expect(result.body).toMatchObject({ account_id: id, name: 'Active One', environment: 'test', integrations: null });
        expectError(await request('GET', '/session/active-linked-account', { headers: withKey() }), 403, 'FORBIDDEN');
      });
    });
  });
}

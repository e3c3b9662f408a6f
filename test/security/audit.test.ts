import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createApiKey,
  createLinkedAccount,
  createVault,
  getDefaultAppCredential,
  getLinkedAccount,
  linkedAccountExists,
  listDefaultAppCredentials,
  revokeApiKey,
  type Vault,
  type VaultEvent,
} from '../../src/index.js';
import type { AccountRef } from '../../src/core/layout.js';
import { createMemoryStore } from '../../adapters/memory.js';
import { call, startBinding, type CallResult, type RunningServer } from '../http/harness.js';
import { apiKeySecret, backendSuites, createBackend, keyEntry, marker, tokenSecret, type Backend } from './helpers.js';

const BASE = '/api/v2/public';
const credentialPath = (key: string) => `${BASE}/linked-account/default-app/auth-credentials/${key}`;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const json = { 'content-type': 'application/json' };

function expectEnvelope(res: CallResult, status: number, error: string): void {
  expect(res.status).toBe(status);
  const body = res.body as Record<string, unknown>;
  expect(Object.keys(body).sort()).toEqual(['error', 'http_error_type', 'message', 'status_code']);
  expect(body['status_code']).toBe(status);
  expect(body['error']).toBe(error);
}

describe('audit events through HTTP (memory store, Express)', () => {
  let vault: Vault;
  let server: RunningServer;
  const events: VaultEvent[] = [];
  const secrets: string[] = [];
  const keep = (s: string) => {
    secrets.push(s);
    return s;
  };
  let apiKey: string;
  let keyId: string;
  const start = Date.now();
  const ref: AccountRef = { org: 'acme', environment: 'test', accountId: 'cust-1' };

  beforeAll(async () => {
    vault = await createVault({
      store: createMemoryStore(),
      keys: keyEntry('k1').entry,
      log: () => undefined,
      onEvent: (event) => {
        events.push(structuredClone(event));
      },
    });
    server = await startBinding('express', vault);
  });
  afterAll(async () => {
    await server?.close();
    await vault?.close();
  });

  it('emits each documented event with org, environment, account, key, actor and time, and never a value, key or token', async () => {
    const created = await createApiKey(vault, { org: 'acme', environment: 'test' });
    apiKey = keep(created.apiKey);
    keep(apiKeySecret(apiKey));
    keyId = created.keyId;
    const asKey = { ...json, 'x-api-key': apiKey };
    const byKey = { type: 'api_key', keyId } as const;

    const seeded = keep(marker('seeded'));
    expect((await call(`${server.url}${BASE}/linked-account`, {
      method: 'POST', headers: asKey, body: JSON.stringify({ account_id: ref.accountId, your_app: { auth_credentials: { seeded } } }),
    })).status).toBe(200);
    const put = (key: string, value: string, headers: Record<string, string> = { ...asKey, linked_account_id: ref.accountId }) =>
      call(`${server.url}${credentialPath(key)}`, { method: 'PUT', headers, body: JSON.stringify({ value }) });
    expect((await put('api_key', keep(marker('first')))).body).toMatchObject({ action: 'added' });
    expect((await put('api_key', keep(marker('second')))).body).toMatchObject({ action: 'updated' });
    expect((await call(`${server.url}${credentialPath('api_key')}`, {
      method: 'DELETE', headers: { 'x-api-key': apiKey, linked_account_id: ref.accountId },
    })).status).toBe(200);
    expect((await call(`${server.url}${BASE}/linked-account`, {
      method: 'PUT', headers: asKey, body: JSON.stringify({ account_id: ref.accountId, name: 'Renamed' }),
    })).status).toBe(200);
    const issued = await call(`${server.url}${BASE}/session-token`, {
      method: 'POST', headers: asKey, body: JSON.stringify({ linked_account_id: ref.accountId }),
    });
    expect(issued.status).toBe(200);
    const token = keep((issued.body as { token: string }).token);
    keep(tokenSecret(token));
    const tokenId = token.split('.')[1] as string;
    expect((await put('by_session', keep(marker('by-session')), { ...json, authorization: `Bearer ${token}` })).status).toBe(200);
    expect((await call(`${server.url}${BASE}/session-token/revoke`, {
      method: 'POST', headers: { authorization: `Bearer ${token}` },
    })).body).toEqual({ success: true, revoked_count: 1 });

    // Failed authentication of each kind.
    expectEnvelope(await put('k', 'v', json), 401, 'INVALID_TOKEN');
    const guessed = keep(`${apiKey.slice(0, apiKey.lastIndexOf('_') + 1)}${'x'.repeat(43)}`);
    expectEnvelope(await put('k', 'v', { ...json, 'x-api-key': guessed, linked_account_id: ref.accountId }), 401, 'SERVER_ERROR');
    expectEnvelope(await put('k', 'v', { ...json, authorization: `Bearer ${token}` }), 401, 'INVALID_TOKEN');

    expect((await call(`${server.url}${BASE}/linked-account/${ref.accountId}`, {
      method: 'DELETE', headers: { 'x-api-key': apiKey },
    })).status).toBe(200);
    expect(await revokeApiKey(vault, keyId)).toBe(true);

    const account = { org: 'acme', environment: 'test', accountId: ref.accountId };
    const bySession = { type: 'session_token', tokenId } as const;
    const expected: Array<Partial<VaultEvent>> = [
      { type: 'api_key.created', org: 'acme', environment: 'test', actor: { type: 'system' } },
      { type: 'account.created', ...account, actor: byKey },
      { type: 'credential.added', ...account, key: 'seeded', actor: byKey },
      { type: 'credential.added', ...account, key: 'api_key', actor: byKey },
      { type: 'credential.updated', ...account, key: 'api_key', actor: byKey },
      { type: 'credential.deleted', ...account, key: 'api_key', actor: byKey },
      { type: 'account.updated', ...account, actor: byKey },
      { type: 'session_token.issued', ...account, actor: byKey },
      { type: 'credential.added', ...account, key: 'by_session', actor: bySession },
      { type: 'session_token.revoked', ...account, actor: bySession },
      { type: 'auth.failed', reason: 'AUTH_MISSING', actor: { type: 'system' } },
      { type: 'auth.failed', reason: 'INVALID_API_KEY', actor: { type: 'system' } },
      { type: 'auth.failed', reason: 'INVALID_SESSION_TOKEN', actor: { type: 'system' } },
      { type: 'account.deleted', ...account, actor: byKey },
      { type: 'api_key.revoked', org: 'acme', environment: 'test', actor: { type: 'system' } },
    ];
    expect(events.map((e) => e.type)).toEqual(expected.map((e) => e.type));
    events.forEach((event, i) => {
      const { time, ...rest } = event;
      expect(rest, `event ${i} ${event.type}`).toEqual(expected[i]);
      expect(time).toMatch(ISO);
      const at = Date.parse(time);
      expect(at).toBeGreaterThanOrEqual(start - 1000);
      expect(at).toBeLessThanOrEqual(Date.now() + 1000);
    });
    const text = JSON.stringify(events);
    expect(secrets.filter((s) => text.includes(s))).toEqual([]);
  });
});

for (const suite of await backendSuites()) {
  suite.describe(`fail-closed audit: a failing sink stops the operation (${suite.kind})`, () => {
    let backend: Backend;
    let vault: Vault;
    let server: RunningServer;
    let apiKey: string;
    let failing = false;
    const delivered: VaultEvent[] = [];
    const refused: VaultEvent[] = [];
    const ref: AccountRef = { org: 'acme', environment: 'test', accountId: 'cust-1' };
    const old = marker('old');

    beforeAll(async () => {
      backend = await createBackend(suite.kind);
      vault = await createVault({
        store: backend.openStore(),
        keys: keyEntry('k1').entry,
        log: () => undefined,
        failClosedEvents: true,
        onEvent: async (event) => {
          if (failing) {
            refused.push(event);
            // The error holds the event; it must not reach the response either.
            throw new Error(`audit sink down: ${JSON.stringify(event)}`);
          }
          delivered.push(event);
        },
      });
      apiKey = (await createApiKey(vault, { org: 'acme', environment: 'test' })).apiKey;
      await createLinkedAccount(vault, ref, { credentials: { existing: old } });
      server = await startBinding('express', vault);
    });
    afterAll(async () => {
      await server?.close();
      await backend?.cleanup();
    });

    /** Runs a request with the sink failing: it must answer 503 STORE_UNAVAILABLE and leave the backend as it was. */
    async function refusedRequest(path: string, init: { method: string; headers?: Record<string, string>; body?: string }) {
      const before = await backend.rawRecords();
      const listed = await listDefaultAppCredentials(vault, ref);
      failing = true;
      let res: CallResult;
      try {
        res = await call(`${server.url}${path}`, { ...init, headers: { ...json, 'x-api-key': apiKey, ...init.headers } });
      } finally {
        failing = false;
      }
      expectEnvelope(res, 503, 'STORE_UNAVAILABLE');
      expect(res.text).not.toMatch(/audit sink down|cust-1|\n\s+at /);
      // Every record is as it was, timestamps included.
      expect(await backend.rawRecords()).toEqual(before);
      expect((await listDefaultAppCredentials(vault, ref)).map(({ key, createdAt }) => ({ key, createdAt }))).toEqual(
        listed.map(({ key, createdAt }) => ({ key, createdAt })),
      );
      return res;
    }

    it('PUT of a new credential: 503, and the credential is not stored', async () => {
      await refusedRequest(credentialPath('fresh'), {
        method: 'PUT', headers: { linked_account_id: ref.accountId }, body: JSON.stringify({ value: marker('fresh') }),
      });
      expect(await getDefaultAppCredential(vault, ref, 'fresh')).toBeUndefined();
    });

    it('PUT over an existing credential: 503, and the old value stays in place', async () => {
      await refusedRequest(credentialPath('existing'), {
        method: 'PUT', headers: { linked_account_id: ref.accountId }, body: JSON.stringify({ value: marker('new') }),
      });
      expect(await getDefaultAppCredential(vault, ref, 'existing')).toBe(old);
    });

    it('DELETE of a credential: 503, and the credential stays', async () => {
      await refusedRequest(credentialPath('existing'), { method: 'DELETE', headers: { linked_account_id: ref.accountId } });
      expect(await getDefaultAppCredential(vault, ref, 'existing')).toBe(old);
    });

    it('POST /linked-account: 503, and no account (nor any of its seeded credentials) is left', async () => {
      const newcomer: AccountRef = { ...ref, accountId: 'cust-new' };
      await refusedRequest(`${BASE}/linked-account`, {
        method: 'POST', body: JSON.stringify({ account_id: newcomer.accountId, your_app: { auth_credentials: { a: marker('a'), b: marker('b') } } }),
      });
      expect(await linkedAccountExists(vault, newcomer)).toBe(false);
      expect(await getDefaultAppCredential(vault, newcomer, 'a')).toBeUndefined();
    });

    it('POST /linked-account without credentials: 503, and no account is left', async () => {
      const newcomer: AccountRef = { ...ref, accountId: 'cust-bare' };
      await refusedRequest(`${BASE}/linked-account`, { method: 'POST', body: JSON.stringify({ account_id: newcomer.accountId }) });
      expect(await linkedAccountExists(vault, newcomer)).toBe(false);
    });

    it('PUT /linked-account (update): 503, and the account keeps its name', async () => {
      const before = await getLinkedAccount(vault, ref);
      await refusedRequest(`${BASE}/linked-account`, { method: 'PUT', body: JSON.stringify({ account_id: ref.accountId, name: 'Renamed' }) });
      expect(await getLinkedAccount(vault, ref)).toEqual(before);
    });

    it('POST /session-token: 503, and no token is stored', async () => {
      await refusedRequest(`${BASE}/session-token`, { method: 'POST', body: JSON.stringify({ linked_account_id: ref.accountId }) });
    });

    it('DELETE /linked-account: 503, and the account and its credentials stay', async () => {
      await refusedRequest(`${BASE}/linked-account/${ref.accountId}`, { method: 'DELETE' });
      expect(await getDefaultAppCredential(vault, ref, 'existing')).toBe(old);
    });

    // DESIGN.md: "A request that fails changes nothing", so not even the update time moves.
    it('a refused update over HTTP does not move the credential\'s updated_at (nor the raw record)', async () => {
      await new Promise((resolve) => setTimeout(resolve, 5));
      const before = await backend.rawRecords();
      const listed = await listDefaultAppCredentials(vault, ref);
      failing = true;
      try {
        const res = await call(`${server.url}${credentialPath('existing')}`, {
          method: 'PUT', headers: { ...json, 'x-api-key': apiKey, linked_account_id: ref.accountId }, body: JSON.stringify({ value: marker('x') }),
        });
        expect(res.status).toBe(503);
      } finally {
        failing = false;
        refused.pop();
      }
      expect(await listDefaultAppCredentials(vault, ref)).toEqual(listed);
      expect(await backend.rawRecords()).toEqual(before);
    });

    it('the sink was asked every time, and with a healthy sink the same requests succeed', async () => {
      expect(refused.map((e) => e.type)).toEqual([
        'credential.added',
        'credential.updated',
        'credential.deleted',
        'account.created', // POST /linked-account with a seeded credential
        'account.created',
        'account.updated',
        'session_token.issued',
        'account.deleted',
      ]);
      const res = await call(`${server.url}${credentialPath('fresh')}`, {
        method: 'PUT', headers: { ...json, 'x-api-key': apiKey, linked_account_id: ref.accountId }, body: JSON.stringify({ value: 'v' }),
      });
      expect(res.status).toBe(200);
      expect(delivered.at(-1)).toMatchObject({ type: 'credential.added', key: 'fresh' });
    });
  });
}

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueSessionToken, revokeSessionToken, type Vault } from '../../src/index.js';
import { accountGroup, SESSION_PREFIX } from '../../src/core/layout.js';
import { FRAMEWORKS } from '../../src/cli/server.js';
import { ACME, BASE, CREDENTIALS, expectEnvelope, listen, seededVault, type Listening } from './helpers.js';

async function call(url: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}) {
  const response = await fetch(url, { method: init.method ?? 'GET', headers: init.headers ?? {}, ...(init.body !== undefined ? { body: init.body } : {}), signal: AbortSignal.timeout(10_000) });
  const text = await response.text();
  return { status: response.status, headers: response.headers, text, body: JSON.parse(text) as unknown };
}

describe.each(FRAMEWORKS)('WWW-Authenticate on every 401, and the plain 500 for undecryptable records, on %s (createApiServer)', (framework) => {
  let vault: Vault;
  let apiKey: string;
  let server: Listening;
  const logged: string[] = [];

  beforeAll(async () => {
    ({ vault, apiKey } = await seededVault({ accounts: ['cust-1', 'cust-2'] }));
    server = await listen(vault, framework, { failedAuthLimit: false, logError: (line) => logged.push(line) });
  });

  afterAll(async () => {
    await server?.close();
    await vault?.close();
  });

  const put = (headers: Record<string, string>) =>
    call(`${server.url}${CREDENTIALS}/k`, { method: 'PUT', headers: { 'content-type': 'application/json', ...headers }, body: '{"value":"v"}' });

  it('401 with no credentials: a Bearer challenge', async () => {
    const res = await put({ linked_account_id: 'cust-1' });
    expectEnvelope(res, 401, 'INVALID_TOKEN', 'UNAUTHORIZED');
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="credvault"');
  });

  it('401 for an unknown API key: a Bearer challenge', async () => {
    const res = await put({ 'x-api-key': 'tk_0123456789abcdef_wrong', linked_account_id: 'cust-1' });
    expectEnvelope(res, 401, 'SERVER_ERROR', 'UNAUTHORIZED');
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="credvault"');
  });

  it('401 for a bad or revoked session token: the challenge says invalid_token', async () => {
    const bad = await put({ authorization: 'Bearer not-a-token' });
    expectEnvelope(bad, 401, 'INVALID_TOKEN', 'UNAUTHORIZED');
    expect(bad.headers.get('www-authenticate')).toBe('Bearer realm="credvault", error="invalid_token"');
    const { token } = await issueSessionToken(vault, { ...ACME, accountId: 'cust-1' }, { forceRefresh: true });
    await revokeSessionToken(vault, token);
    const revoked = await put({ authorization: `Bearer ${token}` });
    expect(revoked.status).toBe(401);
    expect(revoked.headers.get('www-authenticate')).toBe('Bearer realm="credvault", error="invalid_token"');
    expect(revoked.text).not.toContain(token);
  });

  it('no challenge on answers that are not 401', async () => {
    const missingAccount = await put({ 'x-api-key': apiKey });
    expect(missingAccount.status).toBe(400);
    expect(missingAccount.headers.get('www-authenticate')).toBeNull();
    const ok = await put({ 'x-api-key': apiKey, linked_account_id: 'cust-1' });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('www-authenticate')).toBeNull();
  });

  it('a session record that no longer decrypts: POST /session-token answers the 500 row (INTERNAL_SERVER_ERROR), no internals, no token', async () => {
    const account = { ...ACME, accountId: 'cust-2' };
    const { token } = await issueSessionToken(vault, account, { forceRefresh: true });
    // Tamper with the sealed token inside the stored session record.
    const [session] = await vault.store.list(accountGroup(account), SESSION_PREFIX);
    expect(session).toBeDefined();
    const member = (session as { member: string }).member;
    const current = await vault.store.get(accountGroup(account), member);
    const record = JSON.parse((current as { value: string }).value) as { sealed: string };
    const at = record.sealed.length - 3;
    const flipped = record.sealed.slice(0, at) + (record.sealed[at] === 'A' ? 'B' : 'A') + record.sealed.slice(at + 1);
    expect(await vault.store.replace(accountGroup(account), member, (current as { value: string }).value, JSON.stringify({ ...record, sealed: flipped }))).toBe(true);

    logged.length = 0;
    // Without force_refresh the still-valid token is handed out again: its record must be opened.
    const res = await call(`${server.url}${BASE}/session-token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': apiKey },
      body: JSON.stringify({ linked_account_id: 'cust-2' }),
    });
    expect(res.status).toBe(500);
    expect(res.body).toEqual({
      status_code: 500,
      http_error_type: 'INTERNAL_SERVER_ERROR',
      error: 'INTERNAL_SERVER_ERROR',
      message: 'Internal server error',
    });
    expect(res.text).not.toContain(token);
    expect(res.text).not.toMatch(/decrypt/i);
    // The operator learns the code, never the token.
    expect(logged.join('\n')).toContain('DECRYPTION_FAILED');
    expect(logged.join('\n')).not.toContain(token);
  });
});

describe('the OpenAPI document', () => {
  it('declares WWW-Authenticate on every 401 it lists', async () => {
    const { openApiDocument } = await import('../../src/http/openapi.js');
    const doc = openApiDocument({ basePath: BASE }) as { paths: Record<string, Record<string, { responses: Record<string, { headers?: Record<string, unknown> }> }>> };
    let seen = 0;
    for (const operations of Object.values(doc.paths)) {
      for (const operation of Object.values(operations)) {
        const unauthorized = operation.responses['401'];
        if (unauthorized === undefined) continue;
        seen++;
        expect(unauthorized.headers?.['WWW-Authenticate']).toBeDefined();
      }
    }
    expect(seen).toBeGreaterThan(5);
  });
});

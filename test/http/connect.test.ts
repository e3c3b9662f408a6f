/**
 * The Connect page's server side over real HTTP: the page and its files on every binding,
 * POST /connect-url and its page tokens, the fields endpoint, writes held to the declared
 * fields, and the checks on the declaration. The page in a browser: test/browser.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createApiKey,
  createHandler,
  createLinkedAccount,
  createVault,
  deleteLinkedAccount,
  getDefaultAppCredential,
  getLinkedAccount,
  issueSessionToken,
  listDefaultAppCredentials,
  revokeSessionToken,
  rotateKeys,
  upsertLinkedAccount,
  verifySessionToken,
  type DefaultAppDefinition,
  type HandlerOptions,
  type Vault,
} from '../../src/index.js';
import { BINDINGS, call, startBinding, type RunningServer } from './harness.js';

const BASE = '/api/v2/public';
const FIELDS = `${BASE}/linked-account/default-app/auth-credentials`;
const ACME = { org: 'acme', environment: 'test' } as const;

const APP: DefaultAppDefinition = {
  name: 'Acme CRM',
  fields: [
    { name: 'api_key', type: 'password', required: true, label: 'API key', placeholder: 'sk_live_…', help_text: 'Settings, then API.' },
    { name: 'region', type: 'select', options: [{ label: 'EU', value: 'eu' }, { label: 'US', value: 'us' }] },
    { name: 'seats', type: 'number' },
    { name: 'webhook', type: 'url' },
    { name: 'contact', type: 'email' },
    { name: 'notes', type: 'textarea' },
  ],
};

const freshVault = () => createVault({ store: 'memory:', keys: `k:${randomBytes(32).toString('base64')}` });
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const json = (token: string) => ({ ...bearer(token), 'content-type': 'application/json' });

/** The page token of a connect URL: from its fragment. */
function pageTokenOf(url: string): string {
  const parsed = new URL(url);
  const token = new URLSearchParams(parsed.hash.slice(1)).get('token');
  expect(token).toMatch(/^cvs_/);
  return token as string;
}

describe.each(BINDINGS)('the Connect page on %s', (binding) => {
  let vault: Vault;
  let server: RunningServer;

  beforeAll(async () => {
    vault = await freshVault();
    server = await startBinding(binding, vault, { defaultApp: APP, connect: { theme: { accent: '#0f766e' } } });
  });
  afterAll(async () => {
    await server.close();
    await vault.close();
  });

  it('serves the page with a strict CSP, no referrer and no caching', async () => {
    const page = await call(`${server.url}/connect`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const csp = page.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self';");
    expect(csp).not.toContain('unsafe-inline');
    expect(csp).not.toContain('unsafe-eval');
    expect(csp).toContain("frame-ancestors 'none'");
    expect(page.headers.get('x-frame-options')).toBe('DENY');
    expect(page.headers.get('referrer-policy')).toBe('no-referrer');
    expect(page.headers.get('cache-control')).toBe('no-store');
    expect(page.headers.get('x-content-type-options')).toBe('nosniff');
    // Nothing inline: every script and style is a file of this origin.
    expect(page.text).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(page.text).not.toMatch(/<style|style=/);
    // Relative references, so that the page holds behind a proxy adding a path prefix.
    expect(page.text).toContain('<script type="module" src="connect/assets/connect.js"></script>');
    expect(page.text).toContain('<meta name="credvault-api" content="./api/v2/public">');
    const head = await call(`${server.url}/connect`, { method: 'HEAD' });
    expect({ status: head.status, type: head.headers.get('content-type'), body: head.text }).toEqual({ status: 200, type: 'text/html; charset=utf-8', body: '' });
  });

  it('serves its files with their types, the theme as CSS variables, and the client build', async () => {
    const expected: Record<string, string> = {
      'connect.js': 'text/javascript; charset=utf-8',
      'client.js': 'text/javascript; charset=utf-8',
      'connect.css': 'text/css; charset=utf-8',
      'theme.css': 'text/css; charset=utf-8',
      'icon.svg': 'image/svg+xml; charset=utf-8',
    };
    for (const [file, type] of Object.entries(expected)) {
      const result = await call(`${server.url}/connect/assets/${file}`);
      expect({ file, status: result.status, type: result.headers.get('content-type') }).toEqual({ file, status: 200, type });
      expect(result.headers.get('content-security-policy')).toContain("default-src 'self'");
      expect(result.headers.get('cache-control')).toBe('no-store');
    }
    expect((await call(`${server.url}/connect/assets/theme.css`)).text).toContain('--cv-accent: #0f766e;');
    const client = (await call(`${server.url}/connect/assets/client.js`)).text;
    expect(client).toContain('export function createCredvaultClient');
    expect(client).not.toMatch(/^\s*import\s/m);
    expect((await call(`${server.url}/connect/assets/connect.js`)).text).toContain("from './client.js'");
  });

  it('answers other paths under it with the JSON envelope, and leaves paths beside it to the app', async () => {
    const missing = await call(`${server.url}/connect/assets/secret.txt`);
    expect(missing.status).toBe(404);
    expect(missing.body).toMatchObject({ error: 'RESOURCE_NOT_FOUND' });
    for (const path of ['/connect/assets/../../etc/passwd', '/connect/%2e%2e/package.json', '/connect/assets/connect.js/']) {
      expect((await call(`${server.url}${path}`)).status).not.toBe(200);
    }
    const post = await call(`${server.url}/connect`, { method: 'POST', body: '{}' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    // Names an Object.prototype member rather than a file: still a 404, never a 500.
    for (const name of ['constructor', 'tostring', '__proto__', 'hasownproperty']) {
      expect((await call(`${server.url}/connect/assets/${name}`)).status).toBe(404);
    }
    expect(post.body).toMatchObject({ error: 'METHOD_NOT_ALLOWED' });
    // A path that only starts like the page's is the application's own (the harness answers 418).
    expect((await call(`${server.url}/connectx`)).status).toBe(418);
  });

  it('hands out a connect URL for the page, whose token works for the page’s requests', async () => {
    const ref = { ...ACME, accountId: `cust-${binding}` };
    await createLinkedAccount(vault, ref);
    const { token } = await issueSessionToken(vault, ref);
    const answer = await call(`${server.url}${BASE}/connect-url`, { method: 'POST', headers: bearer(token) });
    expect(answer.status).toBe(200);
    const { url, expires_in } = answer.body as { url: string; expires_in: number };
    expect(url.startsWith(`${server.url}/connect#token=`)).toBe(true);
    expect(expires_in).toBe(900);
    const pageToken = pageTokenOf(url);
    const put = await call(`${server.url}${FIELDS}/api_key`, { method: 'PUT', headers: json(pageToken), body: JSON.stringify({ value: 'sk_from_page' }) });
    expect(put.body).toEqual({ success: true, message: "Auth credential 'api_key' added successfully", action: 'added' });
    expect(await getDefaultAppCredential(vault, ref, 'api_key')).toBe('sk_from_page');
  });
});

describe('POST /connect-url and page tokens', () => {
  let vault: Vault;
  let server: RunningServer;
  let apiKey: string;

  beforeAll(async () => {
    vault = await freshVault();
    server = await startBinding('express', vault, { defaultApp: APP, failedAuthLimit: false });
    apiKey = (await createApiKey(vault, ACME)).apiKey;
  });
  afterAll(async () => {
    await server.close();
    await vault.close();
  });

  let n = 0;
  /** A fresh account (with or without a default app), its session token, and a page token for it. */
  async function account(options: { defaultApp?: boolean; ttlSeconds?: number } = {}) {
    const ref = { ...ACME, accountId: `acct-${++n}` };
    await createLinkedAccount(vault, ref, options.defaultApp === false ? {} : { credentials: {} });
    const { token } = await issueSessionToken(vault, ref, options.ttlSeconds === undefined ? {} : { ttlSeconds: options.ttlSeconds });
    const answer = await call(`${server.url}${BASE}/connect-url`, { method: 'POST', headers: bearer(token) });
    expect(answer.status).toBe(200);
    const { url, expires_in } = answer.body as { url: string; expires_in: number };
    return { ref, token, url, expiresIn: expires_in, pageToken: pageTokenOf(url) };
  }

  const fields = (token: string) => call(`${server.url}${FIELDS}`, { headers: bearer(token) });

  it('puts the page token in the fragment only: never in the path or query', async () => {
    const { url, token, pageToken } = await account();
    const parsed = new URL(url);
    expect(parsed.pathname).toBe('/connect');
    expect(parsed.search).toBe('');
    expect(pageToken).not.toBe(token);
    expect(url).not.toContain(token);
  });

  it('lives no longer than its session token', async () => {
    const { expiresIn } = await account({ ttlSeconds: 120 });
    expect(expiresIn).toBeGreaterThan(100);
    expect(expiresIn).toBeLessThanOrEqual(120);
  });

  it('gives an account without a default app one, so that the page can write', async () => {
    const { ref, pageToken } = await account({ defaultApp: false });
    expect((await getLinkedAccount(vault, ref)).defaultApp).toBeDefined();
    const put = await call(`${server.url}${FIELDS}/api_key`, { method: 'PUT', headers: json(pageToken), body: '{"value":"sk_1"}' });
    expect(put.status).toBe(200);
  });

  it('never brings back an account deleted meanwhile (the update it makes is update-only)', async () => {
    const ref = { ...ACME, accountId: 'gone-1' };
    await expect(upsertLinkedAccount(vault, ref, { credentials: {} }, { create: false })).rejects.toMatchObject({ code: 'LINKED_ACCOUNT_NOT_FOUND' });
    await expect(getLinkedAccount(vault, ref)).rejects.toMatchObject({ code: 'LINKED_ACCOUNT_NOT_FOUND' });
  });

  it('works on the page’s endpoints only', async () => {
    const { ref, pageToken } = await account();
    expect((await fields(pageToken)).status).toBe(200);
    expect((await call(`${server.url}${BASE}/session/active-linked-account`, { headers: bearer(pageToken) })).body).toMatchObject({ account_id: ref.accountId });
    const put = await call(`${server.url}${FIELDS}/notes`, { method: 'PUT', headers: json(pageToken), body: '{"value":"hello"}' });
    expect(put.status).toBe(200);
    expect((await call(`${server.url}${FIELDS}/notes`, { method: 'DELETE', headers: bearer(pageToken) })).status).toBe(200);
    const refused = [
      call(`${server.url}${BASE}/linked-account`, { method: 'PUT', headers: json(pageToken), body: '{"name":"renamed"}' }),
      call(`${server.url}${BASE}/linked-account/${ref.accountId}`, { headers: bearer(pageToken) }),
      call(`${server.url}${BASE}/connect-url`, { method: 'POST', headers: bearer(pageToken) }),
    ];
    for (const result of await Promise.all(refused)) {
      expect(result.status).toBe(403);
      expect(result.body).toMatchObject({ error: 'FORBIDDEN' });
      expect((result.body as { message: string }).message).toContain('Connect page token');
    }
    expect((await getLinkedAccount(vault, ref)).name).toBe(ref.accountId);
  });

  it('ends when its session token is revoked, expires or its account is deleted', async () => {
    const revoked = await account();
    await revokeSessionToken(vault, revoked.token);
    const after = await fields(revoked.pageToken);
    expect(after.status).toBe(401);
    expect(after.body).toEqual({ status_code: 401, http_error_type: 'UNAUTHORIZED', error: 'INVALID_TOKEN', message: 'Invalid token' });
    const put = await call(`${server.url}${FIELDS}/api_key`, { method: 'PUT', headers: json(revoked.pageToken), body: '{"value":"late"}' });
    expect(put.status).toBe(401);
    expect(await listDefaultAppCredentials(vault, revoked.ref)).toEqual([]);

    const expiring = await account({ ttlSeconds: 1 });
    expect(expiring.expiresIn).toBeLessThanOrEqual(1);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect((await fields(expiring.pageToken)).status).toBe(401);

    const deleted = await account();
    await deleteLinkedAccount(vault, { ...deleted.ref, actor: { type: 'system' } });
    expect((await fields(deleted.pageToken)).status).toBe(401);
  });

  it('is refused by verifySessionToken unless asked for, so code of the embedder never takes it for a session token', async () => {
    const { token, pageToken } = await account();
    await expect(verifySessionToken(vault, pageToken)).rejects.toMatchObject({ code: 'INVALID_SESSION_TOKEN' });
    expect(await verifySessionToken(vault, pageToken, { allowPageToken: true })).toMatchObject({ purpose: 'connect' });
    expect((await verifySessionToken(vault, token)).purpose).toBeUndefined();
  });

  it('revoking the page token ends it alone; the session token goes on', async () => {
    const { token, pageToken } = await account();
    const revoke = await call(`${server.url}${BASE}/session-token/revoke`, { method: 'POST', headers: bearer(pageToken) });
    expect(revoke.body).toEqual({ success: true, revoked_count: 1 });
    expect((await fields(pageToken)).status).toBe(401);
    expect((await fields(token)).status).toBe(200);
  });

  it('is never handed out as a session token', async () => {
    const { ref, pageToken } = await account();
    const issued = await call(`${server.url}${BASE}/session-token`, {
      method: 'POST',
      headers: { 'x-api-key': apiKey, 'content-type': 'application/json' },
      body: JSON.stringify({ linked_account_id: ref.accountId }),
    });
    expect(issued.status).toBe(200);
    expect((issued.body as { token: string }).token).not.toBe(pageToken);
  });

  it('survives a rotation that re-seals every record (it holds nothing sealed)', async () => {
    const { token, pageToken } = await account();
    await rotateKeys(vault, { reseal: true });
    expect((await fields(pageToken)).status).toBe(200);
    expect((await fields(token)).status).toBe(200);
  });

  it('builds the URL from publicUrl, or from Host (https only through a trusted proxy); a bad Host is refused', async () => {
    const ref = { ...ACME, accountId: 'url-1' };
    await createLinkedAccount(vault, ref, { credentials: {} });
    const { token } = await issueSessionToken(vault, ref);
    const handle = async (options: HandlerOptions, headers: Record<string, string>) =>
      createHandler(vault, { defaultApp: APP, failedAuthLimit: false, ...options }).handle({
        method: 'POST',
        path: `${BASE}/connect-url`,
        headers: { ...bearer(token), ...headers },
      });
    const published = await handle({ connect: { publicUrl: 'https://vault.example.com/base/' } }, { host: 'evil.example' });
    expect((published.body as { url: string }).url).toMatch(/^https:\/\/vault\.example\.com\/base\/connect#token=cvs_/);
    const proxied = await handle({ trustProxyHops: 1 }, { host: 'vault.example.com', 'x-forwarded-proto': 'https' });
    expect((proxied.body as { url: string }).url).toMatch(/^https:\/\/vault\.example\.com\/connect#token=/);
    const untrusted = await handle({}, { host: 'vault.example.com:8443', 'x-forwarded-proto': 'https' });
    expect((untrusted.body as { url: string }).url).toMatch(/^http:\/\/vault\.example\.com:8443\/connect#token=/);
    for (const host of ['a b', 'x/y', 'host@evil', '']) {
      const bad = await handle({}, { host });
      expect({ host, status: bad.status, error: (bad.body as { error: string }).error }).toEqual({ host, status: 400, error: 'VALIDATION_ERROR' });
    }
  });

  it('answers 404 on a server that declares no default app, and its fields endpoint lists names only', async () => {
    const plain = createHandler(vault, { failedAuthLimit: false });
    const ref = { ...ACME, accountId: 'plain-1' };
    await createLinkedAccount(vault, ref, { credentials: { legacy: 'v1' } });
    const { token } = await issueSessionToken(vault, ref);
    const url = await plain.handle({ method: 'POST', path: `${BASE}/connect-url`, headers: bearer(token) });
    expect(url.status).toBe(404);
    expect(url.body).toMatchObject({ error: 'RESOURCE_NOT_FOUND' });
    const listed = await plain.handle({ method: 'GET', path: FIELDS, headers: bearer(token) });
    expect(listed.body).toEqual({ name: null, fields: [], set: ['legacy'] });
    const page = await plain.handle({ method: 'GET', path: '/connect', headers: {} });
    expect(page.status).toBe(404);
  });
});

describe('the fields endpoint and writes held to the declared fields', () => {
  let vault: Vault;
  let server: RunningServer;
  let apiKey: string;
  const ref = { ...ACME, accountId: 'fields-1' };
  let token: string;

  beforeAll(async () => {
    vault = await freshVault();
    server = await startBinding('koa', vault, { defaultApp: APP, failedAuthLimit: false });
    apiKey = (await createApiKey(vault, ACME)).apiKey;
    await createLinkedAccount(vault, ref, { credentials: { api_key: 'sk_secret_value_1', internal_id: 'int_secret_2' } });
    token = (await issueSessionToken(vault, ref)).token;
  });
  afterAll(async () => {
    await server.close();
    await vault.close();
  });

  const put = (headers: Record<string, string>, key: string, value: unknown) =>
    call(`${server.url}${FIELDS}/${key}`, { method: 'PUT', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify({ value }) });
  const asKey = { 'x-api-key': '', linked_account_id: ref.accountId };

  it('lists the declared fields with whether each is set, and every stored name; never a value', async () => {
    const answer = await call(`${server.url}${FIELDS}`, { headers: bearer(token) });
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({
      name: 'Acme CRM',
      set: ['api_key', 'internal_id'],
    });
    const listed = (answer.body as { fields: Array<Record<string, unknown>> }).fields;
    expect(listed.map((f) => [f['name'], f['is_set'], f['required'], f['label']])).toEqual([
      ['api_key', true, true, 'API key'],
      ['region', false, false, 'region'],
      ['seats', false, false, 'seats'],
      ['webhook', false, false, 'webhook'],
      ['contact', false, false, 'contact'],
      ['notes', false, false, 'notes'],
    ]);
    expect(listed[0]).toMatchObject({ type: 'password', placeholder: 'sk_live_…', help_text: 'Settings, then API.' });
    expect(listed[1]).toMatchObject({ options: [{ label: 'EU', value: 'eu' }, { label: 'US', value: 'us' }] });
    expect(answer.text).not.toContain('sk_secret_value_1');
    expect(answer.text).not.toContain('int_secret_2');
    // An org API key reads it too, naming the account.
    const byKey = await call(`${server.url}${FIELDS}`, { headers: { ...asKey, 'x-api-key': apiKey } });
    expect(byKey.body).toEqual(answer.body);
  });

  it('refuses a session token’s write outside the declared fields, or a value that does not fit; nothing changes', async () => {
    const cases: Array<[string, unknown, string]> = [
      ['internal_id', 'overwrite', "'internal_id' is not a field of Acme CRM"],
      ['other', 'x', "'other' is not a field of Acme CRM"],
      ['region', 'mars', 'region must be one of: eu, us'],
      ['seats', 'ten', 'seats must be a number'],
      ['seats', ' ', 'seats must not be blank'],
      ['webhook', 'javascript:alert(1)', 'webhook must be an http or https URL'],
      ['webhook', 'ftp://example.com', 'webhook must be an http or https URL'],
      ['contact', 'not-an-address', 'contact must be an email address'],
      ['api_key', '', 'value must not be empty'],
      ['api_key', '   ', 'API key must not be blank'],
      ['seats', '0x1F', 'seats must be a number'],
      ['seats', '1e400', 'seats must be a number'],
      ['seats', 'Infinity', 'seats must be a number'],
      ['seats', ' 12 ', 'seats must not begin or end with spaces'],
      ['webhook', ' https://hooks.example.com ', 'webhook must not begin or end with spaces'],
      ['region', 'eu ', 'region must not begin or end with spaces'],
    ];
    for (const [key, value, message] of cases) {
      const answer = await put(bearer(token), key, value);
      expect({ key, value, status: answer.status, body: answer.body }).toEqual({
        key,
        value,
        status: 400,
        body: { status_code: 400, http_error_type: 'BAD_REQUEST', error: 'VALIDATION_ERROR', message: expect.stringContaining(message) },
      });
    }
    expect((await listDefaultAppCredentials(vault, ref)).map((c) => c.key)).toEqual(['api_key', 'internal_id']);
    expect(await getDefaultAppCredential(vault, ref, 'internal_id')).toBe('int_secret_2');
    expect(await getDefaultAppCredential(vault, ref, 'api_key')).toBe('sk_secret_value_1');
  });

  it('takes values that fit, numbers and booleans coerced as always', async () => {
    expect((await put(bearer(token), 'region', 'us')).status).toBe(200);
    for (const seats of ['-3', '1.5', '.5', '2e3', 12]) expect((await put(bearer(token), 'seats', seats)).status).toBe(200);
    expect((await put(bearer(token), 'webhook', 'https://hooks.example.com/x')).status).toBe(200);
    expect((await put(bearer(token), 'contact', 'ops@example.com')).status).toBe(200);
    expect(await getDefaultAppCredential(vault, ref, 'seats')).toBe('12');
  });

  it('holds credentials seeded through PUT and POST /linked-account to the declared fields the same way', async () => {
    const account = (headers: Record<string, string>, method: string, body: unknown) =>
      call(`${server.url}${BASE}/linked-account`, { method, headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const before = (await listDefaultAppCredentials(vault, ref)).map((c) => [c.key, c.updatedAt]);
    for (const credentials of [{ other: 'x' }, { region: 'mars' }, { region: 'eu', other: 'x' }, { other: { nested: 1 } }]) {
      const answer = await account(bearer(token), 'PUT', { name: 'renamed', your_app: { auth_credentials: credentials } });
      expect({ credentials, status: answer.status, error: (answer.body as { error: string }).error }).toEqual({ credentials, status: 400, error: 'VALIDATION_ERROR' });
    }
    expect((await listDefaultAppCredentials(vault, ref)).map((c) => [c.key, c.updatedAt])).toEqual(before);
    expect((await getLinkedAccount(vault, ref)).name).toBe(ref.accountId);
    const byKey = { 'x-api-key': apiKey };
    const refused = await account(byKey, 'POST', { account_id: 'seeded-1', your_app: { auth_credentials: { region: 'mars' } } });
    expect(refused.status).toBe(400);
    await expect(getLinkedAccount(vault, { ...ACME, accountId: 'seeded-1' })).rejects.toMatchObject({ code: 'LINKED_ACCOUNT_NOT_FOUND' });
    const created = await account(byKey, 'POST', { account_id: 'seeded-2', your_app: { auth_credentials: { region: 'eu', internal_id: 'i' } } });
    expect(created.status).toBe(200);
    const accepted = await account(bearer(token), 'PUT', { your_app: { auth_credentials: { region: 'eu' } } });
    expect(accepted.status).toBe(200);
    expect(await getDefaultAppCredential(vault, ref, 'region')).toBe('eu');
  });

  it('keeps a session token from deleting what it may not write; an org API key deletes any key', async () => {
    const refused = await call(`${server.url}${FIELDS}/internal_id`, { method: 'DELETE', headers: bearer(token) });
    expect(refused.status).toBe(400);
    expect(refused.body).toMatchObject({ error: 'VALIDATION_ERROR', message: "'internal_id' is not a field of Acme CRM" });
    expect(await getDefaultAppCredential(vault, ref, 'internal_id')).toBe('int_secret_2');
    expect((await put({ ...asKey, 'x-api-key': apiKey }, 'scratch', 's')).status).toBe(200);
    const byKey = await call(`${server.url}${FIELDS}/scratch`, { method: 'DELETE', headers: { ...asKey, 'x-api-key': apiKey } });
    expect(byKey.status).toBe(200);
  });

  it('lets an org API key write undeclared keys, but holds its declared fields to their type too', async () => {
    const headers = { ...asKey, 'x-api-key': apiKey };
    expect((await put(headers, 'internal_id', 'int_3')).status).toBe(200);
    const bad = await put(headers, 'region', 'mars');
    expect(bad.status).toBe(400);
    expect(await getDefaultAppCredential(vault, ref, 'region')).toBe('eu');
  });
});

describe('the default app and Connect settings are checked when the handler is built', () => {
  let vault: Vault;
  beforeAll(async () => {
    vault = await freshVault();
  });
  afterAll(async () => {
    await vault.close();
  });

  const field = (extra: Record<string, unknown>) => ({ name: 'api_key', type: 'password', ...extra });
  const cases: Array<[string, HandlerOptions, string]> = [
    ['no fields', { defaultApp: { name: 'X', fields: [] } }, 'defaultApp.fields: must declare at least one field'],
    ['an empty name', { defaultApp: { name: ' ', fields: [field({})] } as never }, 'defaultApp.name: must not be empty'],
    ['an unknown type', { defaultApp: { name: 'X', fields: [field({ type: 'secret' })] } as never }, 'defaultApp.fields.0.type: must be one of'],
    ['a bad key name', { defaultApp: { name: 'X', fields: [field({ name: 'api key' })] } as never }, 'defaultApp.fields.0.name'],
    ['a dot-dot name', { defaultApp: { name: 'X', fields: [field({ name: '..' })] } as never }, "'..' cannot be a field name"],
    ['a field declared twice', { defaultApp: { name: 'X', fields: [field({}), field({})] } as never }, "'api_key' is declared twice"],
    ['a select without options', { defaultApp: { name: 'X', fields: [field({ type: 'select' })] } as never }, 'a select field must list its options'],
    ['options on a text field', { defaultApp: { name: 'X', fields: [field({ options: [{ label: 'a', value: 'a' }] })] } as never }, 'only a select field takes options'],
    ['an unknown attribute', { defaultApp: { name: 'X', fields: [field({ secret: true })] } as never }, 'defaultApp.fields.0'],
    ['connect without defaultApp', { connect: {} }, 'needs the default app'],
    ['a page path inside the API', { defaultApp: APP, connect: { path: '/api/v2/public/connect' } }, 'must not contain one another'],
    ['a page path above the API', { defaultApp: APP, connect: { path: '/api' } }, 'must not contain one another'],
    ['a page path that is the API', { defaultApp: APP, basePath: '/vault', connect: { path: '/vault' } }, 'must not contain one another'],
    ['the OpenAPI path under the page', { defaultApp: APP, openApiPath: '/connect/openapi.json' }, 'openApiPath (/connect/openapi.json) must lie outside'],
    ['a relative page path', { defaultApp: APP, connect: { path: 'connect' } }, 'connect.path must be a path'],
    ['a page path with a trailing slash', { defaultApp: APP, connect: { path: '/connect/' } }, 'connect.path must be a path'],
    ['a framing wildcard', { defaultApp: APP, connect: { frameAncestors: ['*'] } }, "connect.frameAncestors: '*'"],
    ['a framing source with a path', { defaultApp: APP, connect: { frameAncestors: ['https://a.example/x'] } }, 'connect.frameAncestors'],
    ['a CSS injection as colour', { defaultApp: APP, connect: { theme: { accent: 'red;}body{display:none' } } }, 'connect.theme.accent'],
    ['a public URL with a query', { defaultApp: APP, connect: { publicUrl: 'https://v.example/?a=1' } }, 'connect.publicUrl'],
    ['a page token lifetime of 0', { defaultApp: APP, connect: { tokenTtlSeconds: 0 } }, 'connect.tokenTtlSeconds'],
  ];
  it.each(cases)('refuses %s with INVALID_CONFIGURATION', (_name, options, message) => {
    let thrown: unknown;
    try {
      createHandler(vault, options);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toMatchObject({ code: 'INVALID_CONFIGURATION', message: expect.stringContaining(message) });
  });

  it('lists framing origins in frame-ancestors and then drops X-Frame-Options', async () => {
    const handler = createHandler(vault, { defaultApp: APP, connect: { frameAncestors: ['https://app.example.com', "'self'"] } });
    const page = await handler.handle({ method: 'GET', path: '/connect', headers: {} });
    expect(page.headers['content-security-policy']).toContain("frame-ancestors https://app.example.com 'self'");
    expect(page.headers['x-frame-options']).toBeUndefined();
  });
});

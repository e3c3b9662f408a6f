/**
 * credvault/client against a real credvault server (Express, memory store): every method,
 * every way a call can fail, and that no failure ever carries the token.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCredvaultClient, CredvaultError, type CredvaultClient } from '../../src/client/index.js';
import {
  createApiKey,
  createLinkedAccount,
  createVault,
  getDefaultAppCredential,
  issueSessionToken,
  listDefaultAppCredentials,
  type Vault,
} from '../../src/index.js';
import { createApiServer, type ApiServerOptions } from '../../src/cli/server.js';
import { closedPort, expectNoSecret, failure, listen, type Listening } from './helpers.js';

const BASE = '/api/v2/public';
const ACME = { org: 'acme', environment: 'test' } as const;
const CREDENTIALS = `${BASE}/linked-account/default-app/auth-credentials`;


/** Every token handed to a client here, and every error a client threw: checked against each other at the end. */
const tokens = new Set<string>();
const errors: CredvaultError[] = [];

async function fails(promise: Promise<unknown>, expected: Parameters<typeof failure>[1]): Promise<CredvaultError> {
  const error = await failure(promise, expected);
  errors.push(error);
  return error;
}

/** A fetch that records each request before passing it on. */
function recordingFetch(inner: typeof fetch = fetch) {
  const requests: Array<{ url: string; method: string; headers: Headers; body: string | undefined }> = [];
  const spy: typeof fetch = async (input, init) => {
    requests.push({
      url: String(input),
      method: init?.method ?? 'GET',
      headers: new Headers(init?.headers),
      body: typeof init?.body === 'string' ? init.body : undefined,
    });
    return inner(input, init);
  };
  return { fetch: spy, requests };
}

let vault: Vault;
let api: Listening;
let apiKey: string;
const logged: string[] = [];

const cust1 = { ...ACME, accountId: 'cust-1' };
const stored = (accountId: string, key: string) => getDefaultAppCredential(vault, { ...ACME, accountId }, key);
const names = async (accountId: string) => (await listDefaultAppCredentials(vault, { ...ACME, accountId })).map((c) => c.key);

/** A client with a fresh session token for `accountId`, issued as a SaaS backend would: over HTTP with its API key. */
async function sessionClient(accountId: string, fetchImpl?: typeof fetch): Promise<{ client: CredvaultClient; token: string }> {
  const response = await fetch(`${api.url}${BASE}/session-token?force_refresh=true`, {
    method: 'POST',
    headers: { 'x-api-key': apiKey, 'content-type': 'application/json' },
    body: JSON.stringify({ linked_account_id: accountId }),
  });
  expect(response.status).toBe(200);
  const { token } = (await response.json()) as { token: string };
  tokens.add(token);
  return { client: createCredvaultClient({ baseUrl: `${api.url}${BASE}`, token, ...(fetchImpl ? { fetch: fetchImpl } : {}) }), token };
}

beforeAll(async () => {
  vault = await createVault({ store: 'memory:' });
  apiKey = (await createApiKey(vault, ACME)).apiKey;
  tokens.add(apiKey);
  await createLinkedAccount(vault, cust1, { name: 'Customer One', credentials: {} });
  await createLinkedAccount(vault, { ...ACME, accountId: 'cust-2' }, { credentials: { legacy_secret: 'legacy-value-xyz' } });
  const options: ApiServerOptions = { logError: (line) => logged.push(line) };
  api = await listen(await createApiServer(vault, 'express', options));
});

afterAll(async () => {
  await api?.close();
  await vault?.close();
});

describe('createCredvaultClient against a real server', () => {
  let client: CredvaultClient;
  let token: string;
  let recorder: ReturnType<typeof recordingFetch>;

  beforeAll(async () => {
    recorder = recordingFetch();
    ({ client, token } = await sessionClient('cust-1', recorder.fetch));
  });

  it('upsertCredential adds, then updates, and the vault holds the value', async () => {
    expect(await client.upsertCredential('api_key', 'sk_live_first')).toEqual({
      success: true,
      message: "Auth credential 'api_key' added successfully",
      action: 'added',
    });
    expect(await client.upsertCredential('api_key', 'sk_live_second')).toEqual({
      success: true,
      message: "Auth credential 'api_key' updated successfully",
      action: 'updated',
    });
    expect(await stored('cust-1', 'api_key')).toBe('sk_live_second');
  });

  it('sends PUT {"value": ...} as JSON with a bearer token, to the percent-encoded key path', async () => {
    recorder.requests.length = 0;
    await client.upsertCredential('a.b-c_d', 'dotted');
    const [request] = recorder.requests;
    expect(request).toBeDefined();
    expect(request?.url).toBe(`${api.url}${CREDENTIALS}/a.b-c_d`);
    expect(request?.method).toBe('PUT');
    expect(request?.headers.get('authorization')).toBe(`Bearer ${token}`);
    expect(request?.headers.get('content-type')).toBe('application/json');
    expect(request?.body).toBe('{"value":"dotted"}');
    expect(await stored('cust-1', 'a.b-c_d')).toBe('dotted');
  });

  it('sends numbers and booleans as JSON; the server stores their string form', async () => {
    recorder.requests.length = 0;
    expect(await client.upsertCredential('port', 8443)).toMatchObject({ action: 'added' });
    expect(await client.upsertCredential('verify_tls', false)).toMatchObject({ action: 'added' });
    expect(recorder.requests.map((r) => r.body)).toEqual(['{"value":8443}', '{"value":false}']);
    expect(await stored('cust-1', 'port')).toBe('8443');
    expect(await stored('cust-1', 'verify_tls')).toBe('false');
  });

  it('deleteCredential deletes; a missing key fails 404 RESOURCE_NOT_FOUND with the envelope message', async () => {
    expect(await client.deleteCredential('a.b-c_d')).toEqual({ success: true, message: "Auth credential 'a.b-c_d' deleted successfully" });
    expect(await stored('cust-1', 'a.b-c_d')).toBeUndefined();
    await fails(client.deleteCredential('a.b-c_d'), {
      status_code: 404,
      http_error_type: 'NOT_FOUND',
      error: 'RESOURCE_NOT_FOUND',
      message: "Auth credential key 'a.b-c_d' not found",
    });
  });

  it('activeAccount answers the token’s linked account', async () => {
    const account = await client.activeAccount();
    expect(account).toMatchObject({ associated_org: 'acme', account_id: 'cust-1', name: 'Customer One', environment: 'test', udf: [] });
    expect(account.integrations).toHaveLength(1);
    expect(account.integrations[0]).toMatchObject({ type: 'default_app', name: 'Default App' });
  });

  it('an empty value fails 400 VALIDATION_ERROR from the server, and nothing is stored', async () => {
    recorder.requests.length = 0;
    const error = await fails(client.upsertCredential('empty_one', ''), { status_code: 400, http_error_type: 'BAD_REQUEST', error: 'VALIDATION_ERROR' });
    expect(error.message).toMatch(/empty/);
    expect(recorder.requests).toHaveLength(1);
    expect(await names('cust-1')).not.toContain('empty_one');
  });

  it('refuses a key the server would refuse, or one a URL path cannot carry, without sending anything', async () => {
    recorder.requests.length = 0;
    const before = await names('cust-1');
    const bad = ['a/b', '../x', '..', '.', 'a b', '', 'x'.repeat(129), '%2e%2e', '%2F', 'a?b', 'a#b', 'é', 'key\n'];
    for (const key of bad) {
      for (const call of [client.upsertCredential(key, 'v'), client.deleteCredential(key)]) {
        const error = await fails(call, { status_code: 0, http_error_type: 'BAD_REQUEST', error: 'VALIDATION_ERROR' });
        expect(error.message).toMatch(/^key must/);
      }
    }
    await fails(client.upsertCredential(42 as unknown as string, 'v'), { error: 'VALIDATION_ERROR' });
    expect(recorder.requests).toEqual([]);
    expect(await names('cust-1')).toEqual(before);
  });

  it('accepts every character of the key rule and the longest key', async () => {
    for (const key of ['...', '.env', '-_-', 'x'.repeat(128), 'AZaz09_.-']) {
      expect(await client.upsertCredential(key, `v-${key}`)).toMatchObject({ action: 'added' });
      expect(await stored('cust-1', key)).toBe(`v-${key}`);
      await client.deleteCredential(key);
    }
  });

  it('ignores trailing slashes on baseUrl', async () => {
    const slashed = createCredvaultClient({ baseUrl: `${api.url}${BASE}//`, token });
    expect(await slashed.activeAccount()).toMatchObject({ account_id: 'cust-1' });
  });

  it('passes a path-only baseUrl to fetch as is, for browsers to resolve against the page', async () => {
    const seen: string[] = [];
    const pathOnly = createCredvaultClient({
      baseUrl: '/api/v2/public/',
      token,
      fetch: async (input) => {
        seen.push(String(input));
        return new Response('{"success":true,"revoked_count":0}', { status: 200, headers: { 'content-type': 'application/json' } });
      },
    });
    expect(await pathOnly.revoke()).toEqual({ success: true, revoked_count: 0 });
    expect(seen).toEqual(['/api/v2/public/session-token/revoke']);
  });

  it('a garbage token fails 401 INVALID_TOKEN', async () => {
    const garbage = 'cvs_garbage.not-a-real-token';
    tokens.add(garbage);
    const stranger = createCredvaultClient({ baseUrl: `${api.url}${BASE}`, token: garbage });
    await fails(stranger.activeAccount(), { status_code: 401, http_error_type: 'UNAUTHORIZED', error: 'INVALID_TOKEN', message: 'Invalid token' });
    await fails(stranger.upsertCredential('api_key', 'nope'), { status_code: 401, error: 'INVALID_TOKEN' });
    expect(await stored('cust-1', 'api_key')).toBe('sk_live_second');
  });

  it('revoke ends the token: every later call fails 401 INVALID_TOKEN "Invalid token"', async () => {
    const { client: doomed } = await sessionClient('cust-1');
    expect(await doomed.revoke()).toEqual({ success: true, revoked_count: 1 });
    const expected = { status_code: 401, http_error_type: 'UNAUTHORIZED', error: 'INVALID_TOKEN', message: 'Invalid token' };
    await fails(doomed.activeAccount(), expected);
    await fails(doomed.upsertCredential('after_revoke', 'x'), expected);
    await fails(doomed.deleteCredential('api_key'), expected);
    await fails(doomed.revoke(), expected);
    await fails(doomed.fields(), expected);
    expect(await names('cust-1')).not.toContain('after_revoke');
    expect(await stored('cust-1', 'api_key')).toBe('sk_live_second');
  });
});

describe('failures that are not the API’s envelope', () => {
  let token: string;
  beforeAll(() => {
    token = 'cvs_offline.token-for-failure-tests';
    tokens.add(token);
  });

  it('no server listening: NETWORK_ERROR, status 0, with the fetch error as cause', async () => {
    const port = await closedPort();
    const client = createCredvaultClient({ baseUrl: `http://127.0.0.1:${port}${BASE}`, token });
    const error = await fails(client.upsertCredential('api_key', 'v'), { status_code: 0, http_error_type: 'NETWORK_ERROR', error: 'NETWORK_ERROR' });
    expect(error.cause).toBeInstanceOf(Error);
    await fails(client.activeAccount(), { status_code: 0, error: 'NETWORK_ERROR' });
  });

  describe('a proxy in front that answers with something else', () => {
    let proxy: Listening;
    beforeAll(async () => {
      proxy = await listen(
        http.createServer((req, res) => {
          if (req.url?.includes('/session/')) {
            res.writeHead(502, { 'content-type': 'text/html; charset=utf-8' }).end('<html><body>Bad Gateway: upstream down</body></html>');
          } else if (req.url?.includes('/session-token/revoke')) {
            res.writeHead(200, { 'content-type': 'text/plain' }).end('OK');
          } else if (req.url?.endsWith('/auth-credentials')) {
            res.writeHead(200, { 'content-type': 'application/json' }).end('[1,2,3]');
          } else if (req.url?.includes('/echo/')) {
            // A broken upstream that quotes the request's authorization header back.
            const envelope = { status_code: 400, http_error_type: 'BAD_REQUEST', error: 'VALIDATION_ERROR', message: `bad header ${req.headers.authorization}` };
            res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify(envelope));
          } else {
            res.writeHead(401, { 'content-type': 'application/json' }).end('{"message":"not the envelope"}');
          }
        }),
      );
    });
    afterAll(() => proxy.close());

    const at = (path: string) => createCredvaultClient({ baseUrl: `${proxy.url}${path}`, token });

    it('an HTML 502 is INVALID_RESPONSE with the HTTP status, and no body in the message', async () => {
      const error = await fails(at(BASE).activeAccount(), { status_code: 502, http_error_type: 'INVALID_RESPONSE', error: 'INVALID_RESPONSE' });
      expect(error.message).toContain('502');
      expect(error.message).toContain('text/html');
      expect(error.message).not.toContain('upstream');
    });

    it('a 200 that is not a JSON object is INVALID_RESPONSE too', async () => {
      await fails(at(BASE).revoke(), { status_code: 200, error: 'INVALID_RESPONSE' });
      await fails(at(BASE).fields(), { status_code: 200, error: 'INVALID_RESPONSE' });
    });

    it('JSON that is not the envelope is INVALID_RESPONSE', async () => {
      await fails(at(BASE).deleteCredential('api_key'), { status_code: 401, error: 'INVALID_RESPONSE' });
    });

    it('an envelope quoting the token has it redacted', async () => {
      const error = await fails(at('/echo').upsertCredential('api_key', 'v'), { status_code: 400, error: 'VALIDATION_ERROR' });
      expect(error.message).toBe('bad header Bearer [redacted]');
    });
  });

  describe('aborting', () => {
    let hanging: Listening;
    beforeAll(async () => {
      hanging = await listen(http.createServer(() => undefined));
    });
    afterAll(() => hanging.close());

    it('an abort mid-request is ABORTED, status 0, with the abort reason as cause', async () => {
      const client = createCredvaultClient({ baseUrl: `${hanging.url}${BASE}`, token });
      const controller = new AbortController();
      const pending = client.activeAccount({ signal: controller.signal });
      setTimeout(() => controller.abort(new Error('user closed the dialog')), 50);
      const error = await fails(pending, { status_code: 0, http_error_type: 'ABORTED', error: 'ABORTED' });
      expect((error.cause as Error).message).toBe('user closed the dialog');
    });

    it('an already aborted signal is ABORTED', async () => {
      const client = createCredvaultClient({ baseUrl: `${hanging.url}${BASE}`, token });
      await fails(client.upsertCredential('api_key', 'v', { signal: AbortSignal.abort() }), { error: 'ABORTED' });
    });
  });

  it('a fetch whose error quotes the token: NETWORK_ERROR without that cause', async () => {
    const client = createCredvaultClient({
      baseUrl: BASE,
      token,
      fetch: async (_input, init) => {
        throw new TypeError(`cannot send header ${new Headers(init?.headers).get('authorization')}`);
      },
    });
    const error = await fails(client.activeAccount(), { status_code: 0, error: 'NETWORK_ERROR' });
    expect(error.cause).toBeUndefined();
    const nested = createCredvaultClient({
      baseUrl: BASE,
      token,
      fetch: async () => {
        throw new TypeError('fetch failed', { cause: new Error(`socket said ${token}`) });
      },
    });
    expect((await fails(nested.revoke(), { error: 'NETWORK_ERROR' })).cause).toBeUndefined();
  });

  it('bad options throw VALIDATION_ERROR at once, without quoting the token', () => {
    const secret = 'cvs_secret.with\r\nheader-injection';
    tokens.add(secret);
    for (const options of [
      { baseUrl: BASE, token: '' },
      { baseUrl: BASE, token: secret },
      { baseUrl: BASE, token: 'cvs_has space' },
      { baseUrl: BASE, token: undefined as unknown as string },
      { baseUrl: undefined as unknown as string, token },
    ]) {
      let thrown: unknown;
      try {
        createCredvaultClient(options);
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(CredvaultError);
      expect(thrown).toMatchObject({ status_code: 0, error: 'VALIDATION_ERROR' });
      errors.push(thrown as CredvaultError);
    }
  });

  it('the client object does not show its token', () => {
    const client = createCredvaultClient({ baseUrl: BASE, token, fetch: async () => new Response('{}') });
    expect(JSON.stringify(client)).not.toContain(token);
    expect(Object.values(client).every((v) => typeof v === 'function')).toBe(true);
  });
});

describe('fields() (GET /linked-account/default-app/auth-credentials)', () => {
  it('on a server without a default app: no name, no fields, and every stored name, sorted', async () => {
    const { client } = await sessionClient('cust-2');
    await client.upsertCredential('b_key', 'value-b');
    await client.upsertCredential('a_key', 'value-a');
    const answer = await client.fields();
    expect(answer).toEqual({ name: null, fields: [], set: ['a_key', 'b_key', 'legacy_secret'] });
    expect(JSON.stringify(answer)).not.toMatch(/value-|legacy-value/);
  });
});

describe('connectUrl() (POST /connect-url)', () => {
  it('on a server without a default app: 404 RESOURCE_NOT_FOUND', async () => {
    const { client } = await sessionClient('cust-2');
    await fails(client.connectUrl(), { status_code: 404, error: 'RESOURCE_NOT_FOUND' });
  });
});

describe('with a default app declared: fields(), connectUrl() and the page token', () => {
  let app: Listening;
  let client: CredvaultClient;
  let page: CredvaultClient;
  let pageToken: string;

  beforeAll(async () => {
    // Typed loosely until HandlerOptions declares `defaultApp`; the server checks it either way.
    const options: ApiServerOptions = {
      logError: (line) => logged.push(line),
      defaultApp: {
        name: 'Acme CRM',
        fields: [
          { name: 'api_key', type: 'password', required: true, label: 'API key' },
          { name: 'region', type: 'select', options: [{ label: 'EU', value: 'eu' }, { label: 'US', value: 'us' }] },
          { name: 'port', type: 'number' },
        ],
      },
    };
    app = await listen(await createApiServer(vault, 'express', options));
    await createLinkedAccount(vault, { ...ACME, accountId: 'cust-3' }, { credentials: { legacy_secret: 'legacy-3' } });
    const { token } = await issueSessionToken(vault, { ...ACME, accountId: 'cust-3' }, { forceRefresh: true });
    tokens.add(token);
    client = createCredvaultClient({ baseUrl: `${app.url}${BASE}`, token });
  });
  afterAll(() => app?.close());

  it('fields() lists the declared fields with is_set, and every stored name', async () => {
    expect(await client.upsertCredential('api_key', 'sk-cust-3')).toMatchObject({ action: 'added' });
    const answer = await client.fields();
    expect(answer.name).toBe('Acme CRM');
    expect(answer.fields.map((f) => [f.name, f.type, f.required, f.is_set])).toEqual([
      ['api_key', 'password', true, true],
      ['region', 'select', false, false],
      ['port', 'number', false, false],
    ]);
    expect(answer.fields[0]?.label).toBe('API key');
    expect(answer.fields[1]?.options).toEqual([{ label: 'EU', value: 'eu' }, { label: 'US', value: 'us' }]);
    expect(answer.set).toEqual(['api_key', 'legacy_secret']);
    expect(JSON.stringify(answer)).not.toMatch(/sk-cust-3|legacy-3/);
  });

  it('a session token writes only declared fields, with values that fit them', async () => {
    await fails(client.upsertCredential('undeclared', 'x'), { status_code: 400, error: 'VALIDATION_ERROR' });
    await fails(client.upsertCredential('region', 'mars'), { status_code: 400, error: 'VALIDATION_ERROR' });
    expect(await client.upsertCredential('port', 443)).toMatchObject({ action: 'added' });
    expect(await stored('cust-3', 'port')).toBe('443');
    expect(await names('cust-3')).not.toContain('undeclared');
  });

  it('connectUrl() gives the Connect page with a page token in the fragment only', async () => {
    const answer = await client.connectUrl();
    const url = new URL(answer.url);
    expect(url.origin).toBe(app.url);
    expect(url.pathname).toBe('/connect');
    expect(url.search).toBe('');
    expect(url.hash).toMatch(/^#token=cvs_[A-Za-z0-9_.-]+$/);
    expect(answer.expires_in).toBeGreaterThan(0);
    expect(answer.expires_in).toBeLessThanOrEqual(900);
    pageToken = decodeURIComponent(url.hash.slice('#token='.length));
    tokens.add(pageToken);
    page = createCredvaultClient({ baseUrl: `${app.url}${BASE}`, token: pageToken });
  });

  it('a page token reads fields, writes a field and reads its account, but gets no connect URL', async () => {
    expect((await page.fields()).name).toBe('Acme CRM');
    expect(await page.upsertCredential('region', 'eu')).toMatchObject({ action: 'added' });
    expect(await stored('cust-3', 'region')).toBe('eu');
    expect(await page.activeAccount()).toMatchObject({ account_id: 'cust-3' });
    await fails(page.connectUrl(), { status_code: 403, error: 'FORBIDDEN' });
  });

  it('revoking the page token ends it and leaves the session token working', async () => {
    expect(await page.revoke()).toEqual({ success: true, revoked_count: 1 });
    await fails(page.fields(), { status_code: 401, error: 'INVALID_TOKEN', message: 'Invalid token' });
    expect((await client.fields()).name).toBe('Acme CRM');
  });

  it('revoking the session token ends its page tokens at once', async () => {
    const { url } = await client.connectUrl();
    const second = decodeURIComponent(new URL(url).hash.slice('#token='.length));
    tokens.add(second);
    const secondPage = createCredvaultClient({ baseUrl: `${app.url}${BASE}`, token: second });
    expect((await secondPage.fields()).name).toBe('Acme CRM');
    expect(await client.revoke()).toEqual({ success: true, revoked_count: 1 });
    await fails(secondPage.fields(), { status_code: 401, error: 'INVALID_TOKEN', message: 'Invalid token' });
    await fails(secondPage.upsertCredential('api_key', 'late'), { status_code: 401, error: 'INVALID_TOKEN' });
    expect(await stored('cust-3', 'api_key')).toBe('sk-cust-3');
  });
});

describe('secrets', () => {
  it('no error thrown above carries any token or API key, in its message, properties, JSON, stack or causes', () => {
    expect(errors.length).toBeGreaterThan(30);
    expect(tokens.size).toBeGreaterThan(3);
    for (const error of errors) expectNoSecret(error, tokens);
    for (const line of logged) for (const secret of tokens) expect(line).not.toContain(secret);
  });
});

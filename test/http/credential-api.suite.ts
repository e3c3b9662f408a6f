import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import {
  createApiKey,
  createLinkedAccount,
  createVault,
  getDefaultAppCredential,
  issueSessionToken,
  listDefaultAppCredentials,
  revokeApiKey,
  revokeSessionToken,
  VaultError,
  type AuthResolver,
  type Vault,
  type VaultEvent,
  type VaultStore,
} from '../../src/index.js';
import { createMemoryStore } from '../../adapters/memory.js';
import { call, startBinding, type BindingName, type RunningServer } from './harness.js';

const BASE = '/api/v2/public';
const credentialPath = (key: string) => `${BASE}/linked-account/default-app/auth-credentials/${key}`;
const ACME = { org: 'acme', environment: 'test' } as const;

/** A store that can be taken down while the vault runs: calls then hang, as with a dead network. */
function switchableStore(inner: VaultStore): VaultStore & { down: boolean } {
  const hang = () => new Promise<never>(() => undefined);
  const wrapper = {
    down: false,
    kind: inner.kind,
    get: (g: string, m: string) => (wrapper.down ? hang() : inner.get(g, m)),
    put: (...a: Parameters<VaultStore['put']>) => (wrapper.down ? hang() : inner.put(...a)),
    insert: (...a: Parameters<VaultStore['insert']>) => (wrapper.down ? hang() : inner.insert(...a)),
    replace: (...a: Parameters<VaultStore['replace']>) => (wrapper.down ? hang() : inner.replace(...a)),
    remove: (g: string, m: string) => (wrapper.down ? hang() : inner.remove(g, m)),
    list: (g: string, p?: string) => (wrapper.down ? hang() : inner.list(g, p)),
    removeGroup: (...a: Parameters<VaultStore['removeGroup']>) => (wrapper.down ? hang() : inner.removeGroup(...a)),
    batch: (...a: Parameters<VaultStore['batch']>) => (wrapper.down ? hang() : inner.batch(...a)),
    increment: (...a: Parameters<VaultStore['increment']>) => (wrapper.down ? hang() : inner.increment(...a)),
    purgeExpired: (n: number) => (wrapper.down ? hang() : inner.purgeExpired(n)),
    scan: (c: string | undefined, n: number) => (wrapper.down ? hang() : inner.scan(c, n)),
    readIndex: (...a: Parameters<VaultStore['readIndex']>) => (wrapper.down ? hang() : inner.readIndex(...a)),
    close: () => inner.close(),
  };
  return wrapper;
}

/**
 * The PUT credential endpoint, every error row it can produce and every validation rule,
 * through a real HTTP server running one binding.
 */
export function credentialApiSuite(binding: BindingName): void {
  describe(`PUT ${credentialPath(':key')} on ${binding}`, () => {
    let vault: Vault;
    let store: VaultStore & { down: boolean };
    let server: RunningServer;
    let testKey: string;
    let prodKey: string;
    let otherOrgKey: string;
    let revokedKey: string;
    let session: string;
    const events: VaultEvent[] = [];
    const logged: string[] = [];

    const put = (key: string, body: unknown, headers: Record<string, string> = {}, query = '') =>
      call(`${server.url}${credentialPath(key)}${query}`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json', ...headers },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      });
    const asAcme = (accountId = 'cust-1') => ({ 'x-api-key': testKey, linked_account_id: accountId });
    const stored = (accountId: string, key: string, org = 'acme', environment = 'test') =>
      getDefaultAppCredential(vault, { org, environment, accountId }, key);
    const names = async (accountId: string) =>
      (await listDefaultAppCredentials(vault, { ...ACME, accountId })).map((c) => c.key);

    function expectError(result: { status: number; body: unknown; headers: Headers }, status: number, httpErrorType: string, error: string, message?: string | RegExp) {
      expect(result.status).toBe(status);
      expect(result.headers.get('content-type')).toMatch(/^application\/json/);
      const body = result.body as Record<string, unknown>;
      expect(Object.keys(body).sort()).toEqual(['error', 'http_error_type', 'message', 'status_code']);
      expect(body).toMatchObject({ status_code: status, http_error_type: httpErrorType, error });
      if (typeof message === 'string') expect(body['message']).toBe(message);
      else if (message !== undefined) expect(body['message']).toMatch(message);
    }

    const customResolver: AuthResolver = async (request) => {
      const token = request.headers['x-internal-service'];
      if (token === undefined) return undefined;
      if (token === 'explode') throw new TypeError('resolver bug with private detail');
      if (token !== 'let-me-in') throw new VaultError('INVALID_API_KEY', 'Invalid Credentials');
      return { kind: 'api_key', org: 'acme', environment: 'test', actor: { type: 'custom', id: 'internal' } };
    };

    beforeAll(async () => {
      store = switchableStore(createMemoryStore());
      vault = await createVault({
        store,
        keys: `k1:${randomBytes(32).toString('base64')}`,
        storeTimeoutMs: 300,
        onEvent: (event) => {
          events.push(event);
        },
      });
      testKey = (await createApiKey(vault, ACME)).apiKey;
      prodKey = (await createApiKey(vault, { org: 'acme', environment: 'production' })).apiKey;
      otherOrgKey = (await createApiKey(vault, { org: 'globex', environment: 'test' })).apiKey;
      const revoked = await createApiKey(vault, ACME);
      revokedKey = revoked.apiKey;
      await revokeApiKey(vault, revoked.keyId);
      await createLinkedAccount(vault, { ...ACME, accountId: 'cust-1' }, { credentials: {} });
      await createLinkedAccount(vault, { ...ACME, accountId: 'cust-2' }, { credentials: { seeded: 'seed-value-2' } });
      await createLinkedAccount(vault, { ...ACME, accountId: 'no-app' });
      await createLinkedAccount(vault, { org: 'globex', environment: 'test', accountId: 'g-1' }, { credentials: {} });
      session = (await issueSessionToken(vault, { ...ACME, accountId: 'cust-1' })).token;
      server = await startBinding(binding, vault, {
        resolvers: [customResolver, ...(await import('../../src/auth/index.js')).defaultResolvers()],
        logError: (line) => logged.push(line),
      });
    });

    afterAll(async () => {
      await server.close();
      await vault.close();
    });

    describe('success', () => {
      it('adds, then updates, with an API key and linked_account_id header', async () => {
        const first = await put('api_key', { value: 'sk_live_first' }, asAcme());
        expect(first.status).toBe(200);
        expect(first.headers.get('content-type')).toMatch(/^application\/json/);
        expect(first.body).toEqual({ success: true, message: "Auth credential 'api_key' added successfully", action: 'added' });
        const second = await put('api_key', { value: 'sk_live_second' }, asAcme());
        expect(second.body).toEqual({ success: true, message: "Auth credential 'api_key' updated successfully", action: 'updated' });
        expect(await stored('cust-1', 'api_key')).toBe('sk_live_second');
      });

      it('takes linked_account_id from the query', async () => {
        const result = await put('from_query', { value: 'q-value' }, { 'x-api-key': testKey }, '?linked_account_id=cust-1');
        expect(result.status).toBe(200);
        expect(await stored('cust-1', 'from_query')).toBe('q-value');
      });

      it('accepts the header and the query when they agree', async () => {
        const result = await put('agree', { value: 'v' }, asAcme(), '?linked_account_id=cust-1');
        expect(result.status).toBe(200);
      });

      it('authenticates with a session token; the account comes from the token', async () => {
        const result = await put('client_secret', { value: 'cs-1' }, { authorization: `Bearer ${session}` });
        expect(result.body).toEqual({ success: true, message: "Auth credential 'client_secret' added successfully", action: 'added' });
        expect(await stored('cust-1', 'client_secret')).toBe('cs-1');
        const same = await put('client_secret', { value: 'cs-2' }, { authorization: `Bearer ${session}`, linked_account_id: 'cust-1' });
        expect(same.body).toMatchObject({ action: 'updated' });
      });

      it('lets x-api-key decide when both credentials are present', async () => {
        const result = await put('both', { value: 'v' }, { 'x-api-key': testKey, authorization: `Bearer ${session}`, linked_account_id: 'cust-2' });
        expect(result.status).toBe(200);
        expect(await stored('cust-2', 'both')).toBe('v');
      });

      it('accepts a pluggable resolver', async () => {
        const result = await put('via_custom', { value: 'custom' }, { 'x-internal-service': 'let-me-in', linked_account_id: 'cust-2' });
        expect(result.status).toBe(200);
        expect(await stored('cust-2', 'via_custom')).toBe('custom');
        const denied = await put('via_custom', { value: 'x' }, { 'x-internal-service': 'wrong', linked_account_id: 'cust-2' });
        expectError(denied, 401, 'UNAUTHORIZED', 'SERVER_ERROR', 'Invalid Credentials');
        expect(await stored('cust-2', 'via_custom')).toBe('custom');
      });

      it('coerces finite numbers and booleans with String()', async () => {
        for (const [value, expected] of [
          [42, '42'],
          [1.5, '1.5'],
          [-0.25, '-0.25'],
          [true, 'true'],
          [false, 'false'],
          [1e21, '1e+21'],
        ] as const) {
          const result = await put('coerced', { value }, asAcme());
          expect(result.status).toBe(200);
          expect(await stored('cust-1', 'coerced')).toBe(expected);
        }
      });

      it('keeps strings as they are', async () => {
        for (const value of ['  padded  ', 'ünïcødé ✓ 🔑', '{"json":"looking"}', ':starts-with-colon', 'x'.repeat(64 * 1024)]) {
          const result = await put('verbatim', { value }, asAcme());
          expect(result.status).toBe(200);
          expect(await stored('cust-1', 'verbatim')).toBe(value);
        }
      });

      it('treats __proto__, constructor and friends as ordinary keys that round-trip', async () => {
        for (const key of ['__proto__', 'constructor', 'prototype', 'hasOwnProperty', 'toString']) {
          const result = await put(key, { value: `v-${key}` }, asAcme('cust-2'));
          expect(result.body).toEqual({ success: true, message: `Auth credential '${key}' added successfully`, action: 'added' });
          expect(await stored('cust-2', key)).toBe(`v-${key}`);
        }
        expect(await names('cust-2')).toEqual(expect.arrayContaining(['__proto__', 'constructor', 'prototype', 'hasOwnProperty', 'toString']));
      });

      it('accepts key names of 1 and 128 characters from the whole allowed set', async () => {
        expect((await put('a', { value: 'v' }, asAcme())).status).toBe(200);
        expect((await put('A-z_0.9'.padEnd(128, 'x'), { value: 'v' }, asAcme())).status).toBe(200);
      });

      it('keeps account ids with ":" and "/" apart from look-alikes', async () => {
        await createLinkedAccount(vault, { ...ACME, accountId: 'a:b' }, { credentials: {} });
        await createLinkedAccount(vault, { ...ACME, accountId: 'a/b' }, { credentials: {} });
        await createLinkedAccount(vault, { ...ACME, accountId: 'a%3Ab' }, { credentials: {} });
        await put('k', { value: 'colon' }, { 'x-api-key': testKey }, `?linked_account_id=${encodeURIComponent('a:b')}`);
        await put('k', { value: 'slash' }, { 'x-api-key': testKey }, `?linked_account_id=${encodeURIComponent('a/b')}`);
        await put('k', { value: 'percent' }, { 'x-api-key': testKey, linked_account_id: 'a%3Ab' });
        expect(await stored('a:b', 'k')).toBe('colon');
        expect(await stored('a/b', 'k')).toBe('slash');
        expect(await stored('a%3Ab', 'k')).toBe('percent');
      });
    });

    describe('authentication errors', () => {
      it('401 INVALID_TOKEN without any credential', async () => {
        expectError(await put('nope', { value: 'v' }, { linked_account_id: 'cust-1' }), 401, 'UNAUTHORIZED', 'INVALID_TOKEN', 'Authorization Token Missing');
      });

      it('401 SERVER_ERROR for an unknown, malformed or revoked API key', async () => {
        for (const key of [`tk_0123456789abcdef_${'A'.repeat(43)}`, 'garbage', revokedKey, testKey.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A'))]) {
          expectError(await put('nope', { value: 'v' }, { 'x-api-key': key, linked_account_id: 'cust-1' }), 401, 'UNAUTHORIZED', 'SERVER_ERROR', 'Invalid Credentials');
        }
        expect(await stored('cust-1', 'nope')).toBeUndefined();
      });

      it('401 INVALID_TOKEN for a bad, expired or revoked session token', async () => {
        const expiring = await issueSessionToken(vault, { ...ACME, accountId: 'cust-1' }, { ttlSeconds: 1, forceRefresh: true });
        const revoked = await issueSessionToken(vault, { ...ACME, accountId: 'cust-1' }, { forceRefresh: true });
        await revokeSessionToken(vault, revoked.token);
        await new Promise((resolve) => setTimeout(resolve, 1100));
        for (const authorization of ['Bearer not-a-token', `Bearer ${expiring.token}`, `Bearer ${revoked.token}`, `Bearer ${session}x`, 'Basic dXNlcjpwYXNz']) {
          expectError(await put('nope', { value: 'v' }, { authorization }), 401, 'UNAUTHORIZED', 'INVALID_TOKEN', 'Invalid token');
        }
        expect(await stored('cust-1', 'nope')).toBeUndefined();
      });

      it('records failed authentications as audit events without the credential', async () => {
        const before = events.length;
        await put('nope', { value: 'v' }, { 'x-api-key': 'tk_bogus', linked_account_id: 'cust-1' });
        const failed = events.slice(before).filter((e) => e.type === 'auth.failed');
        expect(failed).toHaveLength(1);
        expect(failed[0]?.reason).toBe('INVALID_API_KEY');
        expect(JSON.stringify(failed)).not.toContain('tk_bogus');
      });

      it('400 MISSING_LINKED_ACCOUNT_ID for an API key without an account', async () => {
        expectError(
          await put('nope', { value: 'v' }, { 'x-api-key': testKey }),
          400,
          'BAD_REQUEST',
          'MISSING_LINKED_ACCOUNT_ID',
          'linked_account_id header is required when using org API key authentication.',
        );
      });

      it('400 when the header and the query name different accounts', async () => {
        const result = await put('nope', { value: 'v' }, asAcme('cust-1'), '?linked_account_id=cust-2');
        expectError(result, 400, 'BAD_REQUEST', 'VALIDATION_ERROR', /linked_account_id/);
        expect(await stored('cust-1', 'nope')).toBeUndefined();
        expect(await stored('cust-2', 'nope')).toBeUndefined();
      });

      it('403 FORBIDDEN for a session token naming another account', async () => {
        const result = await put('nope', { value: 'v' }, { authorization: `Bearer ${session}`, linked_account_id: 'cust-2' });
        expectError(result, 403, 'FORBIDDEN', 'FORBIDDEN', /different linked account/);
        const viaQuery = await put('nope', { value: 'v' }, { authorization: `Bearer ${session}` }, '?linked_account_id=cust-2');
        expectError(viaQuery, 403, 'FORBIDDEN', 'FORBIDDEN');
        expect(await stored('cust-2', 'nope')).toBeUndefined();
        expect(await stored('cust-1', 'nope')).toBeUndefined();
      });
    });

    describe('account errors', () => {
      it('404 INVALID_LINKED_ACCOUNT_ID for an unknown account', async () => {
        expectError(
          await put('k', { value: 'v' }, asAcme('ghost')),
          404,
          'NOT_FOUND',
          'INVALID_LINKED_ACCOUNT_ID',
          'Linked Account with account id ghost for org acme in environment test not found',
        );
      });

      it('404 across orgs, and nothing is written', async () => {
        const result = await put('cross_org', { value: 'v' }, { 'x-api-key': otherOrgKey, linked_account_id: 'cust-1' });
        expectError(result, 404, 'NOT_FOUND', 'INVALID_LINKED_ACCOUNT_ID', 'Linked Account with account id cust-1 for org globex in environment test not found');
        expect(await stored('cust-1', 'cross_org')).toBeUndefined();
        expect(await stored('cust-1', 'cross_org', 'globex')).toBeUndefined();
      });

      it('404 across environments, and nothing is written', async () => {
        const result = await put('cross_env', { value: 'v' }, { 'x-api-key': prodKey, linked_account_id: 'cust-1' });
        expectError(result, 404, 'NOT_FOUND', 'INVALID_LINKED_ACCOUNT_ID', 'Linked Account with account id cust-1 for org acme in environment production not found');
        expect(await stored('cust-1', 'cross_env')).toBeUndefined();
      });

      it('404 RESOURCE_NOT_FOUND when the account has no default app', async () => {
        expectError(
          await put('k', { value: 'v' }, asAcme('no-app')),
          404,
          'NOT_FOUND',
          'RESOURCE_NOT_FOUND',
          'Default app integration not found for linked account no-app',
        );
        expect(await stored('no-app', 'k')).toBeUndefined();
      });
    });

    describe('validation', () => {
      const rejected: Array<[string, string | Record<string, unknown> | unknown[]]> = [
        ['invalid JSON', '{"value": '],
        ['an empty body', ''],
        ['a JSON array', [{ value: 'v' }]],
        ['a JSON string', '"just a string"'],
        ['a missing value', { other: 'v' }],
        ['a null value', { value: null }],
        ['an object value', { value: { nested: 'v' } }],
        ['an array value', { value: ['v'] }],
        ['an empty string', { value: '' }],
        ['a value over 64 KiB', { value: 'x'.repeat(64 * 1024 + 1) }],
        ['an overflowing number', '{"value": 1e400}'],
        ['a lone surrogate', '{"value": "\\ud800"}'],
      ];
      for (const [what, body] of rejected) {
        it(`400 VALIDATION_ERROR for ${what}, writing nothing`, async () => {
          const before = await names('cust-2');
          const result = await put('rejected', body, asAcme('cust-2'));
          expectError(result, 400, 'BAD_REQUEST', 'VALIDATION_ERROR');
          expect((result.body as { message: string }).message.length).toBeGreaterThan(5);
          expect(await names('cust-2')).toEqual(before);
        });
      }

      it('names the field and never echoes the value', async () => {
        const result = await put('k', { value: { secret: 'hunter2-do-not-echo' } }, asAcme());
        expect((result.body as { message: string }).message).toMatch(/^value /);
        expect(result.text).not.toContain('hunter2');
        const broken = await put('k', '{"value":"hunter3-do-not-echo"', asAcme());
        expect(broken.text).not.toContain('hunter3');
      });

      it('400 for key names outside 1-128 of A-Z a-z 0-9 _ . -', async () => {
        for (const key of ['x'.repeat(129), 'has%20space', 'ünï', 'semi%3Bcolon', 'at@sign', '%2F', '%E0%A4%A']) {
          const result = await put(key, { value: 'v' }, asAcme());
          expectError(result, 400, 'BAD_REQUEST', 'VALIDATION_ERROR');
        }
        const empty = await put('', { value: 'v' }, asAcme());
        expectError(empty, 400, 'BAD_REQUEST', 'VALIDATION_ERROR', /key/);
      });

      it('400 for linked_account_id values that break the rules', async () => {
        for (const query of [`?linked_account_id=${'x'.repeat(257)}`, '?linked_account_id=bad%01id', '?linked_account_id=a&linked_account_id=b']) {
          expectError(await put('k', { value: 'v' }, { 'x-api-key': testKey }, query), 400, 'BAD_REQUEST', 'VALIDATION_ERROR');
        }
        expect((await put('k', { value: 'v' }, { 'x-api-key': testKey }, `?linked_account_id=${'x'.repeat(256)}`)).status).toBe(404);
      });

      it('413 PAYLOAD_TOO_LARGE over 100 KiB, writing nothing', async () => {
        const result = await put('big', { value: 'x'.repeat(100 * 1024) }, asAcme());
        expectError(result, 413, 'PAYLOAD_TOO_LARGE', 'PAYLOAD_TOO_LARGE', 'Request body exceeds the 100 KiB limit');
        expect(await stored('cust-1', 'big')).toBeUndefined();
      });

      it('413 for a chunked body without content-length', async () => {
        const chunks = [Buffer.from('{"value":"'), Buffer.alloc(120 * 1024, 'y'), Buffer.from('"}')];
        const response = await fetch(`${server.url}${credentialPath('chunked')}`, {
          method: 'PUT',
          headers: asAcme(),
          body: new ReadableStream({
            start(controller) {
              for (const chunk of chunks) controller.enqueue(chunk);
              controller.close();
            },
          }),
          duplex: 'half',
        } as RequestInit);
        expect(response.status).toBe(413);
        expect(await response.json()).toMatchObject({ error: 'PAYLOAD_TOO_LARGE' });
        expect(await stored('cust-1', 'chunked')).toBeUndefined();
      });
    });

    describe('routing', () => {
      it('404 JSON for an unknown path under the base path', async () => {
        const result = await call(`${server.url}${BASE}/no/such/thing`, { headers: asAcme() });
        expectError(result, 404, 'NOT_FOUND', 'RESOURCE_NOT_FOUND', /\/api\/v2\/public\/no\/such\/thing/);
      });

      it('405 with Allow for a known path and an unsupported method', async () => {
        const result = await call(`${server.url}${credentialPath('k')}`, { method: 'PATCH', headers: asAcme(), body: '{}' });
        expectError(result, 405, 'METHOD_NOT_ALLOWED', 'METHOD_NOT_ALLOWED', /PUT/);
        expect(result.headers.get('allow')).toBe('PUT, DELETE');
      });

      it('leaves paths outside the base path to the application', async () => {
        const result = await call(`${server.url}/healthz`);
        expect(result.status).toBe(418);
        expect(result.body).toEqual({ outside: true });
      });
    });

    describe('failures of the server side', () => {
      it('503 STORE_UNAVAILABLE within the deadline when the store hangs, then recovers', async () => {
        store.down = true;
        try {
          const result = await put('during_outage', { value: 'v' }, asAcme());
          expectError(result, 503, 'SERVICE_UNAVAILABLE', 'STORE_UNAVAILABLE');
          expect((result.body as { message: string }).message).not.toMatch(/memory|Map|keyv/i);
          // The store never answers, so only the vault's deadline can have produced this answer.
          expect((result.body as { message: string }).message).toMatch(/did not answer within 300 ms/);
        } finally {
          store.down = false;
        }
        expect(await stored('cust-1', 'during_outage')).toBeUndefined();
        expect((await put('after_outage', { value: 'v' }, asAcme())).status).toBe(200);
      });

      it('500 without internals for an unexpected error', async () => {
        const result = await put('k', { value: 'v' }, { 'x-internal-service': 'explode', linked_account_id: 'cust-1' });
        expectError(result, 500, 'INTERNAL_SERVER_ERROR', 'INTERNAL_SERVER_ERROR', 'Internal server error');
        expect(result.text).not.toContain('private detail');
        expect(result.text).not.toContain('TypeError');
        expect(logged.join('\n')).toContain('TypeError');
        expect(logged.join('\n')).not.toContain('private detail');
      });
    });

    describe('concurrency', () => {
      it('keeps all of 100 distinct keys written in parallel', async () => {
        const keys = Array.from({ length: 100 }, (_, i) => `parallel_${i}`);
        const results = await Promise.all(keys.map((key) => put(key, { value: `value-${key}` }, asAcme('cust-2'))));
        expect(results.map((r) => r.status)).toEqual(keys.map(() => 200));
        const listed = await names('cust-2');
        for (const key of keys) expect(listed).toContain(key);
        for (const key of keys.slice(0, 5)) expect(await stored('cust-2', key)).toBe(`value-${key}`);
      });

      it('answers exactly one "added" among 30 parallel writers of one new key', async () => {
        const results = await Promise.all(Array.from({ length: 30 }, (_, i) => put('contended', { value: `w${i}` }, asAcme('cust-2'))));
        const actions = results.map((r) => (r.body as { action: string }).action);
        expect(actions.filter((a) => a === 'added')).toHaveLength(1);
        expect(actions.filter((a) => a === 'updated')).toHaveLength(29);
      });
    });

    describe('secrecy', () => {
      it('never puts a value, an API key or a token in a response, an event or a log line', async () => {
        const secret = `sk_live_${randomBytes(12).toString('hex')}`;
        const outputs: string[] = [];
        outputs.push((await put('secrecy', { value: secret }, asAcme())).text);
        outputs.push((await put('secrecy', { value: secret }, { authorization: `Bearer ${session}` })).text);
        outputs.push((await put('bad key!', { value: secret }, asAcme())).text);
        outputs.push((await put('secrecy', { value: secret }, asAcme('ghost'))).text);
        const everything = [...outputs, JSON.stringify(events), logged.join('\n')].join('\n');
        for (const needle of [secret, testKey, session, prodKey]) expect(everything).not.toContain(needle);
      });
    });
  });
}

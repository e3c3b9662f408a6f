/**
 * The served document lists exactly what the server answers: on a real server of each
 * binding, every route is driven into every error row it can reach (and to a 200), each
 * answer's status must be documented for that operation and its body must validate against
 * the documented schema, and every documented status and `error` value must have been reached.
 */
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import {
  createApiKey,
  createLinkedAccount,
  createVault,
  deleteLinkedAccount,
  issueSessionToken,
  VaultError,
  type AuthResolver,
  type Vault,
  type VaultStore,
} from '../../src/index.js';
import { defaultResolvers } from '../../src/auth/index.js';
import { createMemoryStore } from '../../adapters/memory.js';
import { BINDINGS, startBinding, type RunningServer } from './harness.js';

const BASE = '/api/v2/public';
const ACME = { org: 'acme', environment: 'test' } as const;
const MAX_FAILURES = 3;

const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (ajv: Ajv2020) => void;

/** A store that can fail every call at once (as a lost connection does), or run a hook before the next batch. */
function faultyStore(inner: VaultStore): VaultStore & { down: boolean; beforeBatch: (() => Promise<void>) | undefined } {
  const gate = <A extends unknown[], R>(call: (...args: A) => Promise<R>) => (...args: A): Promise<R> =>
    wrapper.down ? Promise.reject(new Error('connection lost')) : call(...args);
  const wrapper = {
    down: false,
    beforeBatch: undefined as (() => Promise<void>) | undefined,
    kind: inner.kind,
    get: gate(inner.get.bind(inner)),
    put: gate(inner.put.bind(inner)),
    insert: gate(inner.insert.bind(inner)),
    replace: gate(inner.replace.bind(inner)),
    remove: gate(inner.remove.bind(inner)),
    list: gate(inner.list.bind(inner)),
    removeGroup: gate(inner.removeGroup.bind(inner)),
    batch: gate(async (...args: Parameters<VaultStore['batch']>) => {
      const hook = wrapper.beforeBatch;
      wrapper.beforeBatch = undefined;
      await hook?.();
      return inner.batch(...args);
    }),
    increment: gate(inner.increment.bind(inner)),
    purgeExpired: gate(inner.purgeExpired.bind(inner)),
    scan: gate(inner.scan.bind(inner)),
    readIndex: gate(inner.readIndex.bind(inner)),
    close: () => inner.close(),
  };
  return wrapper;
}

/**
 * Test-only credentials: `x-test: explode` is a resolver bug (500); `x-test: ghost` a session
 * for an account that does not exist and with no credvault token (what a custom resolver may
 * return); `x-test: unlisted` a resolver raising a code no operation lists.
 */
const testResolver: AuthResolver = async (request) => {
  const mode = request.headers['x-test'];
  if (mode === undefined) return undefined;
  if (mode === 'explode') throw new TypeError('resolver bug');
  if (mode === 'unlisted') throw new VaultError('API_KEY_NOT_FOUND', 'a code no route answers');
  return { kind: 'session', ...ACME, accountId: 'ghost-account', actor: { type: 'custom', id: 'ghost' } };
};

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: { error?: string } & Record<string, unknown>;
}

/** A raw request (headers may repeat, bodies may be anything). */
function send(url: string, method: string, path: string, headers: Record<string, string | string[]>, body?: string): Promise<Answer> {
  const { hostname, port } = new URL(url);
  const all = body === undefined ? headers : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), ...headers };
  return new Promise((resolve, reject) => {
    const request = http.request({ host: hostname, port: Number(port), method, path, headers: all }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: response.statusCode ?? 0, headers: response.headers, body: JSON.parse(text) as Answer['body'] });
      });
      response.on('error', reject);
    });
    request.on('error', (error: NodeJS.ErrnoException) => {
      // A 413 answered before the whole body went out may reset the socket.
      if (error.code === 'EPIPE' || error.code === 'ECONNRESET') resolve({ status: -1, headers: {}, body: {} });
      else reject(error);
    });
    request.end(body);
  });
}

type Doc = {
  paths: Record<string, Record<string, { operationId: string; responses: Record<string, ResponseDoc> }>>;
};
type ResponseDoc = {
  headers?: Record<string, unknown>;
  content: { 'application/json': { schema: { allOf?: [unknown, { properties: { error: { const?: string; enum?: string[] } } }] } } };
};

/** One request that should reach one row: the expected status and `error`. */
interface Scenario {
  operationId: string;
  row: string;
  status: number;
  error?: string;
  run(): Promise<Answer>;
}

describe.each(BINDINGS)('every answer is documented, and every documented answer is reached, on %s', (binding) => {
  let vault: Vault;
  let store: ReturnType<typeof faultyStore>;
  let server: RunningServer;
  /** The same binding with no default app declared: POST /connect-url answers 404 there. */
  let plainServer: RunningServer;
  let doc: Doc;
  let apiKey: string;
  let token: string;
  let otherToken: string;
  const logged: string[] = [];
  let address = 0;
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats(ajv);

  beforeAll(async () => {
    store = faultyStore(createMemoryStore());
    vault = await createVault({ store, keys: `k1:${randomBytes(32).toString('base64')}`, log: () => undefined });
    apiKey = (await createApiKey(vault, ACME)).apiKey;
    await createLinkedAccount(vault, { ...ACME, accountId: 'with-app' }, { credentials: { api_key: 'v' } });
    await createLinkedAccount(vault, { ...ACME, accountId: 'no-app' });
    await createLinkedAccount(vault, { ...ACME, accountId: 'other' });
    token = (await issueSessionToken(vault, { ...ACME, accountId: 'with-app' })).token;
    otherToken = (await issueSessionToken(vault, { ...ACME, accountId: 'other' })).token;
    server = await startBinding(binding, vault, {
      resolvers: [testResolver, ...defaultResolvers()],
      openApiPath: '/openapi.json',
      // Each request comes from its own address (one trusted proxy), so limits trip only where meant.
      trustProxyHops: 1,
      failedAuthLimit: { maxFailures: MAX_FAILURES },
      logError: (line) => logged.push(line),
      defaultApp: { name: 'Acme CRM', fields: [{ name: 'api_key', type: 'password', required: true }] },
    });
    plainServer = await startBinding(binding, vault, { failedAuthLimit: false, logError: (line) => logged.push(line) });
    doc = (await send(server.url, 'GET', '/openapi.json', {})).body as unknown as Doc;
    ajv.addSchema(doc, 'doc');
  });
  afterAll(async () => {
    await server?.close();
    await plainServer?.close();
    await vault?.close();
  });

  /** Sends from a fresh client address. */
  const call = (method: string, path: string, headers: Record<string, string | string[]> = {}, body?: string) =>
    send(server.url, method, `${BASE}${path}`, { 'x-forwarded-for': `10.9.${Math.floor(address / 250)}.${(address++ % 250) + 1}`, ...headers }, body);
  const key = (extra: Record<string, string> = {}) => ({ 'x-api-key': apiKey, ...extra });
  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
  const fresh = (prefix: string) => `${prefix}-${randomBytes(4).toString('hex')}`;
  const big = JSON.stringify({ value: 'x'.repeat(200 * 1024) });

  interface RouteCase {
    operationId: string;
    method: string;
    path: string;
    /** Good credentials for this route, and a body it accepts. */
    ok: () => { headers: Record<string, string>; body?: string; path?: string };
    auth: 'api_key' | 'session' | 'either';
    body: boolean;
    /** The route's own rows, and the ones that need a request of their own. */
    rows: Array<Omit<Scenario, 'operationId'>>;
  }

  const cases = (): RouteCase[] => [
    {
      operationId: 'upsertDefaultAppAuthCredential',
      method: 'PUT',
      path: '/linked-account/default-app/auth-credentials/k',
      auth: 'either',
      body: true,
      ok: () => ({ headers: key({ linked_account_id: 'with-app' }), body: '{"value":"v2"}' }),
      rows: [
        { row: 'no linked_account_id with an API key', status: 400, error: 'MISSING_LINKED_ACCOUNT_ID', run: () => call('PUT', '/linked-account/default-app/auth-credentials/k', key(), '{"value":"v"}') },
        { row: 'an invalid value', status: 400, error: 'VALIDATION_ERROR', run: () => call('PUT', '/linked-account/default-app/auth-credentials/k', key({ linked_account_id: 'with-app' }), '{"value":null}') },
        { row: "a session token naming another account", status: 403, error: 'FORBIDDEN', run: () => call('PUT', '/linked-account/default-app/auth-credentials/k', { ...bearer(token), linked_account_id: 'other' }, '{"value":"v"}') },
        { row: 'an unknown account', status: 404, error: 'INVALID_LINKED_ACCOUNT_ID', run: () => call('PUT', '/linked-account/default-app/auth-credentials/k', key({ linked_account_id: 'nobody' }), '{"value":"v"}') },
        { row: 'no default app', status: 404, error: 'RESOURCE_NOT_FOUND', run: () => call('PUT', '/linked-account/default-app/auth-credentials/k', key({ linked_account_id: 'no-app' }), '{"value":"v"}') },
      ],
    },
    {
      operationId: 'deleteDefaultAppAuthCredential',
      method: 'DELETE',
      path: '/linked-account/default-app/auth-credentials/api_key',
      auth: 'either',
      body: false,
      ok: () => ({ headers: bearer(token) }),
      rows: [
        { row: 'no linked_account_id with an API key', status: 400, error: 'MISSING_LINKED_ACCOUNT_ID', run: () => call('DELETE', '/linked-account/default-app/auth-credentials/k', key()) },
        { row: 'a bad key name', status: 400, error: 'VALIDATION_ERROR', run: () => call('DELETE', '/linked-account/default-app/auth-credentials/bad%20key', key({ linked_account_id: 'with-app' })) },
        { row: 'a session token naming another account', status: 403, error: 'FORBIDDEN', run: () => call('DELETE', '/linked-account/default-app/auth-credentials/k?linked_account_id=other', bearer(token)) },
        { row: 'an unknown account', status: 404, error: 'INVALID_LINKED_ACCOUNT_ID', run: () => call('DELETE', '/linked-account/default-app/auth-credentials/k', key({ linked_account_id: 'nobody' })) },
        { row: 'no default app', status: 404, error: 'RESOURCE_NOT_FOUND', run: () => call('DELETE', '/linked-account/default-app/auth-credentials/k', key({ linked_account_id: 'no-app' })) },
        { row: 'a key not stored', status: 404, error: 'RESOURCE_NOT_FOUND', run: () => call('DELETE', '/linked-account/default-app/auth-credentials/never', key({ linked_account_id: 'with-app' })) },
      ],
    },
    {
      operationId: 'listLinkedAccounts',
      method: 'GET',
      path: '/linked-account',
      auth: 'api_key',
      body: false,
      ok: () => ({ headers: key(), path: '/linked-account?page=1&limit=2' }),
      rows: [
        { row: 'limit out of range', status: 400, error: 'VALIDATION_ERROR', run: () => call('GET', '/linked-account?limit=101', key()) },
        { row: 'an env_variable filter', status: 400, error: 'VALIDATION_ERROR', run: () => call('GET', '/linked-account?env_variable_name=A', key()) },
      ],
    },
    {
      operationId: 'createLinkedAccount',
      method: 'POST',
      path: '/linked-account',
      auth: 'api_key',
      body: true,
      ok: () => ({ headers: key(), body: JSON.stringify({ account_id: fresh('created'), your_app: { auth_credentials: { k: 'v' } } }) }),
      rows: [
        { row: 'no account id', status: 400, error: 'VALIDATION_ERROR', run: () => call('POST', '/linked-account', key(), '{"name":"x"}') },
        { row: 'an existing id', status: 409, error: 'CONFLICT', run: () => call('POST', '/linked-account', key(), '{"account_id":"other"}') },
      ],
    },
    {
      operationId: 'upsertLinkedAccount',
      method: 'PUT',
      path: '/linked-account',
      auth: 'either',
      body: true,
      ok: () => ({ headers: key(), body: JSON.stringify({ account_id: fresh('upserted'), your_app: {} }) }),
      rows: [
        { row: 'no account id with an API key', status: 400, error: 'VALIDATION_ERROR', run: () => call('PUT', '/linked-account', key(), '{"name":"x"}') },
        { row: 'a session token naming another account', status: 403, error: 'FORBIDDEN', run: () => call('PUT', '/linked-account', bearer(token), '{"account_id":"other"}') },
        {
          row: 'the account deleted while it is updated',
          status: 404,
          error: 'INVALID_LINKED_ACCOUNT_ID',
          async run() {
            const id = fresh('vanishing');
            await createLinkedAccount(vault, { ...ACME, accountId: id });
            store.beforeBatch = () => deleteLinkedAccount(vault, { ...ACME, accountId: id });
            return call('PUT', '/linked-account', key(), JSON.stringify({ account_id: id, name: 'renamed' }));
          },
        },
      ],
    },
    {
      operationId: 'getLinkedAccountById',
      method: 'GET',
      path: '/linked-account/with-app',
      auth: 'either',
      body: false,
      ok: () => ({ headers: bearer(token) }),
      rows: [
        { row: 'an id over 256 characters', status: 400, error: 'VALIDATION_ERROR', run: () => call('GET', `/linked-account/${'x'.repeat(257)}`, key()) },
        { row: "another account's token", status: 403, error: 'FORBIDDEN', run: () => call('GET', '/linked-account/other', bearer(token)) },
        { row: 'an unknown account', status: 404, error: 'INVALID_LINKED_ACCOUNT_ID', run: () => call('GET', '/linked-account/nobody', key()) },
      ],
    },
    {
      operationId: 'deleteLinkedAccount',
      method: 'DELETE',
      path: '/linked-account/{id}',
      auth: 'api_key',
      body: false,
      ok: () => ({ headers: key(), path: '/linked-account/to-delete' }),
      rows: [
        { row: 'an id over 256 characters', status: 400, error: 'VALIDATION_ERROR', run: () => call('DELETE', `/linked-account/${'x'.repeat(257)}`, key()) },
        { row: 'an unknown account', status: 404, error: 'INVALID_LINKED_ACCOUNT_ID', run: () => call('DELETE', '/linked-account/nobody', key()) },
      ],
    },
    {
      operationId: 'generateSessionTokenForLinkedAccount',
      method: 'POST',
      path: '/session-token',
      auth: 'api_key',
      body: true,
      ok: () => ({ headers: key(), body: '{"linked_account_id":"with-app"}' }),
      rows: [
        { row: 'an unknown account', status: 400, error: 'INVALID_LINKED_ACCOUNT_ID', run: () => call('POST', '/session-token', key(), '{"linked_account_id":"nobody"}') },
        { row: 'a bad force_refresh', status: 400, error: 'VALIDATION_ERROR', run: () => call('POST', '/session-token?force_refresh=yes', key(), '{"linked_account_id":"with-app"}') },
      ],
    },
    {
      operationId: 'revokeLinkedAccountSessionToken',
      method: 'POST',
      path: '/session-token/revoke',
      auth: 'session',
      body: false,
      ok: () => ({ headers: bearer(otherToken) }),
      rows: [
        { row: 'a session from a custom resolver, with no credvault token to revoke', status: 403, error: 'FORBIDDEN', run: () => call('POST', '/session-token/revoke', { 'x-test': 'ghost' }) },
      ],
    },
    {
      operationId: 'getLinkedAccountBySessionToken',
      method: 'GET',
      path: '/session/active-linked-account',
      auth: 'session',
      body: false,
      ok: () => ({ headers: bearer(token) }),
      rows: [
        { row: "a custom resolver's session for an account that does not exist", status: 404, error: 'INVALID_LINKED_ACCOUNT_ID', run: () => call('GET', '/session/active-linked-account', { 'x-test': 'ghost' }) },
      ],
    },
    {
      operationId: 'getDefaultAppAuthCredentialFields',
      method: 'GET',
      path: '/linked-account/default-app/auth-credentials',
      auth: 'either',
      body: false,
      ok: () => ({ headers: bearer(token) }),
      rows: [
        { row: 'no linked_account_id with an API key', status: 400, error: 'MISSING_LINKED_ACCOUNT_ID', run: () => call('GET', '/linked-account/default-app/auth-credentials', key()) },
        { row: 'a session token naming another account', status: 403, error: 'FORBIDDEN', run: () => call('GET', '/linked-account/default-app/auth-credentials?linked_account_id=other', bearer(token)) },
        { row: 'an unknown account', status: 404, error: 'INVALID_LINKED_ACCOUNT_ID', run: () => call('GET', '/linked-account/default-app/auth-credentials', key({ linked_account_id: 'nobody' })) },
      ],
    },
    {
      operationId: 'createConnectUrl',
      method: 'POST',
      path: '/connect-url',
      auth: 'session',
      body: false,
      ok: () => ({ headers: bearer(token) }),
      rows: [
        { row: 'a session from a custom resolver, with no credvault token', status: 403, error: 'FORBIDDEN', run: () => call('POST', '/connect-url', { 'x-test': 'ghost' }) },
        {
          row: 'a Connect page token',
          status: 403,
          error: 'FORBIDDEN',
          async run() {
            const first = await call('POST', '/connect-url', bearer(token));
            const url = new URL((first.body as { url: string }).url);
            return call('POST', '/connect-url', bearer(new URLSearchParams(url.hash.slice(1)).get('token') as string));
          },
        },
        {
          row: 'a server that declares no default app',
          status: 404,
          error: 'RESOURCE_NOT_FOUND',
          run: () => send(plainServer.url, 'POST', `${BASE}/connect-url`, bearer(token)),
        },
        {
          row: 'the account deleted while the page token is issued',
          status: 404,
          error: 'INVALID_LINKED_ACCOUNT_ID',
          async run() {
            const ref = { ...ACME, accountId: fresh('vanishing') };
            await createLinkedAccount(vault, ref, { credentials: {} });
            const doomed = (await issueSessionToken(vault, ref)).token;
            store.beforeBatch = () => deleteLinkedAccount(vault, ref);
            return call('POST', '/connect-url', bearer(doomed));
          },
        },
      ],
    },
  ];

  /** The rows every route has, from its properties (as the document derives them). */
  function scenarios(route: RouteCase): Scenario[] {
    const path = route.path.replace('{id}', 'probe');
    const withBody = (headers: Record<string, string | string[]>) => call(route.method, path, headers, route.body ? '{}' : undefined);
    const out: Array<Omit<Scenario, 'operationId'>> = [
      {
        row: 'success',
        status: 200,
        async run() {
          if (route.operationId === 'deleteLinkedAccount') await createLinkedAccount(vault, { ...ACME, accountId: 'to-delete' });
          const ok = route.ok();
          return call(route.method, ok.path ?? path, ok.headers, ok.body);
        },
      },
      { row: 'no credentials', status: 401, error: 'INVALID_TOKEN', run: () => withBody({}) },
      { row: 'an unknown API key', status: 401, error: 'SERVER_ERROR', run: () => withBody({ 'x-api-key': 'tk_0000000000000000_nope' }) },
      { row: 'a bad session token', status: 401, error: 'INVALID_TOKEN', run: () => withBody(bearer('not-a-token')) },
      // A strict header is checked on every route before anything else: here a byte outside ASCII.
      { row: 'a linked_account_id header not in ASCII', status: 400, error: 'VALIDATION_ERROR', run: () => withBody(key({ linked_account_id: 'caf\u00e9' })) },
      { row: 'another method on its path', status: 405, error: 'METHOD_NOT_ALLOWED', run: () => call('PATCH', path, key(), '{}') },
      {
        row: 'too many failed authentications from one address',
        status: 429,
        error: 'TOO_MANY_REQUESTS',
        async run() {
          const from = { 'x-forwarded-for': `10.8.0.${(address++ % 250) + 1}`, 'x-api-key': 'tk_0000000000000000_nope' };
          let answer: Answer | undefined;
          for (let i = 0; i <= MAX_FAILURES && answer?.status !== 429; i++) answer = await send(server.url, route.method, `${BASE}${path}`, from, route.body ? '{}' : undefined);
          return answer as Answer;
        },
      },
      {
        row: 'the store fails',
        status: 503,
        error: 'STORE_UNAVAILABLE',
        async run() {
          store.down = true;
          try {
            return await withBody(key({ linked_account_id: 'with-app' }));
          } finally {
            store.down = false;
          }
        },
      },
      { row: 'a resolver bug', status: 500, error: 'INTERNAL_SERVER_ERROR', run: () => withBody({ 'x-test': 'explode' }) },
      ...route.rows,
    ];
    if (route.auth === 'api_key') out.push({ row: 'a session token', status: 403, error: 'FORBIDDEN', run: () => withBody(bearer(token)) });
    if (route.auth === 'session') out.push({ row: 'an API key', status: 403, error: 'FORBIDDEN', run: () => withBody(key()) });
    if (route.body) {
      out.push({ row: 'a body over the limit', status: 413, error: 'PAYLOAD_TOO_LARGE', run: () => call(route.method, path, key({ linked_account_id: 'with-app' }), big) });
    }
    return out.map((s) => ({ ...s, operationId: route.operationId }));
  }

  function operation(operationId: string): { path: string; method: string; responses: Record<string, ResponseDoc> } {
    for (const [path, operations] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(operations)) if (op.operationId === operationId) return { path, method, responses: op.responses };
    }
    throw new Error(`${operationId} is not documented`);
  }

  const pointer = (path: string, method: string, status: string) =>
    `doc#/paths/${path.replaceAll('~', '~0').replaceAll('/', '~1')}/${method}/responses/${status}/content/application~1json/schema`;

  it('each route answers each of its rows with a documented status, a body of the documented schema, and the documented headers', async () => {
    const all = cases();
    expect(all.map((c) => c.operationId).sort()).toEqual(Object.values(doc.paths).flatMap((ops) => Object.values(ops).map((op) => op.operationId)).sort());
    for (const route of all) {
      const { path, method, responses } = operation(route.operationId);
      const reached = new Set<string>();
      for (const scenario of scenarios(route)) {
        const answer = await scenario.run();
        const where = `${route.operationId}: ${scenario.row}`;
        if (answer.status === -1) continue; // the socket was reset under a 413; the Node-level tests cover that
        expect({ where, status: answer.status, error: answer.body.error }).toEqual({ where, status: scenario.status, error: scenario.error });
        const documented = responses[String(answer.status)];
        expect(documented, `${where}: status ${answer.status} is not documented`).toBeDefined();
        const validate = ajv.getSchema(pointer(path, method, String(answer.status)));
        expect(validate, where).toBeDefined();
        expect(validate?.(answer.body), `${where}: ${JSON.stringify(validate?.errors)}`).toBe(true);
        if (answer.status === 405) expect(answer.headers['allow'], where).toMatch(/^[A-Z]+(, [A-Z]+)*$/);
        if (answer.status === 429) expect(Number(answer.headers['retry-after']), where).toBeGreaterThan(0);
        for (const header of Object.keys(documented?.headers ?? {})) expect(answer.headers[header.toLowerCase()], `${where}: ${header}`).toBeDefined();
        reached.add(answer.status === 200 ? '200' : `${answer.status} ${answer.body.error}`);
      }
      // The reverse: every status and error value the operation documents was reached.
      const listed = Object.entries(responses).flatMap(([status, response]) => {
        if (status === '200') return ['200'];
        const error = response.content['application/json'].schema.allOf?.[1].properties.error;
        return (error?.enum ?? [error?.const]).map((e) => `${status} ${e}`);
      });
      expect({ operation: route.operationId, reached: [...reached].sort() }).toEqual({ operation: route.operationId, reached: listed.sort() });
    }
    expect(logged.filter((line) => line.includes('bug'))).toEqual([]);
  }, 60_000);

  it('a route that raises a code its operation does not list answers 500 and reports the bug (so drift cannot go out silently)', async () => {
    logged.length = 0;
    const answer = await call('GET', '/session/active-linked-account', { 'x-test': 'unlisted' });
    expect(answer.status).toBe(500);
    expect(answer.body).toEqual({ status_code: 500, http_error_type: 'INTERNAL_SERVER_ERROR', error: 'INTERNAL_SERVER_ERROR', message: 'Internal server error' });
    expect(logged).toEqual(['credvault: bug: getLinkedAccountBySessionToken raised API_KEY_NOT_FOUND, which its OpenAPI operation does not list; answered 500']);
  });
});

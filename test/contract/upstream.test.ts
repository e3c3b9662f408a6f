/**
 * The upstream contract test: a client generated from the upstream OpenAPI excerpt
 * (openapi-typescript types, openapi-fetch calls) type-checks, then calls every upstream
 * operation on a real server for each binding; every 200 body must validate against the
 * upstream schema, every error against the envelope, and the served /openapi.json must
 * list every status the server gave.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey, createVault, type Vault } from '../../src/index.js';
import { BINDINGS, call, startBinding, type RunningServer } from '../http/harness.js';
import type { Auth, UpstreamCalls, UpstreamClientFactory } from './calls.js';
import { generateUpstreamClient, type GeneratedClient } from './generate.js';
import { ContractSession } from './session.js';
import { loadUpstreamDocument, toJsonSchema, upstreamOperations, UpstreamValidator } from './upstream.js';

const document = loadUpstreamDocument();
const validator = new UpstreamValidator(document);
const OPERATION_IDS = upstreamOperations(document).map((operation) => operation.operationId).sort();
const ORG = 'contract-org';
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

let generated: GeneratedClient;
let createClient: UpstreamClientFactory;

beforeAll(async () => {
  generated = await generateUpstreamClient(document);
  createClient = await generated.load();
});
afterAll(() => generated?.remove());

describe('the client generated from the upstream excerpt', () => {
  it('type-checks against the generated types with no diagnostic', () => {
    expect(generated.types).toContain('listLinkedAccounts');
    expect(generated.typeCheck()).toEqual([]);
  });

  it('fails the type-check for a call upstream does not allow (the check has teeth)', () => {
    // A create whose your_app lacks auth_credentials, and a path upstream does not have.
    writeFileSync(
      path.join(generated.dir, 'bad-call.ts'),
      [
        "import createClient from 'openapi-fetch';",
        "import type { paths } from './upstream.js';",
        "const client = createClient<paths>({ baseUrl: 'http://127.0.0.1' });",
        "export const bad = client.POST('/api/v2/public/linked-account', { body: { account_id: 'a', your_app: {} } });",
        "export const worse = client.GET('/api/v2/public/linked-accounts');",
        '',
      ].join('\n'),
    );
    const diagnostics = generated.typeCheck(['bad-call.ts']);
    expect(diagnostics.filter((line) => line.includes('bad-call.ts')).length).toBe(2);
  });

  it('the per-answer checks catch what they are for', () => {
    const probe = new ContractSession(validator, () => 'http://127.0.0.1:1');
    probe.secrets.add('s3cret-value');
    const answer = (body: unknown, status = 200) => ({ operationId: 'getLinkedAccountById', method: 'get' as const, path: '/p', status, body });
    expect(() => probe.ok(answer({ name: 'has s3cret-value inside' }))).toThrow(/secret/);
    expect(() => probe.ok(answer({ integrations: null }))).toThrow();
    expect(() => probe.ok(answer({}, 201))).toThrow();
    expect(() => probe.fails(answer({ status_code: 404, http_error_type: 'NOT_FOUND', error: 'E', message: 'm' }, 400), 400, 'E')).toThrow();
    probe.seen.splice(0);
    probe.seen.push({ method: 'get', path: '/p', status: 404 }, { method: 'patch', path: '/p', status: 401 }, { method: 'get', path: '/q', status: 200 });
    expect(probe.unlisted({ paths: { '/p': { get: { responses: { '200': {} } } } } })).toEqual([
      'GET /p answered 404, not listed',
      'PATCH /p is not served, yet answered 401',
      'GET /p does not list the 405 its path answers',
      '/q is not in the served document',
    ]);
  });

  it('has one method per upstream operation', () => {
    expect(Object.keys(createClient('http://127.0.0.1:1')).sort()).toEqual(OPERATION_IDS);
  });

  it("converts the excerpt's nullable faithfully", () => {
    expect(toJsonSchema({ type: 'string', nullable: true })).toEqual({ type: ['string', 'null'] });
    expect(toJsonSchema({ type: 'integer', enum: [0, 1], nullable: true })).toEqual({ type: ['integer', 'null'], enum: [0, 1, null] });
    expect(toJsonSchema({ type: 'string', nullable: false })).toEqual({ type: 'string' });
    expect(toJsonSchema({ description: 'any', nullable: true })).toEqual({ anyOf: [{ description: 'any' }, { type: 'null' }] });
    // A property that happens to be called `nullable` is a property, not the keyword.
    expect(toJsonSchema({ type: 'object', properties: { nullable: { type: 'boolean' } } })).toEqual({
      type: 'object',
      properties: { nullable: { type: 'boolean' } },
    });
    expect(validator.success('getLinkedAccountById', { tenant_account_id: null, integrations: [{ icon: null }] })).toEqual([]);
    expect(validator.success('getLinkedAccountById', { integrations: null })).not.toEqual([]);
    expect(validator.success('getLinkedAccountById', { createdAt: 'yesterday' })).not.toEqual([]);
    expect(validator.success('listLinkedAccounts', { nextPage: null, docs: [{ udf: [{ key_name: 1 }] }] })).not.toEqual([]);
    expect(validator.error(404, { status_code: 404, http_error_type: 'NOT_FOUND', error: 'X', message: 'm' })).toEqual([]);
    expect(validator.error(400, { status_code: 404, http_error_type: 'NOT_FOUND', error: 'X', message: 'm' })).not.toEqual([]);
    expect(validator.error(400, { status_code: 400, error: 'X', message: 'm' })).not.toEqual([]);
  });
});

type Account = {
  _id: string;
  account_id: string;
  associated_org: string;
  name: string;
  environment: string;
  udf: Array<{ key_name: string; key_value: string }>;
  integrations: Array<Record<string, unknown>>;
  createdAt: string;
  updatedAt: string;
  new_account?: boolean;
};

describe.each(BINDINGS)('every upstream operation on %s', (binding) => {
  let vault: Vault;
  let server: RunningServer;
  let client: UpstreamCalls;
  let session: ContractSession;
  let key: Auth;
  const secret = (label: string) => {
    const value = `${label}-${randomBytes(8).toString('hex')}`;
    session.secrets.add(value);
    return value;
  };
  const tokenFor = async (accountId: string): Promise<string> => {
    const { token } = session.ok<{ token: string }>(await client.generateSessionTokenForLinkedAccount(key, accountId));
    session.secrets.add(token);
    return token;
  };
  function expectAccount(account: Account, accountId: string, integrations: number): void {
    expect(account.account_id).toBe(accountId);
    expect(account._id).toMatch(/^[0-9a-f]{24}$/);
    expect(account.associated_org).toBe(ORG);
    expect(account.environment).toBe('test');
    expect(account.createdAt).toMatch(ISO);
    expect(account.updatedAt).toMatch(ISO);
    expect(Array.isArray(account.udf)).toBe(true);
    expect(account.integrations).toHaveLength(integrations);
    for (const integration of account.integrations) {
      expect(integration).toMatchObject({ type: 'default_app', name: 'Default App' });
      expect(integration['_id']).toMatch(/^[0-9a-f]{24}$/);
      expect(integration['createdAt']).toMatch(ISO);
      expect(integration['updatedAt']).toMatch(ISO);
      expect(Object.keys(integration)).not.toContain('credentials');
      expect(Object.keys(integration)).not.toContain('authTokens');
    }
  }

  beforeAll(async () => {
    vault = await createVault({ store: 'memory:', keys: `k1:${randomBytes(32).toString('base64')}` });
    server = await startBinding(binding, vault, { openApiPath: '/openapi.json' });
    client = createClient(server.url);
    session = new ContractSession(validator, () => server.url);
    const created = await createApiKey(vault, { org: ORG, environment: 'test' });
    session.secrets.add(created.apiKey);
    key = { apiKey: created.apiKey };
  });
  afterAll(async () => {
    await server?.close();
    await vault?.close();
  });

  it('creates accounts (account_id or its alias, with or without a default app) and reads them by id', async () => {
    const seeded = secret('seeded');
    const created = session.ok<Account>(
      await client.createLinkedAccount(key, {
        account_id: 'acct-a',
        name: 'Account A',
        udf: { plan: 'gold', region: 'eu' },
        your_app: { auth_credentials: { api_key: seeded } },
      }),
    );
    expectAccount(created, 'acct-a', 1);
    expect(created.name).toBe('Account A');
    expect(created.udf).toEqual([
      { key_name: 'plan', key_value: 'gold' },
      { key_name: 'region', key_value: 'eu' },
    ]);

    const bare = session.ok<Account>(await client.createLinkedAccount(key, { linked_account_id: 'acct-b' }));
    expectAccount(bare, 'acct-b', 0);

    const read = session.ok<Account>(await client.getLinkedAccountById(key, 'acct-a'));
    expectAccount(read, 'acct-a', 1);
    expect(read._id).toBe(created._id);
    expect(read.integrations[0]?.['_id']).toBe(created.integrations[0]?.['_id']);
    expect(read.createdAt).toBe(created.createdAt);

    session.fails(await client.createLinkedAccount(key, { account_id: 'acct-a' }), 409, 'CONFLICT');
    session.fails(await client.getLinkedAccountById(key, 'acct-nobody'), 404, 'INVALID_LINKED_ACCOUNT_ID');
    session.fails(await client.getLinkedAccountById({}, 'acct-a'), 401, 'INVALID_TOKEN');
    session.fails(await client.createLinkedAccount({ apiKey: 'tk_0000000000000000.nope' }, { account_id: 'acct-x' }), 401, 'SERVER_ERROR');
  });

  it('upserts accounts: flat, under payload (which wins), by the alias, with an empty your_app, by session token', async () => {
    const first = session.ok<Account>(await client.upsertLinkedAccount(key, { account_id: 'acct-c', name: 'C' }));
    expectAccount(first, 'acct-c', 0);
    expect(first).toMatchObject({ name: 'C', new_account: true });

    const again = session.ok<Account>(await client.upsertLinkedAccount(key, { account_id: 'acct-c', your_app: {} }));
    expect(again).toMatchObject({ account_id: 'acct-c', name: 'C', new_account: false, _id: first._id, createdAt: first.createdAt });

    const nested = session.ok<Account>(
      await client.upsertLinkedAccount(key, { linked_account_id: 'acct-c', name: 'flat', udf: { tier: 'flat' }, payload: { name: 'nested', udf: { tier: '2' } } }),
    );
    expect(nested).toMatchObject({ account_id: 'acct-c', name: 'nested', new_account: false });
    expect(nested.udf).toEqual([{ key_name: 'tier', key_value: '2' }]);

    const withApp = session.ok<Account>(await client.upsertLinkedAccount(key, { account_id: 'acct-d', your_app: { auth_credentials: { token: secret('d') } } }));
    expectAccount(withApp, 'acct-d', 1);
    expect(withApp.new_account).toBe(true);
    const updated = session.ok(await client.upsertDefaultAppAuthCredential(key, 'token', secret('d2'), { header: 'acct-d' }));
    expect(updated).toMatchObject({ action: 'updated' });

    const token = await tokenFor('acct-c');
    const byToken = session.ok<Account>(await client.upsertLinkedAccount({ sessionToken: token }, { name: 'by token' }));
    expect(byToken).toMatchObject({ account_id: 'acct-c', name: 'by token', new_account: false });
    session.fails(await client.upsertLinkedAccount({ sessionToken: token }, { account_id: 'acct-d', name: 'not mine' }), 403, 'FORBIDDEN');
    session.fails(await client.upsertLinkedAccount(key, { name: 'nobody' }), 400, 'VALIDATION_ERROR');
    expect(session.ok<Account>(await client.getLinkedAccountById(key, 'acct-d')).name).not.toBe('not mine');
  });

  it('upserts and deletes credentials: API key with the header, with the query, and by session token', async () => {
    session.ok(await client.createLinkedAccount(key, { account_id: 'acct-e', your_app: { auth_credentials: { seed: secret('e') } } }));
    const token = await tokenFor('acct-e');
    const put = (auth: Auth, name: string, value: unknown, account = {}) => client.upsertDefaultAppAuthCredential(auth, name, value, account);

    expect(session.ok(await put(key, 'k1', secret('v1'), { header: 'acct-e' }))).toEqual({
      success: true,
      message: "Auth credential 'k1' added successfully",
      action: 'added',
    });
    expect(session.ok(await put(key, 'k1', secret('v2'), { query: 'acct-e' }))).toMatchObject({ action: 'updated' });
    expect(session.ok(await put({ sessionToken: token }, 'k2', secret('v3')))).toMatchObject({ action: 'added' });
    expect(session.ok(await put(key, 'k3', 42, { header: 'acct-e', query: 'acct-e' }))).toMatchObject({ action: 'added' });

    session.fails(await put(key, 'k1', 'v'), 400, 'MISSING_LINKED_ACCOUNT_ID');
    session.fails(await put(key, 'k1', 'v', { header: 'acct-e', query: 'acct-a' }), 400, 'VALIDATION_ERROR');
    session.fails(await put({ sessionToken: token }, 'k1', 'v', { header: 'acct-a' }), 403, 'FORBIDDEN');
    session.fails(await put(key, 'k1', 'v', { header: 'acct-nobody' }), 404, 'INVALID_LINKED_ACCOUNT_ID');
    session.fails(await put(key, 'k1', 'v', { header: 'acct-b' }), 404, 'RESOURCE_NOT_FOUND');
    session.fails(await put(key, 'k1', null, { header: 'acct-e' }), 400, 'VALIDATION_ERROR');

    const remove = (auth: Auth, name: string, account = {}) => client.deleteDefaultAppAuthCredential(auth, name, account);
    expect(session.ok(await remove(key, 'k1', { header: 'acct-e' }))).toEqual({ success: true, message: "Auth credential 'k1' deleted successfully" });
    session.fails(await remove(key, 'k1', { query: 'acct-e' }), 404, 'RESOURCE_NOT_FOUND');
    session.fails(await remove({ sessionToken: token }, 'k2', { query: 'acct-a' }), 403, 'FORBIDDEN');
    expect(session.ok(await remove({ sessionToken: token }, 'k2'))).toMatchObject({ success: true });
    session.fails(await remove(key, 'k3'), 400, 'MISSING_LINKED_ACCOUNT_ID');
    expect(session.ok(await remove(key, 'k3', { query: 'acct-e' }))).toMatchObject({ success: true });

    expectAccount(session.ok<Account>(await client.getLinkedAccountById({ sessionToken: token }, 'acct-e')), 'acct-e', 1);
    session.fails(await client.getLinkedAccountById({ sessionToken: token }, 'acct-a'), 403, 'FORBIDDEN');
  });

  it('issues session tokens (the same one unless force_refresh), reads the active account, revokes', async () => {
    session.ok(await client.createLinkedAccount(key, { account_id: 'acct-f', name: 'F' }));
    const first = await tokenFor('acct-f');
    expect(await tokenFor('acct-f')).toBe(first);
    const kept = session.ok<{ token: string; expires_in: number }>(await client.generateSessionTokenForLinkedAccount(key, 'acct-f', 'false'));
    expect(kept.token).toBe(first);
    expect(kept.expires_in).toBeGreaterThan(0);
    const fresh = session.ok<{ token: string }>(await client.generateSessionTokenForLinkedAccount(key, 'acct-f', 'true')).token;
    session.secrets.add(fresh);
    expect(fresh).not.toBe(first);
    session.fails(await client.generateSessionTokenForLinkedAccount(key, 'acct-nobody'), 400, 'INVALID_LINKED_ACCOUNT_ID');
    session.fails(await client.generateSessionTokenForLinkedAccount({ sessionToken: fresh }, 'acct-f'), 403, 'FORBIDDEN');

    const active = session.ok<Account>(await client.getLinkedAccountBySessionToken({ sessionToken: fresh }));
    expectAccount(active, 'acct-f', 0);
    expect(active.name).toBe('F');
    session.fails(await client.getLinkedAccountBySessionToken(key), 403, 'FORBIDDEN');
    session.fails(await client.revokeLinkedAccountSessionToken(key), 403, 'FORBIDDEN');

    expect(session.ok(await client.revokeLinkedAccountSessionToken({ sessionToken: fresh }))).toEqual({ success: true, revoked_count: 1 });
    session.fails(await client.getLinkedAccountBySessionToken({ sessionToken: fresh }), 401, 'INVALID_TOKEN');
    session.fails(await client.revokeLinkedAccountSessionToken({ sessionToken: fresh }), 401, 'INVALID_TOKEN');
    session.fails(await client.getLinkedAccountBySessionToken({}), 401, 'INVALID_TOKEN');
  });

  it("lists the key's accounts, upstream-shaped, without credentials", async () => {
    const page = session.ok<{ docs: Account[]; totalDocs: number }>(await client.listLinkedAccounts(key, { page: 1, limit: 100 }));
    const ids = page.docs.map((account) => account.account_id);
    expect(ids).toEqual(['acct-a', 'acct-b', 'acct-c', 'acct-d', 'acct-e', 'acct-f']);
    expect(page.totalDocs).toBe(6);
    const apps = Object.fromEntries(page.docs.map((account) => [account.account_id, account.integrations.length]));
    expect(apps).toMatchObject({ 'acct-a': 1, 'acct-b': 0, 'acct-d': 1, 'acct-e': 1, 'acct-f': 0 });
    for (const account of page.docs) expectAccount(account, account.account_id, account.integrations.length);
    session.fails(await client.listLinkedAccounts({}), 401, 'INVALID_TOKEN');
    const token = await tokenFor('acct-a');
    session.fails(await client.listLinkedAccounts({ sessionToken: token }), 403, 'FORBIDDEN');
  });

  it('deletes an account with what it owns', async () => {
    session.ok(await client.createLinkedAccount(key, { account_id: 'acct-g', your_app: { auth_credentials: { k: secret('g') } } }));
    const token = await tokenFor('acct-g');
    expect(session.ok(await client.deleteLinkedAccount(key, 'acct-g'))).toEqual({ message: 'User deleted successfully' });
    session.fails(await client.getLinkedAccountById(key, 'acct-g'), 404, 'INVALID_LINKED_ACCOUNT_ID');
    session.fails(await client.deleteLinkedAccount(key, 'acct-g'), 404, 'INVALID_LINKED_ACCOUNT_ID');
    session.fails(await client.getLinkedAccountBySessionToken({ sessionToken: token }), 401, 'INVALID_TOKEN');
    session.fails(await client.deleteLinkedAccount({ sessionToken: token }, 'acct-a'), 401, 'INVALID_TOKEN');
  });

  it('answers a method a path does not serve with 405', async () => {
    const patch = await session.raw('PATCH', '/api/v2/public/linked-account', '/api/v2/public/linked-account', { 'x-api-key': key.apiKey ?? '' });
    session.fails(patch, 405, 'METHOD_NOT_ALLOWED');
    expect(patch.headers.get('allow')).toMatch(/GET/);
  });

  it('called every upstream operation, and the served /openapi.json lists every status it got', async () => {
    const answered = new Set(session.seen.filter((seen) => seen.status === 200).map((seen) => `${seen.method} ${seen.path}`));
    const operations = upstreamOperations(document).map((operation) => `${operation.method} ${operation.path}`);
    expect(operations.filter((operation) => !answered.has(operation))).toEqual([]);
    const served = await call(`${server.url}/openapi.json`);
    expect(served.status).toBe(200);
    expect(session.unlisted(served.body as Parameters<ContractSession['unlisted']>[0])).toEqual([]);
  });
});

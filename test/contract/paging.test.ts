/**
 * Paging linked accounts over HTTP on every binding, through the client generated from the
 * upstream excerpt: 0, 1, exactly `limit` and `limit + 1` accounts, pages past the end, the
 * defaults and the bounds, out-of-range `page`/`limit` refused with the documented bound,
 * and never an account of another org or environment, or a credential.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey, createVault, type Vault } from '../../src/index.js';
import { BINDINGS, call, startBinding, type RunningServer } from '../http/harness.js';
import type { Auth, UpstreamCalls, UpstreamClientFactory } from './calls.js';
import { generateUpstreamClient, type GeneratedClient } from './generate.js';
import { ContractSession } from './session.js';
import { loadUpstreamDocument, UpstreamValidator } from './upstream.js';

const document = loadUpstreamDocument();
const validator = new UpstreamValidator(document);
const LIST = '/api/v2/public/linked-account';
const LIMIT = 3;

let generated: GeneratedClient;
let createClient: UpstreamClientFactory;

beforeAll(async () => {
  generated = await generateUpstreamClient(document);
  createClient = await generated.load();
});
afterAll(() => generated?.remove());

type Doc = { account_id: string; associated_org: string; environment: string; integrations: Array<Record<string, unknown>> };
type Page = { docs: Doc[] } & Record<string, unknown>;

/** A page as ids plus its paging fields, for exact comparison. */
function summary({ docs, ...meta }: Page) {
  return { ids: docs.map((doc) => doc.account_id), ...meta };
}

describe.each(BINDINGS)('paging linked accounts on %s', (binding) => {
  let vault: Vault;
  let server: RunningServer;
  let client: UpstreamCalls;
  let session: ContractSession;
  const keys: Record<string, Auth> = {};

  async function keyFor(org: string, environment: 'test' | 'production'): Promise<Auth> {
    const { apiKey } = await createApiKey(vault, { org, environment });
    session.secrets.add(apiKey);
    return { apiKey };
  }

  /** Creates the accounts in the order given (not their listing order); every other one gets a default app holding a secret. */
  async function seed(key: Auth, ids: string[]): Promise<void> {
    for (const [i, id] of ids.entries()) {
      const secret = `secret-${randomBytes(8).toString('hex')}`;
      session.secrets.add(secret);
      session.ok(await client.createLinkedAccount(key, { account_id: id, ...(i % 2 === 0 ? { your_app: { auth_credentials: { api_key: secret } } } : {}) }));
    }
  }

  async function list(key: Auth, query: { page?: number; limit?: number } = {}): Promise<ReturnType<typeof summary>> {
    const page = session.ok<Page>(await client.listLinkedAccounts(key, query));
    for (const doc of page.docs) {
      for (const integration of doc.integrations) {
        expect(Object.keys(integration)).not.toContain('credentials');
        expect(Object.keys(integration)).not.toContain('authTokens');
      }
    }
    return summary(page);
  }

  beforeAll(async () => {
    vault = await createVault({ store: 'memory:', keys: `k1:${randomBytes(32).toString('base64')}` });
    server = await startBinding(binding, vault, { openApiPath: '/openapi.json' });
    client = createClient(server.url);
    session = new ContractSession(validator, () => server.url);
    keys['none'] = await keyFor('paging-0', 'test');
    keys['one'] = await keyFor('paging-1', 'test');
    keys['limit'] = await keyFor('paging-3', 'test');
    keys['limitPlusOne'] = await keyFor('paging-4', 'test');
    keys['production'] = await keyFor('paging-4', 'production');
    keys['otherOrg'] = await keyFor('paging-other', 'test');
    await seed(keys['one'], ['acct-0']);
    await seed(keys['limit'], ['acct-2', 'acct-0', 'acct-1']);
    await seed(keys['limitPlusOne'], ['acct-2', 'acct-0', 'acct-3', 'acct-1']);
    // Ids that would sort between those above, were the scopes mixed up.
    await seed(keys['production'], ['acct-1p', 'acct-3p']);
    await seed(keys['otherOrg'], ['acct-2b', 'acct-0b']);
  });
  afterAll(async () => {
    await server?.close();
    await vault?.close();
  });

  it('an org with no account: one empty page, then a page past it', async () => {
    expect(await list(keys['none']!, { limit: LIMIT })).toEqual({
      ids: [],
      totalDocs: 0,
      limit: 3,
      page: 1,
      totalPages: 1,
      hasNextPage: false,
      hasPrevPage: false,
      nextPage: null,
      prevPage: null,
      pagingCounter: 1,
    });
    expect(await list(keys['none']!, { page: 2, limit: LIMIT })).toEqual({
      ids: [],
      totalDocs: 0,
      limit: 3,
      page: 2,
      totalPages: 1,
      hasNextPage: false,
      hasPrevPage: true,
      nextPage: null,
      prevPage: 1,
      pagingCounter: 4,
    });
  });

  it('one account', async () => {
    expect(await list(keys['one']!, { page: 1, limit: LIMIT })).toEqual({
      ids: ['acct-0'],
      totalDocs: 1,
      limit: 3,
      page: 1,
      totalPages: 1,
      hasNextPage: false,
      hasPrevPage: false,
      nextPage: null,
      prevPage: null,
      pagingCounter: 1,
    });
  });

  it('exactly limit accounts: one full page in id order, then a page past the end', async () => {
    expect(await list(keys['limit']!, { limit: LIMIT })).toEqual({
      ids: ['acct-0', 'acct-1', 'acct-2'],
      totalDocs: 3,
      limit: 3,
      page: 1,
      totalPages: 1,
      hasNextPage: false,
      hasPrevPage: false,
      nextPage: null,
      prevPage: null,
      pagingCounter: 1,
    });
    expect(await list(keys['limit']!, { page: 2, limit: LIMIT })).toEqual({
      ids: [],
      totalDocs: 3,
      limit: 3,
      page: 2,
      totalPages: 1,
      hasNextPage: false,
      hasPrevPage: true,
      nextPage: null,
      prevPage: 1,
      pagingCounter: 4,
    });
  });

  it('limit + 1 accounts: a full page, the one left over, then past the end', async () => {
    expect(await list(keys['limitPlusOne']!, { page: 1, limit: LIMIT })).toEqual({
      ids: ['acct-0', 'acct-1', 'acct-2'],
      totalDocs: 4,
      limit: 3,
      page: 1,
      totalPages: 2,
      hasNextPage: true,
      hasPrevPage: false,
      nextPage: 2,
      prevPage: null,
      pagingCounter: 1,
    });
    expect(await list(keys['limitPlusOne']!, { page: 2, limit: LIMIT })).toEqual({
      ids: ['acct-3'],
      totalDocs: 4,
      limit: 3,
      page: 2,
      totalPages: 2,
      hasNextPage: false,
      hasPrevPage: true,
      nextPage: null,
      prevPage: 1,
      pagingCounter: 4,
    });
    expect(await list(keys['limitPlusOne']!, { page: 3, limit: LIMIT })).toEqual({
      ids: [],
      totalDocs: 4,
      limit: 3,
      page: 3,
      totalPages: 2,
      hasNextPage: false,
      hasPrevPage: true,
      nextPage: null,
      prevPage: 2,
      pagingCounter: 7,
    });
  });

  it('defaults to page 1 of 10, and takes the bounds 1 and 100', async () => {
    expect(await list(keys['limitPlusOne']!)).toMatchObject({ ids: ['acct-0', 'acct-1', 'acct-2', 'acct-3'], limit: 10, page: 1, totalPages: 1 });
    expect(await list(keys['limitPlusOne']!, { limit: 100 })).toMatchObject({ ids: ['acct-0', 'acct-1', 'acct-2', 'acct-3'], limit: 100, totalPages: 1 });
    expect(await list(keys['limitPlusOne']!, { page: 2, limit: 1 })).toEqual({
      ids: ['acct-1'],
      totalDocs: 4,
      limit: 1,
      page: 2,
      totalPages: 4,
      hasNextPage: true,
      hasPrevPage: true,
      nextPage: 3,
      prevPage: 1,
      pagingCounter: 2,
    });
    expect(await list(keys['limitPlusOne']!, { page: 4, limit: 1 })).toMatchObject({ ids: ['acct-3'], hasNextPage: false, nextPage: null, prevPage: 3 });
  });

  it('refuses page and limit out of range with the bound the served document gives, and lists the same after', async () => {
    const served = (await call(`${server.url}/openapi.json`)).body as {
      paths: Record<string, Record<string, { parameters?: Array<{ name: string; in: string; schema: { minimum?: number; maximum?: number } }> }>>;
    };
    const parameters = served.paths[LIST]?.['get']?.parameters ?? [];
    const bound = (name: string) => parameters.find((parameter) => parameter.in === 'query' && parameter.name === name)?.schema;
    expect(bound('limit')).toMatchObject({ minimum: 1, maximum: 100 });
    expect(bound('page')).toMatchObject({ minimum: 1, maximum: 1_000_000_000 });
    const limitMessage = `limit must be an integer from ${bound('limit')?.minimum} to ${bound('limit')?.maximum}`;
    const pageMessage = `page must be an integer from ${bound('page')?.minimum} to ${bound('page')?.maximum}`;
    const key = keys['limitPlusOne']!;

    for (const limit of [0, 101, 1.5]) {
      expect(session.fails(await client.listLinkedAccounts(key, { limit }), 400, 'VALIDATION_ERROR')).toBe(limitMessage);
    }
    for (const page of [0, 1.5, 1_000_000_001]) {
      expect(session.fails(await client.listLinkedAccounts(key, { page }), 400, 'VALIDATION_ERROR')).toBe(pageMessage);
    }
    // What a typed client cannot send.
    for (const limit of ['abc', '-1', '1e2']) {
      const result = await session.raw('GET', LIST, `${LIST}?limit=${limit}`, { 'x-api-key': key.apiKey ?? '' });
      expect(session.fails(result, 400, 'VALIDATION_ERROR')).toBe(limitMessage);
    }
    for (const page of ['abc', '-1']) {
      const result = await session.raw('GET', LIST, `${LIST}?page=${page}`, { 'x-api-key': key.apiKey ?? '' });
      expect(session.fails(result, 400, 'VALIDATION_ERROR')).toBe(pageMessage);
    }
    expect(await list(key, { limit: 100 })).toMatchObject({ ids: ['acct-0', 'acct-1', 'acct-2', 'acct-3'], totalDocs: 4 });
  });

  it("never lists another org's or environment's accounts", async () => {
    const scopes = async (key: Auth) => {
      const page = session.ok<Page>(await client.listLinkedAccounts(key, { limit: 100 }));
      return { ids: page.docs.map((doc) => doc.account_id), scopes: [...new Set(page.docs.map((doc) => `${doc.associated_org}/${doc.environment}`))], total: page['totalDocs'] };
    };
    expect(await scopes(keys['limitPlusOne']!)).toEqual({ ids: ['acct-0', 'acct-1', 'acct-2', 'acct-3'], scopes: ['paging-4/test'], total: 4 });
    expect(await scopes(keys['production']!)).toEqual({ ids: ['acct-1p', 'acct-3p'], scopes: ['paging-4/production'], total: 2 });
    expect(await scopes(keys['otherOrg']!)).toEqual({ ids: ['acct-0b', 'acct-2b'], scopes: ['paging-other/test'], total: 2 });
    expect(await scopes(keys['none']!)).toEqual({ ids: [], scopes: [], total: 0 });
  });

  it('the served /openapi.json lists every status the listing answered', async () => {
    const served = await call(`${server.url}/openapi.json`);
    expect(served.status).toBe(200);
    expect(session.seen.some((seen) => seen.status === 400)).toBe(true);
    expect(session.unlisted(served.body as Parameters<ContractSession['unlisted']>[0])).toEqual([]);
  });
});

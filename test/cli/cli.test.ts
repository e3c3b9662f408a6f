/**
 * The `credvault` command, run as a real process (`node dist/src/cli/main.js ...`) against
 * real SQLite files in fresh temp dirs (which the reindex test also writes as an older
 * release would, through the SQLite adapter). DESIGN.md section 5 is the contract.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createSqliteStore } from '../../adapters/sqlite.js';
import { DEFAULT_APP, PROFILE, accountGroup } from '../../src/core/layout.js';
import {
  CREDENTIAL_PATH,
  assertBuilt,
  killAll,
  linesOf,
  makeTempDir,
  parseOneJsonLine,
  putCredential,
  rawConnection,
  removeDir,
  request,
  run,
  runJson,
  sleep,
  startServer,
  waitFor,
  type RunResult,
  untouchedStore,
} from './helpers.js';

interface CreatedApiKey {
  api_key: string;
  key_id: string;
  org_id: string;
  environment: string;
}
interface IssuedToken {
  token: string;
  expires_in: number;
}
interface CredentialList {
  credentials: Array<{ key: string; created_at: string; updated_at: string; value?: string }>;
}
interface GeneratedKey {
  id: string;
  key: string;
  entry: string;
}

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const HINT = /no API key yet/;

beforeAll(assertBuilt);
afterEach(killAll);
afterAll(killAll);

/** A failure of the operation: exit 1, nothing on stdout, exactly one line on stderr, no stack. */
function expectFailure(result: RunResult, code: number, pattern: RegExp): void {
  expect(result.stdout).toBe('');
  const lines = linesOf(result.stderr);
  expect(lines, result.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
  expect(result.stderr).not.toMatch(/^\s+at /m);
  expect(result.code).toBe(code);
}

/** A key file's base64 key bytes (its first entry). */
function keyFileEntry(file: string): { id: string; key: string } {
  const [entry] = readFileSync(file, 'utf8').trim().split(/[,\n]/);
  const [id, key] = (entry as string).split(':') as [string, string];
  return { id, key };
}

describe('keys generate', () => {
  it('prints {id, key, entry}: a fresh 32-byte key as id:base64', async () => {
    const result = await run(['keys', 'generate']);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    const generated = parseOneJsonLine(result.stdout) as GeneratedKey;
    expect(Object.keys(generated)).toEqual(['id', 'key', 'entry']);
    expect(generated.id).toMatch(/^[A-Za-z0-9_-]{1,32}$/);
    expect(generated.entry).toBe(`${generated.id}:${generated.key}`);
    const [id, base64] = generated.entry.split(':') as [string, string];
    expect(id).toBe(generated.id);
    const bytes = Buffer.from(base64, 'base64');
    expect(bytes).toHaveLength(32);
    expect(bytes.toString('base64')).toBe(base64);

    const again = await runJson<GeneratedKey>(['keys', 'generate']);
    expect(again.key).not.toBe(generated.key);
  });

  it('takes --id', async () => {
    const generated = await runJson<GeneratedKey>(['keys', 'generate', '--id', 'x']);
    expect(generated.id).toBe('x');
    expect(generated.entry).toMatch(/^x:[A-Za-z0-9+/]{43}=$/);
    expect(Buffer.from(generated.entry.slice(2), 'base64')).toHaveLength(32);
  });

  it('refuses an invalid --id with exit 2', async () => {
    expectFailure(await run(['keys', 'generate', '--id', 'bad id']), 2, /^credvault: .*key id/);
  });
});

describe('api-key create on memory:', () => {
  it('prints one {api_key, key_id, org_id, environment} object; test keys start tk_', async () => {
    const result = await run(['api-key', 'create', '--org', 'acme', '--store', 'memory:']);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    const created = parseOneJsonLine(result.stdout) as CreatedApiKey;
    expect(Object.keys(created)).toEqual(['api_key', 'key_id', 'org_id', 'environment']);
    expect(created.api_key).toMatch(/^tk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    expect(created.api_key.startsWith(`tk_${created.key_id}_`)).toBe(true);
    expect(created).toMatchObject({ org_id: 'acme', environment: 'test' });
  });

  it('--environment production makes a pk_ key', async () => {
    const created = await runJson<CreatedApiKey>(['api-key', 'create', '--org', 'acme', '--environment', 'production', '--store', 'memory:']);
    expect(created.api_key).toMatch(/^pk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    expect(created).toMatchObject({ org_id: 'acme', environment: 'production' });
  });

  it('revoking an id the store does not hold exits 1 with one line', async () => {
    expectFailure(await run(['api-key', 'revoke', '--key-id', '0123456789abcdef', '--store', 'memory:']), 1, /^credvault: .*0123456789abcdef/);
  });
});

describe('the default store', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await makeTempDir();
  });
  afterAll(() => removeDir(dir));

  it('is sqlite:./data/credvault.db, with its key file created beside it and announced once on stderr', async () => {
    const first = await run(['api-key', 'create', '--org', 'acme'], { cwd: dir });
    expect(first.code).toBe(0);
    parseOneJsonLine(first.stdout);
    const lines = linesOf(first.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^credvault: .*data\/credvault\.keys/);
    expect(existsSync(path.join(dir, 'data', 'credvault.db'))).toBe(true);
    const keyFile = path.join(dir, 'data', 'credvault.keys');
    if (process.platform !== 'win32') expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    // Its content is a valid keyring entry.
    const { key } = keyFileEntry(keyFile);
    expect(Buffer.from(key, 'base64')).toHaveLength(32);

    const second = await run(['api-key', 'create', '--org', 'acme'], { cwd: dir });
    expect(second.code).toBe(0);
    expect(second.stderr).toBe('');
  });

  it('is $CREDVAULT_STORE when set', async () => {
    const result = await run(['api-key', 'create', '--org', 'acme'], { cwd: dir, env: { CREDVAULT_STORE: `sqlite:${dir}/env.db` } });
    expect(result.code).toBe(0);
    expect(existsSync(path.join(dir, 'env.db'))).toBe(true);
    expect(existsSync(path.join(dir, 'env.keys'))).toBe(true);
  });
});

describe('provisioning commands on a SQLite store', () => {
  let dir: string;
  let store: string[];
  beforeAll(async () => {
    dir = await makeTempDir();
    store = ['--store', `sqlite:${path.join(dir, 'vault.db')}`];
    // The first command creates the key file and says so; later ones are quiet.
    const first = await run(['keys', 'generate']); // no store: creates nothing
    expect(first.code).toBe(0);
    const created = await run(['api-key', 'create', '--org', 'acme', ...store]);
    expect(created.code).toBe(0);
    expect(linesOf(created.stderr)).toEqual([expect.stringMatching(/^credvault: created .*vault\.keys/)]);
    expect(existsSync(path.join(dir, 'vault.keys'))).toBe(true);
  });
  afterAll(() => removeDir(dir));

  it('api-key revoke prints {"revoked":true}; a second revoke exits 1', async () => {
    const created = await runJson<CreatedApiKey>(['api-key', 'create', '--org', 'acme', ...store]);
    const revoked = await run(['api-key', 'revoke', '--key-id', created.key_id, ...store]);
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toBe('{"revoked":true}\n');
    expect(revoked.stderr).toBe('');
    expectFailure(await run(['api-key', 'revoke', '--key-id', created.key_id, ...store]), 1, /^credvault: .*key id/);
    expectFailure(await run(['api-key', 'revoke', '--key-id', 'not-a-key-id', ...store]), 1, /^credvault: /);
  });

  it('linked-account create prints the account; creating it again exits 1', async () => {
    const args = ['linked-account', 'create', '--org', 'acme', '--id', 'cust-1', '--name', 'Customer One', '--credential', 'api_key=sk_test_1', '--credential', 'region=eu=west', ...store];
    const result = await run(args);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    const account = parseOneJsonLine(result.stdout) as Record<string, unknown>;
    expect(Object.keys(account)).toEqual(['_id', 'associated_org', 'account_id', 'name', 'environment', 'udf', 'integrations', 'createdAt', 'updatedAt']);
    expect(account).toEqual({
      _id: expect.stringMatching(/^[0-9a-f]{24}$/),
      associated_org: 'acme',
      account_id: 'cust-1',
      name: 'Customer One',
      environment: 'test',
      udf: [],
      integrations: [{ _id: expect.stringMatching(/^[0-9a-f]{24}$/), type: 'default_app', name: 'Default App', createdAt: expect.stringMatching(ISO), updatedAt: expect.stringMatching(ISO) }],
      createdAt: expect.stringMatching(ISO),
      updatedAt: expect.stringMatching(ISO),
    });
    expect(result.stdout).not.toContain('sk_test_1');

    expectFailure(await run(args), 1, /^credvault: Linked account cust-1 already exists$/);

    // The same id in the other environment is another account.
    const production = await runJson(['linked-account', 'create', '--org', 'acme', '--environment', 'production', '--id', 'cust-1', ...store]);
    expect(production).toMatchObject({ account_id: 'cust-1', name: 'cust-1', environment: 'production', integrations: [] });
  });

  it('linked-account list prints one page of an org and environment, as GET /linked-account answers it', async () => {
    const org = 'lister';
    const empty = await run(['linked-account', 'list', '--org', org, ...store]);
    expect(empty.code).toBe(0);
    expect(empty.stderr).toBe('');
    const none = parseOneJsonLine(empty.stdout) as Record<string, unknown>;
    expect(Object.keys(none)).toEqual(['docs', 'totalDocs', 'limit', 'page', 'totalPages', 'hasNextPage', 'hasPrevPage', 'nextPage', 'prevPage', 'pagingCounter']);
    expect(none).toEqual({ docs: [], totalDocs: 0, limit: 10, page: 1, totalPages: 1, hasNextPage: false, hasPrevPage: false, nextPage: null, prevPage: null, pagingCounter: 1 });

    for (const id of ['a-1', 'a-2', 'a-3']) await runJson(['linked-account', 'create', '--org', org, '--id', id, '--credential', `k=secret-${id}`, ...store]);
    await runJson(['linked-account', 'create', '--org', org, '--environment', 'production', '--id', 'prod-1', ...store]);
    const first = await runJson<{ docs: Array<{ account_id: string }> }>(['linked-account', 'list', '--org', org, '--limit', '2', ...store]);
    expect(first).toMatchObject({ totalDocs: 3, limit: 2, page: 1, totalPages: 2, hasNextPage: true, nextPage: 2, prevPage: null });
    expect(first.docs.map((d) => d.account_id)).toEqual(['a-1', 'a-2']);
    const second = await run(['linked-account', 'list', '--org', org, '--limit', '2', '--page', '2', ...store]);
    expect(parseOneJsonLine(second.stdout)).toMatchObject({ docs: [{ account_id: 'a-3', integrations: [{ type: 'default_app' }] }], page: 2, hasNextPage: false, prevPage: 1, pagingCounter: 3 });
    expect(second.stdout).not.toContain('secret-');
    const production = await runJson<{ docs: Array<{ account_id: string }> }>(['linked-account', 'list', '--org', org, '--environment', 'production', ...store]);
    expect(production.docs.map((d) => d.account_id)).toEqual(['prod-1']);
  });

  it('credentials list prints names and timestamps only; --reveal adds the values', async () => {
    await runJson(['linked-account', 'create', '--org', 'acme', '--id', 'cust-list', '--credential', 'zeta=last', '--credential', 'alpha=a=b', ...store]);
    const listed = await run(['credentials', 'list', '--org', 'acme', '--id', 'cust-list', ...store]);
    expect(listed.code).toBe(0);
    expect(listed.stderr).toBe('');
    const list = parseOneJsonLine(listed.stdout) as CredentialList;
    expect(Object.keys(list)).toEqual(['credentials']);
    expect(list.credentials.map((c) => c.key)).toEqual(['alpha', 'zeta']);
    for (const credential of list.credentials) {
      expect(Object.keys(credential)).toEqual(['key', 'created_at', 'updated_at']);
      expect(credential.created_at).toMatch(ISO);
      expect(credential.updated_at).toMatch(ISO);
    }
    expect(listed.stdout).not.toContain('last');

    const revealed = await runJson<CredentialList>(['credentials', 'list', '--org', 'acme', '--id', 'cust-list', '--reveal', ...store]);
    expect(revealed.credentials.map((c) => [c.key, c.value])).toEqual([['alpha', 'a=b'], ['zeta', 'last']]);
    for (const credential of revealed.credentials) {
      expect(Object.keys(credential)).toEqual(['key', 'created_at', 'updated_at', 'value']);
    }

    // An account with no credentials lists none; an unknown one fails.
    await runJson(['linked-account', 'create', '--org', 'acme', '--id', 'cust-empty', ...store]);
    expect(await runJson(['credentials', 'list', '--org', 'acme', '--id', 'cust-empty', ...store])).toEqual({ credentials: [] });
    expectFailure(await run(['credentials', 'list', '--org', 'acme', '--id', 'nobody', ...store]), 1, /^credvault: .*nobody.* not found$/);
    // Accounts are per org and environment.
    expectFailure(await run(['credentials', 'list', '--org', 'other', '--id', 'cust-list', ...store]), 1, /not found/);
  });

  it('session-token create prints {token, expires_in}; an unknown account exits 1', async () => {
    await runJson(['linked-account', 'create', '--org', 'acme', '--id', 'cust-token', ...store]);
    const result = await run(['session-token', 'create', '--org', 'acme', '--id', 'cust-token', '--ttl', '60', ...store]);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    const issued = parseOneJsonLine(result.stdout) as IssuedToken;
    expect(Object.keys(issued)).toEqual(['token', 'expires_in']);
    expect(issued.expires_in).toBe(60);
    expect(typeof issued.token).toBe('string');
    expect(issued.token.length).toBeGreaterThanOrEqual(40);

    const byDefault = await runJson<IssuedToken>(['session-token', 'create', '--org', 'acme', '--id', 'cust-token', ...store]);
    expect(byDefault.expires_in).toBe(86_400);
    expect(byDefault.token).not.toBe(issued.token);

    expectFailure(
      await run(['session-token', 'create', '--org', 'acme', '--id', 'nobody', ...store]),
      1,
      /^credvault: No linked account found for account id : nobody in environment test$/,
    );
  });
});

describe('linked-account reindex on a SQLite store', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await makeTempDir();
  });
  afterAll(() => removeDir(dir));

  it('lists the accounts an older release created after the first open, prints {"accounts":N}, and is idempotent', async () => {
    const file = path.join(dir, 'vault.db');
    const store = ['--store', `sqlite:${file}`];
    const org = 'upgrade';
    await runJson(['linked-account', 'create', '--org', org, '--id', 'new-1', '--credential', 'k=secret-new', ...store]);
    // A process still on the release before account indexes writes two accounts beside it: records, no index entry.
    const raw = createSqliteStore({ path: file });
    try {
      for (const [id, environment] of [['old-1', 'test'], ['old-p', 'production']] as const) {
        const profile = { _id: 'cd'.repeat(12), account_id: id, name: `Old ${id}`, environment, associated_org: org, udf: [] };
        const result = await raw.batch(accountGroup({ org, environment, accountId: id }), [
          { op: 'insert', member: PROFILE, value: JSON.stringify(profile) },
          { op: 'insert', member: DEFAULT_APP, value: JSON.stringify({ type: 'default_app' }) },
        ]);
        expect(result).toMatchObject({ committed: true });
      }
    } finally {
      await raw.close();
    }
    const list = (environment = 'test') => runJson<{ docs: Array<{ account_id: string }>; totalDocs: number }>(['linked-account', 'list', '--org', org, '--environment', environment, ...store]);
    const ids = (page: { docs: Array<{ account_id: string }> }) => page.docs.map((d) => d.account_id);
    const before = await list();
    expect([ids(before), before.totalDocs]).toEqual([['new-1'], 1]);

    const result = await run(['linked-account', 'reindex', ...store]);
    expect(result.code, result.stderr).toBe(0);
    expect(parseOneJsonLine(result.stdout)).toEqual({ accounts: 3 });
    expect(linesOf(result.stderr)).toEqual(['credvault: walked the store; 3 linked accounts found, each now listed']);
    const after = await list();
    expect([ids(after), after.totalDocs]).toEqual([['new-1', 'old-1'], 2]);
    expect(after.docs[1]).toMatchObject({ account_id: 'old-1', name: 'Old old-1', integrations: [{ type: 'default_app' }] });
    const production = await list('production');
    expect([ids(production), production.totalDocs]).toEqual([['old-p'], 1]);

    expect(await runJson(['linked-account', 'reindex', ...store])).toEqual({ accounts: 3 });
    const again = await list();
    expect([ids(again), again.totalDocs]).toEqual([['new-1', 'old-1'], 2]);
    expect(JSON.stringify(again)).not.toContain('secret-new');
  });

  it('an unreachable store exits 1 with one line and prints nothing on stdout', async () => {
    const result = await run(['linked-account', 'reindex', '--store', 'postgres://postgres@127.0.0.1:1/none'], {
      env: { CREDVAULT_KEYS: (await runJson<GeneratedKey>(['keys', 'generate'])).entry },
    });
    expectFailure(result, 1, /^credvault: /);
  });
});

describe.each(['express', 'koa', 'fastify', 'fetch'] as const)('serve --framework %s', (framework) => {
  let dir: string;
  let store: string[];
  beforeAll(async () => {
    dir = await makeTempDir();
    store = ['--store', `sqlite:${path.join(dir, 'vault.db')}`];
  });
  afterAll(() => removeDir(dir));

  it('serves the credential API, answers unknown paths with JSON 404s and exits 0 on SIGTERM', async () => {
    const server = await startServer([...store, '--framework', framework]);
    expect(server.stdout()).toBe(`credvault listening on ${server.url}\n`);
    // On a store with no API key, a hint on how to make one.
    await waitFor(() => HINT.test(server.stderr()), () => `the hint on stderr: ${server.stderr()}`, 10_000);
    const hint = linesOf(server.stderr()).filter((line) => HINT.test(line));
    expect(hint).toHaveLength(1);
    expect(hint[0]).toMatch(/api-key create/);

    // Provisioned by other processes while the server runs.
    const apiKey = await runJson<CreatedApiKey>(['api-key', 'create', '--org', 'acme', ...store]);
    await runJson(['linked-account', 'create', '--org', 'acme', '--id', 'cust-1', '--credential', 'region=eu', ...store]);

    const added = await putCredential(server.url, 'api_key', 'sk_test_first', { apiKey: apiKey.api_key, accountId: 'cust-1' });
    expect(added.status).toBe(200);
    expect(added.headers.get('content-type')).toMatch(/^application\/json/);
    expect(added.text).toBe('{"success":true,"message":"Auth credential \'api_key\' added successfully","action":"added"}');

    const session = await runJson<IssuedToken>(['session-token', 'create', '--org', 'acme', '--id', 'cust-1', ...store]);
    const updated = await putCredential(server.url, 'api_key', 'sk_test_second', { token: session.token });
    expect(updated.status).toBe(200);
    expect(updated.text).toBe('{"success":true,"message":"Auth credential \'api_key\' updated successfully","action":"updated"}');

    const listed = await runJson<CredentialList>(['credentials', 'list', '--org', 'acme', '--id', 'cust-1', '--reveal', ...store]);
    expect(listed.credentials.map((c) => [c.key, c.value])).toEqual([['api_key', 'sk_test_second'], ['region', 'eu']]);

    for (const unknown of ['/api/v2/public/no-such-thing', '/no-such-thing']) {
      const notFound = await request(`${server.url}${unknown}`);
      expect(notFound.status).toBe(404);
      expect(notFound.headers.get('content-type')).toMatch(/^application\/json/);
      expect(notFound.body).toEqual({
        status_code: 404,
        http_error_type: 'NOT_FOUND',
        error: 'RESOURCE_NOT_FOUND',
        message: expect.stringContaining(unknown),
      });
    }

    // A revocation by another process takes effect at once.
    expect(await runJson(['api-key', 'revoke', '--key-id', apiKey.key_id, ...store])).toEqual({ revoked: true });
    const revoked = await putCredential(server.url, 'api_key', 'sk_test_third', { apiKey: apiKey.api_key, accountId: 'cust-1' });
    expect(revoked.status).toBe(401);
    expect(revoked.body).toEqual({ status_code: 401, http_error_type: 'UNAUTHORIZED', error: 'SERVER_ERROR', message: 'Invalid Credentials' });

    server.child.kill('SIGTERM');
    expect(await server.exited()).toEqual({ code: 0, signal: null });
    expect(server.stdout()).toBe(`credvault listening on ${server.url}\n`);

    // Restarted on a store that now has an API key: no hint.
    const again = await startServer([...store, '--framework', framework]);
    const ok = await putCredential(again.url, 'api_key', 'sk_test_fourth', { token: session.token });
    expect(ok.body).toMatchObject({ action: 'updated' });
    again.child.kill('SIGTERM');
    expect(await again.exited()).toEqual({ code: 0, signal: null });
    expect(again.stderr()).not.toMatch(HINT);
  });

  it('answers GET /openapi.json with the document `credvault openapi` prints, and GET /linked-account with what `linked-account list` prints', async () => {
    const apiKey = await runJson<CreatedApiKey>(['api-key', 'create', '--org', 'doc-org', ...store]);
    await runJson(['linked-account', 'create', '--org', 'doc-org', '--id', 'listed-1', ...store]);
    const server = await startServer([...store, '--framework', framework]);
    const served = await request(`${server.url}/openapi.json`);
    expect(served.status).toBe(200);
    expect(served.headers.get('content-type')).toMatch(/^application\/json/);
    expect(served.body).toEqual(await runJson(['openapi']));
    const put = await request(`${server.url}/openapi.json`, { method: 'PUT', body: '{}' });
    expect(put.status).toBe(405);
    expect(put.headers.get('allow')).toBe('GET');

    const listed = await request(`${server.url}/api/v2/public/linked-account?page=1&limit=5`, { headers: { 'x-api-key': apiKey.api_key } });
    expect(listed.status).toBe(200);
    expect(listed.body).toEqual(await runJson(['linked-account', 'list', '--org', 'doc-org', '--page', '1', '--limit', '5', ...store]));
    expect(listed.body).toMatchObject({ totalDocs: 1, docs: [{ account_id: 'listed-1', associated_org: 'doc-org' }] });
    server.child.kill('SIGTERM');
    expect(await server.exited()).toEqual({ code: 0, signal: null });
  });

  it('drains on SIGTERM: a request in flight completes, then the process exits 0', async () => {
    const apiKey = await runJson<CreatedApiKey>(['api-key', 'create', '--org', 'acme', ...store]);
    await runJson(['linked-account', 'create', '--org', 'acme', '--id', 'cust-drain', '--credential', 'seed=1', ...store]);
    const server = await startServer([...store, '--framework', framework]);

    const connection = await rawConnection(server.port);
    // A first request proves the connection is accepted and served.
    connection.write('GET /warm-up HTTP/1.1\r\nHost: localhost\r\n\r\n');
    await connection.until(/RESOURCE_NOT_FOUND[^]*\}$/);
    // Then the head of a PUT whose body is still to come.
    const body = JSON.stringify({ value: 'drained-value' });
    connection.write(
      `PUT ${CREDENTIAL_PATH}/drained HTTP/1.1\r\nHost: localhost\r\nx-api-key: ${apiKey.api_key}\r\n` +
        `linked_account_id: cust-drain\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n`,
    );
    await sleep(300);
    server.child.kill('SIGTERM');
    await sleep(300);
    expect(server.child.exitCode, 'the server must wait for the request in flight').toBeNull();
    connection.write(body);

    const received = await connection.response();
    const second = received.slice(received.lastIndexOf('HTTP/1.1 '));
    expect(second).toMatch(/^HTTP\/1\.1 200 /);
    // Draining, the server says it is closing the connection rather than keeping it alive.
    expect(second).toMatch(/\r\nconnection: close\r\n/i);
    expect(second.endsWith('{"success":true,"message":"Auth credential \'drained\' added successfully","action":"added"}')).toBe(true);
    expect(await server.exited()).toEqual({ code: 0, signal: null });

    const listed = await runJson<CredentialList>(['credentials', 'list', '--org', 'acme', '--id', 'cust-drain', '--reveal', ...store]);
    expect(listed.credentials.find((c) => c.key === 'drained')?.value).toBe('drained-value');
  });
});

describe('kill -9 durability', () => {
  let dir: string;
  afterAll(() => removeDir(dir));

  it('every write the server acknowledged is in the SQLite file after SIGKILL', async () => {
    dir = await makeTempDir();
    const store = ['--store', `sqlite:${path.join(dir, 'vault.db')}`];
    const apiKey = await runJson<CreatedApiKey>(['api-key', 'create', '--org', 'acme', ...store]);
    await runJson(['linked-account', 'create', '--org', 'acme', '--id', 'cust-durable', '--credential', 'seed=1', ...store]);
    const server = await startServer(store);
    const auth = { apiKey: apiKey.api_key, accountId: 'cust-durable' };
    const tag = randomBytes(4).toString('hex');

    const TOTAL = 200;
    const CONCURRENCY = 8;
    const KILL_AFTER = 60;
    const attempted = new Map<string, string>();
    const acknowledged = new Map<string, string>();
    const unexpected: unknown[] = [];
    let next = 0;
    let killed = false;
    const worker = async () => {
      while (next < TOTAL && !killed) {
        const i = next++;
        const key = `k${String(i).padStart(3, '0')}`;
        const value = `durable-${tag}-${i}`;
        attempted.set(key, value);
        try {
          const response = await putCredential(server.url, key, value, auth);
          if (response.status === 200) {
            if (response.text !== `{"success":true,"message":"Auth credential '${key}' added successfully","action":"added"}`) {
              unexpected.push(response.body);
            }
            acknowledged.set(key, value);
            if (acknowledged.size >= KILL_AFTER && !killed) {
              killed = true;
              server.child.kill('SIGKILL');
            }
          }
        } catch {
          // Cut off by the kill: not acknowledged, so no promise was made.
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    if (!killed) server.child.kill('SIGKILL');
    expect(await server.exited()).toEqual({ code: null, signal: 'SIGKILL' });
    expect(unexpected).toEqual([]);
    expect(acknowledged.size).toBeGreaterThanOrEqual(KILL_AFTER);

    // Read back through a fresh process.
    const listed = await runJson<CredentialList>(['credentials', 'list', '--org', 'acme', '--id', 'cust-durable', '--reveal', ...store]);
    const stored = new Map(listed.credentials.map((c) => [c.key, c.value]));
    for (const [key, value] of acknowledged) expect(stored.get(key), key).toBe(value);
    // Nothing that was never sent appears (writes in flight at the kill may or may not).
    for (const [key, value] of stored) {
      if (key !== 'seed') expect(attempted.get(key), key).toBe(value);
    }

    // And the server starts again on the same file and sees them.
    const restarted = await startServer(store);
    const [someKey] = acknowledged.keys();
    const again = await putCredential(restarted.url, someKey as string, 'rewritten', auth);
    expect(again.body).toMatchObject({ action: 'updated' });
    const fresh = await putCredential(restarted.url, 'never-sent', 'new', auth);
    expect(fresh.body).toMatchObject({ action: 'added' });
    restarted.child.kill('SIGTERM');
    expect(await restarted.exited()).toEqual({ code: 0, signal: null });
  });
});

describe('secrets never leak', () => {
  let dir: string;
  afterAll(() => removeDir(dir));

  it('no credential value, API key, session token or encryption key in the SQLite files or in any output', async () => {
    dir = await makeTempDir();
    const db = path.join(dir, 'vault.db');
    const store = ['--store', `sqlite:${db}`];
    const tag = randomBytes(6).toString('hex');
    const values = {
      seeded: `seeded-${tag}-Λ✓`,
      byApiKey: `by-api-key-${tag}`,
      byToken: `by-token-${tag}`,
      badJson: `in-bad-json-${tag}`,
      unauthorized: `unauthorized-${tag}`,
    };
    const outputs: Array<{ label: string; text: string; allowed: string[] }> = [];
    const record = (label: string, result: RunResult, allowedOnStdout: string[] = []) => {
      outputs.push({ label: `${label} stdout`, text: result.stdout, allowed: allowedOnStdout });
      outputs.push({ label: `${label} stderr`, text: result.stderr, allowed: [] });
    };
    const must = async (label: string, args: string[]) => {
      const result = await run([...args, ...store]);
      expect(result.code, `${label}: ${result.stderr}`).toBe(0);
      return result;
    };

    const apiKeyRun = await must('api-key create', ['api-key', 'create', '--org', 'acme']);
    const apiKey = (parseOneJsonLine(apiKeyRun.stdout) as CreatedApiKey).api_key;
    record('api-key create', apiKeyRun, [apiKey, apiKey.slice(20)]);
    const encryptionKey = keyFileEntry(path.join(dir, 'vault.keys')).key;

    record('linked-account create', await must('linked-account create', ['linked-account', 'create', '--org', 'acme', '--id', `cust-${tag}`, '--credential', `seeded=${values.seeded}`]));
    const tokenRun = await must('session-token create', ['session-token', 'create', '--org', 'acme', '--id', `cust-${tag}`]);
    const token = (parseOneJsonLine(tokenRun.stdout) as IssuedToken).token;
    record('session-token create', tokenRun, [token, token.slice(token.lastIndexOf('.') + 1)]);

    const server = await startServer(store);
    expect((await putCredential(server.url, 'seeded', values.byApiKey, { apiKey, accountId: `cust-${tag}` })).status).toBe(200);
    expect((await putCredential(server.url, 'other', values.byToken, { token })).status).toBe(200);
    const badJson = await request(`${server.url}${CREDENTIAL_PATH}/other`, {
      method: 'PUT',
      headers: { 'x-api-key': apiKey, linked_account_id: `cust-${tag}`, 'content-type': 'application/json' },
      body: `{"value":"${values.badJson}"`,
    });
    expect(badJson.status).toBe(400);
    const wrongKey = `tk_0123456789abcdef_${randomBytes(32).toString('base64url')}`;
    const unauthorized = await putCredential(server.url, 'other', values.unauthorized, { apiKey: wrongKey, accountId: `cust-${tag}` });
    expect(unauthorized.status).toBe(401);
    const wrongToken = `cvs_${randomBytes(16).toString('base64url')}.${randomBytes(32).toString('base64url')}`;
    expect((await putCredential(server.url, 'other', values.unauthorized, { token: wrongToken })).status).toBe(401);
    for (const response of [badJson, unauthorized]) outputs.push({ label: 'error response', text: response.text, allowed: [] });

    // While the server runs, the WAL holds the latest writes: read all three files now.
    const whileRunning = await readDatabaseFiles(db);
    expect(Object.keys(whileRunning)).toContain('vault.db-wal');

    record('credentials list', await must('credentials list', ['credentials', 'list', '--org', 'acme', '--id', `cust-${tag}`]));
    const revealed = await must('credentials list --reveal', ['credentials', 'list', '--org', 'acme', '--id', `cust-${tag}`, '--reveal']);
    expect(revealed.stdout).toContain(values.byApiKey);
    expect(revealed.stdout).toContain(values.byToken);
    record('credentials list --reveal', revealed, [values.byApiKey, values.byToken]);
    record('api-key revoke', await must('api-key revoke', ['api-key', 'revoke', '--key-id', apiKey.slice(3, 19)]));

    server.child.kill('SIGTERM');
    expect(await server.exited()).toEqual({ code: 0, signal: null });
    outputs.push({ label: 'serve stdout', text: server.stdout(), allowed: [] });
    outputs.push({ label: 'serve stderr', text: server.stderr(), allowed: [] });
    const afterShutdown = await readDatabaseFiles(db);

    const secrets: Record<string, string> = {
      ...values,
      apiKey,
      apiKeySecret: apiKey.slice(20),
      token,
      // The secret part of a `cvs_...` token: what follows its last dot.
      tokenSecret: token.slice(token.lastIndexOf('.') + 1),
      wrongKey,
      wrongToken,
      encryptionKey,
    };
    expect(secrets['apiKeySecret']).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(secrets['tokenSecret']).toMatch(/^[A-Za-z0-9_-]{43,}$/);

    for (const [when, files] of Object.entries({ whileRunning, afterShutdown })) {
      expect(Object.keys(files)).toContain('vault.db');
      for (const [file, bytes] of Object.entries(files)) {
        for (const [name, secret] of Object.entries(secrets)) {
          expect(bytes.indexOf(Buffer.from(secret, 'utf8')), `${name} found in ${file} (${when})`).toBe(-1);
        }
      }
    }
    // The search itself works: the account id is stored in the clear, and is found.
    const all = Buffer.concat(Object.values(afterShutdown));
    expect(all.indexOf(Buffer.from(`cust-${tag}`, 'utf8'))).toBeGreaterThanOrEqual(0);

    for (const { label, text, allowed } of outputs) {
      for (const [name, secret] of Object.entries(secrets)) {
        if (allowed.includes(secret)) continue;
        expect(text.includes(secret), `${name} leaked in ${label}`).toBe(false);
      }
    }
  });
});

async function readDatabaseFiles(db: string): Promise<Record<string, Buffer>> {
  const files: Record<string, Buffer> = {};
  for (const suffix of ['', '-wal', '-shm']) {
    const file = `${db}${suffix}`;
    if (existsSync(file)) files[path.basename(file)] = await readFile(file);
  }
  return files;
}

describe('usage errors exit 2 with one line on stderr and touch nothing', () => {
  const usage = untouchedStore();

  const cases: Array<[string, () => string[], RegExp]> = [
    ['an unknown flag', () => ['api-key', 'create', '--org', 'acme', '--bogus', ...usage.store], /--bogus/],
    ['an unknown command', () => ['api-key', 'frobnicate', ...usage.store], /frobnicate/],
    ['a missing required flag', () => ['api-key', 'create', ...usage.store], /--org/],
    ['a missing --key-id', () => ['api-key', 'revoke', ...usage.store], /--key-id/],
    ['a missing --id', () => ['session-token', 'create', '--org', 'acme', ...usage.store], /--id/],
    ['a missing value', () => ['api-key', 'create', ...usage.store, '--org'], /--org/],
    ['a missing --store value', () => ['api-key', 'create', '--org', 'acme', '--store'], /--store/],
    ['--environment staging', () => ['api-key', 'create', '--org', 'acme', '--environment', 'staging', ...usage.store], /--environment.*staging|staging.*environment/],
    ['--port abc', () => ['serve', '--port', 'abc', ...usage.store], /--port/],
    ['--port 65536', () => ['serve', '--port', '65536', ...usage.store], /--port/],
    ['--framework hapi', () => ['serve', '--framework', 'hapi', ...usage.store], /--framework/],
    ['--store bogus://x', () => ['api-key', 'create', '--org', 'acme', '--store', 'bogus://x'], /store URL/i],
    ['--store sqlite: without a path', () => ['api-key', 'create', '--org', 'acme', '--store', 'sqlite:'], /store URL/i],
    ['--credential novalue', () => ['linked-account', 'create', '--org', 'acme', '--id', 'c1', '--credential', 'novalue', ...usage.store], /--credential/],
    ['--credential =value', () => ['linked-account', 'create', '--org', 'acme', '--id', 'c1', '--credential', '=value', ...usage.store], /--credential/],
    ['--ttl -5', () => ['session-token', 'create', '--org', 'acme', '--id', 'c1', '--ttl', '-5', ...usage.store], /--ttl/],
    ['--ttl 0', () => ['session-token', 'create', '--org', 'acme', '--id', 'c1', '--ttl', '0', ...usage.store], /--ttl/],
    ['--ttl 1.5', () => ['session-token', 'create', '--org', 'acme', '--id', 'c1', '--ttl', '1.5', ...usage.store], /--ttl/],
    ['linked-account list --page 0', () => ['linked-account', 'list', '--org', 'acme', '--page', '0', ...usage.store], /^credvault: page must be an integer from 1 to 1000000000$/],
    ['linked-account list --page 1.5', () => ['linked-account', 'list', '--org', 'acme', '--page', '1.5', ...usage.store], /^credvault: page must be an integer from 1 to 1000000000$/],
    ['linked-account list --page 1000000001', () => ['linked-account', 'list', '--org', 'acme', '--page', '1000000001', ...usage.store], /^credvault: page must be an integer from 1 to 1000000000$/],
    ['linked-account list --page abc', () => ['linked-account', 'list', '--org', 'acme', '--page', 'abc', ...usage.store], /^credvault: page must be an integer from 1 to 1000000000$/],
    ['linked-account list --limit 101', () => ['linked-account', 'list', '--org', 'acme', '--limit', '101', ...usage.store], /^credvault: limit must be an integer from 1 to 100$/],
    ['linked-account list --limit ""', () => ['linked-account', 'list', '--org', 'acme', '--limit', '', ...usage.store], /^credvault: limit must be an integer from 1 to 100$/],
    ['linked-account list --limit 1e1', () => ['linked-account', 'list', '--org', 'acme', '--limit', '1e1', ...usage.store], /^credvault: limit must be an integer from 1 to 100$/],
    ['linked-account list without --org', () => ['linked-account', 'list', ...usage.store], /--org/],
    ['linked-account reindex with an unknown flag', () => ['linked-account', 'reindex', '--org', 'acme', ...usage.store], /--org/],
  ];

  it.each(cases)('%s', async (_name, args, pattern) => {
    const result = await run(args());
    expectFailure(result, 2, pattern);
  });

  it('a --credential without "=" is not echoed: it may be a secret pasted without its key', async () => {
    const secret = `sk_live_${randomBytes(8).toString('hex')}`;
    const result = await run(['linked-account', 'create', '--org', 'acme', '--id', 'c1', '--credential', secret, ...usage.store]);
    expectFailure(result, 2, /--credential/);
    expect(result.stderr).not.toContain(secret);
  });

  it('an invalid CREDVAULT_KEYS names the variable and never echoes key text', async () => {
    const result = await run(['api-key', 'create', '--org', 'acme', ...usage.store], { env: { CREDVAULT_KEYS: 'k1:notbase64!!' } });
    expectFailure(result, 2, /^credvault: CREDVAULT_KEYS: /);
    expect(result.stderr).not.toContain('notbase64');
  });
});

describe('keyring mismatch', () => {
  let dir: string;
  let store: string[];
  let stored: { id: string; key: string };
  beforeAll(async () => {
    dir = await makeTempDir();
    store = ['--store', `sqlite:${path.join(dir, 'vault.db')}`];
    await runJson(['api-key', 'create', '--org', 'acme', ...store]);
    stored = keyFileEntry(path.join(dir, 'vault.keys'));
  });
  afterAll(() => removeDir(dir));

  it('CREDVAULT_KEYS holding a different key exits 1 with one clear line', async () => {
    const fresh = await runJson<GeneratedKey>(['keys', 'generate']);
    const result = await run(['api-key', 'create', '--org', 'acme', ...store], { env: { CREDVAULT_KEYS: fresh.entry } });
    expectFailure(result, 1, new RegExp(`^credvault: .*not in the keyring: ${stored.id}$`));
    expect(result.stderr).not.toContain(fresh.key);
  });

  it('CREDVAULT_KEYS holding other material under the same id exits 1 with one clear line', async () => {
    const fresh = await runJson<GeneratedKey>(['keys', 'generate', '--id', stored.id]);
    const result = await run(['credentials', 'list', '--org', 'acme', '--id', 'x', ...store], { env: { CREDVAULT_KEYS: fresh.entry } });
    expectFailure(result, 1, new RegExp(`^credvault: .*present but unable to open stored data: ${stored.id}$`));
    expect(result.stderr).not.toContain(fresh.key);
  });

  it('serve refuses to start with the wrong keys', async () => {
    const fresh = await runJson<GeneratedKey>(['keys', 'generate']);
    const result = await run(['serve', '--port', '0', ...store], { env: { CREDVAULT_KEYS: fresh.entry } });
    expectFailure(result, 1, /^credvault: .*not in the keyring: /);
  });

  it('the right key given in CREDVAULT_KEYS opens the store', async () => {
    const result = await run(['api-key', 'create', '--org', 'acme', ...store], { env: { CREDVAULT_KEYS: `${stored.id}:${stored.key}` } });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toBe('');
  });
});

describe('openapi', () => {
  it('`credvault openapi` prints the document that `serve` answers at /openapi.json', async () => {
    const printed = await runJson<{ openapi: string; paths: Record<string, Record<string, { operationId: string }>> }>(['openapi']);
    expect(printed.openapi).toBe('3.1.0');
    const ids = Object.values(printed.paths).flatMap((ops) => Object.values(ops).map((op) => op.operationId));
    // The ten upstream operations and credvault's two extensions (the fields endpoint, POST /connect-url).
    expect(ids).toHaveLength(12);
    expect(ids).toContain('createConnectUrl');
    expect(ids).toContain('listLinkedAccounts');
    expect(ids).toContain('upsertDefaultAppAuthCredential');
    const server = await startServer(['--store', 'memory:']);
    const served = await request(`${server.url}/openapi.json`);
    expect(served.status).toBe(200);
    expect(served.body).toEqual(printed);
    server.child.kill('SIGTERM');
    expect(await server.exited()).toEqual({ code: 0, signal: null });
  });
});

describe('keys rotate', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await makeTempDir();
  });
  afterAll(() => removeDir(dir));

  it('re-seals everything under the new primary, shows progress, is idempotent, and retires the old key', async () => {
    const store = ['--store', `sqlite:${path.join(dir, 'vault.db')}`];
    const old = (await runJson<{ entry: string }>(['keys', 'generate', '--id', 'old'])).entry;
    const next = (await runJson<{ entry: string }>(['keys', 'generate', '--id', 'new'])).entry;
    const withKeys = (keys: string) => ({ env: { CREDVAULT_KEYS: keys } });
    await runJson(['linked-account', 'create', '--org', 'acme', '--id', 'r1', '--credential', 'a=alpha', '--credential', 'b=beta', ...store], withKeys(old));
    await runJson(['session-token', 'create', '--org', 'acme', '--id', 'r1', ...store], withKeys(old));

    const first = await run(['keys', 'rotate', ...store], withKeys(`${next},${old}`));
    expect(first.code).toBe(0);
    // One account: its data key is re-wrapped; its 2 credentials and 1 session token stay under it.
    expect(parseOneJsonLine(first.stdout)).toEqual({ rewrapped: 1, resealed: 0, already_current: 3 });
    expect(first.stderr).toMatch(/rotating \[=+\] \d+\/\d+ records/);

    const again = await runJson(['keys', 'rotate', ...store], withKeys(`${next},${old}`));
    expect(again).toEqual({ rewrapped: 0, resealed: 0, already_current: 4 });

    const listed = await runJson<CredentialList>(['credentials', 'list', '--org', 'acme', '--id', 'r1', '--reveal', ...store], withKeys(next));
    expect(listed.credentials.map((c) => [c.key, c.value])).toEqual([['a', 'alpha'], ['b', 'beta']]);
    const refused = await run(['credentials', 'list', '--org', 'acme', '--id', 'r1', ...store], withKeys(old));
    expect(refused.code).toBe(1);
    expect(linesOf(refused.stderr)).toEqual(['credvault: The configured keys cannot open what is stored: sealed with key id(s) not in the keyring: new']);
  });
});

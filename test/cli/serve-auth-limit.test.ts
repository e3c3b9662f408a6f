/**
 * `credvault serve` flags for the failed-authentication limit and the client address, run as
 * real processes: --no-key-id-limit, --max-auth-failures, --auth-failure-window and
 * --trust-proxy-hops (issue 9).
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CREDENTIAL_PATH, assertBuilt, killAll, linesOf, makeTempDir, removeDir, request, run, runJson, startServer, type HttpResult, type Server, untouchedStore } from './helpers.js';

interface CreatedApiKey {
  api_key: string;
  key_id: string;
}

beforeAll(assertBuilt);
afterEach(killAll);
afterAll(killAll);

/** The real key's id with a secret that is not its own: what anyone who saw the id can send. */
const wrongSecretFor = (keyId: string) => `tk_${keyId}_${'A'.repeat(43)}`;

function put(server: Server, apiKey: string, forwardedFor?: string): Promise<HttpResult> {
  return request(`${server.url}${CREDENTIAL_PATH}/api_key`, {
    method: 'PUT',
    headers: {
      'content-type': 'application/json',
      'x-api-key': apiKey,
      linked_account_id: 'cust-1',
      ...(forwardedFor !== undefined ? { 'x-forwarded-for': forwardedFor } : {}),
    },
    body: JSON.stringify({ value: 'sk_test_limit' }),
  });
}

async function stop(server: Server): Promise<void> {
  server.child.kill('SIGTERM');
  expect(await server.exited()).toEqual({ code: 0, signal: null });
}

describe('serve: the failed-authentication limit flags', () => {
  let dir: string;
  let store: string[];
  let apiKey: CreatedApiKey;
  beforeAll(async () => {
    dir = await makeTempDir();
    store = ['--store', `sqlite:${path.join(dir, 'vault.db')}`];
    apiKey = await runJson<CreatedApiKey>(['api-key', 'create', '--org', 'acme', ...store]);
    await runJson(['linked-account', 'create', '--org', 'acme', '--id', 'cust-1', '--credential', 'seed=1', ...store]);
  });
  afterAll(() => removeDir(dir));

  it('--no-key-id-limit: 30 wrong-secret requests naming the real key id, spread over addresses, never lock the key out', async () => {
    const server = await startServer([...store, '--no-key-id-limit', '--trust-proxy-hops', '1']);
    const statuses: number[] = [];
    // Three attempts from each of ten addresses: each address stays far under its limit of 20.
    for (let i = 0; i < 30; i++) statuses.push((await put(server, wrongSecretFor(apiKey.key_id), `198.51.100.${Math.floor(i / 3) + 1}`)).status);
    expect(statuses).toEqual(Array.from({ length: 30 }, () => 401));

    // The key id has now failed 30 times; the real key still works, from a fresh address and
    // from one of the attackers' addresses alike.
    expect((await put(server, apiKey.api_key, '203.0.113.7')).status).toBe(200);
    expect((await put(server, apiKey.api_key, '198.51.100.1')).status).toBe(200);
    expect(server.stdout() + server.stderr()).not.toContain(apiKey.api_key.slice(20));
    await stop(server);
  });

  it('by default (as documented: 20 failures per key id in 300 s) the 21st wrong-secret request for a key id gets 429, whatever its address', async () => {
    // A key of its own, so that the failures of other tests do not count.
    const key = await runJson<CreatedApiKey>(['api-key', 'create', '--org', 'acme', ...store]);
    const server = await startServer([...store, '--trust-proxy-hops', '1']);
    const answers: HttpResult[] = [];
    for (let i = 0; i < 25; i++) answers.push(await put(server, wrongSecretFor(key.key_id), `192.0.2.${i + 1}`));
    expect(answers.map((answer) => answer.status)).toEqual([...Array.from({ length: 20 }, () => 401), ...Array.from({ length: 5 }, () => 429)]);
    const retryAfter = Number(answers[24]?.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(60);
    expect(retryAfter).toBeLessThanOrEqual(300);
    await stop(server);
  });

  it('--max-auth-failures and --auth-failure-window set the limit; without --trust-proxy-hops X-Forwarded-For is ignored', async () => {
    const server = await startServer([...store, '--max-auth-failures', '3', '--auth-failure-window', '60']);
    // An id no key has: only the (socket) address is counted. Varying X-Forwarded-For does not
    // make new addresses when no proxy is trusted.
    const unknown = `tk_${randomBytes(8).toString('hex')}_${'B'.repeat(43)}`;
    const answers: HttpResult[] = [];
    for (let i = 0; i < 5; i++) answers.push(await put(server, unknown, `198.18.0.${i + 1}`));
    expect(answers.map((answer) => answer.status)).toEqual([401, 401, 401, 429, 429]);
    const retryAfter = Number(answers[3]?.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(answers[3]?.body).toMatchObject({ status_code: 429 });
    await stop(server);
  });

  it('--trust-proxy-hops 1 counts each X-Forwarded-For client apart', async () => {
    const server = await startServer([...store, '--max-auth-failures', '2', '--trust-proxy-hops', '1']);
    const unknown = `tk_${randomBytes(8).toString('hex')}_${'C'.repeat(43)}`;
    const statuses: number[] = [];
    for (const client of ['198.18.1.1', '198.18.1.1', '198.18.1.1', '198.18.1.2', '198.18.1.2', '198.18.1.2']) {
      statuses.push((await put(server, unknown, client)).status);
    }
    expect(statuses).toEqual([401, 401, 429, 401, 401, 429]);
    // The real key from a client that is not blocked.
    expect((await put(server, apiKey.api_key, '198.18.1.3')).status).toBe(200);
    await stop(server);
  });
});

describe('serve: bad limit flag values are usage errors', () => {
  const usage = untouchedStore();

  const cases: Array<[string[], RegExp]> = [
    [['--max-auth-failures', '0'], /--max-auth-failures/],
    [['--max-auth-failures', 'abc'], /--max-auth-failures/],
    [['--max-auth-failures', '2.5'], /--max-auth-failures/],
    [['--max-auth-failures', '-1'], /--max-auth-failures/],
    [['--max-auth-failures', '1000001'], /--max-auth-failures/],
    [['--max-auth-failures'], /--max-auth-failures/],
    [['--auth-failure-window', '0'], /--auth-failure-window/],
    [['--auth-failure-window', '1e3'], /--auth-failure-window/],
    [['--auth-failure-window', '604801'], /--auth-failure-window/],
    [['--trust-proxy-hops', '-1'], /--trust-proxy-hops/],
    [['--trust-proxy-hops', 'one'], /--trust-proxy-hops/],
    [['--trust-proxy-hops', '101'], /--trust-proxy-hops/],
    [['--no-key-id-limit=false'], /--no-key-id-limit/],
  ];

  it.each(cases)('serve %j exits 2 with one line on stderr', async (flags, pattern) => {
    const result = await run(['serve', '--port', '0', ...usage.store, ...flags]);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    const lines = linesOf(result.stderr);
    expect(lines, result.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(pattern);
  });
});

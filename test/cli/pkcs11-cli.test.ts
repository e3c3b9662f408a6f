/**
 * The README's HSM walkthrough, through real `credvault` processes and a real SoftHSM2 token:
 * provision a KEK on the token, serve with `CREDVAULT_KEK`, write and read a credential, move
 * a store that began on the local keyring onto the token, rotate to a second token object,
 * reseal, delete an account. The token made unavailable while serving answers 503 and the
 * server says why on stderr once, then recovers; a wrong PIN refuses the start. No PIN and no
 * credential value reaches stdout, stderr or a response.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { createSoftHsmToken, softhsmSuite, type SoftHsmToken } from '../helpers/softhsm.js';
import { assertBuilt, killAll, makeTempDir, removeDir, request, run, runJson, startServer, putCredential, sleep, type Server } from './helpers.js';

assertBuilt();

const softhsm = softhsmSuite();
const PIN = 'pin-8841-walkthrough';
const BASE = '/api/v2/public';

softhsm.describe('credvault with its KEK on a PKCS#11 token (SoftHSM2), through the CLI', () => {
  let token: SoftHsmToken;
  let dir: string;
  const servers: Server[] = [];
  /** Everything the processes printed, to check for the PIN and the values at the end. */
  const printed: string[] = [];

  const store = () => `sqlite:${path.join(dir, 'vault.db')}`;
  const kek = (object: string) => token.uri(object, 'env:CREDVAULT_PKCS11_PIN');
  const env = (object?: string, pin = PIN): Record<string, string> => ({
    CREDVAULT_STORE: store(),
    CREDVAULT_PKCS11_PIN: pin,
    ...(object === undefined ? {} : { CREDVAULT_KEK: kek(object) }),
  });
  const cli = async (args: string[], environment: Record<string, string>) => {
    const result = await run(args, { env: environment, timeoutMs: 60_000 });
    printed.push(result.stdout, result.stderr);
    return result;
  };
  const cliJson = async <T = Record<string, unknown>>(args: string[], environment: Record<string, string>): Promise<T> => {
    const result = await cli(args, environment);
    expect(result.code, result.stderr).toBe(0);
    return JSON.parse(result.stdout) as T;
  };
  const serve = async (environment: Record<string, string>) => {
    const server = await startServer([], { env: environment });
    servers.push(server);
    return server;
  };
  const stop = async (server: Server) => {
    server.child.kill('SIGTERM');
    await server.exited();
    printed.push(server.stdout(), server.stderr());
  };

  beforeAll(async () => {
    token = createSoftHsmToken({ label: 'credvault', pin: PIN });
    dir = await makeTempDir();
  });
  afterEach(() => killAll());
  afterAll(async () => {
    for (const server of servers) printed.push(server.stdout(), server.stderr());
    token?.cleanup();
    await removeDir(dir);
  });

  it('provisions, serves, migrates from the keyring, survives the token going away, rotates, reseals and deletes', async () => {
    // A store that began on the local keyring (the embedded default: a key file beside the database).
    const first = await cliJson(['linked-account', 'create', '--org', 'acme', '--id', 'early', '--credential', 'api_key=early-secret-1'], env());
    expect(first).toMatchObject({ account_id: 'early' });

    // 1. The KEK, made on the token.
    expect(await cliJson(['keys', 'generate-kek'], env('kek-1'))).toEqual({ kek_id: 'pkcs11:kek-1' });
    const again = await cli(['keys', 'generate-kek'], env('kek-1'));
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/already has an object labelled 'kek-1'/);

    // 2. Serve with it: the keyring still opens the early account's data key.
    const { api_key: apiKey } = await cliJson<{ api_key: string }>(['api-key', 'create', '--org', 'acme'], env('kek-1'));
    let server = await serve(env('kek-1'));
    const created = await request(`${server.url}${BASE}/linked-account`, {
      method: 'POST',
      headers: { 'x-api-key': apiKey, 'content-type': 'application/json' },
      body: JSON.stringify({ account_id: 'cust-1', your_app: { auth_credentials: {} } }),
    });
    expect(created.status).toBe(200);
    expect((await putCredential(server.url, 'api_key', 'hsm-secret-1', { apiKey, accountId: 'cust-1' })).body).toMatchObject({ action: 'added' });
    expect((await putCredential(server.url, 'api_key', 'early-secret-2', { apiKey, accountId: 'early' })).body).toMatchObject({ action: 'updated' });

    // 3. The token goes away. Keys already unwrapped stay cached (cust-1 still takes writes),
    // but a new account needs the token: 503 in the envelope, said once on stderr, and back when it is.
    const createAccount = (id: string) =>
      request(`${server.url}${BASE}/linked-account`, {
        method: 'POST',
        headers: { 'x-api-key': apiKey, 'content-type': 'application/json' },
        body: JSON.stringify({ account_id: id, your_app: { auth_credentials: { api_key: `${id}-secret` } } }),
      });
    token.hide();
    expect((await putCredential(server.url, 'other', 'cached-key', { apiKey, accountId: 'cust-1' })).status).toBe(200);
    for (let i = 0; i < 3; i++) {
      const down = await createAccount(`while-down-${i}`);
      expect(down.status).toBe(503);
      expect(down.body).toMatchObject({ status_code: 503, http_error_type: 'SERVICE_UNAVAILABLE', error: 'STORE_UNAVAILABLE' });
    }
    token.restore();
    let status = 0;
    for (let attempt = 0; attempt < 20 && status !== 200; attempt++) {
      await sleep(300);
      status = (await createAccount(`after-${attempt}`)).status;
    }
    expect(status).toBe(200);
    await putCredential(server.url, 'other', 'after-outage', { apiKey, accountId: 'cust-1' });
    // Nothing of the refused creations was stored.
    for (let i = 0; i < 3; i++) {
      const missing = await request(`${server.url}${BASE}/linked-account/while-down-${i}`, { headers: { 'x-api-key': apiKey } });
      expect(missing.status).toBe(404);
    }
    const outageLines = server.stderr().split('\n').filter((line) => /unavailable/.test(line));
    expect(outageLines).toHaveLength(1);
    expect(outageLines[0]).toMatch(/PKCS#11 token 'credvault' is unavailable/);
    expect(server.stderr()).toMatch(/PKCS#11 token 'credvault' is available again/);
    await stop(server);

    // 4. Rotate: every data key (the keyring's too) re-wrapped under kek-1, then kek-2.
    const toHsm = await cliJson(['keys', 'rotate'], env('kek-1'));
    expect(toHsm).toEqual({ rewrapped: 1, resealed: 0, already_current: expect.any(Number) });
    const accounts = 3; // early, cust-1 and the one created after the outage
    expect(await cliJson(['keys', 'generate-kek'], env('kek-2'))).toEqual({ kek_id: 'pkcs11:kek-2' });
    expect(await cliJson(['keys', 'rotate'], env('kek-2'))).toMatchObject({ rewrapped: accounts, resealed: 0 });
    const resealed = await cliJson(['keys', 'rotate', '--reseal'], env('kek-2'));
    // A new data key per account; their 4 credentials moved onto them.
    expect(resealed).toMatchObject({ rewrapped: accounts, resealed: 4 });

    // The values, read back through the token.
    // (--reveal prints the values by design: kept out of the leak check below.)
    const reveal = await run(['credentials', 'list', '--org', 'acme', '--id', 'cust-1', '--reveal'], { env: env('kek-2'), timeoutMs: 60_000 });
    expect(reveal.code, reveal.stderr).toBe(0);
    printed.push(reveal.stderr);
    const listed = JSON.parse(reveal.stdout) as { credentials: Array<{ key: string; value: string }> };
    expect(listed.credentials.map(({ key, value }) => [key, value])).toEqual([
      ['api_key', 'hsm-secret-1'],
      ['other', 'after-outage'],
    ]);

    // 5. A wrong PIN refuses the start, naming no PIN.
    const wrong = await cli(['serve', '--port', '0'], env('kek-2', 'pin-0000-wrong'));
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toMatch(/PKCS#11 login to token 'credvault' refused/);
    expect(wrong.stderr).not.toContain('pin-0000-wrong');

    // 6. Delete an account: its data key goes with it.
    server = await serve(env('kek-2'));
    const deleted = await request(`${server.url}${BASE}/linked-account/early`, { method: 'DELETE', headers: { 'x-api-key': apiKey } });
    expect(deleted.status).toBe(200);
    const gone = await putCredential(server.url, 'api_key', 'x', { apiKey, accountId: 'early' });
    expect(gone.status).toBe(404);
    await stop(server);

    // The store file holds no value and no PIN.
    for (const name of readdirSync(dir)) {
      const bytes = readFileSync(path.join(dir, name)).toString('latin1');
      for (const secret of ['hsm-secret-1', 'early-secret-1', 'early-secret-2', 'after-outage', PIN]) expect(bytes, name).not.toContain(secret);
    }
    const all = printed.join('\n');
    expect(all).not.toContain(PIN);
    expect(all).not.toContain('hsm-secret-1');
  });
});

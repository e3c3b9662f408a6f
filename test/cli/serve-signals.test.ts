/**
 * `credvault serve` stops on SIGINT as on SIGTERM: it drains and exits 0. The same signal
 * arriving twice at once (Ctrl-C under `npm start`: from the terminal and forwarded by npm)
 * is one request to stop; a repeat well after the first forces the exit. Real processes.
 */
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CREDENTIAL_PATH, assertBuilt, killAll, makeTempDir, rawConnection, removeDir, runJson, sleep, startServer } from './helpers.js';

beforeAll(assertBuilt);
afterEach(killAll);
afterAll(killAll);

describe('serve stop signals', () => {
  let dir: string;
  let store: string[];
  let apiKey: string;
  beforeAll(async () => {
    dir = await makeTempDir();
    store = ['--store', `sqlite:${path.join(dir, 'vault.db')}`];
    apiKey = (await runJson<{ api_key: string }>(['api-key', 'create', '--org', 'acme', ...store])).api_key;
    await runJson(['linked-account', 'create', '--org', 'acme', '--id', 'cust-1', '--credential', 'seed=1', ...store]);
  });
  afterAll(() => removeDir(dir));

  /** A connection with the head of a PUT sent and its body still to come. */
  async function requestInFlight(port: number, key: string) {
    const connection = await rawConnection(port);
    const body = JSON.stringify({ value: `value-${key}` });
    connection.write(
      `PUT ${CREDENTIAL_PATH}/${key} HTTP/1.1\r\nHost: localhost\r\nx-api-key: ${apiKey}\r\n` +
        `linked_account_id: cust-1\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n`,
    );
    await sleep(300);
    return { connection, finish: () => connection.write(body) };
  }

  it('SIGINT exits 0, like SIGTERM', async () => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      const server = await startServer(store);
      server.child.kill(signal);
      expect(await server.exited()).toEqual({ code: 0, signal: null });
    }
  });

  it('two SIGINTs at once while a request is in flight: the request completes and the exit is 0', async () => {
    const server = await startServer(store);
    const inFlight = await requestInFlight(server.port, 'twice');
    server.child.kill('SIGINT');
    server.child.kill('SIGINT');
    await sleep(300);
    expect(server.child.exitCode, 'a repeat at once must not force the exit').toBeNull();
    inFlight.finish();
    expect(await inFlight.connection.response()).toMatch(/^HTTP\/1\.1 200 [^]*"action":"added"\}$/);
    expect(await server.exited()).toEqual({ code: 0, signal: null });
  });

  it('a second signal well after the first forces the exit (1) without waiting for the request', async () => {
    const server = await startServer(store);
    const inFlight = await requestInFlight(server.port, 'forced');
    server.child.kill('SIGTERM');
    await sleep(1500);
    expect(server.child.exitCode, 'still draining').toBeNull();
    server.child.kill('SIGINT');
    expect(await server.exited()).toEqual({ code: 1, signal: null });
    inFlight.connection.destroy();
  });
});

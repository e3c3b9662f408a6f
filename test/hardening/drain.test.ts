import net from 'node:net';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_DRAIN_TIMEOUT_MS, drainServer, FRAMEWORKS } from '../../src/cli/server.js';
import { assertBuilt, CREDENTIAL_PATH, killAll, makeTempDir, removeDir, runJson, startServer, type Server } from '../cli/helpers.js';
import { waitFor } from '../helpers/wait.js';
import { listen, rawSocket, seededVault, type RawSocket } from './helpers.js';

/**
 * `credvault serve` on SIGTERM: stops accepting at once, closes idle connections and those
 * still trickling a request head, lets requests in flight finish, and exits 0 within the
 * drain bound (10 s by default) whatever the clients do. It used to wait for ever on
 * slow-header clients.
 */
const SLOW_CLIENTS = 20;
/** The bound plus a generous margin for a loaded machine: the only timing asserted here. */
const EXIT_LIMIT_MS = DEFAULT_DRAIN_TIMEOUT_MS + 5_000;

interface CreatedApiKey {
  api_key: string;
}

/** Whether connecting to `port` is refused: the server has stopped listening. */
function refused(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

/** Resolves once connecting to `port` is refused. */
const refusedAt = (port: number, limitMs: number): Promise<void> =>
  waitFor(() => refused(port), `port ${port} to refuse connections`, limitMs);

/** Clients that send a request head one byte at a time, never finishing it. */
async function slowHeaderClients(port: number, count: number): Promise<{ sockets: RawSocket[]; stop(): void }> {
  const sockets: RawSocket[] = [];
  for (let i = 0; i < count; i++) {
    const socket = await rawSocket(port);
    await socket.write(`PUT ${CREDENTIAL_PATH}/slow${i} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-slow: `);
    sockets.push(socket);
  }
  const timer = setInterval(() => {
    for (const socket of sockets) if (!socket.socket.destroyed) socket.socket.write('a');
  }, 200);
  return { sockets, stop: () => clearInterval(timer) };
}

/** A PUT whose head the server has taken (it answered 100 Continue) and whose body is still to come. */
async function inFlightPut(port: number, apiKey: string, key: string, body: string): Promise<RawSocket> {
  const socket = await rawSocket(port);
  await socket.write(
    `PUT ${CREDENTIAL_PATH}/${key} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: ${apiKey}\r\nlinked_account_id: cust-1\r\n` +
      `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nexpect: 100-continue\r\n\r\n`,
  );
  // Node answers 100 Continue as it hands the request to the app: from here it is in flight.
  await waitFor(() => /^HTTP\/1\.1 100 /.test(socket.received().toString('latin1')), '100 Continue');
  return socket;
}

describe.each(FRAMEWORKS)('SIGTERM drains within the bound: serve --framework %s', (framework) => {
  let dir: string;
  let store: string[];
  let apiKey: string;

  beforeAll(async () => {
    assertBuilt();
    dir = await makeTempDir();
    store = ['--store', `sqlite:${path.join(dir, 'vault.db')}`];
    apiKey = (await runJson<CreatedApiKey>(['api-key', 'create', '--org', 'acme', ...store])).api_key;
    await runJson(['linked-account', 'create', '--org', 'acme', '--id', 'cust-1', '--credential', 'seed=1', ...store]);
  });
  afterEach(() => killAll());
  afterAll(() => removeDir(dir));

  it(`with ${SLOW_CLIENTS} slow-header clients and a request in flight: the slow ones are closed, the request completes, exit 0`, async () => {
    const server: Server = await startServer([...store, '--framework', framework]);
    const slow = await slowHeaderClients(server.port, SLOW_CLIENTS);
    const body = JSON.stringify({ value: 'finished-during-drain' });
    const inFlight = await inFlightPut(server.port, apiKey, 'drained', body);
    try {
      server.child.kill('SIGTERM');
      // The drain has begun once the port refuses connections.
      await refusedAt(server.port, 5_000);
      // Every slow client is let go (they had not even finished a head).
      await Promise.all(slow.sockets.map((socket) => socket.closed(5_000)));
      expect(server.child.exitCode, 'the request in flight holds the exit').toBeNull();

      await inFlight.write(body);
      const response = await inFlight.response();
      expect(response.status).toBe(200);
      expect(response.body).toEqual({ success: true, message: "Auth credential 'drained' added successfully", action: 'added' });
      expect(response.headers['connection']).toBe('close');

      // Exited by itself (the limit only stops a hang), and not because the bound ran out.
      expect(await server.exited(EXIT_LIMIT_MS)).toEqual({ code: 0, signal: null });
      expect(server.stderr()).not.toMatch(/shutdown bound/);
    } finally {
      slow.stop();
      for (const socket of slow.sockets) socket.destroy();
      inFlight.destroy();
    }
    const listed = await runJson<{ credentials: Array<{ key: string; value?: string }> }>(['credentials', 'list', '--org', 'acme', '--id', 'cust-1', '--reveal', ...store]);
    expect(listed.credentials.find((c) => c.key === 'drained')?.value).toBe('finished-during-drain');
    expect(listed.credentials.some((c) => c.key.startsWith('slow'))).toBe(false);
  });
});

describe('SIGTERM with requests that never finish', () => {
  let dir: string;
  let store: string[];
  let apiKey: string;

  beforeAll(async () => {
    assertBuilt();
    dir = await makeTempDir();
    store = ['--store', `sqlite:${path.join(dir, 'vault.db')}`];
    apiKey = (await runJson<CreatedApiKey>(['api-key', 'create', '--org', 'acme', ...store])).api_key;
    await runJson(['linked-account', 'create', '--org', 'acme', '--id', 'cust-1', '--credential', 'seed=1', ...store]);
  });
  afterEach(() => killAll());
  afterAll(() => removeDir(dir));

  it(
    'every framework exits 0 once the bound is reached, closing the stalled connections, and says so on stderr',
    async () => {
      // The four in parallel: each waits out the whole bound.
      await Promise.all(
        FRAMEWORKS.map(async (framework) => {
          const server = await startServer([...store, '--framework', framework]);
          const slow = await slowHeaderClients(server.port, SLOW_CLIENTS);
          // A body that will never be completed.
          const stalled = await inFlightPut(server.port, apiKey, `stalled_${framework}`, JSON.stringify({ value: 'never-sent-in-full' }));
          await stalled.write('{"val');
          try {
            server.child.kill('SIGTERM');
            const exit = await server.exited(EXIT_LIMIT_MS);
            expect(exit, framework).toEqual({ code: 0, signal: null });
            await stalled.closed(5_000);
            // The bound, not the client, ended the stalled request: the server says so.
            expect(server.stderr()).toContain(`credvault: shutdown bound of ${DEFAULT_DRAIN_TIMEOUT_MS} ms reached; closing 1 connection(s) still open`);
            // Nothing about the request's content reaches the log.
            expect(server.stderr()).not.toContain('never-sent');
            expect(server.stderr()).not.toContain(apiKey);
          } finally {
            slow.stop();
            for (const socket of slow.sockets) socket.destroy();
            stalled.destroy();
          }
        }),
      );
      const listed = await runJson<{ credentials: Array<{ key: string }> }>(['credentials', 'list', '--org', 'acme', '--id', 'cust-1', ...store]);
      expect(listed.credentials.map((c) => c.key)).toEqual(['seed']);
    },
    60_000,
  );
});

describe('drainServer, as an embedder calls it', () => {
  it.each(FRAMEWORKS)('%s: resolves once every connection is gone, reporting the ones it had to cut at timeoutMs; a second call returns the same promise', async (framework) => {
    const { vault, apiKey } = await seededVault();
    const server = await listen(vault, framework, { failedAuthLimit: false });
    try {
      const idle = await rawSocket(server.port);
      const slow = await slowHeaderClients(server.port, 3);
      const stalled = await inFlightPut(server.port, apiKey, 'stalled', JSON.stringify({ value: 'never' }));
      const first = drainServer(server.server, { timeoutMs: 500 });
      expect(drainServer(server.server)).toBe(first);
      await Promise.all([idle.closed(5_000), ...slow.sockets.map((socket) => socket.closed(5_000))]);
      slow.stop();
      expect(await first).toEqual({ forcedConnections: 1 });
      await stalled.closed(5_000);
      expect(server.server.listening).toBe(false);
    } finally {
      await vault.close();
    }
  });
});

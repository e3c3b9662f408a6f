import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { afterAll, describe, expect, it } from 'vitest';
import { createRedisStore } from '../../adapters/redis.js';
import type { VaultStore } from '../../src/core/store.js';
import { freePort, silentServer, waitFor } from '../helpers/services.js';
import { errorName, settle } from '../helpers/wait.js';

// A private redis-server per test, so killing it never disturbs the shared one.
const hasRedisServer = spawnSync('redis-server', ['--version']).status === 0;
if (!hasRedisServer) {
  if (process.env.CREDVAULT_REQUIRE_SERVICES === '1') throw new Error('redis-server is not installed, and CREDVAULT_REQUIRE_SERVICES=1 requires it');
  console.warn('[credvault tests] redis-server is not installed: skipping the Redis outage suite');
}
const suite = hasRedisServer ? describe : describe.skip;

/** Far above the store's own bounds (500 ms connect, 1000 ms command): a test that reaches it hung. */
const HANG_MS = 15_000;
/** How every call ends while Redis is down, silent or gone: a backend error (the vault maps it to STORE_UNAVAILABLE), never the RangeError of bad input. */
const UNAVAILABLE = { ok: false, error: expect.not.stringMatching(/^RangeError$/) };
const servers = new Set<ChildProcess>();

async function startRedis(port: number): Promise<ChildProcess> {
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  servers.add(child);
  child.on('exit', () => servers.delete(child));
  let output = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  await waitFor(() => output.includes('Ready to accept connections') || child.exitCode !== null, 'redis-server to start');
  if (child.exitCode !== null) throw new Error(`redis-server exited: ${output}`);
  return child;
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}

afterAll(async () => {
  await Promise.all([...servers].map((child) => kill(child)));
});

interface Call {
  start: number;
  end?: number;
  ok?: boolean;
  error?: string;
}

/** Keeps `workers` loops of put/get/list running against `store` until stopped. */
function startLoad(store: VaultStore, workers = 16) {
  const calls: Call[] = [];
  let running = true;
  const loops = Array.from({ length: workers }, async (_, worker) => {
    for (let i = 0; running; i += 1) {
      const call: Call = { start: Date.now() };
      calls.push(call);
      try {
        if (i % 3 === 0) await store.put(`g${worker}`, `m${i % 10}`, `v${i}`);
        else if (i % 3 === 1) await store.get(`g${worker}`, `m${i % 10}`);
        else await store.list(`g${worker}`);
        call.ok = true;
      } catch (error) {
        call.ok = false;
        call.error = errorName(error);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      call.end = Date.now();
    }
  });
  return {
    calls,
    async stop(): Promise<void> {
      running = false;
      await Promise.all(loops);
    },
  };
}

suite('redis store outage', () => {
  it('while Redis is killed mid-load, calls reject before it returns, and the store recovers by itself', async () => {
    const port = await freePort();
    let server = await startRedis(port);
    const store = createRedisStore({ url: `redis://127.0.0.1:${port}`, connectTimeoutMs: 500, commandTimeoutMs: 1000 });
    try {
      const load = startLoad(store);
      await waitFor(() => load.calls.filter((call) => call.ok === true).length > 300, 'load to run');

      const killedAt = Date.now();
      await kill(server);
      await new Promise((resolve) => setTimeout(resolve, 1500));

      const restartedAt = Date.now();
      server = await startRedis(port);
      await waitFor(() => load.calls.some((call) => call.start > restartedAt && call.ok === true), 'recovery', 8000);
      await load.stop();

      // Calls begun after the kill settled before the restart: none waited for Redis to come back.
      const duringOutage = load.calls.filter((call) => call.start > killedAt + 50 && (call.end ?? 0) < restartedAt);
      expect(duringOutage.length).toBeGreaterThan(0);
      for (const call of duringOutage) expect(call).toMatchObject(UNAVAILABLE);
      expect(await store.put('after', 'm', 'v')).toBe('added');
    } finally {
      await store.close();
      await kill(server);
    }
  }, HANG_MS + 10_000);

  it('opened while Redis is down: rejects, starts working when Redis starts, closes while down', async () => {
    const port = await freePort();
    const store = createRedisStore({ url: `redis://127.0.0.1:${port}`, connectTimeoutMs: 300 });
    // Awaited before Redis starts: the call settles while nothing listens.
    expect(await settle(() => store.get('g', 'm'))).toMatchObject(UNAVAILABLE);

    const server = await startRedis(port);
    await waitFor(async () => (await settle(() => store.put('g', 'm', 'v'))).ok, 'the store to connect', 8000);
    expect((await store.get('g', 'm'))?.value).toBe('v');

    await kill(server);
    expect(await settle(() => store.list('g'))).toMatchObject(UNAVAILABLE);
    expect(await settle(() => store.close())).toMatchObject({ ok: true });
  }, HANG_MS + 8000);

  it('a server that accepts connections but never answers: calls reject while it still listens', async () => {
    const silent = await silentServer();
    const store = createRedisStore({ url: `redis://127.0.0.1:${silent.port}`, connectTimeoutMs: 300 });
    try {
      // The server never answers, so only the store's own timeouts can settle these calls.
      const calls = await Promise.all([
        settle(() => store.get('g', 'm')),
        settle(() => store.put('g', 'm', 'v')),
        settle(() => store.scan(undefined, 10)),
      ]);
      for (const call of calls) expect(call).toMatchObject(UNAVAILABLE);
    } finally {
      await store.close();
      await silent.close();
    }
  }, HANG_MS);
});

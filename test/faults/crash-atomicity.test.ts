/**
 * Crash tests through real processes: a `credvault serve` on SQLite killed with SIGKILL
 * during account-creation load, and a private redis-server (appendonly, fsync always)
 * killed with SIGKILL under the same load. Afterwards every account exists completely or
 * not at all, a retried create succeeds, and after `keys rotate` the new key alone opens
 * every credential of every account.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createVault, getLinkedAccount, listDefaultAppCredentials, type Vault } from '../../src/index.js';
import { accountGroup } from '../../src/core/layout.js';
import { assertBuilt, killAll, makeTempDir, removeDir, runJson, run, startServer, type Server } from '../cli/helpers.js';
import { freePort, waitFor } from '../helpers/services.js';

assertBuilt();

const hasRedisServer = spawnSync('redis-server', ['--version']).status === 0;
if (!hasRedisServer && process.env.CREDVAULT_REQUIRE_SERVICES === '1') {
  throw new Error('redis-server is not installed, and CREDVAULT_REQUIRE_SERVICES=1 requires it');
}

const BASE = '/api/v2/public';
const keyEntry = (id: string) => `${id}:${randomBytes(32).toString('base64')}`;
const SEEDED = ['alpha', 'beta', 'gamma'] as const;
const valueOf = (accountId: string, key: string) => `secret-${key}-${accountId}`;

interface Attempt {
  accountId: string;
  status: number | 'error';
}

/**
 * Loops of POST /linked-account, each seeding three credentials, against `url()` (which may
 * change across a restart), until stopped. Records what each attempt was answered.
 */
function createLoad(url: () => string, apiKey: string, prefix: string, workers = 8) {
  const attempts: Attempt[] = [];
  let running = true;
  const loops = Array.from({ length: workers }, async (_, worker) => {
    for (let i = 0; running; i++) {
      const accountId = `${prefix}-${worker}-${i}`;
      const body = { account_id: accountId, your_app: { auth_credentials: Object.fromEntries(SEEDED.map((k) => [k, valueOf(accountId, k)])) } };
      const attempt: Attempt = { accountId, status: 'error' };
      attempts.push(attempt);
      try {
        const res = await fetch(`${url()}${BASE}/linked-account`, {
          method: 'POST',
          headers: { 'x-api-key': apiKey, 'content-type': 'application/json', connection: 'close' },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(5000),
        });
        await res.arrayBuffer();
        attempt.status = res.status;
      } catch {
        // Refused or cut off by the crash: unacknowledged.
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  });
  return {
    attempts,
    acknowledged: () => attempts.filter((a) => a.status === 200).length,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

/**
 * Each attempted account is complete (profile plus its three seeded credentials with their
 * values) or absent (no record at all in its group). Returns the absent ones.
 */
async function checkAllOrNothing(vault: Vault, attempts: readonly Attempt[]): Promise<string[]> {
  const absent: string[] = [];
  for (const { accountId, status } of attempts) {
    const ref = { org: 'acme', environment: 'test', accountId };
    const records = await vault.store.list(accountGroup(ref));
    if (records.length === 0) {
      // An acknowledged create was durable: it cannot be missing.
      expect(status, `acknowledged ${accountId} is missing`).not.toBe(200);
      absent.push(accountId);
      continue;
    }
    expect((await getLinkedAccount(vault, ref)).accountId).toBe(accountId);
    const creds = await listDefaultAppCredentials(vault, ref, { reveal: true });
    expect(creds.map((c) => [c.key, c.value])).toEqual(SEEDED.map((k) => [k, valueOf(accountId, k)]));
    // The default app's key marker names the account's one data key.
    const dekId = (JSON.parse(records.find((r) => r.member === 'dek')?.entry.value ?? '{"keys":[]}') as { keys: Array<{ id: string }> }).keys[0]?.id;
    expect(records.map((r) => r.member)).toEqual([`app-key:${dekId}`, 'app:default', 'cred:alpha', 'cred:beta', 'cred:gamma', 'dek', 'profile']);
  }
  return absent;
}

/** Opens the store in this process and runs {@link checkAllOrNothing} on it. */
async function checkStore(store: string, keys: string, attempts: readonly Attempt[]): Promise<string[]> {
  const vault = await createVault({ store, keys, log: () => undefined });
  try {
    return await checkAllOrNothing(vault, attempts);
  } finally {
    await vault.close();
  }
}

/** Retries the absent creates through a live server: each must now succeed. */
async function retryAbsent(url: string, apiKey: string, absent: readonly string[]): Promise<void> {
  for (const accountId of absent) {
    const res = await fetch(`${url}${BASE}/linked-account`, {
      method: 'POST',
      headers: { 'x-api-key': apiKey, 'content-type': 'application/json' },
      body: JSON.stringify({ account_id: accountId, your_app: { auth_credentials: Object.fromEntries(SEEDED.map((k) => [k, valueOf(accountId, k)])) } }),
    });
    expect(res.status, `retry of ${accountId}`).toBe(200);
  }
}

/** Rotates to `next` with the CLI, then opens the store with `next` alone: every credential opens. */
async function rotateAndReopen(store: string, next: string, old: string, attempts: readonly Attempt[]): Promise<void> {
  const rotated = await runJson<{ rewrapped: number; resealed: number; already_current: number }>(['keys', 'rotate', '--store', store], {
    env: { CREDVAULT_KEYS: `${next},${old}` },
    timeoutMs: 60_000,
  });
  // Each account's data key moves to the new key; its values stay as they are.
  expect(rotated.rewrapped).toBeGreaterThan(0);
  expect(rotated.resealed).toBe(0);
  expect(await checkStore(store, next, attempts)).toEqual([]);
}

const dirs: string[] = [];
afterEach(() => killAll());
afterAll(async () => {
  for (const dir of dirs) await removeDir(dir);
});

describe('crash during account creation: SQLite server killed with SIGKILL', () => {
  it('leaves every account complete or absent; a retry succeeds; after keys rotate the new key alone opens everything', async () => {
    const dir = await makeTempDir();
    dirs.push(dir);
    const store = `sqlite:${path.join(dir, 'vault.db')}`;
    const oldKey = keyEntry('kold');
    const env = { CREDVAULT_KEYS: oldKey };
    const { api_key: apiKey } = await runJson<{ api_key: string }>(['api-key', 'create', '--org', 'acme', '--store', store], { env });

    let server: Server = await startServer(['--store', store], { env });
    const load = createLoad(() => server.url, apiKey, 'sq');
    await waitFor(() => load.acknowledged() >= 20, 'some creates to be acknowledged', 20_000);
    server.child.kill('SIGKILL');
    await server.exited();
    await load.stop();
    expect(load.attempts.some((a) => a.status !== 200)).toBe(true);

    const absent = await checkStore(store, oldKey, load.attempts);
    server = await startServer(['--store', store], { env });
    await retryAbsent(server.url, apiKey, absent);
    server.child.kill('SIGTERM');
    expect((await server.exited()).code).toBe(0);

    await rotateAndReopen(store, keyEntry('knew'), oldKey, load.attempts);
  });
});

const redisSuite = hasRedisServer ? describe : describe.skip;

redisSuite('crash during account creation: redis-server (appendonly) killed with SIGKILL', () => {
  const redisProcesses = new Set<ChildProcess>();
  afterAll(() => {
    for (const child of redisProcesses) child.kill('SIGKILL');
  });

  async function startRedis(port: number, dir: string): Promise<ChildProcess> {
    const child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    redisProcesses.add(child);
    child.on('exit', () => redisProcesses.delete(child));
    let output = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    await waitFor(() => output.includes('Ready to accept connections') || child.exitCode !== null, 'redis-server to start', 20_000);
    if (child.exitCode !== null) throw new Error(`redis-server exited: ${output}`);
    return child;
  }

  it('leaves every account complete or absent; a retry succeeds; after keys rotate the new key alone opens everything', async () => {
    const dir = await makeTempDir();
    dirs.push(dir);
    const port = await freePort();
    let redis = await startRedis(port, dir);
    const store = `redis://127.0.0.1:${port}`;
    const oldKey = keyEntry('kold');
    const env = { CREDVAULT_KEYS: oldKey };
    const { api_key: apiKey } = await runJson<{ api_key: string }>(['api-key', 'create', '--org', 'acme', '--store', store], { env });
    const server = await startServer(['--store', store], { env });
    const load = createLoad(() => server.url, apiKey, 'rd');
    await waitFor(() => load.acknowledged() >= 20, 'some creates to be acknowledged', 20_000);
    redis.kill('SIGKILL');
    await once(redis, 'exit');
    // Down for longer than the store waits for a reconnect (2 s), so requests meanwhile get
    // 503; the server keeps answering and recovers by itself once Redis is back.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    redis = await startRedis(port, dir);
    const before = load.acknowledged();
    await waitFor(() => load.acknowledged() >= before + 20, 'creates to succeed again after the restart', 20_000);
    await load.stop();
    expect(load.attempts.some((a) => a.status !== 200)).toBe(true);

    const absent = await checkStore(store, oldKey, load.attempts);
    await retryAbsent(server.url, apiKey, absent);
    server.child.kill('SIGTERM');
    expect((await server.exited()).code).toBe(0);

    await rotateAndReopen(store, keyEntry('knew'), oldKey, load.attempts);
    const status = await run(['keys', 'rotate', '--store', store], { env: { CREDVAULT_KEYS: oldKey } });
    // The old key was retired: it alone is refused now.
    expect(status.code).toBe(1);
    expect(status.stderr).toMatch(/kold|knew/);
  });
});

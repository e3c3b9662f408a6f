import pg from 'pg';
import { afterAll, expect, it } from 'vitest';
import { createPostgresStore } from '../../adapters/postgres.js';
import { freePort, POSTGRES_URL, runId, serviceSuite, silentServer, tcpProxy, waitFor } from '../helpers/services.js';

const service = await serviceSuite('PostgreSQL', POSTGRES_URL);
const suite = service.describe;
const schema = runId('cvpgout');
/** Far above the store's own bounds (500 ms connect), far below a hang. */
const PROMPT_MS = 3000;

/** The shared server's URL, pointed at another host and port. */
function via(port: number): string {
  const url = new URL(POSTGRES_URL);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return url.toString();
}

async function timed<T>(call: () => Promise<T>): Promise<{ ms: number; ok: boolean }> {
  const start = Date.now();
  try {
    await call();
    return { ms: Date.now() - start, ok: true };
  } catch {
    return { ms: Date.now() - start, ok: false };
  }
}

afterAll(async () => {
  if (!service.available) return;
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await client.end();
  }
});

suite('postgres store outage', () => {
  it('a closed port rejects every call promptly, and close does not hang', async () => {
    const store = createPostgresStore({ url: via(1), schema, connectTimeoutMs: 500 });
    const calls = await Promise.all([
      timed(() => store.get('g', 'm')),
      timed(() => store.put('g', 'm', 'v')),
      timed(() => store.list('g')),
    ]);
    for (const call of calls) {
      expect(call.ok).toBe(false);
      expect(call.ms).toBeLessThan(PROMPT_MS);
    }
    const closing = await timed(() => store.close());
    expect(closing.ms).toBeLessThan(PROMPT_MS);
  });

  it('a server that accepts connections but never answers rejects within the connect timeout', async () => {
    const silent = await silentServer();
    const store = createPostgresStore({ url: via(silent.port), schema, connectTimeoutMs: 500 });
    try {
      const call = await timed(() => store.put('g', 'm', 'v'));
      expect(call.ok).toBe(false);
      expect(call.ms).toBeLessThan(PROMPT_MS);
    } finally {
      await store.close();
      await silent.close();
    }
  });

  it('when the connection to the server is cut, calls reject promptly; when it returns, the pool recovers by itself', async () => {
    const target = new URL(POSTGRES_URL);
    const proxy = tcpProxy({ host: target.hostname, port: Number(target.port || 5432) }, await freePort());
    await proxy.start();
    const store = createPostgresStore({ url: via(proxy.port), schema, namespace: runId('cut'), connectTimeoutMs: 500, poolSize: 4 });
    try {
      expect(await store.put('g', 'm', 'before')).toBe('added');
      // Several pooled connections are open and idle when the cut happens.
      await Promise.all(Array.from({ length: 8 }, (_, i) => store.put('g', `m${i}`, 'v')));

      await proxy.stop();
      const cut = await Promise.all(Array.from({ length: 6 }, () => timed(() => store.get('g', 'm'))));
      for (const call of cut) {
        expect(call.ok).toBe(false);
        expect(call.ms).toBeLessThan(PROMPT_MS);
      }

      await proxy.start();
      await waitFor(async () => (await timed(() => store.get('g', 'm'))).ok, 'the pool to recover', 8000);
      expect((await store.get('g', 'm'))?.value).toBe('before');
      expect(await store.put('g', 'm', 'after')).toBe('updated');
    } finally {
      const closing = await timed(() => store.close());
      expect(closing.ms).toBeLessThan(PROMPT_MS);
      await proxy.stop();
    }
  });

  it('a store opened while the server is unreachable creates its table once the server is back', async () => {
    const target = new URL(POSTGRES_URL);
    const proxy = tcpProxy({ host: target.hostname, port: Number(target.port || 5432) }, await freePort());
    const late = runId('late');
    const store = createPostgresStore({ url: via(proxy.port), schema: late, connectTimeoutMs: 500 });
    try {
      expect((await timed(() => store.put('g', 'm', 'v'))).ok).toBe(false);
      await proxy.start();
      await waitFor(async () => (await timed(() => store.put('g', 'm', 'v'))).ok, 'the store to set up', 8000);
      expect((await store.get('g', 'm'))?.value).toBe('v');
    } finally {
      await store.close();
      await proxy.stop();
      const client = new pg.Client({ connectionString: POSTGRES_URL });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS "${late}" CASCADE`).finally(() => client.end());
    }
  });
});

import { afterAll, expect, it } from 'vitest';
import { createPostgresStore } from '../../adapters/postgres.js';
import { dropSchema } from '../helpers/postgres.js';
import { freePort, POSTGRES_URL, runId, serviceSuite, silentServer, tcpProxy, viaPort, waitFor } from '../helpers/services.js';
import { settle } from '../helpers/wait.js';

const service = await serviceSuite('PostgreSQL', POSTGRES_URL);
const suite = service.describe;
const schema = runId('cvpgout');
/** Far above the store's own bounds (500 ms connect): a test that reaches it hung. */
const HANG_MS = 10_000;
const via = (port: number): string => viaPort(POSTGRES_URL, port);
/** How every call to an unreachable, silent or cut-off server ends: the backend's error (the vault maps it to STORE_UNAVAILABLE), never the RangeError of bad input. */
const UNAVAILABLE = { ok: false, error: expect.not.stringMatching(/^RangeError$/) };

afterAll(async () => {
  if (service.available) await dropSchema(schema);
});

suite('postgres store outage', () => {
  it('a closed port rejects every call, and close resolves', async () => {
    const store = createPostgresStore({ url: via(1), schema, connectTimeoutMs: 500 });
    const calls = await Promise.all([
      settle(() => store.get('g', 'm')),
      settle(() => store.put('g', 'm', 'v')),
      settle(() => store.list('g')),
    ]);
    for (const call of calls) expect(call).toMatchObject(UNAVAILABLE);
    expect(await settle(() => store.close())).toMatchObject({ ok: true });
  }, HANG_MS);

  it('a server that accepts connections but never answers: the call rejects while the server still listens', async () => {
    const silent = await silentServer();
    const store = createPostgresStore({ url: via(silent.port), schema, connectTimeoutMs: 500 });
    try {
      // The server never answers, so only the store's own connect timeout can settle the call.
      expect(await settle(() => store.put('g', 'm', 'v'))).toMatchObject(UNAVAILABLE);
    } finally {
      await store.close();
      await silent.close();
    }
  }, HANG_MS);

  it('when the connection to the server is cut, calls reject before it returns; then the pool recovers by itself', async () => {
    const target = new URL(POSTGRES_URL);
    const proxy = tcpProxy({ host: target.hostname, port: Number(target.port || 5432) }, await freePort());
    await proxy.start();
    const store = createPostgresStore({ url: via(proxy.port), schema, namespace: runId('cut'), connectTimeoutMs: 500, poolSize: 4 });
    try {
      expect(await store.put('g', 'm', 'before')).toBe('added');
      // Several pooled connections are open and idle when the cut happens.
      await Promise.all(Array.from({ length: 8 }, (_, i) => store.put('g', `m${i}`, 'v')));

      await proxy.stop();
      // Awaited before the proxy starts again: these calls settle while the server is unreachable.
      const cut = await Promise.all(Array.from({ length: 6 }, () => settle(() => store.get('g', 'm'))));
      for (const call of cut) expect(call).toMatchObject(UNAVAILABLE);

      await proxy.start();
      await waitFor(async () => (await settle(() => store.get('g', 'm'))).ok, 'the pool to recover', 8000);
      expect((await store.get('g', 'm'))?.value).toBe('before');
      expect(await store.put('g', 'm', 'after')).toBe('updated');
    } finally {
      await store.close();
      await proxy.stop();
    }
  }, HANG_MS + 8000);

  it('a store opened while the server is unreachable creates its table once the server is back', async () => {
    const target = new URL(POSTGRES_URL);
    const proxy = tcpProxy({ host: target.hostname, port: Number(target.port || 5432) }, await freePort());
    const late = runId('late');
    const store = createPostgresStore({ url: via(proxy.port), schema: late, connectTimeoutMs: 500 });
    try {
      expect(await settle(() => store.put('g', 'm', 'v'))).toMatchObject(UNAVAILABLE);
      await proxy.start();
      await waitFor(async () => (await settle(() => store.put('g', 'm', 'v'))).ok, 'the store to set up', 8000);
      expect((await store.get('g', 'm'))?.value).toBe('v');
    } finally {
      await store.close();
      await proxy.stop();
      await dropSchema(late);
    }
  });
});

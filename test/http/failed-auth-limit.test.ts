import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import KeyvSqlite from '@keyv/sqlite';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSqliteStore } from '../../adapters/sqlite.js';
import { createApiKey, createHandler, createLinkedAccount, createVault, type Vault } from '../../src/index.js';
import { createMemoryStore } from '../../adapters/memory.js';
import { BINDINGS, call, startBinding, type RunningServer } from './harness.js';

const PUT_PATH = '/api/v2/public/linked-account/default-app/auth-credentials/api_key';
const keys = () => `k:${randomBytes(32).toString('base64')}`;

describe('failed-authentication limit', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const close of cleanup.splice(0)) await close();
  });

  async function setup(): Promise<{ vault: Vault; apiKey: string }> {
    const vault = await createVault({ store: createMemoryStore(), keys: keys() });
    cleanup.push(() => vault.close());
    const { apiKey } = await createApiKey(vault, { org: 'acme', environment: 'test' });
    await createLinkedAccount(vault, { org: 'acme', environment: 'test', accountId: 'cust-1' }, { credentials: {} });
    return { vault, apiKey };
  }

  for (const binding of BINDINGS) {
    it(`answers 429 with Retry-After once an address passes the limit (${binding})`, async () => {
      const { vault, apiKey } = await setup();
      const server: RunningServer = await startBinding(binding, vault, { failedAuthLimit: { maxFailures: 3, windowSeconds: 60 } });
      cleanup.push(() => server.close());
      const attempt = (key: string) =>
        call(`${server.url}${PUT_PATH}`, {
          method: 'PUT',
          headers: { 'x-api-key': key, linked_account_id: 'cust-1', 'content-type': 'application/json' },
          body: '{"value":"v"}',
        });
      const wrong = `tk_${'0'.repeat(16)}_${'A'.repeat(43)}`;
      for (let i = 0; i < 3; i++) expect((await attempt(wrong)).status).toBe(401);
      const blocked = await attempt(wrong);
      expect(blocked.status).toBe(429);
      expect(blocked.body).toEqual({
        status_code: 429,
        http_error_type: 'TOO_MANY_REQUESTS',
        error: 'TOO_MANY_REQUESTS',
        message: expect.stringMatching(/^Too many failed authentication attempts; retry after \d+ seconds$/),
      });
      const retryAfter = Number(blocked.headers.get('retry-after'));
      expect(retryAfter).toBeGreaterThan(50);
      expect(retryAfter).toBeLessThanOrEqual(60);
      // The address is blocked even with the right key: guessing must not pay off.
      expect((await attempt(apiKey)).status).toBe(429);
    });
  }

  it('counts in the store, so a second process blocks after at most one more failure', async () => {
    const { vault, apiKey } = await setup();
    const limit = { maxFailures: 5, windowSeconds: 60, perApiKeyId: false };
    // Two handlers over one store stand for two server processes sharing it.
    const first = createHandler(vault, { failedAuthLimit: limit });
    const second = createHandler(vault, { failedAuthLimit: limit });
    const put = (handler: typeof first, key: string, clientAddress: string) =>
      handler.handle({ method: 'PUT', path: PUT_PATH, clientAddress, headers: { 'x-api-key': key, linked_account_id: 'cust-1' }, body: '{"value":"v"}' });
    const wrong = `tk_${'1'.repeat(16)}_${'B'.repeat(43)}`;
    for (let i = 0; i < 5; i++) expect((await put(first, wrong, '198.51.100.7')).status).toBe(401);
    expect((await put(first, wrong, '198.51.100.7')).status).toBe(429);
    // The count is exact across processes: the second one answers 429 at once.
    expect((await put(second, wrong, '198.51.100.7')).status).toBe(429);
    expect((await put(second, apiKey, '198.51.100.7')).status).toBe(429);
    // Other addresses are not affected.
    expect((await put(second, apiKey, '198.51.100.8')).status).toBe(200);
  });

  it('counts failures per real API key id across addresses, and the real key still works', async () => {
    const { vault, apiKey } = await setup();
    const handler = createHandler(vault, { failedAuthLimit: { maxFailures: 3, windowSeconds: 60 } });
    const keyId = apiKey.split('_')[1] as string;
    const forged = `tk_${keyId}_${'C'.repeat(43)}`;
    for (let i = 0; i < 3; i++) {
      const result = await handler.handle({ method: 'PUT', path: PUT_PATH, clientAddress: `203.0.113.${i}`, headers: { 'x-api-key': forged, linked_account_id: 'cust-1' }, body: '{"value":"v"}' });
      expect(result.status).toBe(401);
    }
    const next = await handler.handle({ method: 'PUT', path: PUT_PATH, clientAddress: '203.0.113.99', headers: { 'x-api-key': forged, linked_account_id: 'cust-1' }, body: '{"value":"v"}' });
    expect(next.status).toBe(429);
    // Knowing the id does not lock the holder out: the correct secret passes.
    const real = await handler.handle({ method: 'PUT', path: PUT_PATH, clientAddress: '203.0.113.100', headers: { 'x-api-key': apiKey, linked_account_id: 'cust-1' }, body: '{"value":"v"}' });
    expect(real.status).toBe(200);
    // With perApiKeyId off, guesses at the id from fresh addresses get 401, never 429.
    const off = createHandler(vault, { failedAuthLimit: { maxFailures: 3, windowSeconds: 60, perApiKeyId: false } });
    for (let i = 0; i < 5; i++) {
      const result = await off.handle({ method: 'PUT', path: PUT_PATH, clientAddress: `203.0.114.${i}`, headers: { 'x-api-key': forged, linked_account_id: 'cust-1' }, body: '{"value":"v"}' });
      expect(result.status).toBe(401);
    }
  });

  for (const binding of BINDINGS) {
    it(`200 concurrent bad keys from one address: exactly the limit answered 401, the rest 429, no counter per random id (${binding})`, async () => {
      const { vault } = await setup();
      const server: RunningServer = await startBinding(binding, vault, {});
      cleanup.push(() => server.close());
      const statuses = await Promise.all(
        Array.from({ length: 200 }, () =>
          call(`${server.url}${PUT_PATH}`, {
            method: 'PUT',
            headers: {
              'x-api-key': `tk_${randomBytes(8).toString('hex')}_${randomBytes(32).toString('base64url')}`,
              linked_account_id: 'cust-1',
              'content-type': 'application/json',
            },
            body: '{"value":"v"}',
          }).then((res) => res.status),
        ),
      );
      expect(statuses.filter((status) => status === 401)).toHaveLength(20);
      expect(statuses.filter((status) => status === 429)).toHaveLength(180);
      const limitGroups = new Set<string>();
      let cursor: string | undefined;
      do {
        const page = await vault.store.scan(cursor, 100);
        for (const item of page.items) if (item.group.startsWith('limit:')) limitGroups.add(item.group);
        cursor = page.cursor;
      } while (cursor !== undefined);
      expect([...limitGroups]).toHaveLength(1);
      expect([...limitGroups][0]?.startsWith('limit:ip%003a')).toBe(true);
    });
  }

  it('expired counters are purged, so failure traffic from many addresses does not grow the store (SQLite)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'credvault-limit-'));
    cleanup.push(async () => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'vault.db');
    const keyText = keys();
    const limit = { maxFailures: 5, windowSeconds: 0.2 };
    const countersIn = async (vault: Vault): Promise<number> => {
      let n = 0;
      let cursor: string | undefined;
      do {
        const page = await vault.store.scan(cursor, 500);
        n += page.items.filter((item) => item.group.startsWith('limit:')).length;
        cursor = page.cursor;
      } while (cursor !== undefined);
      return n;
    };
    // Rows as the file holds them, expired or not, read past the store.
    const rowsIn = async (): Promise<number> => {
      const raw = new KeyvSqlite({ uri: `sqlite://${path}`, table: 'keyv' });
      try {
        const [row] = (await raw.query("SELECT count(*) AS n FROM keyv WHERE key LIKE '%{limit:%'")) as Array<{ n: number }>;
        return row?.n ?? -1;
      } finally {
        await raw.disconnect();
      }
    };
    const first = await createVault({ store: createSqliteStore({ path }), keys: keyText });
    const handler = createHandler(first, { failedAuthLimit: limit, trustProxyHops: 1 });
    const wrong = `tk_${'3'.repeat(16)}_${'E'.repeat(43)}`;
    for (let i = 0; i < 50; i++) {
      await handler.handle({ method: 'PUT', path: PUT_PATH, clientAddress: '10.0.0.1', headers: { 'x-api-key': wrong, linked_account_id: 'cust-1', 'x-forwarded-for': `192.0.2.${i}` }, body: '{"value":"v"}' });
    }
    expect(await rowsIn()).toBeGreaterThan(40);
    await first.close();
    await new Promise((resolve) => setTimeout(resolve, 300));
    // Another process (or a restart) sweeps on its first failure.
    const second = await createVault({ store: createSqliteStore({ path }), keys: keyText });
    cleanup.push(() => second.close());
    await createHandler(second, { failedAuthLimit: limit }).handle({ method: 'PUT', path: PUT_PATH, clientAddress: '10.9.9.9', headers: { 'x-api-key': wrong, linked_account_id: 'cust-1' }, body: '{"value":"v"}' });
    for (let i = 0; i < 100 && (await rowsIn()) > 1; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await rowsIn()).toBe(1);
    expect(await countersIn(second)).toBe(1);
  });

  it('trusts X-Forwarded-For only when told how many proxies to trust', async () => {
    const { vault } = await setup();
    const wrong = `tk_${'2'.repeat(16)}_${'D'.repeat(43)}`;
    const attempt = (handler: ReturnType<typeof createHandler>, forwardedFor: string) =>
      handler.handle({ method: 'PUT', path: PUT_PATH, clientAddress: '10.0.0.1', headers: { 'x-api-key': wrong, linked_account_id: 'cust-1', 'x-forwarded-for': forwardedFor }, body: '{"value":"v"}' });
    const limit = { maxFailures: 2, windowSeconds: 60, perApiKeyId: false };
    // Untrusted: the header is ignored, every request counts against the proxy's address.
    const plain = createHandler(vault, { failedAuthLimit: limit });
    expect((await attempt(plain, '192.0.2.1')).status).toBe(401);
    expect((await attempt(plain, '192.0.2.2')).status).toBe(401);
    expect((await attempt(plain, '192.0.2.3')).status).toBe(429);
    // One trusted proxy: the address it appended is the client; a spoofed left part is ignored.
    const proxied = createHandler(vault, { failedAuthLimit: limit, trustProxyHops: 1 });
    expect((await attempt(proxied, 'spoof, 192.0.2.50')).status).toBe(401);
    expect((await attempt(proxied, 'other-spoof, 192.0.2.50')).status).toBe(401);
    expect((await attempt(proxied, 'third, 192.0.2.50')).status).toBe(429);
    expect((await attempt(proxied, '192.0.2.51')).status).toBe(401);
  });

  it('can be turned off', async () => {
    const { vault } = await setup();
    const handler = createHandler(vault, { failedAuthLimit: false });
    for (let i = 0; i < 30; i++) {
      const result = await handler.handle({ method: 'PUT', path: PUT_PATH, clientAddress: '10.1.1.1', headers: { 'x-api-key': 'tk_bad' }, body: '{}' });
      expect(result.status).toBe(401);
    }
  });
});

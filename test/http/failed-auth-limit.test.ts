import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
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
    const { api_key: apiKey } = await createApiKey(vault, { org: 'acme', environment: 'test' });
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
    // The second process has seen nothing yet: one more failure there learns the count.
    expect((await put(second, wrong, '198.51.100.7')).status).toBe(401);
    expect((await put(second, apiKey, '198.51.100.7')).status).toBe(429);
    // Other addresses are not affected.
    expect((await put(second, apiKey, '198.51.100.8')).status).toBe(200);
  });

  it('counts per API key id across addresses', async () => {
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

/**
 * A key provider of the embedder's own (a KMS client, say) that cannot be reached: on every
 * binding, a request that needs it answers 503 in the envelope, never 500 and never a
 * fallback; the vault says why on its log once (not once per request) and once when the
 * provider is back; the provider's own error text (hosts, tokens) reaches neither the
 * client nor the log unless it is a VaultError the provider chose to word. A provider that
 * logs its outages itself is not repeated.
 */
import { afterEach, expect, it, describe } from 'vitest';
import {
  createApiKey,
  createVault,
  getDefaultAppCredential,
  localKeyProvider,
  rotateKeys,
  VaultError,
  type KeyProvider,
  type Vault,
} from '../../src/index.js';
import { parseKeyring } from '../../src/crypto/keyring.js';
import { BINDINGS, call, startBinding, type RunningServer } from '../http/harness.js';
import { keyEntry, marker } from './helpers.js';

const BASE = '/api/v2/public';

/** A provider over a keyring of its own that can be taken down: down, it throws what a network client would. */
function flakyProvider(options: { logsOutages?: boolean; failure?: () => Error } = {}) {
  const inner = localKeyProvider(parseKeyring(keyEntry('kms1').entry));
  const state = { down: false, calls: 0 };
  const fail = options.failure ?? (() => new Error('connect ECONNREFUSED 10.1.2.3:443 (token=s.SECRETTOKEN)'));
  const provider: KeyProvider = {
    kind: 'kms',
    primaryKekId: 'kms:alias-one',
    ...(options.logsOutages === undefined ? {} : { logsOutages: options.logsOutages }),
    hasKek: (kekId) => kekId === 'kms:alias-one',
    async wrap(dek, context) {
      state.calls += 1;
      if (state.down) throw fail();
      return { kekId: 'kms:alias-one', wrapped: (await inner.wrap(dek, context)).wrapped };
    },
    async unwrap(wrapped, context) {
      state.calls += 1;
      if (state.down) throw fail();
      return inner.unwrap({ kekId: inner.primaryKekId, wrapped: wrapped.wrapped }, context);
    },
  };
  return { provider, state };
}

describe('a key provider that cannot be reached', () => {
  const open: Array<{ close(): Promise<void> }> = [];
  afterEach(async () => {
    for (const item of open.splice(0).reverse()) await item.close().catch(() => undefined);
  });

  async function serving(binding: (typeof BINDINGS)[number], provider: KeyProvider) {
    const lines: string[] = [];
    const vault: Vault = await createVault({ store: 'memory:', keys: keyEntry('k1').entry, kek: provider, log: (line) => lines.push(line) });
    open.push(vault);
    const server: RunningServer = await startBinding(binding, vault, { logError: (line) => lines.push(`ERROR ${line}`) });
    open.push(server);
    const { apiKey } = await createApiKey(vault, { org: 'acme', environment: 'test' });
    const create = (id: string) =>
      call(`${server.url}${BASE}/linked-account`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': apiKey },
        body: JSON.stringify({ account_id: id, your_app: { auth_credentials: { api_key: marker(id) } } }),
      });
    return { vault, lines, create, apiKey, server };
  }

  for (const binding of BINDINGS) {
    it(`${binding}: answers 503 in the envelope while it is down, says so once on the log, and once when it is back`, async () => {
      const { provider, state } = flakyProvider();
      const { lines, create, server, apiKey } = await serving(binding, provider);
      expect((await create('before')).status).toBe(200);

      state.down = true;
      for (let i = 0; i < 4; i++) {
        const down = await create(`down-${i}`);
        expect(down.status).toBe(503);
        expect(down.body).toEqual({
          status_code: 503,
          http_error_type: 'SERVICE_UNAVAILABLE',
          error: 'STORE_UNAVAILABLE',
          message: expect.any(String) as string,
        });
        expect(JSON.stringify(down.body)).not.toMatch(/ECONNREFUSED|10\.1\.2\.3|SECRETTOKEN/);
      }
      // Nothing of the refused creations was stored.
      for (let i = 0; i < 4; i++) {
        const missing = await call(`${server.url}${BASE}/linked-account/down-${i}`, { headers: { 'x-api-key': apiKey } });
        expect(missing.status).toBe(404);
      }
      expect(lines).toEqual([
        'credvault: the kms key provider is unavailable (The key provider is unavailable); requests that need a data key answer 503 until it is back',
      ]);

      state.down = false;
      expect((await create('after')).status).toBe(200);
      expect((await create('after-2')).status).toBe(200);
      expect(lines).toHaveLength(2);
      expect(lines[1]).toBe('credvault: the kms key provider is available again');
      expect(lines.join('\n')).not.toMatch(/ECONNREFUSED|10\.1\.2\.3|SECRETTOKEN/);
    });
  }

  it('a provider that words its own STORE_UNAVAILABLE is quoted; one that logs outages itself is not repeated', async () => {
    const worded = flakyProvider({ failure: () => new VaultError('STORE_UNAVAILABLE', 'KMS key alias-one is throttled') });
    const first = await serving('express', worded.provider);
    worded.state.down = true;
    expect((await first.create('x')).status).toBe(503);
    expect(first.lines).toEqual([
      'credvault: the kms key provider is unavailable (KMS key alias-one is throttled); requests that need a data key answer 503 until it is back',
    ]);

    const quiet = flakyProvider({ logsOutages: true });
    const second = await serving('express', quiet.provider);
    quiet.state.down = true;
    expect((await second.create('y')).status).toBe(503);
    quiet.state.down = false;
    expect((await second.create('z')).status).toBe(200);
    expect(second.lines).toEqual([]);
  });

  it('keys rotate meets the same outage: STORE_UNAVAILABLE naming nothing of the provider, said once, and completes once it is back', async () => {
    const { provider, state } = flakyProvider();
    const { lines, create, vault } = await serving('express', provider);
    expect((await create('acct')).status).toBe(200);
    vault.dataKeys.clear();
    state.down = true;
    const error = await rotateKeys(vault, { reseal: true }).then(
      () => undefined,
      (e: unknown) => e as VaultError,
    );
    expect(error?.code).toBe('STORE_UNAVAILABLE');
    expect(error?.message).not.toMatch(/ECONNREFUSED|10\.1\.2\.3|SECRETTOKEN/);
    expect(lines.filter((line) => /unavailable/.test(line))).toHaveLength(1);
    state.down = false;
    expect(await rotateKeys(vault)).toMatchObject({ rewrapped: 1 });
    expect(lines.at(-1)).toBe('credvault: the kms key provider is available again');
  });

  it('an unwrap that fails as DECRYPTION_FAILED is not an outage: nothing is logged as one', async () => {
    const { provider } = flakyProvider();
    const broken: KeyProvider = { ...provider, unwrap: async () => Promise.reject(new VaultError('DECRYPTION_FAILED', 'Stored data key could not be unwrapped')) };
    const { lines, create, vault } = await serving('express', broken);
    expect((await create('acct')).status).toBe(200);
    vault.dataKeys.clear();
    const error = await getDefaultAppCredential(vault, { org: 'acme', environment: 'test', accountId: 'acct' }, 'api_key').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((error as VaultError).code).toBe('DECRYPTION_FAILED');
    expect(lines.filter((line) => /unavailable/.test(line))).toEqual([]);
  });
});

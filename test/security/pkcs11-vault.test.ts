/**
 * A vault whose KEK lives on a real SoftHSM2 token (`kek` a PKCS#11 URI): accounts' data keys
 * are wrapped on the token; a restart opens everything again; the token made unavailable
 * mid-run answers 503 over HTTP (never 500) and the vault recovers when it is back; rotation
 * moves every data key from one token object to another; a wrong PIN is refused at start.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  createApiKey,
  createLinkedAccount,
  createVault,
  getDefaultAppCredential,
  rotateKeys,
  upsertDefaultAppCredential,
  VaultError,
  type Vault,
} from '../../src/index.js';
import { accountGroup, DATA_KEY } from '../../src/core/layout.js';
import { parseDataKeyRecord } from '../../src/core/data-keys.js';
import { generatePkcs11Kek } from '../../src/crypto/pkcs11.js';
import { createSoftHsmToken, softhsmSuite, type SoftHsmToken } from '../helpers/softhsm.js';
import { call, startBinding } from '../http/harness.js';
import { keyEntry, marker } from './helpers.js';

const softhsm = softhsmSuite();
const PIN = 'pin-5521-vault';
const ACCOUNT = { org: 'acme', environment: 'test', accountId: 'cust-1' };

softhsm.describe('a vault with its KEK on a PKCS#11 token (SoftHSM2)', () => {
  let token: SoftHsmToken;
  let dir: string;
  const keys = keyEntry('k1').entry;
  const store = () => `sqlite:${join(dir, 'vault.db')}`;

  beforeAll(async () => {
    token = createSoftHsmToken({ label: 'credvault-vault', pin: PIN });
    dir = mkdtempSync(join(tmpdir(), 'credvault-p11-'));
    await generatePkcs11Kek(token.uri('kek-1'));
    await generatePkcs11Kek(token.uri('kek-2'));
  });
  afterAll(() => {
    token?.cleanup();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  const kekOf = async (vault: Vault) =>
    parseDataKeyRecord((await vault.store.get(accountGroup(ACCOUNT), DATA_KEY))?.value as string)?.keys.map((key) => key.kek);

  it('wraps each data key on the token, opens everything after a restart, answers 503 while the token is gone and recovers, and rotates to another token object', async () => {
    const logged: string[] = [];
    const value = marker('api');
    let vault = await createVault({ store: store(), keys, kek: token.uri('kek-1'), log: (line) => logged.push(line) });
    try {
      await createLinkedAccount(vault, ACCOUNT, { credentials: { api_key: value } });
      expect(await kekOf(vault)).toEqual(['pkcs11:kek-1']);
      expect(await getDefaultAppCredential(vault, ACCOUNT, 'api_key')).toBe(value);
    } finally {
      await vault.close();
    }

    // A restart: a cold cache, so the data key is unwrapped on the token again.
    vault = await createVault({ store: store(), keys, kek: token.uri('kek-1'), log: (line) => logged.push(line), dataKeyCache: { ttlMs: 0 } });
    const { apiKey } = await createApiKey(vault, { org: 'acme', environment: 'test' });
    const server = await startBinding('express', vault);
    try {
      expect(await getDefaultAppCredential(vault, ACCOUNT, 'api_key')).toBe(value);
      const put = (v: string) =>
        call(`${server.url}/api/v2/public/linked-account/default-app/auth-credentials/api_key`, {
          method: 'PUT',
          headers: { 'content-type': 'application/json', 'x-api-key': apiKey, linked_account_id: ACCOUNT.accountId },
          body: JSON.stringify({ value: v }),
        });
      expect((await put(marker('second'))).status).toBe(200);

      token.hide();
      const down = await put(marker('while-down'));
      expect(down.status).toBe(503);
      expect(down.body).toMatchObject({ status_code: 503, http_error_type: 'SERVICE_UNAVAILABLE', error: 'STORE_UNAVAILABLE' });
      expect(JSON.stringify(down.body)).not.toContain(PIN);
      token.restore();

      // Back: the provider reconnects by itself within a few tries.
      let status = 0;
      for (let attempt = 0; attempt < 20 && status !== 200; attempt++) {
        await new Promise((resolve) => setTimeout(resolve, 300));
        status = (await put(marker('after'))).status;
      }
      expect(status).toBe(200);
    } finally {
      await server.close();
      await vault.close();
    }
    expect(logged.join('\n')).not.toContain(PIN);

    // Rotation between two objects of the token: every data key moves to kek-2.
    vault = await createVault({ store: store(), keys, kek: token.uri('kek-2'), log: () => undefined });
    try {
      const result = await rotateKeys(vault);
      expect(result.rewrapped).toBe(1);
      expect(await kekOf(vault)).toEqual(['pkcs11:kek-2']);
      await upsertDefaultAppCredential(vault, ACCOUNT, 'other', marker('other'));
    } finally {
      await vault.close();
    }
    vault = await createVault({ store: store(), keys, kek: token.uri('kek-2'), log: () => undefined, dataKeyCache: { ttlMs: 0 } });
    try {
      expect(await getDefaultAppCredential(vault, ACCOUNT, 'other')).toMatch(/^other/);
    } finally {
      await vault.close();
    }
  });

  it('a wrong PIN is refused at start, naming no PIN, and a KEK the store needs but the URI lacks is refused too', async () => {
    const wrong = token.uri('kek-1').replace(`pin-value=${encodeURIComponent(PIN)}`, 'pin-value=pin-0000-bad');
    expect(wrong).not.toContain(PIN);
    const refused = await createVault({ store: store(), keys, kek: wrong, log: () => undefined }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(VaultError);
    expect((refused as VaultError).code).toBe('INVALID_CONFIGURATION');
    expect((refused as VaultError).message).not.toContain('pin-0000-bad');
    // The local keyring wraps none of this store's data keys: refused, not opened with other keys.
    const local = await createVault({ store: store(), keys, log: () => undefined }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect((local as VaultError).code).toBe('KEYRING_MISMATCH');
  });
});

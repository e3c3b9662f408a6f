/**
 * Account ids are escaped into the store's group names, where each character outside
 * A-Z a-z 0-9 _ . - takes five: an id that no longer fits the store's bound on names is a
 * 400 in the envelope that changes nothing, on every store, never a 503 from the store.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey, createHandler, createLinkedAccount, createVault, generateKey, type Vault } from '../../src/index.js';

describe('linked account ids near the store bound', () => {
  let vault: Vault;
  let apiKey: string;
  const handler = () => createHandler(vault);
  const put = (accountId: string) =>
    handler().handle({
      method: 'PUT',
      path: '/api/v2/public/linked-account/default-app/auth-credentials/api_key',
      headers: { 'x-api-key': apiKey, 'content-type': 'application/json' },
      query: new URLSearchParams({ linked_account_id: accountId }),
      body: JSON.stringify({ value: 'sk_test_1' }),
    });
  const create = (accountId: string) =>
    handler().handle({
      method: 'POST',
      path: '/api/v2/public/linked-account',
      headers: { 'x-api-key': apiKey, 'content-type': 'application/json' },
      body: JSON.stringify({ account_id: accountId, name: 'n', your_app: { auth_credentials: {} } }),
    });

  beforeAll(async () => {
    const key = generateKey('k1');
    vault = await createVault({ store: 'memory:', keys: key.entry });
    apiKey = (await createApiKey(vault, { org: 'acme', environment: 'test' })).apiKey;
  });
  afterAll(() => vault.close());

  it('takes 256 characters of A-Z a-z 0-9 _ . - and 150 others', async () => {
    for (const id of ['a'.repeat(256), 'é'.repeat(150)]) {
      expect((await create(id)).status).toBe(200);
      expect((await put(id)).body).toMatchObject({ success: true, action: 'added' });
    }
  });

  it('answers 400 VALIDATION_ERROR, and stores nothing, for an id that does not fit once escaped', async () => {
    const id = 'é'.repeat(256);
    for (const response of [await create(id), await put(id)]) {
      expect(response.status).toBe(400);
      expect(response.body).toMatchObject({ status_code: 400, http_error_type: 'BAD_REQUEST', error: 'VALIDATION_ERROR' });
      expect(String((response.body as { message: string }).message)).toContain('linked_account_id is too long');
    }
    await expect(createLinkedAccount(vault, { org: 'acme', environment: 'test', accountId: id }, { name: 'n', credentials: {} })).rejects.toMatchObject({ code: 'VALIDATION_ERROR' });
  });
});

/** Core API keys: create, verify, revoke; tk_/pk_ prefixes, tampered and unknown keys; on memory and SQLite. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createApiKey, revokeApiKey, verifyApiKey, VaultError } from '../../src/index.js';
import { presentedApiKeyId } from '../../src/core/api-keys.js';
import { apiKeyGroup, RECORD } from '../../src/core/layout.js';
import { BACKENDS, openTestVault, type TestVault } from './vaults.js';

/** The VaultError a verification failed with. */
async function refusal(vault: TestVault['vault'], apiKey: string): Promise<VaultError> {
  const error = await verifyApiKey(vault, apiKey).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(VaultError);
  expect((error as VaultError).code).toBe('INVALID_API_KEY');
  expect((error as VaultError).message).toBe('Invalid Credentials');
  return error as VaultError;
}

const flipLast = (s: string) => s.slice(0, -1) + (s.endsWith('A') ? 'B' : 'A');

describe.each(BACKENDS)('API keys on %s', (backend) => {
  let t: TestVault;
  beforeEach(async () => {
    t = await openTestVault(backend);
  });
  afterEach(() => t.done());

  it('creates a test key that starts tk_, names its id, and verifies as its org and environment', async () => {
    const created = await createApiKey(t.vault, { org: 'acme' });
    expect(created).toMatchObject({ org: 'acme', environment: 'test' });
    expect(created.keyId).toMatch(/^[0-9a-f]{16}$/);
    expect(created.apiKey.startsWith(`tk_${created.keyId}_`)).toBe(true);
    expect(await verifyApiKey(t.vault, created.apiKey)).toEqual({ org: 'acme', environment: 'test', keyId: created.keyId });
  });

  it('creates a production key that starts pk_', async () => {
    const created = await createApiKey(t.vault, { org: 'acme', environment: 'production' });
    expect(created.apiKey.startsWith(`pk_${created.keyId}_`)).toBe(true);
    expect(await verifyApiKey(t.vault, created.apiKey)).toEqual({ org: 'acme', environment: 'production', keyId: created.keyId });
  });

  it('gives every key its own id and secret', async () => {
    const keys = await Promise.all(Array.from({ length: 10 }, () => createApiKey(t.vault, { org: 'acme' })));
    expect(new Set(keys.map((k) => k.keyId)).size).toBe(10);
    expect(new Set(keys.map((k) => k.apiKey)).size).toBe(10);
    for (const key of keys) expect((await verifyApiKey(t.vault, key.apiKey)).keyId).toBe(key.keyId);
  });

  it('never stores the key or its secret', async () => {
    const { apiKey } = await createApiKey(t.vault, { org: 'acme' });
    const secret = apiKey.split('_').slice(2).join('_');
    let cursor: string | undefined;
    const values: string[] = [];
    do {
      const page = await t.store.scan(cursor, 100);
      values.push(...page.items.map((item) => `${item.group} ${item.member} ${item.entry.value}`));
      cursor = page.cursor;
    } while (cursor !== undefined);
    expect(values.length).toBeGreaterThan(0);
    expect(values.join('\n')).not.toContain(secret);
  });

  it('revokes a key at once; a second revoke says it was not there', async () => {
    const a = await createApiKey(t.vault, { org: 'acme' });
    const b = await createApiKey(t.vault, { org: 'acme' });
    // Verified first, so whatever this process kept of the record is warm when it is revoked.
    expect((await verifyApiKey(t.vault, a.apiKey)).keyId).toBe(a.keyId);
    expect(await revokeApiKey(t.vault, a.keyId)).toBe(true);
    await refusal(t.vault, a.apiKey);
    expect(await revokeApiKey(t.vault, a.keyId)).toBe(false);
    expect((await verifyApiKey(t.vault, b.apiKey)).keyId).toBe(b.keyId);
  });
});

describe('API key records changed behind a process', () => {
  let t: TestVault;
  beforeEach(async () => {
    t = await openTestVault('memory');
  });
  afterEach(() => t.done());

  it('a record rewritten in the store after a verification is what the next verification sees', async () => {
    const a = await createApiKey(t.vault, { org: 'acme' });
    const b = await createApiKey(t.vault, { org: 'globex', environment: 'production' });
    expect(await verifyApiKey(t.vault, a.apiKey)).toMatchObject({ org: 'acme', environment: 'test' });
    // Another process moves key a's id to b's hash (as a restore or an operator could): a's secret stops working.
    const recordOf = async (keyId: string) => (await t.vault.store.get(apiKeyGroup(keyId), RECORD))?.value as string;
    const bRecord = JSON.parse(await recordOf(b.keyId)) as { hash: string };
    await t.vault.store.put(apiKeyGroup(a.keyId), RECORD, JSON.stringify({ hash: bRecord.hash, org: 'acme', environment: 'test' }));
    await refusal(t.vault, a.apiKey);
    expect((await verifyApiKey(t.vault, b.apiKey)).org).toBe('globex');
  });

  it('a stored hash with anything after its 64 hex digits matches no key', async () => {
    const a = await createApiKey(t.vault, { org: 'acme' });
    const stored = JSON.parse((await t.vault.store.get(apiKeyGroup(a.keyId), RECORD))?.value as string) as Record<string, string>;
    await t.vault.store.put(apiKeyGroup(a.keyId), RECORD, JSON.stringify({ ...stored, hash: `${stored['hash']}zz` }));
    await refusal(t.vault, a.apiKey);
    await t.vault.store.put(apiKeyGroup(a.keyId), RECORD, JSON.stringify(stored));
    expect((await verifyApiKey(t.vault, a.apiKey)).keyId).toBe(a.keyId);
  });

  it('the org and environment come from the record as stored now', async () => {
    const a = await createApiKey(t.vault, { org: 'acme' });
    expect((await verifyApiKey(t.vault, a.apiKey)).org).toBe('acme');
    const stored = JSON.parse((await t.vault.store.get(apiKeyGroup(a.keyId), RECORD))?.value as string) as Record<string, string>;
    await t.vault.store.put(apiKeyGroup(a.keyId), RECORD, JSON.stringify({ ...stored, org: 'acme-renamed' }));
    expect((await verifyApiKey(t.vault, a.apiKey)).org).toBe('acme-renamed');
  });
});

describe('API key refusals', () => {
  let t: TestVault;
  beforeEach(async () => {
    t = await openTestVault('memory');
  });
  afterEach(() => t.done());

  it('a tampered secret is INVALID_API_KEY that names the real key id (for the failed-auth limit), never the secret', async () => {
    const { apiKey, keyId } = await createApiKey(t.vault, { org: 'acme' });
    const error = await refusal(t.vault, flipLast(apiKey));
    expect(presentedApiKeyId(error)).toBe(keyId);
    expect(JSON.stringify({ message: error.message, details: error.details })).not.toContain(apiKey.slice(20));
  });

  it('a test key presented as production (prefix swapped) is refused', async () => {
    const { apiKey, keyId } = await createApiKey(t.vault, { org: 'acme' });
    const error = await refusal(t.vault, `pk_${apiKey.slice(3)}`);
    expect(presentedApiKeyId(error)).toBe(keyId);
  });

  it('an unknown key id is INVALID_API_KEY naming no id, and revoking it is false', async () => {
    const { apiKey } = await createApiKey(t.vault, { org: 'acme' });
    const unknownId = 'f'.repeat(16) === apiKey.slice(3, 19) ? 'e'.repeat(16) : 'f'.repeat(16);
    const forged = `tk_${unknownId}${apiKey.slice(19)}`;
    const error = await refusal(t.vault, forged);
    expect(presentedApiKeyId(error)).toBeUndefined();
    expect(error.details).toBeUndefined();
    expect(await revokeApiKey(t.vault, unknownId)).toBe(false);
  });

  it.each([
    ['empty', ''],
    ['no prefix', `${'a'.repeat(16)}_${'A'.repeat(43)}`],
    ['an unknown prefix', `xk_${'a'.repeat(16)}_${'A'.repeat(43)}`],
    ['a short secret', `tk_${'a'.repeat(16)}_${'A'.repeat(42)}`],
    ['an upper-case id', `tk_${'A'.repeat(16)}_${'A'.repeat(43)}`],
    ['trailing space', `tk_${'a'.repeat(16)}_${'A'.repeat(43)} `],
  ])('a malformed key (%s) is INVALID_API_KEY naming no id', async (_what, apiKey) => {
    expect(presentedApiKeyId(await refusal(t.vault, apiKey))).toBeUndefined();
  });

  it.each(['', 'not-hex', 'F'.repeat(16), 'a'.repeat(17)])('revoking the malformed id %j is false', async (keyId) => {
    expect(await revokeApiKey(t.vault, keyId)).toBe(false);
  });

  it.each([
    ['an empty org', { org: '' }],
    ['an unknown environment', { org: 'acme', environment: 'staging' }],
  ])('creating with %s is VALIDATION_ERROR', async (_what, input) => {
    await expect(createApiKey(t.vault, input)).rejects.toMatchObject({ code: 'VALIDATION_ERROR' });
  });

  it('events report create and revoke by org and environment, never the key', async () => {
    const actor = { type: 'custom', id: 'cli' } as const;
    const { apiKey, keyId } = await createApiKey(t.vault, { org: 'acme', environment: 'production' }, actor);
    await revokeApiKey(t.vault, keyId, actor);
    expect(t.events.map(({ time, ...rest }) => rest)).toEqual([
      { type: 'api_key.created', org: 'acme', environment: 'production', actor },
      { type: 'api_key.revoked', org: 'acme', environment: 'production', actor },
    ]);
    expect(JSON.stringify(t.events)).not.toContain(apiKey.slice(20));
  });
});

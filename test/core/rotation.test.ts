/** Core key rotation: re-seal under a new primary, then drop the old key; a record no key opens stops it. On memory and SQLite. */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  countRecords,
  createLinkedAccount,
  createVault,
  generateKey,
  getDefaultAppCredential,
  issueSessionToken,
  listDefaultAppCredentials,
  parseKeyring,
  rotateKeys,
  upsertDefaultAppCredential,
  verifySessionToken,
  VaultError,
  type Vault,
  type VaultStore,
} from '../../src/index.js';
import { createMemoryStore } from '../../adapters/memory.js';
import { createSqliteStore } from '../../adapters/sqlite.js';
import { accountGroup, credentialMember } from '../../src/core/layout.js';
import { sealCredential } from '../../src/crypto/index.js';
import { BACKENDS, type Backend } from './vaults.js';

/** One backend opened again and again, as servers restarted with other keys would. */
function reopenable(backend: Backend): { open(): VaultStore; cleanup(): Promise<void> } {
  if (backend === 'memory') {
    const shared = createMemoryStore();
    // Each vault closes its store; the shared one stays open until cleanup.
    const view = () => new Proxy(shared, { get: (target, prop) => (prop === 'close' ? async () => undefined : (Reflect.get(target, prop) as unknown)) });
    return { open: view, cleanup: () => shared.close() };
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'credvault-rotation-'));
  return {
    open: () => createSqliteStore({ path: path.join(dir, 'vault.db') }),
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
  };
}

const a = { org: 'acme', environment: 'test', accountId: 'cust-1' };
const b = { org: 'acme', environment: 'production', accountId: 'cust:2/x' };

describe.each(BACKENDS)('key rotation on %s', (backend) => {
  const oldKey = generateKey('old');
  const newKey = generateKey('new');
  let backendStore: ReturnType<typeof reopenable>;
  const open: Vault[] = [];
  const vaultWith = async (keys: string): Promise<Vault> => {
    const vault = await createVault({ store: backendStore.open(), keys });
    open.push(vault);
    return vault;
  };
  beforeEach(() => {
    backendStore = reopenable(backend);
  });
  afterEach(async () => {
    for (const vault of open.splice(0)) await vault.close();
    await backendStore.cleanup();
  });

  it('re-seals everything under the new primary, after which the old key can be dropped and everything opens', async () => {
    const before = await vaultWith(oldKey.entry);
    await createLinkedAccount(before, a, { credentials: { api_key: 'a-1', secret: 'a-2' } });
    // Parsed, not a literal: a literal's `__proto__:` sets the prototype instead of a key.
    await createLinkedAccount(before, b, { credentials: JSON.parse('{"__proto__":"b-1"}') as Record<string, unknown> });
    const tokenA = await issueSessionToken(before, a);
    const tokenB = await issueSessionToken(before, b);
    await before.close();
    open.splice(0);

    // A keyring without the key that sealed is refused until rotation is done.
    await expect(vaultWith(newKey.entry)).rejects.toMatchObject({ code: 'KEYRING_MISMATCH' });

    const both = await vaultWith(`${newKey.entry},${oldKey.entry}`);
    // Written under account a's data key, which the old key still wraps.
    await upsertDefaultAppCredential(both, a, 'fresh', 'a-3');
    // Two accounts' data keys were under the old key; their 4 credentials and 2 session tokens
    // are sealed under those data keys, so they stay as they are.
    expect(await rotateKeys(both, { batchSize: 2 })).toEqual({ rewrapped: 2, resealed: 0, alreadyCurrent: 6 });
    expect(await rotateKeys(both)).toEqual({ rewrapped: 0, resealed: 0, alreadyCurrent: 8 });
    await both.close();
    open.splice(0);

    const after = await vaultWith(newKey.entry);
    expect((await listDefaultAppCredentials(after, a, { reveal: true })).map((c) => [c.key, c.value])).toEqual([
      ['api_key', 'a-1'],
      ['fresh', 'a-3'],
      ['secret', 'a-2'],
    ]);
    expect(await getDefaultAppCredential(after, b, '__proto__')).toBe('b-1');
    expect((await verifySessionToken(after, tokenA.token)).accountId).toBe(a.accountId);
    expect((await verifySessionToken(after, tokenB.token)).accountId).toBe(b.accountId);
    // The re-sealed copy of a token is what gets handed out again.
    expect((await issueSessionToken(after, a)).token).toBe(tokenA.token);
  });

  it('reports progress over the records it walks', async () => {
    const vault = await vaultWith(oldKey.entry);
    await createLinkedAccount(vault, a, { credentials: { k1: 'v', k2: 'v', k3: 'v' } });
    const total = await countRecords(vault, { batchSize: 2 });
    // Profile, default app, three credentials, and at least one canary.
    expect(total).toBeGreaterThanOrEqual(6);
    const walked: number[] = [];
    await rotateKeys(vault, { batchSize: 2, onProgress: (n) => walked.push(n) });
    expect(walked.length).toBeGreaterThan(0);
    expect(walked).toEqual([...walked].sort((x, y) => x - y));
    expect(walked.at(-1)).toBeGreaterThanOrEqual(total);
  });

  it('a record no key opens is ROTATION_INCOMPLETE naming it, and no key is retired', async () => {
    const first = await vaultWith(oldKey.entry);
    await createLinkedAccount(first, a, { credentials: { good: 'g' } });
    // Sealed by a key this vault was never given, as if copied in from elsewhere.
    const stray = parseKeyring(generateKey('stray').entry);
    await first.store.put(accountGroup(a), credentialMember('lost'), sealCredential(stray, 'stray-value', { ...a, name: 'lost' }));
    await first.close();
    open.splice(0);

    const both = await vaultWith(`${newKey.entry},${oldKey.entry}`);
    const error = (await rotateKeys(both).catch((e: unknown) => e)) as VaultError;
    expect(error).toBeInstanceOf(VaultError);
    expect(error.code).toBe('ROTATION_INCOMPLETE');
    expect(error.details?.['unsettled']).toEqual([{ account: a, record: 'cred:lost', reason: 'unreadable' }]);
    expect(error.message).toContain('acme/test/cust-1 cred:lost (unreadable)');
    expect(error.message).not.toContain('stray-value');
    // The readable record was still moved to the new key.
    expect(await getDefaultAppCredential(both, a, 'good')).toBe('g');
    await both.close();
    open.splice(0);
    // The old key's canary stayed, so dropping the old key is still refused.
    await expect(vaultWith(newKey.entry)).rejects.toMatchObject({ code: 'KEYRING_MISMATCH' });
  });
});

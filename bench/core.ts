/**
 * The in-process measurement: upserts/s through the library alone (`upsertDefaultAppCredential`
 * on the memory store, no HTTP), against the floor of what it must do: a raw AES-256-GCM seal
 * of the same value plus a `Map.set`. The ratio is what validation, records and the store
 * contract cost on top of the cipher.
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { createVault, createLinkedAccount, upsertDefaultAppCredential } from '../src/index.js';
import { createMemoryStore } from '../adapters/memory.js';

export interface CoreResult {
  vaultUpsertsPerSecond: number;
  rawSealPerSecond: number;
}

export interface CoreSettings {
  /** The vault's keyring, `id:base64`. */
  keys: string;
}

/** Timed operations per side, after 2000 untimed ones to warm the JIT. */
const OPERATIONS = 30_000;
const WARM_UP = 2000;

const secondsSince = (started: bigint) => Number(process.hrtime.bigint() - started) / 1e9;

/** Runs both sides, one after the other, over 100 key names of one account. */
export async function measureCore(settings: CoreSettings): Promise<CoreResult> {
  const vault = await createVault({ store: createMemoryStore(), keys: settings.keys });
  const account = { org: 'bench', environment: 'test', accountId: 'core' };
  await createLinkedAccount(vault, account, { credentials: {} });
  const value = `sk_live_${'x'.repeat(40)}`;
  for (let i = 0; i < WARM_UP; i++) await upsertDefaultAppCredential(vault, account, `k${i % 100}`, value);
  let started = process.hrtime.bigint();
  for (let i = 0; i < OPERATIONS; i++) await upsertDefaultAppCredential(vault, account, `k${i % 100}`, value);
  const vaultSeconds = secondsSince(started);
  await vault.close();

  const key = randomBytes(32);
  const map = new Map<string, string>();
  const seal = (i: number) => {
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key, nonce);
    const ct = Buffer.concat([cipher.update(value, 'utf8'), cipher.final()]);
    map.set(`k${i % 100}`, `${nonce.toString('base64url')}.${ct.toString('base64url')}.${cipher.getAuthTag().toString('base64url')}`);
  };
  for (let i = 0; i < WARM_UP; i++) seal(i);
  started = process.hrtime.bigint();
  for (let i = 0; i < OPERATIONS; i++) seal(i);
  const rawSeconds = secondsSince(started);
  return { vaultUpsertsPerSecond: OPERATIONS / vaultSeconds, rawSealPerSecond: OPERATIONS / rawSeconds };
}

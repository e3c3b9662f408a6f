/**
 * Envelope encryption, the vault's side: which data key seals an account's values, opening
 * a value whatever format it was sealed in, and destroying an account's data key.
 */
import { VaultError, isVaultError } from '../errors.js';
import { DATA_KEY_FORMAT_VERSION, openSealedParts, parseSealedValue, sealWithDataKey, type DataKey, type SealContext } from '../crypto/cipher.js';
import { formatDataKeyRecord, newDataKey, parseDataKeyRecord, unwrapDataKey, type StoredDataKey } from './data-keys.js';
import { DATA_KEY, PROFILE, accountGroup, type AccountRef } from './layout.js';
import type { BatchWrite } from './store.js';
import type { Vault } from './vault.js';

const unreadable = () => new VaultError('DECRYPTION_FAILED', 'Stored credential could not be decrypted');

/** Unwraps in flight, by group and key id: callers that miss the cache at once share one provider call. */
const unwrapping = new WeakMap<Vault, Map<string, Promise<DataKey>>>();

function shared(vault: Vault, name: string, unwrap: () => Promise<DataKey>): Promise<DataKey> {
  let inFlight = unwrapping.get(vault);
  if (inFlight === undefined) unwrapping.set(vault, (inFlight = new Map()));
  const pending = inFlight.get(name);
  if (pending !== undefined) return pending;
  const started = unwrap().finally(() => inFlight.delete(name));
  inFlight.set(name, started);
  return started;
}

/** The stored data keys of an account group, current first; `undefined` when it has none. */
async function storedKeys(vault: Vault, group: string): Promise<readonly StoredDataKey[] | undefined> {
  const entry = await vault.store.get(group, DATA_KEY);
  if (entry === undefined) return undefined;
  const record = parseDataKeyRecord(entry.value);
  // A record that is not one cannot be repaired here: refusing beats sealing under a new key.
  if (record === undefined) throw unreadable();
  return record.keys;
}

async function unwrapCached(vault: Vault, ref: AccountRef, group: string, stored: StoredDataKey, current: boolean): Promise<DataKey> {
  const cached = vault.dataKeys.get(group, stored.id);
  if (cached !== undefined) return cached;
  // An eviction while the provider answers (the account was deleted meanwhile) must not put
  // the key back: then it is used for this call only.
  const epoch = vault.dataKeys.epoch;
  const dataKey = await shared(vault, `${group}\u0000${stored.id}`, () => providerCall(() => unwrapDataKey(vault.keyProvider, ref, stored)));
  if (vault.dataKeys.epoch === epoch) vault.dataKeys.set(group, dataKey, current);
  return dataKey;
}

/**
 * A key provider's answer, with any failure that is not the vault's own error (a KMS SDK's
 * network error, say) reported as the provider being unavailable (503), naming nothing.
 */
async function providerCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (isVaultError(error)) throw error;
    throw new VaultError('STORE_UNAVAILABLE', 'The key provider is unavailable', { cause: error });
  }
}

/**
 * The data key that seals `ref`'s values now: cached, or read and unwrapped. An account
 * made before data keys existed gets one here, inserted only while `requires` (its profile,
 * by default) exists. `undefined` when the account (or `requires`) does not exist.
 */
export async function sealingKey(vault: Vault, ref: AccountRef, requires: string = PROFILE): Promise<DataKey | undefined> {
  const group = accountGroup(ref);
  // The record is read on every seal, so a key another process destroyed (the account deleted
  // and created again) is never sealed under; the cache only saves the unwrap.
  const keys = await storedKeys(vault, group);
  if (keys !== undefined) return unwrapCached(vault, ref, group, keys[0] as StoredDataKey, true);
  const { dataKey, stored } = await providerCall(() => newDataKey(vault.keyProvider, ref));
  if (await vault.store.insert(group, DATA_KEY, formatDataKeyRecord({ v: 1, keys: [stored] }), { requires })) {
    vault.dataKeys.set(group, dataKey, true);
    return dataKey;
  }
  // Another writer gave it one first, or the account is not there.
  const again = await storedKeys(vault, group);
  return again === undefined ? undefined : unwrapCached(vault, ref, group, again[0] as StoredDataKey, true);
}

/**
 * A new account's data key and the batch write that stores it beside its profile (so the
 * account never exists without one).
 */
export async function newAccountKey(vault: Vault, ref: AccountRef): Promise<{ dataKey: DataKey; write: BatchWrite }> {
  const { dataKey, stored } = await providerCall(() => newDataKey(vault.keyProvider, ref));
  return { dataKey, write: { op: 'insert', member: DATA_KEY, value: formatDataKeyRecord({ v: 1, keys: [stored] }) } };
}

/** Remembers a data key this process just stored for `ref` as its current one. */
export function rememberKey(vault: Vault, ref: AccountRef, dataKey: DataKey): void {
  vault.dataKeys.set(accountGroup(ref), dataKey, true);
}

/** Seals `plaintext` for `ref` under `dataKey` (from {@link sealingKey} or {@link newAccountKey}). */
export function sealFor(dataKey: DataKey, plaintext: string, context: SealContext): string {
  return sealWithDataKey(dataKey, plaintext, context);
}

/**
 * Opens a stored value of `ref`: `cv2` with the account's data key it names (cached, or
 * read and unwrapped), `cv1` (written before data keys) with the keyring. Any failure is
 * the one opaque `DECRYPTION_FAILED`; a key provider that cannot be reached is
 * `STORE_UNAVAILABLE`.
 */
export async function openFor(vault: Vault, ref: AccountRef, sealed: string, context: SealContext, group: string = accountGroup(ref)): Promise<string> {
  // Parsed once: the header names the key, and the same parts are opened.
  const parts = parseSealedValue(sealed);
  if (parts === undefined) throw unreadable();
  if (parts.version !== DATA_KEY_FORMAT_VERSION) return openSealedParts(parts, { keyring: vault.keyring }, context);
  const keyId = parts.keyId;
  let dataKey = vault.dataKeys.get(group, keyId);
  if (dataKey === undefined) {
    const keys = await storedKeys(vault, group);
    const index = keys?.findIndex((key) => key.id === keyId) ?? -1;
    // No such key in the account: it was destroyed with the account (crypto-shredding), or
    // the value was copied here from elsewhere.
    if (keys === undefined || index < 0) throw unreadable();
    dataKey = await unwrapCached(vault, ref, group, keys[index] as StoredDataKey, index === 0);
  }
  return openSealedParts(parts, { keyring: vault.keyring, dataKey }, context);
}

/**
 * Forgets `ref`'s data keys in this process. Deleting an account removes its data key record
 * in the same atomic step as everything else it owns (so a failure cannot leave an account
 * without its key), after which a copy of one of its values never opens, even if the account
 * is created again (it gets a new key).
 */
export function forgetAccountKeys(vault: Vault, ref: AccountRef): void {
  vault.dataKeys.evictGroup(accountGroup(ref));
}

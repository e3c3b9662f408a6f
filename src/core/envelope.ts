/**
 * Envelope encryption, the vault's side: which data key seals an account's values, opening
 * a value whatever format it was sealed in, and destroying an account's data key.
 */
import { VaultError, isVaultError } from '../errors.js';
import { DATA_KEY_FORMAT_VERSION, openSealedParts, parseSealedValue, sealWithDataKey, type DataKey, type SealContext } from '../crypto/cipher.js';
import { formatDataKeyRecord, newDataKey, parseDataKeyRecord, runIdOf, unwrapDataKey, type StoredDataKey } from './data-keys.js';
import { DATA_KEY, META_GROUP, PROFILE, RESEAL_RUN, accountGroup, type AccountRef } from './layout.js';
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
  // Every caller that shares this unwrap uses the provider's buffer (or the cache's copy)
  // in the turn it resolves; then it is wiped.
  void started.then((dataKey) => vault.dataKeys.zeroLater(dataKey.key), () => undefined);
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

async function unwrapCached(vault: Vault, ref: AccountRef, group: string, stored: StoredDataKey): Promise<DataKey> {
  const cached = vault.dataKeys.get(group, stored.id);
  if (cached !== undefined) return cached;
  // An eviction while the provider answers (the account was deleted meanwhile) must not put
  // the key back: then it is used for this call only.
  const epoch = vault.dataKeys.epoch;
  const dataKey = await shared(vault, `${group}\u0000${stored.id}`, () => providerCall(vault, () => unwrapDataKey(vault.keyProvider, ref, stored)));
  if (vault.dataKeys.epoch === epoch) vault.dataKeys.set(group, dataKey);
  return dataKey;
}

/**
 * A key provider's answer, with any failure that is not the vault's own error (a KMS SDK's
 * network error, say) reported as the provider being unavailable (503), naming nothing.
 */
export async function providerCall<T>(vault: Vault, call: () => Promise<T>): Promise<T> {
  let answer: T;
  try {
    answer = await call();
  } catch (error) {
    const failure = isVaultError(error) ? error : new VaultError('STORE_UNAVAILABLE', 'The key provider is unavailable', { cause: error });
    if (failure.code === 'STORE_UNAVAILABLE') noteOutage(vault, failure);
    throw failure;
  }
  if (outages.has(vault)) noteRecovery(vault);
  return answer;
}

/** Vaults whose key provider is unreachable now, as last seen. */
const outages = new WeakSet<Vault>();

/**
 * Says once on the vault's log that its key provider cannot be reached (and once when it
 * can again), unless the provider says so itself. The provider's own message says why; it
 * never holds key material (the {@link KeyProvider} rules).
 */
function noteOutage(vault: Vault, failure: VaultError): void {
  if (outages.has(vault)) return;
  outages.add(vault);
  if (vault.keyProvider.logsOutages === true) return;
  vault.log(
    `credvault: the ${vault.keyProvider.kind} key provider is unavailable (${failure.message}); requests that need a data key answer 503 until it is back`,
  );
}

function noteRecovery(vault: Vault): void {
  outages.delete(vault);
  if (vault.keyProvider.logsOutages !== true) vault.log(`credvault: the ${vault.keyProvider.kind} key provider is available again`);
}

/**
 * The data key that seals an account's values now, and the fence its write must carry: a
 * batch write that replaces the account's data key record with itself, so the batch commits
 * only while the record is still the one the key was read from. A write sealed under a key
 * that was destroyed meanwhile (the account deleted and created again, or `keys rotate
 * --reseal` dropping the old key) then never lands: its batch fails at the fence and the
 * caller seals again under the key now current.
 */
export interface SealingKey {
  readonly dataKey: DataKey;
  /** Put this first in the batch that writes the sealed value. */
  readonly fence: BatchWrite;
}

/** How often a write is sealed again after its fence moved (a rotation or a recreation each move it once or twice). */
export const MAX_FENCE_ATTEMPTS = 8;

/** The write's fence kept moving: the account's data key changed on every attempt. */
export const keyKeptChanging = (): VaultError =>
  new VaultError('STORE_UNAVAILABLE', "The account's data key kept changing during the write; try again");

/**
 * The `keys rotate --reseal` run under way, if any: a key made now belongs to it, so the run
 * does not replace it again (and completes however many accounts are created meanwhile).
 */
async function resealRunUnderWay(vault: Vault): Promise<string | undefined> {
  const record = await vault.store.get(META_GROUP, RESEAL_RUN);
  return record === undefined ? undefined : runIdOf(record.value);
}

/** The fence of a write sealed under a key read from the data key record `raw`. */
export const fenceOf = (raw: string): BatchWrite => ({ op: 'replace', member: DATA_KEY, expected: raw, value: raw });

/**
 * The data key that seals `ref`'s values now, with its fence (see {@link SealingKey}): cached,
 * or read and unwrapped. An account made before data keys existed gets one here, inserted only
 * while `requires` (its profile, by default) exists. `undefined` when the account (or
 * `requires`) does not exist.
 */
export async function sealingKey(vault: Vault, ref: AccountRef, requires: string = PROFILE): Promise<SealingKey | undefined> {
  const group = accountGroup(ref);
  // The record is read on every call here (the cache only saves the unwrap), and the write is
  // fenced on it, so a key another process destroyed is never sealed under. (A credential write
  // first tries the key the cache remembers as current, fenced by that key's marker instead.)
  const entry = await vault.store.get(group, DATA_KEY);
  if (entry !== undefined) return { dataKey: await currentKey(vault, ref, group, entry.value), fence: fenceOf(entry.value) };
  const run = await resealRunUnderWay(vault);
  const { dataKey, stored } = await providerCall(vault, () => newDataKey(vault.keyProvider, ref, run));
  const raw = formatDataKeyRecord({ v: 1, keys: [stored] });
  const inserted = await vault.store.insert(group, DATA_KEY, raw, { requires });
  // The cache keeps its own copy; this one is wiped once the caller has sealed with it (not
  // before the insert's answer: a slow one must not leave the caller a wiped key).
  vault.dataKeys.zeroLater(dataKey.key);
  if (inserted) {
    vault.dataKeys.set(group, dataKey);
    vault.dataKeys.markCurrent(group, dataKey.id);
    return { dataKey, fence: fenceOf(raw) };
  }
  // Another writer gave it one first, or the account is not there.
  const again = await vault.store.get(group, DATA_KEY);
  return again === undefined ? undefined : { dataKey: await currentKey(vault, ref, group, again.value), fence: fenceOf(again.value) };
}

async function currentKey(vault: Vault, ref: AccountRef, group: string, raw: string): Promise<DataKey> {
  const record = parseDataKeyRecord(raw);
  // A record that is not one cannot be repaired here: refusing beats sealing under a new key.
  if (record === undefined) throw unreadable();
  const dataKey = await unwrapCached(vault, ref, group, record.keys[0] as StoredDataKey);
  vault.dataKeys.markCurrent(group, dataKey.id);
  return dataKey;
}

/**
 * A new account's data key and the batch write that stores it beside its profile (so the
 * account never exists without one).
 */
export async function newAccountKey(vault: Vault, ref: AccountRef): Promise<{ dataKey: DataKey; write: BatchWrite }> {
  const run = await resealRunUnderWay(vault);
  const { dataKey, stored } = await providerCall(vault, () => newDataKey(vault.keyProvider, ref, run));
  return { dataKey, write: { op: 'insert', member: DATA_KEY, value: formatDataKeyRecord({ v: 1, keys: [stored] }) } };
}

/** Remembers a data key this process just stored for `ref` (a copy: the given one is wiped shortly). */
export function rememberKey(vault: Vault, ref: AccountRef, dataKey: DataKey): void {
  vault.dataKeys.set(accountGroup(ref), dataKey);
  vault.dataKeys.zeroLater(dataKey.key);
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
    dataKey = await unwrapCached(vault, ref, group, keys[index] as StoredDataKey);
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

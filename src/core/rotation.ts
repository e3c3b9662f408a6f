/**
 * Key rotation: re-wraps every account's data key under the key provider's primary KEK,
 * upgrades values sealed before data keys existed (`cv1`) to their account's data key,
 * re-seals the canaries under the keyring's primary, verifies, then retires the other keys'
 * canaries. With `reseal`, each account also gets a new data key, its values are re-sealed
 * under it, and the old key is destroyed.
 */
import { VaultError, isVaultError } from '../errors.js';
import {
  CANARY_PREFIX,
  CREDENTIAL_PREFIX,
  DATA_KEY,
  KEK_CANARY_PREFIX,
  META_GROUP,
  kekIdOfCanary,
  SESSION_PREFIX,
  canaryKeyIdOf,
  credentialKeyOf,
  parseAccountGroup,
  sessionTokenIdOf,
  unescapeComponent,
} from './layout.js';
import { sessionTokenSealContext, type SessionTokenRecord } from './session-tokens.js';
import type { AccountRef } from './layout.js';
import { CANARY_CONTEXT } from './vault.js';
import type { Vault } from './vault.js';
import type { BatchWrite, StoreEntry } from './store.js';
import { DATA_KEY_FORMAT_VERSION, openCredential, sealCredential, sealedHeader, sealedKeyId, type DataKey, type SealContext } from '../crypto/cipher.js';
import { formatDataKeyRecord, newDataKey, newRunId, runIdOf, parseDataKeyRecord, unwrapDataKey, wrapContextOf, type StoredDataKey } from './data-keys.js';
import { fenceOf, forgetAccountKeys, openFor, providerCall, sealFor, sealingKey } from './envelope.js';
import { APP_KEY_PRESENT, appKeyMember, DEFAULT_APP, RESEAL_RUN } from './layout.js';

/** What a rotation did. */
export interface RotationResult {
  /** Data keys re-wrapped under the key provider's primary KEK by this run. */
  rewrapped: number;
  /** Values re-sealed by this run: `cv1` values moved to their account's data key, canaries under the keyring's primary. */
  resealed: number;
  /** Data keys and values that were already current. */
  alreadyCurrent: number;
}

/** Records read per store call unless told otherwise. */
const DEFAULT_BATCH_SIZE = 500;

export interface RotationOptions {
  /** Records read per store call. Default 500. */
  batchSize?: number;
  /**
   * Also give every account a new data key, re-seal its values under it and destroy the old
   * one (for a data key that may have leaked). The run is recorded in the store until it
   * completes: a run cut off is finished by the next rotation, with or without `reseal`,
   * and never re-keys an account it already moved.
   */
  reseal?: boolean;
  /**
   * Called after each batch with the number of records walked so far, over every pass (see
   * {@link countRecords} for a total to show it against).
   */
  onProgress?: (walked: number) => void;
}

/** A sealed value inside a record, and how to put a new one in its place. */
interface SealedField {
  sealed: string;
  context: SealContext;
  rebuild: (sealed: string) => string;
  /** The account whose data key seals it; `undefined` for the canaries (keyring-sealed). */
  account?: AccountRef;
}

/** Where the sealed value of a record sits, or `undefined` for records that hold none. */
function sealedField(group: string, member: string, entry: StoreEntry): SealedField | undefined {
  if (group === META_GROUP && member.startsWith(CANARY_PREFIX)) {
    return { sealed: entry.value, context: CANARY_CONTEXT, rebuild: (sealed) => sealed };
  }
  const account = parseAccountGroup(group);
  if (account === undefined) return undefined;
  if (member.startsWith(CREDENTIAL_PREFIX)) {
    const name = credentialKeyOf(member);
    return { sealed: entry.value, context: { ...account, name }, rebuild: (sealed) => sealed, account };
  }
  if (member.startsWith(SESSION_PREFIX)) {
    const record = JSON.parse(entry.value) as SessionTokenRecord;
    // Page tokens keep only a hash: nothing sealed to move.
    if (record.sealed === undefined) return undefined;
    const tokenId = sessionTokenIdOf(member);
    return {
      sealed: record.sealed,
      context: sessionTokenSealContext(account, tokenId),
      rebuild: (sealed) => JSON.stringify({ ...record, sealed }),
      account,
    };
  }
  return undefined;
}

/**
 * Counts the records a rotation walks (every record in the store), one scan page at a time:
 * the total for a progress display before {@link rotateKeys} starts.
 *
 * @example
 * ```ts
 * const total = await countRecords(vault);
 * await rotateKeys(vault, { onProgress: (walked) => bar.update(Math.min(walked, total)) });
 * ```
 */
export async function countRecords(vault: Vault, options: { batchSize?: number } = {}): Promise<number> {
  let total = 0;
  let cursor: string | undefined;
  do {
    const page = await vault.store.scan(cursor, options.batchSize ?? DEFAULT_BATCH_SIZE);
    total += page.items.length;
    cursor = page.cursor;
  } while (cursor !== undefined);
  return total;
}

/** A record a rotation could not bring under the primary key. */
export interface UnsettledRecord {
  /** The account it belongs to, when it belongs to one. */
  account?: AccountRef;
  /** The record's member name inside its group, e.g. `cred:api_key`. */
  record: string;
  /** `unreadable`: no key of the keyring opens it (tampered, or sealed by a key not given); `changing`: it kept changing under the rotation. */
  reason: 'unreadable' | 'changing';
}

/** How many passes a rotation makes at most: the first re-seals, later ones verify and catch stragglers. */
const MAX_PASSES = 3;

/**
 * Re-wraps every account's data key under the key provider's primary KEK (one write per
 * account, however many values it holds), moves values sealed before data keys (`cv1`) onto
 * their account's data key, and re-seals the canaries under the keyring's primary, streaming
 * through the store in batches (memory stays flat however large the store). With `reseal`,
 * every account also gets a new data key, its values are re-sealed under it and the old key
 * is destroyed. Safe to interrupt and run again: what is current is skipped, and each
 * replacement is a compare-and-swap, so a value written meanwhile is never overwritten with
 * its older one.
 *
 * After the first pass, the store is walked again until a whole pass finds nothing to do (a
 * server still on an old primary, or a record the first pass's scan did not return, is caught
 * there). Only then are the other keys' and KEKs' canaries removed, so those keys can go. If
 * records remain that cannot be brought under the primary, nothing is retired and the call
 * throws `ROTATION_INCOMPLETE`, naming them.
 *
 * @example
 * ```ts
 * // CREDVAULT_KEYS="new:<base64>,old:<base64>"
 * const { resealed, alreadyCurrent } = await rotateKeys(vault);
 * // then drop old from CREDVAULT_KEYS
 * ```
 */
export async function rotateKeys(vault: Vault, options: RotationOptions = {}): Promise<RotationResult> {
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
  const primary = vault.keyring.primary.id;
  const result: RotationResult = { rewrapped: 0, resealed: 0, alreadyCurrent: 0 };
  const run = await resealRun(vault, options.reseal === true);
  if (run !== undefined && options.reseal !== true) {
    vault.log(`credvault: finishing the reseal run ${run} recorded in the store (a keys rotate --reseal that did not complete): every account gets a new data key`);
  }
  let walked = 0;
  let unsettled = new Map<string, UnsettledRecord>();
  let verified = false;
  for (let pass = 1; pass <= MAX_PASSES && !verified; pass++) {
    // A pass that re-seals nothing and leaves nothing unsettled proves the store is current.
    let changed = 0;
    unsettled = new Map();
    let cursor: string | undefined;
    do {
      const page = await vault.store.scan(cursor, batchSize);
      for (const { group, member, entry } of page.items) {
        if (group === META_GROUP) continue; // canaries are settled at the end
        let outcome: Outcome;
        if (member !== DATA_KEY) outcome = await resealRecord(vault, group, member, entry, run !== undefined);
        else if (run === undefined) outcome = await rewrapRecord(vault, group, entry);
        else {
          const rekeyed = await rekeyAccount(vault, group, entry, run);
          if (typeof rekeyed === 'object' && 'unreadable' in rekeyed) {
            // Named one by one: the operator must know which records no key opens.
            const account = parseAccountGroup(group);
            for (const record of rekeyed.unreadable) {
              unsettled.set(`${group}}${record}`, { ...(account === undefined ? {} : { account }), record: unescapeComponent(record), reason: 'unreadable' });
            }
            outcome = 'none';
          } else if (typeof rekeyed === 'object') {
            result.rewrapped += rekeyed.rekeyed;
            result.resealed += rekeyed.resealed;
            if (pass === 1) result.alreadyCurrent += rekeyed.current;
            // Counted just above: 'none' keeps it from being counted again below.
            outcome = rekeyed.rekeyed + rekeyed.resealed > 0 ? 'changed' : 'none';
          } else outcome = rekeyed;
        }
        if (outcome === 'resealed' || outcome === 'changed' || (typeof outcome === 'number' && outcome > 0)) {
          if (outcome === 'resealed') result.resealed += 1;
          else if (typeof outcome === 'number') result.rewrapped += outcome;
          changed += 1;
        } else if (outcome === 'current' && pass === 1) {
          result.alreadyCurrent += 1;
        } else if (outcome === 'busy' || outcome === 'unreadable') {
          const account = parseAccountGroup(group);
          unsettled.set(`${group}}${member}`, {
            ...(account === undefined ? {} : { account }),
            record: unescapeComponent(member),
            reason: outcome === 'busy' ? 'changing' : 'unreadable',
          });
        }
      }
      walked += page.items.length;
      options.onProgress?.(walked);
      cursor = page.cursor;
    } while (cursor !== undefined);
    verified = changed === 0;
  }

  if (unsettled.size > 0) {
    const list = [...unsettled.values()];
    const named = list
      .slice(0, 10)
      .map((r) => `${r.account === undefined ? '' : `${r.account.org}/${r.account.environment}/${r.account.accountId} `}${r.record} (${r.reason})`)
      .join('; ');
    throw new VaultError(
      'ROTATION_INCOMPLETE',
      `${list.length} records could not be re-sealed under key '${primary}', so no key was retired: ${named}${list.length > 10 ? '; ...' : ''}`,
      { details: { unsettled: list } },
    );
  }
  if (!verified) {
    throw new VaultError(
      'ROTATION_INCOMPLETE',
      run === undefined
        ? `Records sealed under other keys kept appearing after ${MAX_PASSES} passes (is a server still running with an old primary key?), so no key was retired; run it again`
        : `Accounts kept needing a new data key after ${MAX_PASSES} passes (is a server of an earlier release creating accounts?), so the reseal run is not complete; run it again`,
    );
  }
  // Every record now opens under the primary: the other keys' canaries can go, and so can
  // the canaries of KEKs that no longer wrap any data key.
  for (const { member } of await vault.store.list(META_GROUP, CANARY_PREFIX)) {
    const keyId = canaryKeyIdOf(member);
    if (keyId !== primary) await vault.store.remove(META_GROUP, member);
  }
  for (const { member } of await vault.store.list(META_GROUP, KEK_CANARY_PREFIX)) {
    if (kekIdOfCanary(member) !== vault.keyProvider.primaryKekId) await vault.store.remove(META_GROUP, member);
  }
  // Every account holds one key, made by this run: the run is over.
  if (run !== undefined) {
    const marker = await vault.store.get(META_GROUP, RESEAL_RUN);
    if (marker !== undefined && runIdOf(marker.value) === run) await vault.store.remove(META_GROUP, RESEAL_RUN);
  }
  return result;
}

/** What handling one record came to. */
type Outcome = number | 'resealed' | 'changed' | 'current' | 'none' | 'busy' | 'unreadable';


/**
 * The reseal run this rotation takes part in: the one recorded in the store (a run cut off,
 * or one another process is making now), else a new one when `reseal` is asked for, else none.
 */
async function resealRun(vault: Vault, reseal: boolean): Promise<string | undefined> {
  const recorded = async (): Promise<string | undefined> => {
    const marker = await vault.store.get(META_GROUP, RESEAL_RUN);
    if (marker === undefined) return undefined;
    const id = runIdOf(marker.value);
    if (id === undefined) throw new VaultError('ROTATION_INCOMPLETE', `The store's record of a reseal run (meta ${RESEAL_RUN}) is not one; nothing was changed`);
    return id;
  };
  const existing = await recorded();
  if (existing !== undefined || !reseal) return existing;
  await vault.store.insert(META_GROUP, RESEAL_RUN, JSON.stringify({ id: newRunId() }));
  // Ours, or the one another process inserted first: both take part in that run.
  return recorded();
}

/** A value of an account is under the account's current key when its header names it. */
const underKey = (sealed: string, dekId: string): boolean => {
  const header = sealedHeader(sealed);
  return header?.version === DATA_KEY_FORMAT_VERSION && header.keyId === dekId;
};

/**
 * Moves one account to a data key of reseal run `run`: a new key goes first in its record
 * (the old ones stay, so its values still open), every value sealed under another key is
 * re-sealed under the new one (compare-and-swap, fenced on the record), and once none is
 * left the old keys are dropped from the record, destroying them. Writers fence their writes
 * on the record, so none lands a value under an old key after the new one went in. Cut off at
 * any point, a later call picks up where this one stopped. An account already moved by this
 * run is only re-wrapped if its KEK is not the primary.
 */
async function rekeyAccount(
  vault: Vault,
  group: string,
  first: StoreEntry,
  run: string,
): Promise<{ rekeyed: number; resealed: number; current: number } | { unreadable: string[] } | 'none' | 'busy' | 'unreadable'> {
  const account = parseAccountGroup(group);
  if (account === undefined) return 'none';
  let entry: StoreEntry | undefined = first;
  let rekeyed = 0;
  let resealed = 0;
  for (let attempt = 0; attempt < 5 && entry !== undefined; attempt++) {
    const record = parseDataKeyRecord(entry.value);
    if (record === undefined) return 'unreadable';
    let raw = entry.value;
    let keys = record.keys;
    if (keys[0]?.run !== run) {
      const { dataKey, stored } = await providerCall(vault, () => newDataKey(vault.keyProvider, account, run));
      // Cached (a copy) for the re-sealing below, which would otherwise unwrap it again.
      vault.dataKeys.set(group, dataKey);
      dataKey.key.fill(0);
      const next = formatDataKeyRecord({ v: 1, keys: [stored, ...keys] });
      // In the same step, the old keys' app-key markers go (whatever this call read of the
      // default app: one may have been written meanwhile), so no credential write sealed under
      // an old key lands after this; the new key gets one when the default app is there.
      const app = await vault.store.get(group, DEFAULT_APP);
      const writes: BatchWrite[] = [{ op: 'replace', member: DATA_KEY, expected: raw, value: next }];
      for (const old of keys) writes.push({ op: 'remove', member: appKeyMember(old.id) });
      if (app !== undefined) {
        writes.push({ op: 'replace', member: DEFAULT_APP, expected: app.value, value: app.value });
        writes.push({ op: 'put', member: appKeyMember(stored.id), value: APP_KEY_PRESENT });
      }
      if (!(await vault.store.batch(group, writes)).committed) {
        entry = await vault.store.get(group, DATA_KEY);
        continue;
      }
      rekeyed += 1;
      raw = next;
      keys = [stored, ...keys];
    }
    if (keys.length === 1) {
      // Moved already (by this call or an earlier one of the run): only its KEK may be stale.
      const rewrapped = await rewrapRecord(vault, group, { ...entry, value: raw });
      if (typeof rewrapped !== 'number' && rewrapped !== 'current') return rewrapped;
      return { rekeyed: rekeyed + (typeof rewrapped === 'number' ? rewrapped : 0), resealed, current: rekeyed === 0 && rewrapped === 'current' ? 1 : 0 };
    }
    const moved = await moveValues(vault, account, group, raw, (keys[0] as StoredDataKey).id);
    if (moved === 'fence') {
      entry = await vault.store.get(group, DATA_KEY);
      continue;
    }
    resealed += moved.resealed;
    // The old keys stay (and the run stays open) until these can be opened or are removed.
    if (moved.unreadable.length > 0) return { unreadable: moved.unreadable };
    // No value is under an old key any more, and none can be written under one: drop them
    // (with any marker of theirs, though the re-keying step removed those already).
    const dropped = await vault.store.batch(group, [
      { op: 'replace', member: DATA_KEY, expected: raw, value: formatDataKeyRecord({ v: 1, keys: [keys[0] as StoredDataKey] }) },
      ...keys.slice(1).map((old): BatchWrite => ({ op: 'remove', member: appKeyMember(old.id) })),
    ]);
    if (dropped.committed) {
      forgetAccountKeys(vault, account);
      return { rekeyed, resealed, current: 0 };
    }
    entry = await vault.store.get(group, DATA_KEY);
  }
  return entry === undefined ? 'none' : 'busy';
}

/**
 * Re-seals every value of the account not under data key `dekId` (which the record `raw`
 * holds first) under it, until a listing finds none left but unreadable ones; `'fence'` when
 * the record changed meanwhile (the caller reads it again).
 */
async function moveValues(
  vault: Vault,
  account: AccountRef,
  group: string,
  raw: string,
  dekId: string,
): Promise<{ resealed: number; unreadable: string[] } | 'fence'> {
  const sealing = await sealingKey(vault, account);
  if (sealing === undefined) return 'fence';
  if (sealing.dataKey.id !== dekId || (sealing.fence as { expected: string }).expected !== raw) return 'fence';
  // Held across many awaits: a copy of our own (the one given may be a provider's buffer,
  // which is wiped a second after its unwrap), wiped when done.
  const dataKey = { id: sealing.dataKey.id, key: Buffer.from(sealing.dataKey.key) };
  try {
    return await moveValuesUnder(vault, account, group, raw, dataKey);
  } finally {
    dataKey.key.fill(0);
  }
}

async function moveValuesUnder(
  vault: Vault,
  account: AccountRef,
  group: string,
  raw: string,
  dataKey: DataKey,
): Promise<{ resealed: number; unreadable: string[] } | 'fence'> {
  const dekId = dataKey.id;
  let resealed = 0;
  for (let round = 0; round < MAX_PASSES * 2; round++) {
    let stale = 0;
    const unreadable: string[] = [];
    for (const { member, entry } of await vault.store.list(group)) {
      const field = sealedField(group, member, entry);
      if (field === undefined || field.account === undefined || underKey(field.sealed, dekId)) continue;
      stale += 1;
      let next: string;
      try {
        next = field.rebuild(sealFor(dataKey, await openFor(vault, account, field.sealed, field.context, group), field.context));
      } catch (error) {
        if (isVaultError(error) && error.code === 'DECRYPTION_FAILED') {
          unreadable.push(member);
          continue;
        }
        throw error;
      }
      const outcome = await vault.store.batch(group, [fenceOf(raw), { op: 'replace', member, expected: entry.value, value: next }]);
      if (outcome.committed) resealed += 1;
      else if (outcome.failed === 0) return 'fence';
      // else the value changed meanwhile: the next listing looks at it again.
    }
    if (stale === unreadable.length) return { resealed, unreadable };
  }
  throw new VaultError('ROTATION_INCOMPLETE', `Values of linked account ${account.accountId} kept changing while they were re-sealed; run it again`);
}

async function resealRecord(
  vault: Vault,
  group: string,
  member: string,
  first: StoreEntry,
  resealing: boolean,
): Promise<'resealed' | 'current' | 'none' | 'busy' | 'unreadable'> {
  let entry: StoreEntry | undefined = first;
  // A writer may replace the record between our read and our swap; then read it again.
  for (let attempt = 0; attempt < 5 && entry !== undefined; attempt++) {
    const field = sealedField(group, member, entry);
    if (field === undefined) return 'none';
    const header = sealedHeader(field.sealed);
    const { account } = field;
    // Account values are current under their data key (re-wrapping the key moves them along);
    // canaries under the keyring's primary.
    if (account !== undefined ? header?.version === DATA_KEY_FORMAT_VERSION : sealedKeyId(field.sealed) === vault.keyring.primary.id) {
      // Resealing, the account's values are moved with its key (rekeyAccount).
      return resealing ? 'none' : 'current';
    }
    // Resealing, an account with a data key record has all its values moved by rekeyAccount
    // (sealing this one under the key about to be replaced would only count it twice).
    if (resealing && account !== undefined && (await vault.store.get(group, DATA_KEY)) !== undefined) return 'none';
    let next: string;
    let fence: BatchWrite[] = [];
    try {
      if (account === undefined) {
        next = field.rebuild(sealCredential(vault.keyring, openCredential(vault.keyring, field.sealed, field.context), field.context));
      } else {
        const plaintext = await openFor(vault, account, field.sealed, field.context);
        const sealing = await sealingKey(vault, account);
        // The account went away meanwhile: its records go with it.
        if (sealing === undefined) return 'none';
        next = field.rebuild(sealFor(sealing.dataKey, plaintext, field.context));
        fence = [sealing.fence];
      }
    } catch (error) {
      if (isVaultError(error) && error.code === 'DECRYPTION_FAILED') return 'unreadable';
      throw error;
    }
    // Fenced like every write under a data key: a key destroyed meanwhile never seals it.
    const outcome = await vault.store.batch(group, [...fence, { op: 'replace', member, expected: entry.value, value: next }]);
    if (outcome.committed) return 'resealed';
    entry = await vault.store.get(group, member);
  }
  return entry === undefined ? 'none' : 'busy';
}

/**
 * Re-wraps an account's data keys that another KEK wraps under the provider's primary, in
 * one compare-and-swap of its record. Returns how many it re-wrapped (0 when none needed it).
 */
async function rewrapRecord(vault: Vault, group: string, first: StoreEntry): Promise<number | 'current' | 'none' | 'busy' | 'unreadable'> {
  const account = parseAccountGroup(group);
  if (account === undefined) return 'none';
  const provider = vault.keyProvider;
  let entry: StoreEntry | undefined = first;
  for (let attempt = 0; attempt < 5 && entry !== undefined; attempt++) {
    const record = parseDataKeyRecord(entry.value);
    if (record === undefined) return 'unreadable';
    if (record.keys.every((key) => key.kek === provider.primaryKekId)) return 'current';
    const keys: StoredDataKey[] = [];
    let rewrapped = 0;
    try {
      for (const key of record.keys) {
        if (key.kek === provider.primaryKekId) {
          keys.push(key);
          continue;
        }
        const dataKey = await providerCall(vault, () => unwrapDataKey(provider, account, key));
        const wrapped = await providerCall(vault, () => provider.wrap(dataKey.key, wrapContextOf(account, key.id))).finally(() => dataKey.key.fill(0));
        // Everything but the wrap stays, the reseal run that made the key included.
        keys.push({ ...key, kek: wrapped.kekId, wrapped: wrapped.wrapped });
        rewrapped += 1;
      }
    } catch (error) {
      if (isVaultError(error) && error.code === 'DECRYPTION_FAILED') return 'unreadable';
      throw error;
    }
    if (await vault.store.replace(group, DATA_KEY, entry.value, formatDataKeyRecord({ v: 1, keys }))) return rewrapped;
    entry = await vault.store.get(group, DATA_KEY);
  }
  return entry === undefined ? 'none' : 'busy';
}

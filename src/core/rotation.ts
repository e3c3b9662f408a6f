/**
 * Key rotation: re-seals every sealed value in the store under the primary key, verifies,
 * then retires the other keys' canaries.
 */
import { VaultError, isVaultError } from '../errors.js';
import { CANARY_PREFIX, CREDENTIAL_PREFIX, META_GROUP, SESSION_PREFIX, canaryKeyIdOf, credentialKeyOf, parseAccountGroup, sessionTokenIdOf, unescapeComponent } from './layout.js';
import { sessionTokenSealContext, type SessionTokenRecord } from './session-tokens.js';
import type { AccountRef } from './layout.js';
import { CANARY_CONTEXT } from './vault.js';
import type { Vault } from './vault.js';
import type { StoreEntry } from './store.js';
import { openCredential, sealCredential, sealedKeyId, type SealContext } from '../crypto/cipher.js';

/** What a rotation did. */
export interface RotationResult {
  /** Values re-sealed under the primary key by this run. */
  resealed: number;
  /** Sealed values that were already under the primary key. */
  alreadyCurrent: number;
}

/** Records read per store call unless told otherwise. */
const DEFAULT_BATCH_SIZE = 500;

export interface RotationOptions {
  /** Records read per store call. Default 500. */
  batchSize?: number;
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
    return { sealed: entry.value, context: { ...account, name }, rebuild: (sealed) => sealed };
  }
  if (member.startsWith(SESSION_PREFIX)) {
    const record = JSON.parse(entry.value) as SessionTokenRecord;
    const tokenId = sessionTokenIdOf(member);
    return {
      sealed: record.sealed,
      context: sessionTokenSealContext(account, tokenId),
      rebuild: (sealed) => JSON.stringify({ ...record, sealed }),
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
 * Re-seals every sealed value in the store under the keyring's primary key, streaming
 * through the store in batches (memory stays flat however large the store). Safe to
 * interrupt and run again: values already under the primary are skipped, and each
 * replacement is a compare-and-swap, so a credential written meanwhile is never
 * overwritten with its older value.
 *
 * After the first pass, the store is walked again until a whole pass finds nothing under
 * another key (a server still sealing with an old primary, or a record that the first
 * pass's scan did not return, is caught there). Only then are the other keys' canaries
 * removed, so those keys can leave `CREDVAULT_KEYS`. If records remain that cannot be
 * re-sealed, nothing is retired and the call throws `ROTATION_INCOMPLETE`, naming them.
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
  const result: RotationResult = { resealed: 0, alreadyCurrent: 0 };
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
        const outcome = await resealRecord(vault, group, member, entry);
        if (outcome === 'resealed') {
          result.resealed += 1;
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
      `Records sealed under other keys kept appearing after ${MAX_PASSES} passes (is a server still running with an old primary key?), so no key was retired; run it again`,
    );
  }
  // Every record now opens under the primary: the other keys' canaries can go.
  for (const { member } of await vault.store.list(META_GROUP, CANARY_PREFIX)) {
    const keyId = canaryKeyIdOf(member);
    if (keyId !== primary) await vault.store.remove(META_GROUP, member);
  }
  return result;
}

async function resealRecord(
  vault: Vault,
  group: string,
  member: string,
  first: StoreEntry,
): Promise<'resealed' | 'current' | 'none' | 'busy' | 'unreadable'> {
  let entry: StoreEntry | undefined = first;
  // A writer may replace the record between our read and our swap; then read it again.
  for (let attempt = 0; attempt < 5 && entry !== undefined; attempt++) {
    const field = sealedField(group, member, entry);
    if (field === undefined) return 'none';
    if (sealedKeyId(field.sealed) === vault.keyring.primary.id) return 'current';
    let plaintext: string;
    try {
      plaintext = openCredential(vault.keyring, field.sealed, field.context);
    } catch (error) {
      if (isVaultError(error) && error.code === 'DECRYPTION_FAILED') return 'unreadable';
      throw error;
    }
    const next = field.rebuild(sealCredential(vault.keyring, plaintext, field.context));
    if (await vault.store.replace(group, member, entry.value, next)) return 'resealed';
    entry = await vault.store.get(group, member);
  }
  return entry === undefined ? 'none' : 'busy';
}

import { VaultError } from './errors.js';
import { CANARY_PREFIX, CREDENTIAL_PREFIX, META_GROUP, SESSION_PREFIX, unescapeComponent } from './layout.js';
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
  already_current: number;
}

export interface RotationOptions {
  /** Records read per store call. Default 500. */
  batchSize?: number;
  /** Called after each batch with the number of records walked so far. */
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
    const name = unescapeComponent(member.slice(CREDENTIAL_PREFIX.length));
    return { sealed: entry.value, context: { ...account, name }, rebuild: (sealed) => sealed };
  }
  if (member.startsWith(SESSION_PREFIX)) {
    const record = JSON.parse(entry.value) as { sealed: string };
    const tokenId = unescapeComponent(member.slice(SESSION_PREFIX.length));
    return {
      sealed: record.sealed,
      context: { ...account, name: `session-token:${tokenId}` },
      rebuild: (sealed) => JSON.stringify({ ...record, sealed }),
    };
  }
  return undefined;
}

function parseAccountGroup(group: string): AccountRef | undefined {
  const parts = group.split(':');
  if (parts.length !== 4 || parts[0] !== 'acct') return undefined;
  const [, org, environment, accountId] = parts.map(unescapeComponent) as [string, string, string, string];
  return { org, environment, accountId };
}

/**
 * Re-seals every sealed value in the store under the keyring's primary key, streaming
 * through the store in batches (memory stays flat however large the store). Safe to
 * interrupt and run again: values already under the primary are skipped, and each
 * replacement is a compare-and-swap, so a credential written meanwhile is never
 * overwritten with its older value. When a complete run leaves nothing under other keys,
 * their canaries are removed, and those keys can leave `CREDVAULT_KEYS`.
 *
 * @example
 * ```ts
 * // CREDVAULT_KEYS="new:<base64>,old:<base64>"
 * const { resealed, already_current } = await rotateKeys(vault);
 * // then drop old from CREDVAULT_KEYS
 * ```
 */
export async function rotateKeys(vault: Vault, options: RotationOptions = {}): Promise<RotationResult> {
  const batchSize = options.batchSize ?? 500;
  const primary = vault.keyring.primary.id;
  const result: RotationResult = { resealed: 0, already_current: 0 };
  let walked = 0;
  let unsettled = 0;
  let cursor: string | undefined;
  do {
    const page = await vault.store.scan(cursor, batchSize);
    for (const { group, member, entry } of page.items) {
      if (group === META_GROUP) continue; // canaries are settled at the end
      const outcome = await resealRecord(vault, group, member, entry);
      if (outcome === 'resealed') result.resealed += 1;
      else if (outcome === 'current') result.already_current += 1;
      else if (outcome === 'busy') unsettled += 1;
    }
    walked += page.items.length;
    options.onProgress?.(walked);
    cursor = page.cursor;
  } while (cursor !== undefined);

  if (unsettled > 0) {
    throw new VaultError('STORE_UNAVAILABLE', `${unsettled} records changed under the rotation again and again; run it once more`);
  }
  // Every record now opens under the primary: the other keys' canaries can go.
  for (const { member } of await vault.store.list(META_GROUP, CANARY_PREFIX)) {
    const keyId = unescapeComponent(member.slice(CANARY_PREFIX.length));
    if (keyId !== primary) await vault.store.remove(META_GROUP, member);
  }
  return result;
}

async function resealRecord(
  vault: Vault,
  group: string,
  member: string,
  first: StoreEntry,
): Promise<'resealed' | 'current' | 'none' | 'busy'> {
  let entry: StoreEntry | undefined = first;
  // A writer may replace the record between our read and our swap; then read it again.
  for (let attempt = 0; attempt < 5 && entry !== undefined; attempt++) {
    const field = sealedField(group, member, entry);
    if (field === undefined) return 'none';
    if (sealedKeyId(field.sealed) === vault.keyring.primary.id) return 'current';
    const plaintext = openCredential(vault.keyring, field.sealed, field.context);
    const next = field.rebuild(sealCredential(vault.keyring, plaintext, field.context));
    if (await vault.store.replace(group, member, entry.value, next)) return 'resealed';
    entry = await vault.store.get(group, member);
  }
  return entry === undefined ? 'none' : 'busy';
}

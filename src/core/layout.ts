/**
 * Where each record lives in the store. Every component is escaped so that distinct
 * (org, environment, account, key) tuples can never produce the same group or member.
 */
import { VaultError } from '../errors.js';
import { MAX_NAME_LENGTH, type IndexEntry } from './store.js';

/** Escapes every UTF-16 unit outside `A-Z a-z 0-9 _ . -` as `%XXXX`: injective, and the output never holds `:`, `{` or `}`. */
const SAFE_COMPONENT = /^[A-Za-z0-9_.-]*$/;

export function escapeComponent(value: string): string {
  // Most ids and key names need no escaping: hand them back as they are.
  if (SAFE_COMPONENT.test(value)) return value;
  let out = '';
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    const safe =
      (c >= 0x30 && c <= 0x39) ||
      (c >= 0x41 && c <= 0x5a) ||
      (c >= 0x61 && c <= 0x7a) ||
      c === 0x5f ||
      c === 0x2e ||
      c === 0x2d;
    out += safe ? value[i] : `%${c.toString(16).padStart(4, '0')}`;
  }
  return out;
}

/** Identifies one linked account inside one org and environment. */
export interface AccountRef {
  org: string;
  environment: string;
  accountId: string;
}

const ACCOUNT_GROUP_PREFIX = 'acct';

/**
 * The group holding everything one linked account owns. Each character outside
 * `A-Z a-z 0-9 _ . -` takes five in the group, so an org and account id made mostly of such
 * characters can exceed the store's bound on names: that is a validation error (400), never a
 * store failure.
 */
export function accountGroup(ref: AccountRef): string {
  const group = `${ACCOUNT_GROUP_PREFIX}:${escapeComponent(ref.org)}:${escapeComponent(ref.environment)}:${escapeComponent(ref.accountId)}`;
  if (group.length > MAX_NAME_LENGTH) {
    throw new VaultError(
      'VALIDATION_ERROR',
      `linked_account_id is too long: with its org it must fit in ${MAX_NAME_LENGTH} stored characters, where each character other than A-Z a-z 0-9 _ . - takes five`,
    );
  }
  return group;
}

/** The account an {@link accountGroup} names, or `undefined` for any other group. */
export function parseAccountGroup(group: string): AccountRef | undefined {
  const parts = group.split(':');
  if (parts.length !== 4 || parts[0] !== ACCOUNT_GROUP_PREFIX) return undefined;
  const [, org, environment, accountId] = parts.map(unescapeComponent) as [string, string, string, string];
  return { org, environment, accountId };
}

/** The org and environment whose linked accounts one index lists. */
export interface AccountScope {
  org: string;
  environment: string;
}

/**
 * The index (store contract rule 10) of the linked accounts of one org and environment.
 * The escaped org is at most 5 * 128 characters, so the name always fits the store's bound.
 */
export function accountIndex(scope: AccountScope): string {
  return `accounts:${escapeComponent(scope.org)}:${escapeComponent(scope.environment)}`;
}

/**
 * The index entry of one account: its escaped id, shorter than its {@link accountGroup}, so
 * it fits the store's bound whenever the group does. Entries sort in UTF-16 order of the
 * escaped id, which is the order of the ids themselves when they hold only `A-Z a-z 0-9 _ . -`.
 */
export function accountIndexEntry(ref: AccountRef): IndexEntry {
  return { index: accountIndex(ref), entry: escapeComponent(ref.accountId) };
}

/** The account id an {@link accountIndexEntry} names. */
export const accountIdOfIndexEntry = (entry: string): string => unescapeComponent(entry);

/** Members of an account group. */
export const PROFILE = 'profile';
export const DEFAULT_APP = 'app:default';
/** The account's data keys, wrapped by the key provider (see `data-keys.ts`). */
export const DATA_KEY = 'dek';
/**
 * Present (value `1`) while the account has a default app and data key `<id>` is its current
 * one: a credential write requires it, so one conditional put is fenced on both (see
 * `sealingKey`). Written with the default app and whenever the current key changes.
 */
export const APP_KEY_PREFIX = 'app-key:';
export const appKeyMember = (dekId: string): string => APP_KEY_PREFIX + dekId;
/** The value of an app-key marker. */
export const APP_KEY_PRESENT = '1';
export const CREDENTIAL_PREFIX = 'cred:';
export const credentialMember = (key: string): string => CREDENTIAL_PREFIX + escapeComponent(key);
export const SESSION_PREFIX = 'session:';
export const sessionMember = (tokenId: string): string => SESSION_PREFIX + escapeComponent(tokenId);
/** The credential key a {@link credentialMember} names. */
export const credentialKeyOf = (member: string): string => unescapeComponent(member.slice(CREDENTIAL_PREFIX.length));
/** The token id a {@link sessionMember} names. */
export const sessionTokenIdOf = (member: string): string => unescapeComponent(member.slice(SESSION_PREFIX.length));

/** One group per API key, looked up by the public id inside the key. */
export const apiKeyGroup = (keyId: string): string => `apikey:${escapeComponent(keyId)}`;
export const RECORD = 'record';

/** Vault-wide bookkeeping: key canaries and first-run facts. */
export const META_GROUP = 'meta';
export const CANARY_PREFIX = 'canary:';
export const canaryMember = (keyId: string): string => CANARY_PREFIX + escapeComponent(keyId);
/** The key id a {@link canaryMember} names. */
export const canaryKeyIdOf = (member: string): string => unescapeComponent(member.slice(CANARY_PREFIX.length));
/** One per KEK that ever wrapped a data key here: a wrapped random key, to check the provider at start. */
export const KEK_CANARY_PREFIX = 'kek-canary:';
export const kekCanaryMember = (kekId: string): string => KEK_CANARY_PREFIX + escapeComponent(kekId);
/** The KEK id a {@link kekCanaryMember} names. */
export const kekIdOfCanary = (member: string): string => unescapeComponent(member.slice(KEK_CANARY_PREFIX.length));
export const API_KEY_EXISTS = 'apikey-exists';
/** The key id that claimed a fresh store, written together with its canary (see `checkKeyring`). */
export const KEYRING_FOUNDER = 'keyring-founder';
/** The `keys rotate --reseal` run under way (JSON `{"id"}`), until it completes. */
export const RESEAL_RUN = 'reseal-run';
/**
 * Present once every account this store held before account indexes existed has been put
 * in its index (see `indexExistingAccounts`), so later opens skip the walk;
 * `reindexLinkedAccounts` walks again whatever it says.
 */
export const ACCOUNTS_INDEXED = 'accounts-indexed';

export function unescapeComponent(value: string): string {
  return value.replace(/%([0-9a-f]{4})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/**
 * Linked accounts: creating (optionally with a default app seeded with credentials),
 * updating, reading, listing one org's and environment's accounts a page at a time, and
 * deleting one with everything it owns.
 */
import { createHash, randomBytes } from 'node:crypto';
import { VaultError } from '../errors.js';
import {
  accountGroup,
  accountIdOfIndexEntry,
  accountIndex,
  accountIndexEntry,
  credentialMember,
  CREDENTIAL_PREFIX,
  DEFAULT_APP,
  appKeyMember,
  APP_KEY_PRESENT,
  PROFILE,
} from './layout.js';
import type { AccountRef, AccountScope } from './layout.js';
import { actorOf, checkAccountRef, type Principal } from './principal.js';
import {
  accountNameSchema,
  credentialKeySchema,
  credentialValueSchema,
  environmentSchema,
  orgIdSchema,
  parseInput,
  stringSchema,
  type InputRule,
} from './validation.js';
import { accountNotFound } from './credentials.js';
import { auditedRemoval } from './events.js';
import { MAX_BATCH_WRITES, type BatchWrite, type StoreEntry } from './store.js';
import type { Vault } from './vault.js';
import type { DataKey } from '../crypto/cipher.js';
import { forgetAccountKeys, newAccountKey, rememberKey, sealFor, sealingKey, type SealingKey } from './envelope.js';

/** Most credentials (or udf fields) one request may set: they share one batch with the profile and default app. */
// Four of a batch's writes are not credentials: on creation the profile, the data key, the
// default app and its key marker; on an update the profile, the data key's fence, the default
// app and its key marker.
const MAX_ENTRIES = MAX_BATCH_WRITES - 4;

/** The record of an account's default-app integration. */
const DEFAULT_APP_RECORD = JSON.stringify({ type: 'default_app' });

/** A linked account: never a credential, never a token. */
export interface LinkedAccount {
  /** A random id the vault gave the account when it was created (24 hex digits). */
  id: string;
  org: string;
  environment: string;
  accountId: string;
  /** Display name; the account id unless one was given. */
  name: string;
  /** Custom fields, in the order they were first set. */
  udf: Array<{ name: string; value: string }>;
  /** When the account was created, ISO-8601. */
  createdAt: string;
  /** When its name or custom fields last changed (its creation until then), ISO-8601. */
  updatedAt: string;
  /** The account's default-app integration, never its credentials; `undefined` when it has none. */
  defaultApp: DefaultAppInfo | undefined;
}

/** The default-app integration of a linked account, without its credentials. */
export interface DefaultAppInfo {
  /** 24 hex digits, derived from the account's id: the same for as long as the account has its default app. */
  id: string;
  /** When the account got its default app, ISO-8601. */
  createdAt: string;
  /** When credentials were last set through it, ISO-8601 (deleting one does not count). */
  updatedAt: string;
}

/** One page of {@link listLinkedAccounts}. */
export interface LinkedAccountPage {
  /** The page's accounts, in the order of the account index (see {@link listLinkedAccounts}). */
  accounts: LinkedAccount[];
  /**
   * How many accounts the org and environment hold, exactly, at the moment the page was read
   * (an account deleted by a release without account indexes still counts: see {@link listLinkedAccounts}).
   */
  total: number;
  /** The page asked for, from 1. */
  page: number;
  /** The page size asked for. */
  limit: number;
}

/** The largest `limit` {@link listLinkedAccounts} accepts. */
export const MAX_ACCOUNT_PAGE_LIMIT = 100;
/** The `limit` of {@link listLinkedAccounts} when none is given. */
export const DEFAULT_ACCOUNT_PAGE_LIMIT = 10;

/** What {@link upsertLinkedAccount} did: the account as it now is, and whether this call created it. */
export interface UpsertedLinkedAccount {
  account: LinkedAccount;
  created: boolean;
}

/** The stored profile of a linked account (its stored form: field names are part of the data). */
interface AccountProfile {
  _id: string;
  account_id: string;
  name: string;
  environment: string;
  associated_org: string;
  udf: Array<{ key_name: string; key_value: string }>;
  /**
   * Milliseconds since the epoch. Kept in the profile because a store `replace` keeps the
   * entry's own timestamps; profiles written before these fields fall back to the entry's.
   */
  created_at?: number;
  updated_at?: number;
}

export interface CreateLinkedAccountInput {
  /** Display name; defaults to the account id. */
  name?: string;
  /** Custom key/value fields. */
  udf?: Record<string, unknown>;
  /**
   * Seeds the default-app integration with these credentials. Present (even empty) means
   * the account gets a default app; absent means it has none yet.
   */
  credentials?: Record<string, unknown>;
}

/**
 * Validates a JSON object of named values into pairs. Pairs, not an object: a key such as
 * `__proto__` stays an ordinary name.
 */
function parseEntries<T>(input: unknown, field: string, valueSchema: InputRule<T>): Array<[string, T]> {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new VaultError('VALIDATION_ERROR', `${field} must be an object`);
  }
  const entries = Object.entries(input);
  // Profile, default app and these go in one atomic store batch.
  if (entries.length > MAX_ENTRIES) throw new VaultError('VALIDATION_ERROR', `${field} holds at most ${MAX_ENTRIES} entries`);
  return entries.map(([key, value]) => [
    parseInput(credentialKeySchema, key, `${field} key`),
    parseInput(valueSchema, value, `${field}.${key}`),
  ]);
}

/**
 * Creates a linked account inside the principal's org and environment, optionally with a
 * default app seeded with credentials, and lists it (its index entry is written in the same
 * atomic step). Returns the account as written, with this process's clock as its times.
 *
 * @throws VaultError `LINKED_ACCOUNT_EXISTS`, `VALIDATION_ERROR`, `STORE_UNAVAILABLE`
 * @example
 * ```ts
 * await createLinkedAccount(vault, { org: 'acme', environment: 'test', accountId: 'cust-1' },
 *   { name: 'Customer One', credentials: { api_key: 'sk_test_123' } });
 * ```
 */
export async function createLinkedAccount(
  vault: Vault,
  principal: Principal,
  input: CreateLinkedAccountInput = {},
): Promise<LinkedAccount> {
  const ref = checkAccountRef(principal);
  const name = input.name === undefined ? ref.accountId : parseInput(accountNameSchema, input.name, 'name');
  const udf = input.udf === undefined ? [] : parseEntries(input.udf, 'udf', stringSchema);
  // Every seeded value is checked before anything is written.
  const credentials =
    input.credentials === undefined
      ? undefined
      : parseEntries(input.credentials, 'your_app.auth_credentials', credentialValueSchema(vault.maxValueBytes));
  const now = Date.now();
  const profile: AccountProfile = {
    _id: randomBytes(12).toString('hex'),
    account_id: ref.accountId,
    name,
    environment: ref.environment,
    associated_org: ref.org,
    udf: udf.map(([key_name, key_value]) => ({ key_name, key_value })),
    created_at: now,
    updated_at: now,
  };
  const group = accountGroup(ref);
  const index = accountIndexEntry(ref);
  // Profile, default app, every seeded credential and the index entry land in one atomic
  // step: a create that fails (or is cut off by a crash) leaves nothing, so a retry starts clean.
  // Its data key too: an account never exists without one, and its seeded values are sealed under it.
  const { dataKey, write: keyWrite } = await newAccountKey(vault, ref);
  const writes: BatchWrite[] = [{ op: 'insert', member: PROFILE, value: JSON.stringify(profile) }, keyWrite];
  if (credentials !== undefined) writes.push(...defaultAppWrites(dataKey, ref, credentials));
  const result = await vault.store.batch(group, writes, { index });
  if (!result.committed) {
    throw new VaultError('LINKED_ACCOUNT_EXISTS', `Linked account ${ref.accountId} already exists`);
  }
  rememberKey(vault, ref, dataKey);
  const undo = () => {
    forgetAccountKeys(vault, ref);
    return vault.store.removeGroup(group, { index });
  };
  const actor = actorOf(principal);
  await vault.emit({ type: 'account.created', ...ref, actor }, undo);
  for (const [key] of credentials ?? []) {
    await vault.emit({ type: 'credential.added', ...ref, key, actor }, undo);
  }
  // The default app, if any, was written in the same step as the profile.
  const written = { createdAt: now, updatedAt: now };
  return toLinkedAccount(profile, written, credentials === undefined ? undefined : written);
}

/** How many writes {@link defaultAppWrites} puts before the credentials. */
const DEFAULT_APP_HEAD = 2;

/**
 * The writes that give an account its default app (kept if it has one), with the marker that
 * fences credential writes on the current data key, and set these credentials in it.
 */
function defaultAppWrites(dataKey: DataKey, ref: AccountRef, credentials: Array<[string, string]>): BatchWrite[] {
  return [
    { op: 'put', member: DEFAULT_APP, value: DEFAULT_APP_RECORD },
    { op: 'put', member: appKeyMember(dataKey.id), value: APP_KEY_PRESENT },
    ...credentials.map(([name, value]): BatchWrite => ({
      op: 'put',
      member: credentialMember(name),
      value: sealFor(dataKey, value, { ...ref, name }),
    })),
  ];
}

/**
 * Updates a linked account, or creates it if it does not exist yet. Given `credentials`,
 * the account gets a default app (if it had none) and those credentials are added or
 * replaced; `udf` entries are merged over the existing ones. A name or `udf` change moves
 * the account's `updatedAt`; credentials move only its default app's. Every update also
 * lists the account, in the same atomic step, if it was not listed (an account a release
 * without account indexes created).
 *
 * @example
 * ```ts
 * const { account, created } = await upsertLinkedAccount(vault, { org: 'acme', environment: 'test', accountId: 'cust-1' },
 *   { name: 'Customer One', credentials: { api_key: 'sk_test_123' } });
 * ```
 */
export async function upsertLinkedAccount(
  vault: Vault,
  principal: Principal,
  input: CreateLinkedAccountInput = {},
  options: { create?: boolean } = {},
): Promise<UpsertedLinkedAccount> {
  const ref = checkAccountRef(principal);
  const group = accountGroup(ref);
  const existing = await vault.store.get(group, PROFILE);
  if (existing === undefined) {
    // `create: false`: an update only, never bringing back an account deleted meanwhile.
    if (options.create === false) throw accountNotFound(ref);
    try {
      return { account: await createLinkedAccount(vault, principal, input), created: true };
    } catch (error) {
      // Lost a race with another creator: carry on as an update.
      if (!(error instanceof VaultError && error.code === 'LINKED_ACCOUNT_EXISTS')) throw error;
      return upsertLinkedAccount(vault, principal, input, options);
    }
  }
  const name = input.name === undefined ? undefined : parseInput(accountNameSchema, input.name, 'name');
  const udf = input.udf === undefined ? undefined : parseEntries(input.udf, 'udf', stringSchema);
  const credentials =
    input.credentials === undefined
      ? undefined
      : parseEntries(input.credentials, 'your_app.auth_credentials', credentialValueSchema(vault.maxValueBytes));
  const actor = actorOf(principal);
  const event = { type: 'account.updated', ...ref, actor } as const;
  // Failing closed, an update is reported before it is made (see upsertDefaultAppCredential);
  // so is each credential that exists already. An added one can be taken back after.
  let announced = new Set<string>();
  if (vault.failClosedEvents) {
    await vault.emit(event);
    if (credentials !== undefined) {
      const stored = new Set((await vault.store.list(group, CREDENTIAL_PREFIX)).map((item) => item.member));
      announced = new Set(credentials.map(([key]) => key).filter((key) => stored.has(credentialMember(key))));
      for (const key of announced) await vault.emit({ type: 'credential.updated', ...ref, key, actor });
    }
  }
  let appWrites: BatchWrite[] = [];
  let sealing: SealingKey | undefined;
  let profile = JSON.parse(existing.value) as AccountProfile;
  let current = existing;
  let results: Array<'added' | 'updated' | boolean> = [];
  // An account an older release created has no index entry: every update adds it (a no-op
  // when present), in the same step, so only a live account gets one.
  const index = accountIndexEntry(ref);
  // Profile and credentials change in one atomic step. The profile is a compare-and-swap,
  // so that two updates of different fields both land; without a profile change the batch
  // still requires the profile, so a write racing the account's deletion leaves no orphan.
  // Credentials are fenced on the data key record they were sealed under (see sealingKey).
  for (let attempt = 0; ; attempt++) {
    profile = JSON.parse(current.value) as AccountProfile;
    const writes: BatchWrite[] = [];
    const profileChanges = name !== undefined || udf !== undefined;
    if (profileChanges) {
      if (name !== undefined) profile.name = name;
      if (udf !== undefined) {
        const merged = new Map(profile.udf.map((entry) => [entry.key_name, entry.key_value]));
        for (const [key, value] of udf) merged.set(key, value);
        profile.udf = [...merged].map(([key_name, key_value]) => ({ key_name, key_value }));
      }
      // Strictly later than before, so two changes within one millisecond still move it.
      profile.updated_at = Math.max(Date.now(), (profile.updated_at ?? current.updatedAt) + 1);
      writes.push({ op: 'replace', member: PROFILE, expected: current.value, value: JSON.stringify(profile) });
    }
    if (credentials !== undefined && sealing === undefined) {
      sealing = await sealingKey(vault, ref);
      if (sealing === undefined) throw accountNotFound(ref);
      appWrites = [sealing.fence, ...defaultAppWrites(sealing.dataKey, ref, credentials)];
    }
    writes.push(...appWrites);
    const outcome = await vault.store.batch(group, writes, profileChanges ? { index } : { requires: PROFILE, index });
    if (outcome.committed) {
      // The credentials' results follow the profile's (if any), the fence's and the default app's.
      results = outcome.results.slice(writes.length - appWrites.length + 1 + DEFAULT_APP_HEAD);
      break;
    }
    // The data key record moved: seal again under the key now current.
    if (appWrites.length > 0 && outcome.failed === writes.length - appWrites.length) sealing = undefined;
    const reread = await vault.store.get(group, PROFILE);
    if (reread === undefined) throw accountNotFound(ref);
    if (attempt === 100) throw new VaultError('STORE_UNAVAILABLE', 'The account kept changing during the update; try again');
    current = reread;
  }
  if (!vault.failClosedEvents) await vault.emit(event);
  const pending = (credentials ?? []).flatMap(([key], i) => (announced.has(key) ? [] : [{ key, added: results[i] === 'added' }]));
  for (const [n, { key, added }] of pending.entries()) {
    // Failing closed, a refused event takes back this credential and every added one not yet
    // reported, so nothing stays stored unaudited.
    const unreported = pending.slice(n).filter((p) => p.added);
    const undo =
      unreported.length === 0
        ? undefined
        : () => vault.store.batch(group, unreported.map((p): BatchWrite => ({ op: 'remove', member: credentialMember(p.key) })));
    await vault.emit({ type: `credential.${added ? 'added' : 'updated'}`, ...ref, key, actor }, undo);
  }
  // Read after the write: a put keeps the app's createdAt, which only the store knows.
  const app = await vault.store.get(group, DEFAULT_APP);
  return { account: toLinkedAccount(profile, current, app), created: false };
}

/**
 * Deletes a linked account with everything it owns: profile, default app, credentials
 * and session tokens are removed from the store, not merely hidden.
 *
 * @throws VaultError `LINKED_ACCOUNT_NOT_FOUND`
 * @example
 * ```ts
 * await deleteLinkedAccount(vault, { org: 'acme', environment: 'test', accountId: 'cust-1' });
 * ```
 */
export async function deleteLinkedAccount(vault: Vault, principal: Principal): Promise<void> {
  const ref = checkAccountRef(principal);
  const group = accountGroup(ref);
  if ((await vault.store.get(group, PROFILE)) === undefined) throw accountNotFound(ref);
  const removed = await auditedRemoval(vault, { type: 'account.deleted', ...ref, actor: actorOf(principal) }, async () => {
    // Its data key goes with everything else it owns, in one atomic step (crypto-shredding).
    forgetAccountKeys(vault, ref);
    try {
      return await vault.store.removeGroup(group, { index: accountIndexEntry(ref) });
    } finally {
      forgetAccountKeys(vault, ref);
    }
  });
  if (removed === 0) throw accountNotFound(ref);
}

/**
 * Reads a linked account (without credentials).
 *
 * @throws VaultError `LINKED_ACCOUNT_NOT_FOUND`
 * @example
 * ```ts
 * const account = await getLinkedAccount(vault, { org: 'acme', environment: 'test', accountId: 'cust-1' });
 * ```
 */
export async function getLinkedAccount(vault: Vault, ref: AccountRef): Promise<LinkedAccount> {
  const account = checkAccountRef(ref);
  const found = await readLinkedAccount(vault, account);
  if (found === undefined) throw accountNotFound(account);
  return found;
}

/** The account as stored now (profile and default app read in parallel), or `undefined` without a profile. */
async function readLinkedAccount(vault: Vault, ref: AccountRef): Promise<LinkedAccount | undefined> {
  const group = accountGroup(ref);
  const [entry, app] = await Promise.all([vault.store.get(group, PROFILE), vault.store.get(group, DEFAULT_APP)]);
  return entry === undefined ? undefined : toLinkedAccount(JSON.parse(entry.value) as AccountProfile, entry, app);
}

/**
 * Pages through the linked accounts of one org and environment: one read of the account
 * index, then the page's accounts, so a page costs in proportion to its size, not to the
 * store. `total` is exact (but see the rolling upgrade below). Accounts come in the index's
 * order: by account id (UTF-16 code units) for ids of `A-Z a-z 0-9 _ . -`; any other
 * character sorts as its escape `%XXXX`, so before those. An account deleted between the
 * two reads is left out of its page.
 *
 * While processes of a release without account indexes still run (a rolling upgrade), the
 * index can disagree with the accounts in two ways. An account such a process creates is
 * not listed until it is next updated through {@link upsertLinkedAccount} or until
 * `reindexLinkedAccounts` walks the store. A listed account such a process deletes keeps
 * its entry: it still counts in `total` but is left out of `accounts`, so a page can hold
 * fewer than `limit` accounts with more on later pages. Nothing drops such an entry, since
 * through the store contract that would race a new create of the same id; creating the id
 * again lists it once, and deleting it then drops the entry.
 *
 * `page` counts from 1 (default 1); `limit` is 1 to {@link MAX_ACCOUNT_PAGE_LIMIT}
 * (default {@link DEFAULT_ACCOUNT_PAGE_LIMIT}). A page past the end has no accounts.
 *
 * @throws VaultError `VALIDATION_ERROR` for a bad page, limit, org or environment; `STORE_UNAVAILABLE`
 * @example
 * ```ts
 * const { accounts, total } = await listLinkedAccounts(vault, { org: 'acme', environment: 'test' }, { page: 2, limit: 20 });
 * // accounts 21 to 40 of total
 * ```
 */
export async function listLinkedAccounts(
  vault: Vault,
  scope: AccountScope,
  options: { page?: number; limit?: number } = {},
): Promise<LinkedAccountPage> {
  const page = options.page ?? 1;
  const limit = options.limit ?? DEFAULT_ACCOUNT_PAGE_LIMIT;
  if (!Number.isSafeInteger(page) || page < 1) {
    throw new VaultError('VALIDATION_ERROR', 'page must be an integer of at least 1');
  }
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_ACCOUNT_PAGE_LIMIT) {
    throw new VaultError('VALIDATION_ERROR', `limit must be an integer from 1 to ${MAX_ACCOUNT_PAGE_LIMIT}`);
  }
  const offset = (page - 1) * limit;
  if (!Number.isSafeInteger(offset)) {
    throw new VaultError('VALIDATION_ERROR', `page is too large: (page - 1) * limit must be at most ${Number.MAX_SAFE_INTEGER}`);
  }
  const where: AccountScope = {
    org: parseInput(orgIdSchema, scope.org, 'org'),
    environment: parseInput(environmentSchema, scope.environment, 'environment'),
  };
  const { total, entries } = await vault.store.readIndex(accountIndex(where), offset, limit);
  const accounts = await Promise.all(entries.map((entry) => readLinkedAccount(vault, { ...where, accountId: accountIdOfIndexEntry(entry) })));
  return { accounts: accounts.filter((account) => account !== undefined), total, page, limit };
}

/** Whether the linked account exists. */
export async function linkedAccountExists(vault: Vault, ref: AccountRef): Promise<boolean> {
  const account = checkAccountRef(ref);
  return (await vault.store.get(accountGroup(account), PROFILE)) !== undefined;
}

type Times = Pick<StoreEntry, 'createdAt' | 'updatedAt'>;

/** The account from its profile, the profile entry's times and its default-app entry, if any. */
function toLinkedAccount(profile: AccountProfile, entry: Times, app: Times | undefined): LinkedAccount {
  return {
    id: profile._id,
    org: profile.associated_org,
    environment: profile.environment,
    accountId: profile.account_id,
    name: profile.name,
    udf: profile.udf.map((field) => ({ name: field.key_name, value: field.key_value })),
    createdAt: new Date(profile.created_at ?? entry.createdAt).toISOString(),
    updatedAt: new Date(profile.updated_at ?? entry.updatedAt).toISOString(),
    defaultApp:
      app === undefined
        ? undefined
        : { id: defaultAppId(profile._id), createdAt: new Date(app.createdAt).toISOString(), updatedAt: new Date(app.updatedAt).toISOString() },
  };
}

/**
 * The default app's id, derived rather than stored: its record is rewritten by every
 * credential write, and the id must not change with it.
 */
function defaultAppId(accountId: string): string {
  return createHash('sha256').update(`${accountId}:default_app`).digest('hex').slice(0, 24);
}

/**
 * Default-app auth credentials of a linked account: add or replace, read, list, delete.
 * Each credential is one sealed record in the account's group.
 */
import { VaultError } from '../errors.js';
import { accountGroup, appKeyMember, APP_KEY_PRESENT, credentialKeyOf, credentialMember, CREDENTIAL_PREFIX, DEFAULT_APP, PROFILE } from './layout.js';
import type { AccountRef } from './layout.js';
import { actorOf, checkAccountRef, type Principal } from './principal.js';
import { auditedRemoval } from './events.js';
import { credentialKeySchema, credentialValueSchema, parseInput } from './validation.js';
import type { Vault } from './vault.js';
import { keyKeptChanging, MAX_FENCE_ATTEMPTS, openFor, sealFor, sealingKey } from './envelope.js';

/** What an upsert did. */
export interface UpsertResult {
  action: 'added' | 'updated';
}

/** One stored credential, by name; its value only when asked for. */
export interface CredentialInfo {
  key: string;
  /** When it was first stored, ISO-8601. */
  createdAt: string;
  /** When it was last written, ISO-8601. */
  updatedAt: string;
  /** The decrypted value, only with `{ reveal: true }`. */
  value?: string;
}

/**
 * Adds or replaces one default-app auth credential of a linked account, sealed under the
 * account's data key. Numbers and booleans are stored as `String(value)`.
 *
 * @throws VaultError `VALIDATION_ERROR`, `LINKED_ACCOUNT_NOT_FOUND`, `DEFAULT_APP_NOT_FOUND`, `STORE_UNAVAILABLE`
 * @example
 * ```ts
 * const { action } = await upsertDefaultAppCredential(
 *   vault, { org: 'acme', environment: 'test', accountId: 'cust-1' }, 'api_key', 'sk_test_123');
 * // action === 'added' the first time, 'updated' after
 * ```
 */
export async function upsertDefaultAppCredential(
  vault: Vault,
  principal: Principal,
  key: string,
  value: unknown,
): Promise<UpsertResult> {
  const ref = checkAccountRef(principal);
  const name = parseInput(credentialKeySchema, key, 'key');
  const plaintext = parseInput(credentialValueSchema(vault.maxValueBytes), value, 'value');
  const group = accountGroup(ref);
  const member = credentialMember(name);
  const event = { org: ref.org, environment: ref.environment, accountId: ref.accountId, key: name, actor: actorOf(principal) };
  // A fail-closed audit reports an update before making it: taking one back afterwards
  // could restore the value but not its timestamps. (An add is simply removed again.)
  const announced = vault.failClosedEvents && (await vault.store.get(group, member)) !== undefined;
  if (announced) await vault.emit({ type: 'credential.updated', ...event });
  let result: 'added' | 'updated' | undefined;
  // The key this process last saw current, without reading the data key record: the put's
  // fence (the key's marker) refuses it if the key moved on, and then the record is read.
  // Fields named one by one: object spread showed in the profile of every write.
  const context = { org: ref.org, environment: ref.environment, accountId: ref.accountId, name };
  const hinted = vault.dataKeys.current(group);
  if (hinted !== undefined) {
    const sealed = sealFor(hinted, plaintext, context);
    const put = await vault.store.put(group, member, sealed, { requires: appKeyMember(hinted.id) });
    if (put !== 'missing') result = put;
  }
  for (let attempt = 0; result === undefined; attempt++) {
    const sealing = await sealingKey(vault, ref, DEFAULT_APP);
    if (sealing === undefined) throw await whyNoDefaultApp(vault, ref);
    const sealed = sealFor(sealing.dataKey, plaintext, context);
    // One conditional put: the marker of this data key exists only while the default app does
    // and this key is the account's current one, so the value never lands under a key destroyed
    // meanwhile, nor as an orphan of a deleted account.
    const put = attempt === 0 ? await vault.store.put(group, member, sealed, { requires: appKeyMember(sealing.dataKey.id) }) : 'missing';
    if (put !== 'missing') {
      result = put;
      break;
    }
    // No marker: no default app, an account written before markers, or the key moved on. The
    // batch, fenced on the data key record itself, writes the value and the marker together.
    const outcome = await vault.store.batch(
      group,
      [sealing.fence, { op: 'put', member: appKeyMember(sealing.dataKey.id), value: APP_KEY_PRESENT }, { op: 'put', member, value: sealed }],
      { requires: DEFAULT_APP },
    );
    if (outcome.committed) result = outcome.results[2] as 'added' | 'updated';
    else if (outcome.failed === -1) throw await whyNoDefaultApp(vault, ref);
    else if (attempt + 1 >= MAX_FENCE_ATTEMPTS) throw keyKeptChanging();
  }
  if (!announced) {
    const type = result === 'added' ? 'credential.added' : 'credential.updated';
    await vault.emit({ type, ...event }, result === 'added' ? () => vault.store.remove(group, member) : undefined);
  }
  return { action: result };
}

/**
 * Reads and decrypts one credential for the embedding server's own use.
 * Returns `undefined` when the key is not stored.
 *
 * @example
 * ```ts
 * const apiKey = await getDefaultAppCredential(vault, { org: 'acme', environment: 'test', accountId: 'cust-1' }, 'api_key');
 * ```
 */
export async function getDefaultAppCredential(vault: Vault, ref: AccountRef, key: string): Promise<string | undefined> {
  const account = checkAccountRef(ref);
  const name = parseInput(credentialKeySchema, key, 'key');
  const group = accountGroup(account);
  const entry = await vault.store.get(group, credentialMember(name));
  if (entry === undefined) return undefined;
  return openFor(vault, account, entry.value, { org: account.org, environment: account.environment, accountId: account.accountId, name }, group);
}

/**
 * Lists the names and timestamps of an account's credentials, sorted by name; with
 * `{ reveal: true }`, their decrypted values too.
 *
 * @throws VaultError `LINKED_ACCOUNT_NOT_FOUND` when the account does not exist
 * @example
 * ```ts
 * const list = await listDefaultAppCredentials(vault, { org: 'acme', environment: 'test', accountId: 'cust-1' });
 * // [{ key: 'api_key', createdAt: '2026-...', updatedAt: '2026-...' }]
 * ```
 */
export async function listDefaultAppCredentials(
  vault: Vault,
  ref: AccountRef,
  options: { reveal?: boolean } = {},
): Promise<CredentialInfo[]> {
  const account = checkAccountRef(ref);
  const group = accountGroup(account);
  const items = await vault.store.list(group, CREDENTIAL_PREFIX);
  if (items.length === 0 && (await vault.store.get(group, PROFILE)) === undefined) {
    throw accountNotFound(account);
  }
  const infos: CredentialInfo[] = [];
  for (const { member, entry } of items) {
    const key = credentialKeyOf(member);
    const info: CredentialInfo = {
      key,
      createdAt: new Date(entry.createdAt).toISOString(),
      updatedAt: new Date(entry.updatedAt).toISOString(),
    };
    if (options.reveal === true) info.value = await openFor(vault, account, entry.value, { ...account, name: key });
    infos.push(info);
  }
  return infos;
}

/**
 * Deletes one credential.
 *
 * @throws VaultError `CREDENTIAL_NOT_FOUND`, `LINKED_ACCOUNT_NOT_FOUND`, `DEFAULT_APP_NOT_FOUND`
 * @example
 * ```ts
 * await deleteDefaultAppCredential(vault, { org: 'acme', environment: 'test', accountId: 'cust-1' }, 'api_key');
 * ```
 */
export async function deleteDefaultAppCredential(vault: Vault, principal: Principal, key: string): Promise<void> {
  const ref = checkAccountRef(principal);
  const name = parseInput(credentialKeySchema, key, 'key');
  const group = accountGroup(ref);
  const member = credentialMember(name);
  const notFound = async () => {
    if ((await vault.store.get(group, DEFAULT_APP)) === undefined) return whyNoDefaultApp(vault, ref);
    return new VaultError('CREDENTIAL_NOT_FOUND', `Auth credential key '${name}' not found`);
  };
  // A fail-closed audit reports before removing, so it must know the key exists.
  if (vault.failClosedEvents && (await vault.store.get(group, member)) === undefined) throw await notFound();
  const removed = await auditedRemoval(vault, { type: 'credential.deleted', ...ref, key: name, actor: actorOf(principal) }, () =>
    vault.store.remove(group, member),
  );
  if (!removed) throw await notFound();
}

/** Called only on the failure path, so the warm path stays one store write. */
async function whyNoDefaultApp(vault: Vault, ref: AccountRef): Promise<VaultError> {
  if ((await vault.store.get(accountGroup(ref), PROFILE)) === undefined) return accountNotFound(ref);
  return new VaultError('DEFAULT_APP_NOT_FOUND', `Default app integration not found for linked account ${ref.accountId}`);
}

export function accountNotFound(ref: AccountRef): VaultError {
  return new VaultError(
    'LINKED_ACCOUNT_NOT_FOUND',
    `Linked Account with account id ${ref.accountId} for org ${ref.org} in environment ${ref.environment} not found`,
  );
}

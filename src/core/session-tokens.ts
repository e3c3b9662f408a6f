import { VaultError } from './errors.js';
import { PROFILE, RECORD, SESSION_PREFIX, accountGroup, sessionMember, sessionTokenGroup } from './layout.js';
import type { AccountRef } from './layout.js';
import { checkAccountRef } from './principal.js';
import type { Environment } from './validation.js';
import type { Vault } from './vault.js';
import type { Actor } from './events.js';
import { hashSecret, randomToken, secretsEqual } from '../crypto/secrets.js';
import { openCredential, sealCredential } from '../crypto/cipher.js';

/** What `POST /session-token` answers. */
export interface IssuedSessionToken {
  token: string;
  /** Seconds until the token expires. */
  expires_in: number;
}

/** The linked account a session token acts for. */
export interface SessionIdentity extends AccountRef {
  environment: Environment;
  tokenId: string;
}

interface SessionTokenRecord {
  hash: string;
  org: string;
  environment: Environment;
  accountId: string;
}

// cvs_, a 128-bit public id, a dot, then 256 bits of secret, all base64url.
const TOKEN_FORMAT = /^cvs_([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$/;
// A token about to expire is not worth handing out again.
const MIN_REUSE_SECONDS = 60;

/**
 * Issues a session token for a linked account, or hands back a still-valid one unless
 * `forceRefresh` is set. The token is stored only as a hash (for checking) and sealed by
 * the cipher (so it can be handed out again).
 *
 * @throws VaultError `UNKNOWN_LINKED_ACCOUNT` when the account does not exist
 * @example
 * ```ts
 * const { token, expires_in } = await issueSessionToken(vault, { org: 'acme', environment: 'test', accountId: 'cust-1' });
 * ```
 */
export async function issueSessionToken(
  vault: Vault,
  ref: AccountRef,
  options: { forceRefresh?: boolean; ttlSeconds?: number; actor?: Actor } = {},
): Promise<IssuedSessionToken> {
  const account = checkAccountRef(ref);
  const group = accountGroup(account);
  if ((await vault.store.get(group, PROFILE)) === undefined) {
    throw new VaultError(
      'UNKNOWN_LINKED_ACCOUNT',
      `No linked account found for account id : ${account.accountId} in environment ${account.environment}`,
    );
  }
  const ttlSeconds = options.ttlSeconds ?? vault.sessionTokenTtlSeconds;
  if (!Number.isInteger(ttlSeconds) || ttlSeconds <= 0) {
    throw new VaultError('VALIDATION_ERROR', 'ttl must be a positive whole number of seconds');
  }
  if (options.forceRefresh !== true) {
    const reusable = await findReusableToken(vault, account, Math.min(MIN_REUSE_SECONDS, ttlSeconds / 2));
    if (reusable !== undefined) return reusable;
  }
  const tokenId = randomToken(16);
  const secret = randomToken(32);
  const token = `cvs_${tokenId}.${secret}`;
  const record: SessionTokenRecord = { hash: hashSecret(secret), ...account, environment: account.environment as Environment };
  const ttlMs = ttlSeconds * 1000;
  await vault.store.insert(sessionTokenGroup(tokenId), RECORD, JSON.stringify(record), { ttlMs });
  const sealed = sealCredential(vault.keyring, token, { ...account, name: `session-token:${tokenId}` });
  await vault.store.insert(group, sessionMember(tokenId), sealed, { ttlMs });
  await vault.emit({ type: 'session_token.issued', ...account, actor: options.actor ?? { type: 'system' } });
  return { token, expires_in: ttlSeconds };
}

async function findReusableToken(
  vault: Vault,
  account: AccountRef,
  minRemainingSeconds: number,
): Promise<IssuedSessionToken | undefined> {
  const now = Date.now();
  const sessions = await vault.store.list(accountGroup(account), SESSION_PREFIX);
  const live = sessions
    .filter(({ entry }) => entry.expiresAt !== undefined && entry.expiresAt - now > minRemainingSeconds * 1000)
    .sort((a, b) => (b.entry.expiresAt ?? 0) - (a.entry.expiresAt ?? 0));
  for (const { member, entry } of live) {
    const tokenId = member.slice(SESSION_PREFIX.length);
    // Revocation removes the token record first; a leftover copy must not be reissued.
    if ((await vault.store.get(sessionTokenGroup(tokenId), RECORD)) === undefined) continue;
    const token = openCredential(vault.keyring, entry.value, { ...account, name: `session-token:${tokenId}` });
    return { token, expires_in: Math.floor(((entry.expiresAt ?? now) - now) / 1000) };
  }
  return undefined;
}

/**
 * Checks a session token against the store; revocation and expiry take effect at once.
 *
 * @throws VaultError `INVALID_SESSION_TOKEN`
 */
export async function verifySessionToken(vault: Vault, token: string): Promise<SessionIdentity> {
  const match = TOKEN_FORMAT.exec(token);
  if (match === null) throw invalidToken();
  const [, tokenId, secret] = match as unknown as [string, string, string];
  const entry = await vault.store.get(sessionTokenGroup(tokenId), RECORD);
  if (entry === undefined) throw invalidToken();
  const record = JSON.parse(entry.value) as SessionTokenRecord;
  if (!secretsEqual(hashSecret(secret), record.hash)) throw invalidToken();
  return { org: record.org, environment: record.environment, accountId: record.accountId, tokenId };
}

/**
 * Revokes a session token everywhere at once. Returns how many tokens it revoked (0 or 1).
 *
 * @example
 * ```ts
 * await revokeSessionToken(vault, token); // 1
 * ```
 */
export async function revokeSessionToken(vault: Vault, token: string): Promise<number> {
  const identity = await verifySessionToken(vault, token);
  const removed = await vault.store.remove(sessionTokenGroup(identity.tokenId), RECORD);
  await vault.store.remove(accountGroup(identity), sessionMember(identity.tokenId));
  if (removed) {
    await vault.emit({
      type: 'session_token.revoked',
      org: identity.org,
      environment: identity.environment,
      accountId: identity.accountId,
      actor: { type: 'session_token', tokenId: identity.tokenId },
    });
  }
  return removed ? 1 : 0;
}

const invalidToken = () => new VaultError('INVALID_SESSION_TOKEN', 'Invalid token');

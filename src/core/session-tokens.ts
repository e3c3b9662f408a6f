/**
 * Session tokens: issuing (or handing back) one for a linked account, checking it with one
 * store read, revoking it. This module owns the token format and its stored record.
 */
import { VaultError } from '../errors.js';
import { PROFILE, SESSION_PREFIX, accountGroup, sessionMember, sessionTokenIdOf } from './layout.js';
import type { AccountRef } from './layout.js';
import { checkAccountRef } from './principal.js';
import type { Environment } from './validation.js';
import type { Vault } from './vault.js';
import { auditedRemoval, type Actor } from './events.js';
import { hashSecret, randomToken, secretsEqual } from '../crypto/secrets.js';
import type { SealContext } from '../crypto/cipher.js';
import { keyKeptChanging, MAX_FENCE_ATTEMPTS, openFor, sealFor, sealingKey } from './envelope.js';
import { accountNotFound } from './credentials.js';

/** An issued (or handed back) session token. */
export interface IssuedSessionToken {
  token: string;
  /** Seconds until the token expires. */
  expiresIn: number;
}

/** The linked account a session token acts for. */
export interface SessionIdentity extends AccountRef {
  environment: Environment;
  tokenId: string;
  /** `connect` for a page token (see {@link issuePageToken}); absent for a session token. */
  purpose?: 'connect';
}

/** Stored in the account's own group, so deleting the account takes its tokens along. */
export interface SessionTokenRecord {
  /** Hash of the secret part, for checking. */
  hash: string;
  /** The whole token, sealed, so a still-valid token can be handed out again (session tokens only). */
  sealed?: string;
  /** `connect` for a page token, which is never handed out again. */
  purpose?: 'connect';
  /** A page token's session token: the page token works only while that one does. */
  parent?: string;
}

// cvs_<account locator>.<128-bit id>.<256-bit secret>, all base64url. The locator names
// the account (org, environment, id) so one store read checks the token.
const TOKEN_FORMAT = /^cvs_([A-Za-z0-9_-]{1,2048})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$/;
// A token about to expire is not worth handing out again.
const MIN_REUSE_SECONDS = 60;

const unknownAccount = (account: AccountRef) =>
  new VaultError(
    'UNKNOWN_LINKED_ACCOUNT',
    `No linked account found for account id : ${account.accountId} in environment ${account.environment}`,
  );
/** What a session token's sealed copy is bound to: its account and its id. */
export const sessionTokenSealContext = (account: AccountRef, tokenId: string): SealContext => ({
  ...account,
  name: `session-token:${tokenId}`,
});

/**
 * Issues a session token for a linked account, or hands back a still-valid one unless
 * `forceRefresh` is set. The token is stored only as a hash (for checking) and sealed by
 * the cipher (so it can be handed out again).
 *
 * @throws VaultError `UNKNOWN_LINKED_ACCOUNT` when the account does not exist
 * @example
 * ```ts
 * const { token, expiresIn } = await issueSessionToken(vault, { org: 'acme', environment: 'test', accountId: 'cust-1' });
 * ```
 */
export async function issueSessionToken(
  vault: Vault,
  ref: AccountRef,
  options: { forceRefresh?: boolean; ttlSeconds?: number; actor?: Actor } = {},
): Promise<IssuedSessionToken> {
  const account = checkAccountRef(ref);
  const group = accountGroup(account);
  const ttlSeconds = options.ttlSeconds ?? vault.sessionTokenTtlSeconds;
  if (!Number.isInteger(ttlSeconds) || ttlSeconds <= 0) {
    throw new VaultError('VALIDATION_ERROR', 'ttl must be a positive whole number of seconds');
  }
  if (options.forceRefresh !== true) {
    const reusable = await findReusableToken(vault, account, Math.min(MIN_REUSE_SECONDS, ttlSeconds / 2));
    if (reusable !== undefined) return reusable;
  }
  const { token, tokenId, hash } = mintToken(account);
  for (let attempt = 0; ; attempt++) {
    const sealing = await sealingKey(vault, account);
    if (sealing === undefined) throw unknownAccount(account);
    const record: SessionTokenRecord = { hash, sealed: sealFor(sealing.dataKey, token, sessionTokenSealContext(account, tokenId)) };
    // Conditional on the profile: a token issued while the account is being deleted must
    // not survive into a later account with the same id; fenced on the data key record, so
    // its sealed copy is never under a key destroyed meanwhile.
    const outcome = await vault.store.batch(
      group,
      [sealing.fence, { op: 'insert', member: sessionMember(tokenId), value: JSON.stringify(record), ttlMs: ttlSeconds * 1000 }],
      { requires: PROFILE },
    );
    if (outcome.committed) break;
    // -1: the profile is gone; 1: the token id is taken (128 random bits: not by chance).
    if (outcome.failed !== 0) throw unknownAccount(account);
    if (attempt + 1 >= MAX_FENCE_ATTEMPTS) throw keyKeptChanging();
  }
  // Tokens expire into dead rows on stores that do not expire rows themselves.
  vault.sweepExpired();
  await vault.emit({ type: 'session_token.issued', ...account, actor: options.actor ?? { type: 'system' } }, () =>
    vault.store.remove(group, sessionMember(tokenId)),
  );
  return { token, expiresIn: ttlSeconds };
}

/** A fresh token for an account: the token, its id, and the hash of its secret. */
function mintToken(account: AccountRef): { token: string; tokenId: string; hash: string } {
  const locator = Buffer.from(JSON.stringify([account.org, account.environment, account.accountId])).toString('base64url');
  const tokenId = randomToken(16);
  const secret = randomToken(32);
  return { token: `cvs_${locator}.${tokenId}.${secret}`, tokenId, hash: hashSecret(secret) };
}

/**
 * Issues a page token for the account of a verified session token: the token a Connect
 * page URL carries. It lives `ttlSeconds` at most, and never beyond its session token;
 * it works only while that session token does (revoking it ends the page at once), and
 * only where the HTTP layer accepts page tokens. Stored as a hash alone: never handed out again.
 *
 * @throws VaultError `INVALID_SESSION_TOKEN` when the session token has just ended; `LINKED_ACCOUNT_NOT_FOUND` when the account is gone
 * @example
 * ```ts
 * const session = await verifySessionToken(vault, token);
 * const page = await issuePageToken(vault, session, 900); // { token, expiresIn <= 900 }
 * ```
 */
export async function issuePageToken(vault: Vault, session: SessionIdentity, ttlSeconds: number): Promise<IssuedSessionToken> {
  if (session.purpose !== undefined) throw new VaultError('FORBIDDEN', 'A page token cannot issue another page token');
  const account: AccountRef = { org: session.org, environment: session.environment, accountId: session.accountId };
  const group = accountGroup(account);
  const parent = await vault.store.get(group, sessionMember(session.tokenId));
  if (parent === undefined) throw invalidToken();
  const parentLeftMs = parent.expiresAt === undefined ? Infinity : parent.expiresAt - Date.now();
  if (parentLeftMs <= 0) throw invalidToken();
  // Rounded up to whole seconds; verifying checks the session token anyway, so the page ends with it.
  const lifetime = Math.min(ttlSeconds, Math.ceil(parentLeftMs / 1000));
  const { token, tokenId, hash } = mintToken(account);
  const record: SessionTokenRecord = { hash, purpose: 'connect', parent: session.tokenId };
  const outcome = await vault.store.batch(
    group,
    [{ op: 'insert', member: sessionMember(tokenId), value: JSON.stringify(record), ttlMs: lifetime * 1000 }],
    { requires: PROFILE },
  );
  if (!outcome.committed) throw accountNotFound(account);
  vault.sweepExpired();
  await vault.emit({ type: 'session_token.issued', ...account, actor: { type: 'session_token', tokenId: session.tokenId } }, () =>
    vault.store.remove(group, sessionMember(tokenId)),
  );
  return { token, expiresIn: lifetime };
}

async function findReusableToken(
  vault: Vault,
  account: AccountRef,
  minRemainingSeconds: number,
): Promise<IssuedSessionToken | undefined> {
  const now = Date.now();
  const sessions = await vault.store.list(accountGroup(account), SESSION_PREFIX);
  let best: { member: string; expiresAt: number; sealed: string } | undefined;
  for (const { member, entry } of sessions) {
    const expiresAt = entry.expiresAt ?? 0;
    if (expiresAt - now <= minRemainingSeconds * 1000 || (best !== undefined && expiresAt <= best.expiresAt)) continue;
    // Page tokens keep no sealed copy: single-purpose, never handed out as session tokens.
    const { sealed } = JSON.parse(entry.value) as SessionTokenRecord;
    if (sealed !== undefined) best = { member, expiresAt, sealed };
  }
  if (best === undefined) return undefined;
  const tokenId = sessionTokenIdOf(best.member);
  const token = await openFor(vault, account, best.sealed, sessionTokenSealContext(account, tokenId));
  return { token, expiresIn: Math.floor((best.expiresAt - now) / 1000) };
}

/** Splits a token into its account, id and secret; `undefined` if it is not one of ours. */
function parseToken(token: string): { account: AccountRef; tokenId: string; secret: string } | undefined {
  const match = TOKEN_FORMAT.exec(token);
  if (match === null) return undefined;
  const [, locator, tokenId, secret] = match as unknown as [string, string, string, string];
  let parts: unknown;
  try {
    parts = JSON.parse(Buffer.from(locator, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  if (!Array.isArray(parts) || parts.length !== 3 || !parts.every((p) => typeof p === 'string' && p.length > 0)) return undefined;
  const [org, environment, accountId] = parts as [string, string, string];
  if (environment !== 'test' && environment !== 'production') return undefined;
  return { account: { org, environment, accountId }, tokenId, secret };
}

/**
 * Checks a session token against the store (one read); revocation, expiry and the
 * account's deletion take effect at once. A Connect page token is refused unless
 * `allowPageToken` is set: code that takes the identity as a session token's must never
 * give a page token (which travels in URLs) a session token's powers. Allowed, it is
 * marked `purpose: 'connect'` and also needs its session token alive (a second read).
 *
 * @throws VaultError `INVALID_SESSION_TOKEN`
 * @example
 * ```ts
 * const { org, environment, accountId } = await verifySessionToken(vault, token);
 * ```
 */
export async function verifySessionToken(
  vault: Vault,
  token: string,
  options: { allowPageToken?: boolean } = {},
): Promise<SessionIdentity> {
  const parsed = parseToken(token);
  if (parsed === undefined) throw invalidToken();
  const entry = await vault.store.get(accountGroup(parsed.account), sessionMember(parsed.tokenId));
  if (entry === undefined) throw invalidToken();
  const record = JSON.parse(entry.value) as SessionTokenRecord;
  if (!secretsEqual(hashSecret(parsed.secret), record.hash)) throw invalidToken();
  const identity: SessionIdentity = { ...parsed.account, environment: parsed.account.environment as Environment, tokenId: parsed.tokenId };
  if (record.purpose === 'connect') {
    if (options.allowPageToken !== true) throw invalidToken();
    // A page token ends with its session token: revoked, expired or its account deleted.
    if (record.parent === undefined || (await vault.store.get(accountGroup(parsed.account), sessionMember(record.parent))) === undefined) {
      throw invalidToken();
    }
    identity.purpose = 'connect';
  }
  return identity;
}

/**
 * Revokes a session token (or a Connect page token) everywhere at once. Returns how many
 * tokens it revoked (0 or 1).
 *
 * @example
 * ```ts
 * await revokeSessionToken(vault, token); // 1
 * ```
 */
export async function revokeSessionToken(vault: Vault, token: string): Promise<number> {
  // A page token may end itself; that gives it no power.
  const identity = await verifySessionToken(vault, token, { allowPageToken: true });
  const event = {
    type: 'session_token.revoked',
    org: identity.org,
    environment: identity.environment,
    accountId: identity.accountId,
    actor: { type: 'session_token', tokenId: identity.tokenId },
  } as const;
  const removed = await auditedRemoval(vault, event, () => vault.store.remove(accountGroup(identity), sessionMember(identity.tokenId)));
  return removed ? 1 : 0;
}

const invalidToken = () => new VaultError('INVALID_SESSION_TOKEN', 'Invalid token');

/** The built-in resolvers (API key, session token) and the chain that asks each in turn. */
import { VaultError } from '../errors.js';
import { verifyApiKey } from '../core/api-keys.js';
import { verifySessionToken } from '../core/session-tokens.js';
import type { AuthResolver, AuthRequest, Caller } from './types.js';
import type { Vault } from '../core/vault.js';

/**
 * The built-in org API key resolver: `x-api-key: tk_...` or `pk_...`, checked against
 * the hashes in the store.
 *
 * @example
 * ```ts
 * createHandler(vault, { resolvers: [resolveApiKey(), resolveSessionToken()] });
 * ```
 */
export function resolveApiKey(options: { header?: string } = {}): AuthResolver {
  const header = (options.header ?? 'x-api-key').toLowerCase();
  return async (request, vault) => {
    const apiKey = request.headers[header];
    if (apiKey === undefined) return undefined;
    const identity = await verifyApiKey(vault, apiKey.trim());
    return { kind: 'api_key', org: identity.org, environment: identity.environment, actor: { type: 'api_key', keyId: identity.keyId } };
  };
}

/**
 * The built-in session token resolver: `Authorization: Bearer <token>`, checked against
 * the store on every request, so a revocation takes effect at once everywhere.
 */
export function resolveSessionToken(): AuthResolver {
  return async (request, vault) => {
    const authorization = request.headers['authorization'];
    if (authorization === undefined) return undefined;
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization);
    if (match === null) throw new VaultError('INVALID_SESSION_TOKEN', 'Invalid token');
    const token = match[1] as string;
    // Page tokens are accepted here, marked, so that the handler keeps them to the page's endpoints.
    const identity = await verifySessionToken(vault, token, { allowPageToken: true });
    return {
      kind: 'session',
      org: identity.org,
      environment: identity.environment,
      accountId: identity.accountId,
      actor: { type: 'session_token', tokenId: identity.tokenId },
      token,
      tokenId: identity.tokenId,
      ...(identity.purpose === undefined ? {} : { purpose: identity.purpose }),
    };
  };
}

/** API key first, then session token: when `x-api-key` is present it decides. */
export const defaultResolvers = (): AuthResolver[] => [resolveApiKey(), resolveSessionToken()];

/**
 * Asks each resolver in turn; the first that recognises a credential decides.
 *
 * @throws VaultError `AUTH_MISSING` when none does
 */
export async function resolveCaller(resolvers: readonly AuthResolver[], request: AuthRequest, vault: Vault): Promise<Caller> {
  for (const resolver of resolvers) {
    const caller = await resolver(request, vault);
    if (caller !== undefined) return caller;
  }
  throw new VaultError('AUTH_MISSING', 'Authorization Token Missing');
}

/** The resolver contract: what a resolver sees of a request and the caller it returns. */
import type { Actor } from '../core/events.js';
import type { Environment } from '../core/validation.js';
import type { Vault } from '../core/vault.js';

/** What a resolver sees of a request: lower-cased header names, and the query string. */
export interface AuthRequest {
  headers: Readonly<Record<string, string | undefined>>;
  query: URLSearchParams;
}

/**
 * Who is calling, as a resolver established it.
 * - `api_key`: acts for a whole org and environment; the linked account comes from the
 *   path, the body, or `linked_account_id` (header or query).
 * - `session`: acts for exactly one linked account. `purpose: 'connect'` marks a page
 *   token (from `POST /connect-url`), which only the Connect page's own endpoints accept.
 */
export type Caller =
  | { kind: 'api_key'; org: string; environment: Environment; actor: Actor }
  | {
      kind: 'session';
      org: string;
      environment: Environment;
      accountId: string;
      actor: Actor;
      token?: string;
      /** The identity the built-in resolver verified (absent from custom resolvers' callers). */
      tokenId?: string;
      purpose?: 'connect';
    };

/**
 * Turns a request into a {@link Caller}. Returns `undefined` when the request carries no
 * credential this resolver understands, so the next resolver gets a turn; throws a
 * `VaultError` (`INVALID_API_KEY`, `INVALID_SESSION_TOKEN`) when it carries one that is bad.
 *
 * @example
 * ```ts
 * // Accept your own platform's service tokens as org API keys:
 * const platformTokens: AuthResolver = async (request) => {
 *   const token = request.headers['x-platform-token'];
 *   if (token === undefined) return undefined;
 *   const org = await myTokens.lookup(token);
 *   if (org === undefined) throw new VaultError('INVALID_API_KEY', 'Invalid Credentials');
 *   return { kind: 'api_key', org, environment: 'production', actor: { type: 'custom', id: 'platform' } };
 * };
 * ```
 */
export type AuthResolver = (request: AuthRequest, vault: Vault) => Promise<Caller | undefined>;

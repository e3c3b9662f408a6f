/** Who acts on which linked account, and the validation of that account reference. */
import type { Actor } from './events.js';
import type { AccountRef } from './layout.js';
import { environmentSchema, linkedAccountIdSchema, orgIdSchema, parseInput } from './validation.js';

/**
 * Who is acting, on which linked account. The HTTP layer builds one from an API key plus
 * `linked_account_id`, or from a session token; a library caller builds one directly.
 */
export interface Principal extends AccountRef {
  /** Recorded in audit events. Default `{ type: 'system' }`. */
  actor?: Actor;
}

/** Validates the account part of a principal. */
export function checkAccountRef(ref: AccountRef): AccountRef {
  return {
    org: parseInput(orgIdSchema, ref.org, 'org'),
    environment: parseInput(environmentSchema, ref.environment, 'environment'),
    accountId: parseInput(linkedAccountIdSchema, ref.accountId, 'linked_account_id'),
  };
}

export const actorOf = (principal: Principal): Actor => principal.actor ?? { type: 'system' };

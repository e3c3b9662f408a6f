/**
 * The wire format: every JSON body the HTTP API and the CLI print is built here from the
 * core's domain values. Change a field name or shape in this one module.
 */
import type { LinkedAccount, UpsertedLinkedAccount } from '../core/accounts.js';
import type { CreatedApiKey } from '../core/api-keys.js';
import type { CredentialInfo, UpsertResult } from '../core/credentials.js';
import type { RotationResult } from '../core/rotation.js';
import type { IssuedSessionToken } from '../core/session-tokens.js';

/** A linked account as `GET|POST /linked-account` answer it. */
export interface WireLinkedAccount {
  _id: string;
  account_id: string;
  name: string;
  environment: string;
  integrations: null;
}

export const linkedAccountToWire = (account: LinkedAccount): WireLinkedAccount => ({
  _id: account.id,
  account_id: account.accountId,
  name: account.name,
  environment: account.environment,
  integrations: null,
});

/** `PUT /linked-account`: the account, and whether the call created it. */
export const upsertedLinkedAccountToWire = ({ account, created }: UpsertedLinkedAccount): WireLinkedAccount & { new_account: boolean } => ({
  ...linkedAccountToWire(account),
  new_account: created,
});

export const credentialActionToWire = (key: string, { action }: UpsertResult) => ({
  success: true as const,
  message: `Auth credential '${key}' ${action} successfully`,
  action,
});

export const credentialDeletedToWire = (key: string) => ({
  success: true as const,
  message: `Auth credential '${key}' deleted successfully`,
});

export const linkedAccountDeletedToWire = () => ({ message: 'User deleted successfully' });

export const sessionTokenToWire = ({ token, expiresIn }: IssuedSessionToken) => ({ token, expires_in: expiresIn });

export const sessionTokenRevokedToWire = (count: number) => ({ success: true as const, revoked_count: count });

/** One credential as `credentials list` prints it; `value` only when revealed. */
export function credentialInfoToWire(info: CredentialInfo): { key: string; created_at: string; updated_at: string; value?: string } {
  const wire: { key: string; created_at: string; updated_at: string; value?: string } = {
    key: info.key,
    created_at: info.createdAt,
    updated_at: info.updatedAt,
  };
  if (info.value !== undefined) wire.value = info.value;
  return wire;
}

export const credentialListToWire = (list: readonly CredentialInfo[]) => ({ credentials: list.map(credentialInfoToWire) });

export const createdApiKeyToWire = (created: CreatedApiKey) => ({
  api_key: created.apiKey,
  key_id: created.keyId,
  org_id: created.org,
  environment: created.environment,
});

export const apiKeyRevokedToWire = () => ({ revoked: true as const });

export const rotationResultToWire = ({ resealed, alreadyCurrent }: RotationResult) => ({ resealed, already_current: alreadyCurrent });

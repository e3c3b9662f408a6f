/**
 * The wire format: every JSON body the HTTP API and the CLI print is built here from the
 * core's domain values. Change a field name or shape in this one module.
 */
import type { LinkedAccount, LinkedAccountPage, UpsertedLinkedAccount } from '../core/accounts.js';
import type { CreatedApiKey } from '../core/api-keys.js';
import type { CredentialInfo, UpsertResult } from '../core/credentials.js';
import type { RotationResult } from '../core/rotation.js';
import type { IssuedSessionToken } from '../core/session-tokens.js';
import type { SettledDefaultApp } from '../connect/app.js';

/** The default-app integration as an account answer lists it: never its credentials. */
export interface WireIntegration {
  _id: string;
  type: 'default_app';
  name: 'Default App';
  createdAt: string;
  updatedAt: string;
}

/** A linked account as every account answer (and `linked-account create`) gives it. */
export interface WireLinkedAccount {
  _id: string;
  associated_org: string;
  account_id: string;
  name: string;
  environment: string;
  udf: Array<{ key_name: string; key_value: string }>;
  /** Upstream's schema: an array, never `null`. */
  integrations: WireIntegration[];
  createdAt: string;
  updatedAt: string;
}

export const linkedAccountToWire = (account: LinkedAccount): WireLinkedAccount => ({
  _id: account.id,
  associated_org: account.org,
  account_id: account.accountId,
  name: account.name,
  environment: account.environment,
  udf: account.udf.map(({ name, value }) => ({ key_name: name, key_value: value })),
  integrations:
    account.defaultApp === undefined
      ? []
      : [
          {
            _id: account.defaultApp.id,
            type: 'default_app',
            name: 'Default App',
            createdAt: account.defaultApp.createdAt,
            updatedAt: account.defaultApp.updatedAt,
          },
        ],
  createdAt: account.createdAt,
  updatedAt: account.updatedAt,
});

/** `PUT /linked-account`: the account, and whether the call created it. */
export const upsertedLinkedAccountToWire = ({ account, created }: UpsertedLinkedAccount): WireLinkedAccount & { new_account: boolean } => ({
  ...linkedAccountToWire(account),
  new_account: created,
});

/** One page of `GET /linked-account` (and `linked-account list`), in mongoose-paginate-v2's shape, which upstream answers. */
export interface WireLinkedAccountPage {
  docs: WireLinkedAccount[];
  totalDocs: number;
  limit: number;
  page: number;
  totalPages: number;
  hasNextPage: boolean;
  hasPrevPage: boolean;
  nextPage: number | null;
  prevPage: number | null;
  pagingCounter: number;
}

export function linkedAccountPageToWire({ accounts, total, page, limit }: LinkedAccountPage): WireLinkedAccountPage {
  // mongoose-paginate-v2 counts one (empty) page when there is nothing to page through.
  const totalPages = Math.max(1, Math.ceil(total / limit));
  const hasPrevPage = page > 1;
  const hasNextPage = page < totalPages;
  return {
    docs: accounts.map(linkedAccountToWire),
    totalDocs: total,
    limit,
    page,
    totalPages,
    hasNextPage,
    hasPrevPage,
    nextPage: hasNextPage ? page + 1 : null,
    prevPage: hasPrevPage ? page - 1 : null,
    pagingCounter: (page - 1) * limit + 1,
  };
}

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

export const rotationResultToWire = ({ rewrapped, resealed, alreadyCurrent }: RotationResult) => ({ rewrapped, resealed, already_current: alreadyCurrent });

/** One declared field as the fields endpoint answers it. */
export interface WireDefaultAppField {
  name: string;
  type: string;
  required: boolean;
  label: string;
  placeholder?: string;
  help_text?: string;
  options?: Array<{ label: string; value: string }>;
  is_set: boolean;
}

/** The default app's fields for a caller: declared fields with whether each is set, and every stored name. */
export function defaultAppFieldsToWire(
  app: SettledDefaultApp | undefined,
  stored: readonly string[],
): { name: string | null; fields: WireDefaultAppField[]; set: string[] } {
  const set = new Set(stored);
  return {
    name: app?.name ?? null,
    fields: (app?.fields ?? []).map((field) => {
      const out: WireDefaultAppField = { name: field.name, type: field.type, required: field.required, label: field.label, is_set: set.has(field.name) };
      if (field.placeholder !== undefined) out.placeholder = field.placeholder;
      if (field.help_text !== undefined) out.help_text = field.help_text;
      if (field.options !== undefined) out.options = field.options.map((option) => ({ label: option.label, value: option.value }));
      return out;
    }),
    set: [...stored].sort(),
  };
}

export const connectUrlToWire = (url: string, expiresIn: number): { url: string; expires_in: number } => ({ url, expires_in: expiresIn });

/**
 * The surface of the upstream client that the contract test generates at run time
 * (`upstream-client.ts.txt`, compiled against types generated from the upstream excerpt).
 * Type-only: the test copies this file beside the generated client, whose type-check
 * proves that every body and parameter these types allow is one the upstream types allow.
 */

/** Credentials to send: an org API key (`x-api-key`), a session token (bearer), both, or neither. */
export interface Auth {
  apiKey?: string;
  sessionToken?: string;
}

/** Where an API-key caller names the account of a credential request. */
export interface NamedAccount {
  header?: string;
  query?: string;
}

/** One call's outcome: which upstream operation, the status, and the parsed JSON body. */
export interface UpstreamResult {
  operationId: string;
  method: 'get' | 'put' | 'post' | 'delete';
  /** The path template, as the upstream document spells it. */
  path: string;
  status: number;
  body: unknown;
}

export interface CreateAccountBody {
  account_id?: string;
  linked_account_id?: string;
  name?: string;
  your_app?: { auth_credentials: Record<string, string> };
  udf?: Record<string, string>;
}

export interface UpsertAccountFields {
  name?: string;
  your_app?: { auth_credentials?: Record<string, string> };
  udf?: Record<string, string>;
}

export interface UpsertAccountBody extends UpsertAccountFields {
  account_id?: string;
  linked_account_id?: string;
  payload?: UpsertAccountFields;
}

/** One method per upstream operation, named by its operationId. */
export interface UpstreamCalls {
  upsertDefaultAppAuthCredential(auth: Auth, key: string, value: unknown, account?: NamedAccount): Promise<UpstreamResult>;
  deleteDefaultAppAuthCredential(auth: Auth, key: string, account?: NamedAccount): Promise<UpstreamResult>;
  listLinkedAccounts(auth: Auth, query?: { page?: number; limit?: number }): Promise<UpstreamResult>;
  createLinkedAccount(auth: Auth, body: CreateAccountBody): Promise<UpstreamResult>;
  upsertLinkedAccount(auth: Auth, body: UpsertAccountBody): Promise<UpstreamResult>;
  getLinkedAccountById(auth: Auth, accountId: string): Promise<UpstreamResult>;
  deleteLinkedAccount(auth: Auth, accountId: string): Promise<UpstreamResult>;
  generateSessionTokenForLinkedAccount(auth: Auth, accountId: string, forceRefresh?: 'true' | 'false'): Promise<UpstreamResult>;
  revokeLinkedAccountSessionToken(auth: Auth): Promise<UpstreamResult>;
  getLinkedAccountBySessionToken(auth: Auth): Promise<UpstreamResult>;
}

/** What the generated module exports. */
export type UpstreamClientFactory = (baseUrl: string) => UpstreamCalls;

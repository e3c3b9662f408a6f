/**
 * The API's endpoints: for each, its contract (validated and documented from one place) and
 * the core operation it runs; response bodies come from `wire.ts`.
 */
import type { z } from 'zod';
import { VaultError, type VaultErrorCode } from '../errors.js';
import { upsertDefaultAppCredential, deleteDefaultAppCredential } from '../core/credentials.js';
import {
  createLinkedAccount,
  deleteLinkedAccount,
  getLinkedAccount,
  listLinkedAccounts,
  upsertLinkedAccount,
  type CreateLinkedAccountInput,
} from '../core/accounts.js';
import { issuePageToken, issueSessionToken, revokeSessionToken } from '../core/session-tokens.js';
import { listDefaultAppCredentials } from '../core/credentials.js';
import { fieldValueProblem, type SettledDefaultApp, type SettledField } from '../connect/app.js';
import { DEFAULT_MAX_VALUE_BYTES, linkedAccountIdSchema, parseInput } from '../core/validation.js';
import type { AccountRef } from '../core/layout.js';
import type { Principal } from '../core/principal.js';
import type { Vault } from '../core/vault.js';
import type { AuthRequest, Caller } from '../auth/types.js';
import * as schemas from './schemas.js';
import * as wire from './wire.js';
import type { QueryParam } from './query.js';

export { DEFAULT_BASE_PATH } from './base-path.js';

/** Which credentials an endpoint takes. */
export type RouteAuth = 'api_key' | 'session' | 'either';

/** What an operation gets to work with. */
export interface RouteContext {
  vault: Vault;
  auth: AuthRequest;
  params: Record<string, string>;
  /** Authenticates the request with the route's rules (resolvers, then the kind check). */
  caller: () => Promise<Caller>;
  /** Reads and parses the JSON body. */
  body: () => Promise<unknown>;
  /** The default app the server declares, if any. */
  app: SettledDefaultApp | undefined;
  /** Lifetime of Connect page tokens, when the page is on. */
  pageTokenTtlSeconds: number | undefined;
  /** The Connect page's URL carrying `token` (only when the page is on). */
  connectUrl: (token: string) => string;
}

/** One endpoint: its contract (for validation and for the OpenAPI document) and its operation. */
export interface Route {
  method: 'GET' | 'PUT' | 'POST' | 'DELETE';
  /** OpenAPI-style template under the base path, e.g. `/linked-account/{linked_account_id}`. */
  path: string;
  operationId: string;
  tag: string;
  summary: string;
  description: string;
  auth: RouteAuth;
  pathParams?: Record<string, { schema: z.ZodType; description: string }>;
  /** Takes `linked_account_id` as a header or query parameter (API-key callers). */
  linkedAccountParam?: boolean;
  /**
   * The request may name a linked account (path, body or `linked_account_id`), and a
   * session token naming another account than its own is refused (403).
   */
  namesAccount?: boolean;
  /** Also takes a Connect page token (a session token does everywhere a session is taken). */
  pageToken?: boolean;
  /** Not part of the upstream contract: a credvault extension (marked so in the document). */
  extension?: boolean;
  query?: ReadonlyArray<QueryParam<unknown>>;
  body?: z.ZodType;
  response: z.ZodType;
  /**
   * Error codes of the operation itself. Those its properties imply (auth, body, account
   * parameter) and those of every route come from {@link answerableErrors}.
   */
  errors: VaultErrorCode[];
  run(context: RouteContext): Promise<unknown>;
}

/** What changes the errors a route can answer beyond its own properties. */
export interface AnswerOptions {
  /** Whether the failed-authentication limit is on (it answers 429). Default true, as in the handler. */
  failedAuthLimit?: boolean;
}

/**
 * Every error code a route can answer, derived from its properties. The OpenAPI document
 * lists exactly these, and the handler answers nothing else (any other code is reported as
 * a bug and answered 500), so the document and the answers cannot drift apart.
 *
 * @example
 * ```ts
 * const route = routes.find((r) => r.operationId === 'listLinkedAccounts');
 * answerableErrors(route!, { failedAuthLimit: false }); // [..., 'FORBIDDEN', 'VALIDATION_ERROR', ...]
 * ```
 */
export function answerableErrors(route: Route, options: AnswerOptions = {}): VaultErrorCode[] {
  const codes = new Set<VaultErrorCode>([
    // Every route authenticates, whichever resolver recognises the credential.
    'AUTH_MISSING',
    'INVALID_API_KEY',
    'INVALID_SESSION_TOKEN',
    // The request target and the strict headers are checked on every route.
    'VALIDATION_ERROR',
    // Its path answers other methods with 405.
    'METHOD_NOT_ALLOWED',
    'STORE_UNAVAILABLE',
    'INTERNAL',
  ]);
  if (options.failedAuthLimit ?? true) codes.add('TOO_MANY_REQUESTS');
  if (route.auth !== 'either' || route.namesAccount === true || route.linkedAccountParam === true) codes.add('FORBIDDEN');
  if (route.linkedAccountParam === true) codes.add('MISSING_LINKED_ACCOUNT_ID');
  if (route.body !== undefined) codes.add('PAYLOAD_TOO_LARGE');
  for (const code of route.errors) codes.add(code);
  return [...codes];
}

/** The route's value of a declared query parameter. */
const queryValue = <T>(context: RouteContext, param: QueryParam<T>): T => param.read(context.auth.query.getAll(param.name));

const keyParam = {
  key: { schema: schemas.credentialKeySchema, description: 'The credential key name: 1 to 128 of A-Z a-z 0-9 _ . -' },
};
const accountParam = {
  linked_account_id: { schema: schemas.linkedAccountIdSchema, description: 'The linked account id.' },
};

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** A string `credentialValueBody` accepts as it is: non-empty, well-formed, within the default cap even at 3 bytes a unit. */
const surelyValidValue = (value: unknown): value is string =>
  typeof value === 'string' && value.length >= 1 && value.length * 3 <= DEFAULT_MAX_VALUE_BYTES && value.isWellFormed();

async function validBody<S extends z.ZodType>(context: RouteContext, schema: S): Promise<{ raw: Record<string, unknown>; data: z.output<S> }> {
  return checkedBody(schema, await context.body());
}

/** `raw`, a parsed body, checked against `schema`. */
function checkedBody<S extends z.ZodType>(schema: S, raw: unknown): { raw: Record<string, unknown>; data: z.output<S> } {
  const data = parseInput(schema, raw, '');
  return { raw: raw as Record<string, unknown>, data };
}

/**
 * The account a credential request acts on. API keys name it with `linked_account_id`
 * (header or query; both must agree); session tokens carry it, and may not name another.
 */
function credentialPrincipal(caller: Caller, auth: AuthRequest): Principal {
  const fromHeader = auth.headers['linked_account_id'];
  const fromQueryAll = auth.query.getAll('linked_account_id');
  if (fromQueryAll.length > 1) throw new VaultError('VALIDATION_ERROR', 'linked_account_id query parameter must be given once');
  const fromQuery = fromQueryAll[0];
  if (fromHeader !== undefined && fromQuery !== undefined && fromHeader !== fromQuery) {
    throw new VaultError('VALIDATION_ERROR', 'linked_account_id header and query parameter name different accounts');
  }
  const named = fromHeader ?? fromQuery;
  if (caller.kind === 'session') return sessionPrincipal(caller, named);
  if (named === undefined || named === '') {
    throw new VaultError('MISSING_LINKED_ACCOUNT_ID', 'linked_account_id header is required when using org API key authentication.');
  }
  return apiKeyPrincipal(caller, parseInput(linkedAccountIdSchema, named, 'linked_account_id'));
}

function sessionPrincipal(caller: Extract<Caller, { kind: 'session' }>, named: string | undefined): Principal {
  if (named !== undefined && named !== caller.accountId) {
    throw new VaultError('FORBIDDEN', 'This session token belongs to a different linked account than linked_account_id names');
  }
  return { org: caller.org, environment: caller.environment, accountId: caller.accountId, actor: caller.actor };
}

const apiKeyPrincipal = (caller: Caller, accountId: string): Principal => ({
  org: caller.org,
  environment: caller.environment,
  accountId,
  actor: caller.actor,
});

/** The account id a linked-account body names: `account_id` or its alias, which must agree. */
function bodyAccountId(data: { account_id?: string | undefined; linked_account_id?: string | undefined }): string | undefined {
  if (data.account_id !== undefined && data.linked_account_id !== undefined && data.account_id !== data.linked_account_id) {
    throw new VaultError('VALIDATION_ERROR', 'account_id and linked_account_id name different accounts');
  }
  return data.account_id ?? data.linked_account_id;
}

type AccountBody = Record<string, unknown> & { your_app?: { auth_credentials?: unknown }; udf?: unknown };

/** Linked-account fields from a (validated) body, maps taken raw so `__proto__` stays a key. */
function accountInput(fields: AccountBody | undefined, name: string | undefined): CreateLinkedAccountInput {
  const input: CreateLinkedAccountInput = {};
  if (name !== undefined) input.name = name;
  if (fields?.udf !== undefined) input.udf = fields.udf as Record<string, unknown>;
  // `your_app: {}` (PUT) asks for a default app with no credential set.
  if (fields?.your_app !== undefined) input.credentials = (fields.your_app.auth_credentials ?? {}) as Record<string, unknown>;
  return input;
}

/**
 * Holds a credential write to the declared default app: a session token (the customer)
 * writes only declared fields; anyone's value for a declared field must fit it.
 */
function checkDeclaredField(app: SettledDefaultApp, caller: Caller, key: string, value: unknown): void {
  const field = declaredField(app, caller, key);
  // Values of other types are the core's to refuse, with its own message.
  if (field === undefined || (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean')) return;
  const problem = fieldValueProblem(field, String(value));
  if (problem !== undefined) throw new VaultError('VALIDATION_ERROR', problem);
}

/** The declared field `key`; a session token (the customer) may touch no other key. */
function declaredField(app: SettledDefaultApp, caller: Caller, key: string): SettledField | undefined {
  const field = app.byName.get(key);
  if (field === undefined && caller.kind === 'session') throw new VaultError('VALIDATION_ERROR', `'${key}' is not a field of ${app.name}`);
  return field;
}

/** Account input whose seeded credentials are held to the declared fields, as a credential write is. */
function declaredInput(context: RouteContext, caller: Caller, input: CreateLinkedAccountInput): CreateLinkedAccountInput {
  const app = context.app;
  if (app === undefined || input.credentials === undefined) return input;
  for (const key of Object.keys(input.credentials)) checkDeclaredField(app, caller, key, input.credentials[key]);
  return input;
}

const accountView = async (vault: Vault, ref: AccountRef) => wire.linkedAccountToWire(await getLinkedAccount(vault, ref));

export const routes: readonly Route[] = [
  {
    method: 'PUT',
    path: '/linked-account/default-app/auth-credentials/{key}',
    operationId: 'upsertDefaultAppAuthCredential',
    tag: 'Credentials',
    summary: "Add or replace one credential of the linked account's default app",
    description:
      'Encrypts the value and stores it under the key name. Answers `added` the first time and `updated` after. With an org API key, name the account in the `linked_account_id` header or query parameter.',
    auth: 'either',
    pathParams: keyParam,
    linkedAccountParam: true,
    namesAccount: true,
    pageToken: true,
    body: schemas.credentialValueBody,
    response: schemas.credentialActionResponse,
    errors: ['LINKED_ACCOUNT_NOT_FOUND', 'DEFAULT_APP_NOT_FOUND'],
    async run(context) {
      const caller = await context.caller();
      const principal = credentialPrincipal(caller, context.auth);
      const raw = await context.body();
      // The common body, an object with a string value the schema surely accepts, skips the
      // schema (the core checks the value again); anything else gets the schema's verdict.
      const value = isPlainObject(raw) && surelyValidValue(raw['value']) ? raw['value'] : checkedBody(schemas.credentialValueBody, raw).raw['value'];
      const key = context.params['key'] as string;
      if (context.app !== undefined) checkDeclaredField(context.app, caller, key, value);
      return wire.credentialActionToWire(key, await upsertDefaultAppCredential(context.vault, principal, key, value));
    },
  },
  {
    method: 'DELETE',
    path: '/linked-account/default-app/auth-credentials/{key}',
    operationId: 'deleteDefaultAppAuthCredential',
    tag: 'Credentials',
    summary: "Delete one credential of the linked account's default app",
    description: 'Removes the named credential. Answers 404 when the key is not stored.',
    auth: 'either',
    pathParams: keyParam,
    linkedAccountParam: true,
    namesAccount: true,
    pageToken: true,
    response: schemas.genericSuccessResponse,
    errors: ['LINKED_ACCOUNT_NOT_FOUND', 'DEFAULT_APP_NOT_FOUND', 'CREDENTIAL_NOT_FOUND'],
    async run(context) {
      const caller = await context.caller();
      const principal = credentialPrincipal(caller, context.auth);
      const key = context.params['key'] as string;
      // What a session token may not write, it may not delete either: the backend's own keys.
      if (context.app !== undefined) declaredField(context.app, caller, key);
      await deleteDefaultAppCredential(context.vault, principal, key);
      return wire.credentialDeletedToWire(key);
    },
  },
  {
    method: 'GET',
    path: '/linked-account',
    operationId: 'listLinkedAccounts',
    tag: 'Linked Accounts',
    summary: "List the linked accounts of the API key's org and environment",
    description:
      'Pages through the accounts in account id order, with an exact `totalDocs`. Credentials are never included. `page` and `limit` take decimal integers only.',
    auth: 'api_key',
    query: [schemas.pageQuery, schemas.limitQuery, schemas.envVariableNameQuery, schemas.envVariableValueQuery],
    response: schemas.linkedAccountPageResponse,
    errors: [],
    async run(context) {
      const caller = await context.caller();
      const page = queryValue(context, schemas.pageQuery);
      const limit = queryValue(context, schemas.limitQuery);
      queryValue(context, schemas.envVariableNameQuery);
      queryValue(context, schemas.envVariableValueQuery);
      const listed = await listLinkedAccounts(context.vault, { org: caller.org, environment: caller.environment }, { page, limit });
      return wire.linkedAccountPageToWire(listed);
    },
  },
  {
    method: 'POST',
    path: '/linked-account',
    operationId: 'createLinkedAccount',
    tag: 'Linked Accounts',
    summary: 'Create a linked account',
    description:
      "Creates a linked account in the API key's org and environment. `your_app.auth_credentials` gives it a default app seeded with those credentials.",
    auth: 'api_key',
    body: schemas.createLinkedAccountBody,
    response: schemas.linkedAccountResponse,
    errors: ['LINKED_ACCOUNT_EXISTS'],
    async run(context) {
      const caller = await context.caller();
      const { raw, data } = await validBody(context, schemas.createLinkedAccountBody);
      const accountId = bodyAccountId(data);
      if (accountId === undefined) throw new VaultError('VALIDATION_ERROR', 'account_id (or linked_account_id) is required');
      return wire.linkedAccountToWire(
        await createLinkedAccount(context.vault, apiKeyPrincipal(caller, accountId), declaredInput(context, caller, accountInput(raw as AccountBody, data.name))),
      );
    },
  },
  {
    method: 'PUT',
    path: '/linked-account',
    operationId: 'upsertLinkedAccount',
    tag: 'Linked Accounts',
    summary: 'Update a linked account, or create it',
    description:
      "With an org API key the account is named by `account_id` (or `linked_account_id`); with a session token it is the token's account. Fields may be flat or nested under `payload`; a field given both ways is taken from `payload`. `your_app` and its `auth_credentials` are optional: `your_app: {}` gives the account a default app without setting a credential. Answers with the account and `new_account`.",
    auth: 'either',
    namesAccount: true,
    body: schemas.upsertLinkedAccountBody,
    response: schemas.upsertedLinkedAccountResponse,
    // Only when the account is deleted while it is being updated.
    errors: ['LINKED_ACCOUNT_NOT_FOUND'],
    async run(context) {
      const caller = await context.caller();
      const { raw, data } = await validBody(context, schemas.upsertLinkedAccountBody);
      const named = bodyAccountId(data);
      let principal: Principal;
      if (caller.kind === 'session') {
        principal = sessionPrincipal(caller, named);
      } else {
        if (named === undefined) throw new VaultError('VALIDATION_ERROR', 'account_id (or linked_account_id) is required');
        principal = apiKeyPrincipal(caller, named);
      }
      // `payload` wins field by field: a flat field it does not name still applies.
      const flat = raw as AccountBody;
      const nested = raw['payload'] as AccountBody | undefined;
      const fields: AccountBody = {};
      for (const field of ['udf', 'your_app'] as const) {
        const value = nested?.[field] !== undefined ? nested[field] : flat[field];
        if (value !== undefined) fields[field] = value as never;
      }
      const name = data.payload?.name ?? data.name;
      return wire.upsertedLinkedAccountToWire(await upsertLinkedAccount(context.vault, principal, declaredInput(context, caller, accountInput(fields, name))));
    },
  },
  {
    method: 'GET',
    path: '/linked-account/{linked_account_id}',
    operationId: 'getLinkedAccountById',
    tag: 'Linked Accounts',
    summary: 'Read a linked account',
    description: 'Answers the account without any credential or token. A session token may read only its own account.',
    auth: 'either',
    namesAccount: true,
    pathParams: accountParam,
    response: schemas.linkedAccountResponse,
    errors: ['LINKED_ACCOUNT_NOT_FOUND'],
    async run(context) {
      const caller = await context.caller();
      const accountId = parseInput(linkedAccountIdSchema, context.params['linked_account_id'], 'linked_account_id');
      const principal = caller.kind === 'session' ? sessionPrincipal(caller, accountId) : apiKeyPrincipal(caller, accountId);
      return accountView(context.vault, principal);
    },
  },
  {
    method: 'DELETE',
    path: '/linked-account/{linked_account_id}',
    operationId: 'deleteLinkedAccount',
    tag: 'Linked Accounts',
    summary: 'Delete a linked account with everything it owns',
    description: 'Removes the account, its default app, its credentials and its session tokens from the store.',
    auth: 'api_key',
    pathParams: accountParam,
    response: schemas.deleteLinkedAccountResponse,
    errors: ['LINKED_ACCOUNT_NOT_FOUND'],
    async run(context) {
      const caller = await context.caller();
      const accountId = parseInput(linkedAccountIdSchema, context.params['linked_account_id'], 'linked_account_id');
      await deleteLinkedAccount(context.vault, apiKeyPrincipal(caller, accountId));
      return wire.linkedAccountDeletedToWire();
    },
  },
  {
    method: 'POST',
    path: '/session-token',
    operationId: 'generateSessionTokenForLinkedAccount',
    tag: 'Session Tokens',
    summary: 'Issue a session token for a linked account',
    description: 'Hands back a still-valid token for the account unless `force_refresh=true`, in which case a new one is issued.',
    auth: 'api_key',
    query: [schemas.forceRefreshQuery],
    body: schemas.sessionTokenBody,
    response: schemas.sessionTokenResponse,
    errors: ['UNKNOWN_LINKED_ACCOUNT'],
    async run(context) {
      const caller = await context.caller();
      const forceRefresh = queryValue(context, schemas.forceRefreshQuery);
      const { data } = await validBody(context, schemas.sessionTokenBody);
      const issued = await issueSessionToken(context.vault, apiKeyPrincipal(caller, data.linked_account_id), {
        forceRefresh: forceRefresh === 'true',
        actor: caller.actor,
      });
      return wire.sessionTokenToWire(issued);
    },
  },
  {
    method: 'POST',
    path: '/session-token/revoke',
    operationId: 'revokeLinkedAccountSessionToken',
    tag: 'Session Tokens',
    summary: 'Revoke the session token that authenticates this request',
    description: 'The token stops working at once, on every server sharing the store. The body is not used.',
    auth: 'session',
    pageToken: true,
    response: schemas.revokeSessionTokenResponse,
    errors: [],
    async run(context) {
      const caller = await context.caller();
      if (caller.kind !== 'session' || caller.token === undefined) {
        throw new VaultError('FORBIDDEN', 'Only a credvault session token can be revoked here');
      }
      return wire.sessionTokenRevokedToWire(await revokeSessionToken(context.vault, caller.token));
    },
  },
  {
    method: 'GET',
    path: '/session/active-linked-account',
    operationId: 'getLinkedAccountBySessionToken',
    tag: 'Linked Accounts',
    summary: "Read the session token's linked account",
    description: 'For front ends that hold only a session token (or a Connect page token).',
    auth: 'session',
    pageToken: true,
    response: schemas.linkedAccountResponse,
    errors: ['LINKED_ACCOUNT_NOT_FOUND'],
    async run(context) {
      const caller = await context.caller();
      return accountView(context.vault, sessionPrincipal(caller as Extract<Caller, { kind: 'session' }>, undefined));
    },
  },
  {
    method: 'GET',
    path: '/linked-account/default-app/auth-credentials',
    operationId: 'getDefaultAppAuthCredentialFields',
    tag: 'Credentials',
    summary: "The default app's fields, and which credentials are set",
    description:
      "credvault extension. The name and fields the server declares for its default app (as the Connect page shows them), each with whether a value is stored under it, and the names of every stored credential. Never a value. With an org API key, name the account in the `linked_account_id` header or query parameter.",
    auth: 'either',
    linkedAccountParam: true,
    namesAccount: true,
    pageToken: true,
    extension: true,
    response: schemas.defaultAppFieldsResponse,
    errors: ['LINKED_ACCOUNT_NOT_FOUND'],
    async run(context) {
      const principal = credentialPrincipal(await context.caller(), context.auth);
      const stored = await listDefaultAppCredentials(context.vault, principal);
      return wire.defaultAppFieldsToWire(context.app, stored.map((item) => item.key));
    },
  },
  {
    method: 'POST',
    path: '/connect-url',
    operationId: 'createConnectUrl',
    tag: 'Session Tokens',
    summary: 'A link to the Connect page, where the customer enters their credentials',
    description:
      "credvault extension (upstream has the path; this request and answer are credvault's). Answers the URL of this server's Connect page for the session token's linked account, giving the account a default app if it has none. The URL carries a page token in its fragment (never in its path or query, which servers and proxies log): it lives a few minutes (never beyond the session token), works only for the page's own requests, and ends when the session token is revoked. 404 when the server declares no default app fields. The body is not used.",
    auth: 'session',
    // Refold serves this path too; the excerpt we follow does not describe it, so its shape here is ours.
    extension: true,
    response: schemas.connectUrlResponse,
    errors: ['ROUTE_NOT_FOUND', 'LINKED_ACCOUNT_NOT_FOUND'],
    async run(context) {
      const caller = await context.caller();
      if (context.app === undefined || context.pageTokenTtlSeconds === undefined) {
        throw new VaultError('ROUTE_NOT_FOUND', 'The Connect page is not enabled on this server: it declares no default app fields');
      }
      if (caller.kind !== 'session' || caller.tokenId === undefined) {
        throw new VaultError('FORBIDDEN', 'Only a credvault session token can open the Connect page');
      }
      const principal = sessionPrincipal(caller, undefined);
      const account = await getLinkedAccount(context.vault, principal);
      // The page writes through the default app: give the account one (never re-creating it).
      if (account.defaultApp === undefined) await upsertLinkedAccount(context.vault, principal, { credentials: {} }, { create: false });
      const page = await issuePageToken(
        context.vault,
        { org: caller.org, environment: caller.environment, accountId: caller.accountId, tokenId: caller.tokenId },
        context.pageTokenTtlSeconds,
      );
      return wire.connectUrlToWire(context.connectUrl(page.token), page.expiresIn);
    },
  },
];

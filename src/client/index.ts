/**
 * `credvault/client`: a typed fetch client for holders of a session token (or a Connect
 * page token), for browsers and Node alike.
 *
 * It has no runtime dependencies: every import below is type-only and erased, so the built
 * file loads as is from a `<script type="module">`. The types are the server's own response
 * schemas, so client and server cannot drift apart.
 */
import type { z } from 'zod';
import type * as schemas from '../http/schemas.js';

/**
 * `PUT .../auth-credentials/{key}`: whether the credential was added or replaced.
 * @example `{ success: true, message: "Auth credential 'api_key' added successfully", action: 'added' }`
 */
export type CredentialAction = z.output<typeof schemas.credentialActionResponse>;
/**
 * `DELETE .../auth-credentials/{key}`: the credential is gone.
 * @example `{ success: true, message: "Auth credential 'api_key' deleted successfully" }`
 */
export type CredentialDeleted = z.output<typeof schemas.genericSuccessResponse>;
/**
 * The linked account the token belongs to (never any credential).
 * @example `const { account_id, name, integrations } = await client.activeAccount();`
 */
export type LinkedAccount = z.output<typeof schemas.linkedAccountResponse>;
/**
 * The default app's name and fields, and which credential names are stored (never values).
 * @example `{ name: 'Acme CRM', fields: [{ name: 'api_key', type: 'password', required: true, label: 'API key', is_set: false }], set: [] }`
 */
export type DefaultAppFields = z.output<typeof schemas.defaultAppFieldsResponse>;
/**
 * `POST /session-token/revoke`: how many tokens stopped working (0 or 1).
 * @example `{ success: true, revoked_count: 1 }`
 */
export type SessionTokenRevoked = z.output<typeof schemas.revokeSessionTokenResponse>;
/**
 * The Connect page URL, with a short-lived page token in its fragment.
 * @example `{ url: 'https://vault.example.com/connect#token=cvs_...', expires_in: 900 }`
 */
export type ConnectUrl = z.output<typeof schemas.connectUrlResponse>;
/**
 * The body of every error answer of the API.
 * @example `{ status_code: 401, http_error_type: 'UNAUTHORIZED', error: 'INVALID_TOKEN', message: 'Invalid token' }`
 */
export type ErrorEnvelope = z.output<typeof schemas.errorEnvelopeSchema>;

/**
 * What a credential can be set to; the server stores numbers and booleans as their string form.
 * @example `await client.upsertCredential('port', 8443); // stored as '8443'`
 */
export type CredentialValue = string | number | boolean;

/**
 * The `error` codes the client sets itself, when the server's envelope is not what failed:
 *
 * | error | status_code | http_error_type | when |
 * |---|---|---|---|
 * | `VALIDATION_ERROR` | 0 | `BAD_REQUEST` | a bad key name or option; no request was sent |
 * | `NETWORK_ERROR` | 0 | `NETWORK_ERROR` | no answer arrived (refused, reset, DNS, CORS) |
 * | `ABORTED` | 0 | `ABORTED` | the call's `signal` aborted it |
 * | `INVALID_RESPONSE` | the HTTP status | `INVALID_RESPONSE` | an answer that is not the API's JSON (a proxy's HTML 502, say) |
 *
 * Every other `error` is the server's, from its envelope (`INVALID_TOKEN`, `RESOURCE_NOT_FOUND`, ...).
 *
 * @example
 * ```ts
 * if (error instanceof CredvaultError && error.error === ('NETWORK_ERROR' satisfies CredvaultClientErrorCode)) retryLater();
 * ```
 */
export type CredvaultClientErrorCode = 'VALIDATION_ERROR' | 'NETWORK_ERROR' | 'ABORTED' | 'INVALID_RESPONSE';

/**
 * The one error the client throws: the server's error envelope, or one the client made with
 * a {@link CredvaultClientErrorCode}. `status_code` is 0 when no HTTP answer was received.
 * No property, message or stack ever holds the token.
 *
 * @example
 * ```ts
 * try {
 *   await client.deleteCredential('api_key');
 * } catch (error) {
 *   if (error instanceof CredvaultError && error.status_code === 401) showExpired();
 *   else if (error instanceof CredvaultError && error.error === 'RESOURCE_NOT_FOUND') { ... }
 *   else throw error;
 * }
 * ```
 */
export class CredvaultError extends Error {
  override readonly name = 'CredvaultError';
  /** The HTTP status, or 0 when no answer was received. */
  readonly status_code: number;
  /** e.g. `UNAUTHORIZED`, `NOT_FOUND`; see {@link CredvaultClientErrorCode} for the client's own. */
  readonly http_error_type: string;
  /** e.g. `INVALID_TOKEN`, `RESOURCE_NOT_FOUND`, or a {@link CredvaultClientErrorCode}. */
  readonly error: string;

  constructor(envelope: ErrorEnvelope, options?: { cause?: unknown }) {
    super(envelope.message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.status_code = envelope.status_code;
    this.http_error_type = envelope.http_error_type;
    this.error = envelope.error;
  }
}

/**
 * How {@link createCredvaultClient} reaches the API.
 * @example `{ baseUrl: '/api/v2/public', token: sessionToken }`
 */
export interface CredvaultClientOptions {
  /**
   * The API's base URL: absolute (`https://vault.example.com/api/v2/public`) or, in a
   * browser, path-only (`/api/v2/public`). A trailing slash is ignored.
   */
  baseUrl: string;
  /** A session token (`cvs_...`) or a Connect page token. Sent only as `Authorization: Bearer`. */
  token: string;
  /** The fetch to use. Default: `globalThis.fetch`. */
  fetch?: typeof globalThis.fetch;
}

/**
 * Per-call options.
 * @example `await client.fields({ signal: AbortSignal.timeout(5_000) });`
 */
export interface CredvaultCallOptions {
  /** Aborts the call; it then fails with `ABORTED`. */
  signal?: AbortSignal;
}

/**
 * The API calls open to a session-token holder. Each fails only with a {@link CredvaultError}.
 * @example `const client: CredvaultClient = createCredvaultClient({ baseUrl, token });`
 */
export interface CredvaultClient {
  /**
   * Adds or replaces one credential of the account's default app.
   *
   * @example
   * ```ts
   * const { action } = await client.upsertCredential('api_key', 'sk_live_...'); // 'added' | 'updated'
   * ```
   */
  upsertCredential(key: string, value: CredentialValue, options?: CredvaultCallOptions): Promise<CredentialAction>;
  /**
   * Deletes one credential; a key that is not stored fails 404 `RESOURCE_NOT_FOUND`.
   *
   * @example
   * ```ts
   * await client.deleteCredential('api_key');
   * ```
   */
  deleteCredential(key: string, options?: CredvaultCallOptions): Promise<CredentialDeleted>;
  /**
   * The linked account the token belongs to.
   *
   * @example
   * ```ts
   * const { account_id, name } = await client.activeAccount();
   * ```
   */
  activeAccount(options?: CredvaultCallOptions): Promise<LinkedAccount>;
  /**
   * The default app's declared fields, each with `is_set`, and every stored credential name.
   *
   * @example
   * ```ts
   * const { name, fields, set } = await client.fields();
   * const missing = fields.filter((f) => f.required && !f.is_set);
   * ```
   */
  fields(options?: CredvaultCallOptions): Promise<DefaultAppFields>;
  /**
   * Revokes the token this client holds; every later call fails 401 `INVALID_TOKEN`.
   *
   * @example
   * ```ts
   * await client.revoke(); // { success: true, revoked_count: 1 }
   * ```
   */
  revoke(options?: CredvaultCallOptions): Promise<SessionTokenRevoked>;
  /**
   * A Connect page URL for the account, carrying a short-lived page token in its fragment.
   * Needs a session token (not a page token) and a server with a default app declared.
   *
   * @example
   * ```ts
   * const { url, expires_in } = await client.connectUrl();
   * window.open(url);
   * ```
   */
  connectUrl(options?: CredvaultCallOptions): Promise<ConnectUrl>;
}

// The server's own rule for key names (core/validation.ts), checked before a key goes into a path.
const CREDENTIAL_KEY_PATTERN = /^[A-Za-z0-9_.-]{1,128}$/;
// Visible ASCII only: anything else would make fetch throw an error that quotes the header value.
const TOKEN_PATTERN = /^[\x21-\x7e]+$/;
const CREDENTIALS_PATH = '/linked-account/default-app/auth-credentials';

function clientError(error: CredvaultClientErrorCode, message: string, statusCode = 0, cause?: unknown): CredvaultError {
  const httpErrorType = error === 'VALIDATION_ERROR' ? 'BAD_REQUEST' : error;
  return new CredvaultError({ status_code: statusCode, http_error_type: httpErrorType, error, message }, { cause });
}

function credentialPath(key: string): string {
  if (typeof key !== 'string' || !CREDENTIAL_KEY_PATTERN.test(key)) {
    throw clientError('VALIDATION_ERROR', 'key must be 1 to 128 characters of A-Z a-z 0-9 _ . -');
  }
  // The server's rule allows them, but every URL parser folds a '.' or '..' segment away.
  if (key === '.' || key === '..') {
    throw clientError('VALIDATION_ERROR', "key must not be '.' or '..': a URL path cannot carry it");
  }
  return `${CREDENTIALS_PATH}/${encodeURIComponent(key)}`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isEnvelope(value: unknown): value is ErrorEnvelope {
  return (
    isRecord(value) &&
    typeof value['status_code'] === 'number' &&
    typeof value['http_error_type'] === 'string' &&
    typeof value['error'] === 'string' &&
    typeof value['message'] === 'string'
  );
}

/**
 * A client for the credvault API that acts with one session token (or Connect page token).
 * It needs only `fetch`: it runs in browsers, Node 18+, Deno and workers. A token that is
 * not a header-safe string, or no fetch at all, throws a `VALIDATION_ERROR` {@link CredvaultError} here.
 *
 * @example
 * ```ts
 * import { createCredvaultClient, CredvaultError } from 'credvault/client';
 *
 * const client = createCredvaultClient({ baseUrl: '/api/v2/public', token: sessionToken });
 * await client.upsertCredential('api_key', 'sk_live_...');
 * const { fields } = await client.fields();
 * ```
 */
export function createCredvaultClient(options: CredvaultClientOptions): CredvaultClient {
  const { token } = options;
  if (typeof token !== 'string' || !TOKEN_PATTERN.test(token)) {
    throw clientError('VALIDATION_ERROR', 'token must be a non-empty string of visible ASCII characters');
  }
  if (typeof options.baseUrl !== 'string') throw clientError('VALIDATION_ERROR', 'baseUrl must be a string');
  const baseUrl = options.baseUrl.replace(/\/+$/, '');
  // Called as a plain function: a browser's fetch refuses any other `this` than the window.
  const fetchImpl = options.fetch ?? globalThis.fetch;
  if (typeof fetchImpl !== 'function') throw clientError('VALIDATION_ERROR', 'no fetch available: pass options.fetch');

  // Whatever a server, proxy or fetch implementation says, the token never leaves in an error.
  const redact = (text: string) => text.split(token).join('[redacted]');
  const mentionsToken = (cause: unknown): boolean => {
    try {
      // Down the cause chain too, a few links deep: fetch failures nest (TypeError -> system error).
      for (let link = cause, depth = 0; link !== undefined && link !== null && depth < 5; depth++) {
        const text = link instanceof Error ? `${link.message}\n${link.stack ?? ''}` : String(link);
        if (text.includes(token)) return true;
        link = link instanceof Error ? link.cause : undefined;
      }
      return false;
    } catch {
      return true;
    }
  };
  const safeCause = (cause: unknown) => (mentionsToken(cause) ? undefined : cause);

  async function request<T>(method: string, path: string, body: unknown, callOptions: CredvaultCallOptions | undefined): Promise<T> {
    const signal = callOptions?.signal;
    const headers: Record<string, string> = { accept: 'application/json', authorization: `Bearer ${token}` };
    const init: RequestInit = { method, headers };
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    if (signal !== undefined) init.signal = signal;

    const failed = (cause: unknown, what: string) =>
      signal?.aborted === true
        ? clientError('ABORTED', `The ${method} request to credvault was aborted`, 0, safeCause(signal.reason))
        : clientError('NETWORK_ERROR', `The ${method} request to credvault got no ${what}`, 0, safeCause(cause));

    let response: Response;
    try {
      response = await fetchImpl(`${baseUrl}${path}`, init);
    } catch (cause) {
      throw failed(cause, 'answer');
    }
    let text: string;
    try {
      text = await response.text();
    } catch (cause) {
      throw failed(cause, 'complete answer');
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    if (response.ok && isRecord(parsed)) return parsed as T;
    if (!response.ok && isEnvelope(parsed)) {
      throw new CredvaultError({
        status_code: parsed.status_code,
        http_error_type: redact(parsed.http_error_type),
        error: redact(parsed.error),
        message: redact(parsed.message),
      });
    }
    // Neither the API's answer nor its envelope: say what came, never the body itself.
    const type = response.headers.get('content-type')?.split(';')[0]?.trim() || 'no content type';
    throw clientError('INVALID_RESPONSE', `Expected the credvault API's JSON, got HTTP ${response.status} (${redact(type)})`, response.status);
  }

  return {
    upsertCredential: async (key, value, callOptions) =>
      request<CredentialAction>('PUT', credentialPath(key), { value }, callOptions),
    deleteCredential: async (key, callOptions) => request<CredentialDeleted>('DELETE', credentialPath(key), undefined, callOptions),
    activeAccount: (callOptions) => request<LinkedAccount>('GET', '/session/active-linked-account', undefined, callOptions),
    fields: (callOptions) => request<DefaultAppFields>('GET', CREDENTIALS_PATH, undefined, callOptions),
    revoke: (callOptions) => request<SessionTokenRevoked>('POST', '/session-token/revoke', undefined, callOptions),
    connectUrl: (callOptions) => request<ConnectUrl>('POST', '/connect-url', undefined, callOptions),
  };
}

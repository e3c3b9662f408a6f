import { VaultError, isVaultError } from '../core/errors.js';
import { upsertDefaultAppCredential, deleteDefaultAppCredential } from '../core/credentials.js';
import { linkedAccountIdSchema, parseInput } from '../core/validation.js';
import type { Principal } from '../core/principal.js';
import type { Vault } from '../core/vault.js';
import { defaultResolvers, resolveCaller } from '../auth/resolvers.js';
import type { AuthRequest, AuthResolver, Caller } from '../auth/types.js';
import { DEFAULT_BODY_LIMIT_BYTES, tooLarge } from './body.js';
import { errorEnvelope } from './errors.js';

/** A request as any framework can describe it. */
export interface HandlerRequest {
  method: string;
  /** The path, without the query string. */
  path: string;
  /** Header values by name (any case); repeated headers as arrays. */
  headers: Readonly<Record<string, string | readonly string[] | undefined>>;
  /** The query string (with or without `?`) or parsed parameters. */
  query?: string | URLSearchParams;
  /**
   * The raw body, or a function that reads it (called only once the caller is
   * authenticated). Bindings whose framework has already parsed the body pass
   * `parsedBody` instead.
   */
  body?: Uint8Array | string | (() => Promise<Uint8Array>);
  parsedBody?: unknown;
}

/** What to send back. `body` is always a JSON value. */
export interface HandlerResponse {
  status: number;
  headers: Record<string, string>;
  body: unknown;
}

export interface HandlerOptions {
  /** Where the API is mounted. Default `/api/v2/public`. */
  basePath?: string;
  /** Auth resolvers, asked in order. Default: API key, then session token. */
  resolvers?: readonly AuthResolver[];
  /** Largest request body accepted, in bytes. Default 100 KiB. */
  bodyLimitBytes?: number;
  /** Where unexpected errors are reported (name and stack only, never data). Default stderr. */
  logError?: (line: string) => void;
}

/** The framework-agnostic API: one function from request to response. */
export interface CredvaultHandler {
  readonly basePath: string;
  readonly bodyLimitBytes: number;
  /** Whether `path` falls under the base path (bindings pass other paths on). */
  owns(path: string): boolean;
  handle(request: HandlerRequest): Promise<HandlerResponse>;
}

export const DEFAULT_BASE_PATH = '/api/v2/public';

interface RouteContext {
  vault: Vault;
  request: HandlerRequest;
  auth: AuthRequest;
  params: string[];
  caller: () => Promise<Caller>;
  body: () => Promise<unknown>;
}

type Operation = (context: RouteContext) => Promise<unknown>;

interface Route {
  pattern: RegExp;
  methods: Partial<Record<string, Operation>>;
}

const routes: Route[] = [
  {
    pattern: /^\/linked-account\/default-app\/auth-credentials\/([^/]*)$/,
    methods: {
      PUT: async ({ vault, params, caller, auth, body }) => {
        const principal = accountPrincipal(await caller(), auth);
        const payload = await body();
        if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
          throw new VaultError('VALIDATION_ERROR', 'Request body must be a JSON object with a "value" field');
        }
        const key = params[0] as string;
        const { action } = await upsertDefaultAppCredential(vault, principal, key, (payload as { value?: unknown }).value);
        return { success: true, message: `Auth credential '${key}' ${action} successfully`, action };
      },
      DELETE: async ({ vault, params, caller, auth }) => {
        const principal = accountPrincipal(await caller(), auth);
        const key = params[0] as string;
        await deleteDefaultAppCredential(vault, principal, key);
        return { success: true, message: `Auth credential '${key}' deleted successfully` };
      },
    },
  },
];

/**
 * Builds the API as one function from {@link HandlerRequest} to {@link HandlerResponse}.
 * The Express, Koa and fetch bindings are thin translations of it.
 *
 * @example
 * ```ts
 * const handler = createHandler(vault);
 * const res = await handler.handle({
 *   method: 'PUT',
 *   path: '/api/v2/public/linked-account/default-app/auth-credentials/api_key',
 *   headers: { 'x-api-key': apiKey, linked_account_id: 'cust-1' },
 *   body: JSON.stringify({ value: 'sk_test_123' }),
 * });
 * // res.status === 200, res.body.action === 'added'
 * ```
 */
export function createHandler(vault: Vault, options: HandlerOptions = {}): CredvaultHandler {
  const basePath = normalizeBasePath(options.basePath ?? DEFAULT_BASE_PATH);
  const resolvers = options.resolvers ?? defaultResolvers();
  const bodyLimitBytes = options.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES;
  const logError = options.logError ?? ((line: string) => process.stderr.write(`${line}\n`));

  const owns = (path: string) => basePath === '' || path === basePath || path.startsWith(`${basePath}/`);

  async function dispatch(request: HandlerRequest): Promise<HandlerResponse> {
    const relative = request.path.slice(basePath.length) || '/';
    const route = routes.find((r) => r.pattern.test(relative));
    if (route === undefined) {
      throw new VaultError('ROUTE_NOT_FOUND', `No route for ${request.method.toUpperCase()} ${request.path}`);
    }
    const method = request.method.toUpperCase();
    const operation = route.methods[method];
    if (operation === undefined) {
      const allowed = Object.keys(route.methods).join(', ');
      throw new VaultError('METHOD_NOT_ALLOWED', `Method ${method} is not allowed on ${request.path}; allowed: ${allowed}`, {
        details: { allow: allowed },
      });
    }
    const params = (route.pattern.exec(relative) as RegExpExecArray).slice(1).map(decodeParam);
    const auth: AuthRequest = { headers: lowerCaseHeaders(request.headers), query: toSearchParams(request.query) };
    const context: RouteContext = {
      vault,
      request,
      auth,
      params,
      caller: () => authenticate(auth),
      body: () => parseBody(request, bodyLimitBytes),
    };
    return { status: 200, headers: {}, body: await operation(context) };
  }

  async function authenticate(auth: AuthRequest): Promise<Caller> {
    try {
      return await resolveCaller(resolvers, auth, vault);
    } catch (error) {
      if (isVaultError(error)) {
        await vault.emit({ type: 'auth.failed', actor: { type: 'system' }, reason: error.code }).catch(() => undefined);
      }
      throw error;
    }
  }

  return {
    basePath,
    bodyLimitBytes,
    owns,
    async handle(request) {
      try {
        return await dispatch(request);
      } catch (error) {
        return errorResponse(error, logError);
      }
    },
  };
}

/** The envelope for any error; unexpected ones are logged by name and stack, never by message. */
export function errorResponse(error: unknown, logError: (line: string) => void = () => undefined): HandlerResponse {
  let vaultError: VaultError;
  if (isVaultError(error)) {
    vaultError = error;
  } else {
    const name = error instanceof Error ? error.name : typeof error;
    const stack = error instanceof Error ? (error.stack ?? '').split('\n').slice(1, 4).join('\n') : '';
    logError(`credvault: unexpected ${name}\n${stack}`);
    vaultError = new VaultError('INTERNAL', 'Internal server error');
  }
  const envelope = errorEnvelope(vaultError);
  const headers: Record<string, string> = {};
  const allow = vaultError.details?.['allow'];
  if (typeof allow === 'string') headers['allow'] = allow;
  if (vaultError.code === 'PAYLOAD_TOO_LARGE') headers['connection'] = 'close';
  return { status: envelope.status_code, headers, body: envelope };
}

/**
 * The account a credential request acts on. API keys name it with `linked_account_id`
 * (header or query; both must agree); session tokens carry it, and may not name another.
 */
function accountPrincipal(caller: Caller, auth: AuthRequest): Principal {
  const fromHeader = auth.headers['linked_account_id'];
  const fromQueryAll = auth.query.getAll('linked_account_id');
  if (fromQueryAll.length > 1) throw new VaultError('VALIDATION_ERROR', 'linked_account_id query parameter must be given once');
  const fromQuery = fromQueryAll[0];
  if (fromHeader !== undefined && fromQuery !== undefined && fromHeader !== fromQuery) {
    throw new VaultError('VALIDATION_ERROR', 'linked_account_id header and query parameter name different accounts');
  }
  const named = fromHeader ?? fromQuery;
  if (caller.kind === 'session') {
    if (named !== undefined && named !== caller.accountId) {
      throw new VaultError('FORBIDDEN', 'This session token belongs to a different linked account than linked_account_id names');
    }
    return { org: caller.org, environment: caller.environment, accountId: caller.accountId, actor: caller.actor };
  }
  if (named === undefined || named === '') {
    throw new VaultError(
      'MISSING_LINKED_ACCOUNT_ID',
      'linked_account_id header is required when using org API key authentication.',
    );
  }
  const accountId = parseInput(linkedAccountIdSchema, named, 'linked_account_id');
  return { org: caller.org, environment: caller.environment, accountId, actor: caller.actor };
}

async function parseBody(request: HandlerRequest, limit: number): Promise<unknown> {
  if (request.parsedBody !== undefined) return request.parsedBody;
  const raw = typeof request.body === 'function' ? await request.body() : request.body;
  if (raw === undefined) throw new VaultError('VALIDATION_ERROR', 'Request body is required');
  const bytes = typeof raw === 'string' ? Buffer.from(raw, 'utf8') : raw;
  if (bytes.byteLength > limit) {
    throw tooLarge(limit);
  }
  if (bytes.byteLength === 0) throw new VaultError('VALIDATION_ERROR', 'Request body is required');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new VaultError('VALIDATION_ERROR', 'Request body is not valid UTF-8');
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    // The parser's own message quotes the body, which may hold a secret.
    throw new VaultError('VALIDATION_ERROR', 'Request body is not valid JSON');
  }
}

function decodeParam(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new VaultError('VALIDATION_ERROR', 'The path holds a malformed percent-encoding');
  }
}

function lowerCaseHeaders(headers: HandlerRequest['headers']): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = Object.create(null) as Record<string, string | undefined>;
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    out[name.toLowerCase()] = typeof value === 'string' ? value : value.join(', ');
  }
  return out;
}

function toSearchParams(query: HandlerRequest['query']): URLSearchParams {
  if (query instanceof URLSearchParams) return query;
  return new URLSearchParams(query ?? '');
}

function normalizeBasePath(basePath: string): string {
  const trimmed = basePath.replace(/\/+$/, '');
  return trimmed === '' ? '' : trimmed.startsWith('/') ? trimmed : `/${trimmed}`;
}

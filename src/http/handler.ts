/** The framework-agnostic API: one function from a described request to a status and a JSON body (routing, auth, limits, errors). */
import { VaultError, isVaultError } from '../errors.js';
import type { Vault } from '../core/vault.js';
import { defaultResolvers, resolveCaller } from '../auth/resolvers.js';
import { presentedApiKeyId } from '../core/api-keys.js';
import type { AuthRequest, AuthResolver, Caller } from '../auth/types.js';
import { DEFAULT_BODY_LIMIT_BYTES, tooLarge } from './body.js';
import { errorEnvelope } from './errors.js';
import { answerableErrors, DEFAULT_BASE_PATH, routes, type Route, type RouteAuth } from './routes.js';
import type { VaultErrorCode } from '../errors.js';
import { openApiDocument } from './openapi.js';
import { STRICT_HEADERS, type StrictHeader } from './node.js';
import { FailedAuthLimiter, type FailedAuthLimitOptions } from '../auth/limiter.js';
import { checkDefaultApp, type DefaultAppDefinition } from '../connect/app.js';
import { pageFile, pageHeaders, settleConnect, type ConnectOptions, type ConnectSettings } from '../connect/page.js';

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
  /** The peer's address (the socket's), for the failed-authentication limit. */
  clientAddress?: string | undefined;
  /**
   * Node's `rawHeaders` (name, value, name, value, ...), where the binding has them. The
   * strict headers (`linked_account_id`, `x-api-key`, `authorization`) must then appear
   * once, with exactly the value in `headers`.
   */
  rawHeaders?: readonly string[] | undefined;
  /**
   * Strict headers whose bytes on the wire were not exactly their parsed value (see
   * `attachHeaderInspection` in `credvault/express` and the other bindings): refused.
   */
  headerDefects?: readonly string[] | undefined;
}

/** What to send back: `body` as JSON, unless `raw` is set (the Connect page's files). */
export interface HandlerResponse {
  status: number;
  headers: Record<string, string>;
  body: unknown;
  /** A body to send as it is, with the `content-type` in `headers`; `body` is then unused. */
  raw?: string;
}

export interface HandlerOptions {
  /** Where the API is mounted. Default `/api/v2/public`. */
  basePath?: string;
  /** Auth resolvers, asked in order. Default: API key, then session token. */
  resolvers?: readonly AuthResolver[];
  /** Largest request body accepted, in bytes. Default 100 KiB. */
  bodyLimitBytes?: number;
  /**
   * Where unexpected errors are reported (name and stack only, never data), and bugs such as
   * a route raising an error its OpenAPI operation does not list. Default stderr.
   */
  logError?: (line: string) => void;
  /** Also answer `GET <openApiPath>` with the OpenAPI document, e.g. `/openapi.json`. Off by default. */
  openApiPath?: string;
  /**
   * Answer 429 to clients (and API key ids) with too many failed authentications,
   * counted in the store so the limit holds across processes. On by default; `false`
   * turns it off.
   */
  failedAuthLimit?: FailedAuthLimitOptions | false;
  /**
   * How many reverse proxies in front of the server to trust. With N > 0 the client
   * address is the one the outermost trusted proxy saw, read from `X-Forwarded-For`;
   * with 0 (the default) it is the socket's peer, and `X-Forwarded-For` is ignored.
   */
  trustProxyHops?: number;
  /**
   * The default app's name and fields, which its customers fill in on the Connect page.
   * With it, the page is served (see `connect`), `POST /connect-url` hands out links to
   * it, and session tokens may write only these fields, with values that fit them.
   * Checked when the handler is built.
   */
  defaultApp?: DefaultAppDefinition;
  /** Where and how the Connect page is served (it needs `defaultApp`). */
  connect?: ConnectOptions;
}

/** The framework-agnostic API: one function from request to response. */
export interface CredvaultHandler {
  readonly basePath: string;
  readonly bodyLimitBytes: number;
  /** The Connect page's path, when the page is on. */
  readonly connectPath: string | undefined;
  /** Whether `path` falls under the base path (or is the Connect page's); bindings pass other paths on. */
  owns(path: string): boolean;
  handle(request: HandlerRequest): Promise<HandlerResponse>;
}

export { DEFAULT_BASE_PATH };

/** A route with its path template compiled, grouped by path for 405 answers. */
interface CompiledPath {
  pattern: RegExp;
  paramNames: string[];
  byMethod: Map<string, Route>;
}

function compileRoutes(list: readonly Route[]): CompiledPath[] {
  const byPath = new Map<string, CompiledPath>();
  for (const route of list) {
    let compiled = byPath.get(route.path);
    if (compiled === undefined) {
      const paramNames: string[] = [];
      const source = route.path.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{(\w+)\}/g, (_, name: string) => {
        paramNames.push(name);
        return '([^/]*)';
      });
      compiled = { pattern: new RegExp(`^${source}$`), paramNames, byMethod: new Map() };
      byPath.set(route.path, compiled);
    }
    compiled.byMethod.set(route.method, route);
  }
  return [...byPath.values()];
}

const compiledRoutes = compileRoutes(routes);

const WRONG_KIND: Record<Exclude<RouteAuth, 'either'>, string> = {
  api_key: 'This endpoint requires an org API key (x-api-key); session tokens are not accepted',
  session: 'This endpoint requires a linked-account session token (Authorization: Bearer); API keys are not accepted',
};

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

  const openApiPath = options.openApiPath;
  let openApi: unknown;
  const app = options.defaultApp === undefined ? undefined : checkDefaultApp(options.defaultApp);
  if (app === undefined && options.connect !== undefined) {
    throw new VaultError('INVALID_CONFIGURATION', 'The Connect page (connect) needs the default app\'s fields (defaultApp)');
  }
  const connect = app === undefined ? undefined : settleConnect(options.connect);
  // The page's paths and the API's must not overlap either way: the page would answer for the API.
  const overlaps = (a: string, b: string) => a === b || a.startsWith(`${b}/`) || b.startsWith(`${a}/`);
  if (connect !== undefined && (basePath === '' || overlaps(connect.path, basePath))) {
    throw new VaultError('INVALID_CONFIGURATION', `connect.path (${connect.path}) and the API's base path (${basePath || '/'}) must not contain one another`);
  }
  if (connect !== undefined && openApiPath !== undefined && (openApiPath === connect.path || openApiPath.startsWith(`${connect.path}/`))) {
    throw new VaultError('INVALID_CONFIGURATION', `openApiPath (${openApiPath}) must lie outside connect.path (${connect.path})`);
  }
  const onPage = (path: string) => connect !== undefined && (path === connect.path || path.startsWith(`${connect.path}/`));
  const limiter = options.failedAuthLimit === false ? undefined : new FailedAuthLimiter(vault.store, options.failedAuthLimit);
  const trustProxyHops = options.trustProxyHops ?? 0;
  // The very lists the document shows, for this handler's settings.
  const answerable = new Map<Route, ReadonlySet<VaultErrorCode>>(
    routes.map((route) => [route, new Set(answerableErrors(route, { failedAuthLimit: limiter !== undefined }))]),
  );
  const owns = (path: string) =>
    basePath === '' || path === basePath || path.startsWith(`${basePath}/`) || path === openApiPath || onPage(path);

  async function dispatch(request: HandlerRequest): Promise<HandlerResponse> {
    if (connect !== undefined && onPage(request.path)) return servePage(connect, request);
    if (request.path === openApiPath) {
      if (request.method.toUpperCase() !== 'GET') {
        throw new VaultError('METHOD_NOT_ALLOWED', `Method ${request.method.toUpperCase()} is not allowed on ${openApiPath}; allowed: GET`, {
          details: { allow: 'GET' },
        });
      }
      openApi ??= openApiDocument({ basePath, failedAuthLimit: limiter !== undefined });
      return { status: 200, headers: {}, body: openApi };
    }
    const method = request.method.toUpperCase();
    if (!owns(request.path)) throw new VaultError('ROUTE_NOT_FOUND', `No route for ${method} ${request.path}`);
    const relative = request.path.slice(basePath.length) || '/';
    let compiled: CompiledPath | undefined;
    let match: RegExpExecArray | null = null;
    for (const candidate of compiledRoutes) {
      match = candidate.pattern.exec(relative);
      if (match !== null) {
        compiled = candidate;
        break;
      }
    }
    if (compiled === undefined || match === null) {
      throw new VaultError('ROUTE_NOT_FOUND', `No route for ${method} ${request.path}`);
    }
    const route = compiled.byMethod.get(method);
    if (route === undefined) {
      const allowed = [...compiled.byMethod.keys()].join(', ');
      throw new VaultError('METHOD_NOT_ALLOWED', `Method ${method} is not allowed on ${request.path}; allowed: ${allowed}`, {
        details: { allow: allowed },
      });
    }
    try {
      return await runRoute(route, compiled, match, request);
    } catch (error) {
      const listed = answerable.get(route);
      // A 500 is answered as INTERNAL whatever its code, and is already reported by errorResponse.
      if (isVaultError(error) && listed?.has(error.code) !== true && errorEnvelope(error).status_code !== 500) {
        logError(`credvault: bug: ${route.operationId} raised ${error.code}, which its OpenAPI operation does not list; answered 500`);
        return errorResponse(new VaultError('INTERNAL', 'Internal server error'));
      }
      throw error;
    }
  }

  function servePage(settings: ConnectSettings, request: HandlerRequest): HandlerResponse {
    const method = request.method.toUpperCase();
    const file = pageFile(settings, basePath, request.path.slice(settings.path.length));
    if (file === undefined) throw new VaultError('ROUTE_NOT_FOUND', `No route for ${method} ${request.path}`);
    // HEAD as GET: Node's HTTP server sends the headers and drops the body.
    if (method !== 'GET' && method !== 'HEAD') {
      throw new VaultError('METHOD_NOT_ALLOWED', `Method ${method} is not allowed on ${request.path}; allowed: GET, HEAD`, {
        details: { allow: 'GET, HEAD' },
      });
    }
    return { status: 200, headers: pageHeaders(settings, file.contentType), body: undefined, raw: file.body };
  }

  /** The connect URL for a page token: the public URL, or this request's own origin. */
  function connectUrlFor(request: HandlerRequest, auth: AuthRequest, token: string): string {
    const settings = connect as ConnectSettings;
    let origin = settings.publicUrl;
    if (origin === undefined) {
      const host = auth.headers['host'];
      if (host === undefined || !HOST.test(host)) {
        throw new VaultError('VALIDATION_ERROR', 'The Host header must name this server (host or host:port) to build a connect URL');
      }
      // The entry the outermost trusted proxy added, as for the client address.
      const protos = (auth.headers['x-forwarded-proto'] ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
      const forwarded = trustProxyHops > 0 ? (protos[protos.length - trustProxyHops] ?? protos[0]) : undefined;
      origin = `${forwarded === 'https' ? 'https' : 'http'}://${host}`;
    }
    // The fragment never reaches a server: not this one's logs, a proxy's, nor a Referer.
    return `${origin}${settings.path}#token=${encodeURIComponent(token)}`;
  }

  async function runRoute(route: Route, compiled: CompiledPath, match: RegExpExecArray, request: HandlerRequest): Promise<HandlerResponse> {
    checkRequestTarget(request);
    checkStrictHeaders(request);
    const params: Record<string, string> = {};
    for (let i = 0; i < compiled.paramNames.length; i++) {
      params[compiled.paramNames[i] as string] = decodeParam(match[i + 1] as string);
    }
    const auth: AuthRequest = { headers: lowerCaseHeaders(request.headers), query: toSearchParams(request.query) };
    const body = await route.run({
      vault,
      auth,
      params,
      caller: () => authenticate(auth, route, clientAddress(request, auth, trustProxyHops)),
      body: () => parseBody(request, bodyLimitBytes),
      app,
      pageTokenTtlSeconds: connect?.tokenTtlSeconds,
      connectUrl: (token) => connectUrlFor(request, auth, token),
    });
    return { status: 200, headers: {}, body };
  }

  async function authenticate(auth: AuthRequest, route: Route, address: string | undefined): Promise<Caller> {
    const kind = route.auth;
    const addressSubject = address !== undefined && address !== '' ? `ip:${address}` : undefined;
    let caller: Caller;
    try {
      limiter?.checkAddress(addressSubject);
      caller = await resolveCaller(resolvers, auth, vault);
    } catch (error) {
      if (!isVaultError(error)) throw error;
      let answer = error;
      if (limiter !== undefined && (error.code === 'INVALID_API_KEY' || error.code === 'INVALID_SESSION_TOKEN')) {
        const subjects = addressSubject === undefined ? [] : [addressSubject];
        // Only the id of a real key is counted, so random ids add no rows.
        const keyId = presentedApiKeyId(error);
        if (limiter.perApiKeyId && keyId !== undefined) subjects.push(`key:${keyId}`);
        answer = (await limiter.recordFailure(subjects).catch(() => undefined)) ?? error;
        vault.sweepExpired();
      }
      await vault.emit({ type: 'auth.failed', actor: { type: 'system' }, reason: error.code }).catch(() => undefined);
      throw answer;
    }
    if (kind !== 'either' && caller.kind !== kind) throw new VaultError('FORBIDDEN', WRONG_KIND[kind]);
    if (caller.kind === 'session' && caller.purpose === 'connect' && route.pageToken !== true) {
      throw new VaultError('FORBIDDEN', "This is a Connect page token: it works only for the page's own requests; use a session token");
    }
    return caller;
  }

  return {
    basePath,
    bodyLimitBytes,
    connectPath: connect?.path,
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
  // Server-side failures the client is told nothing about reach the operator by code only.
  if (isVaultError(error) && envelope.status_code === 500) logError(`credvault: ${vaultError.code} (answered 500)`);
  const headers: Record<string, string> = {};
  if (envelope.status_code === 401) {
    // RFC 9110 11.6.1: every 401 carries a challenge. Session tokens are the Authorization
    // scheme; org API keys travel in x-api-key, which no registered scheme describes.
    headers['www-authenticate'] =
      vaultError.code === 'INVALID_SESSION_TOKEN' ? 'Bearer realm="credvault", error="invalid_token"' : 'Bearer realm="credvault"';
  }
  const allow = vaultError.details?.['allow'];
  if (typeof allow === 'string') headers['allow'] = allow;
  if (vaultError.code === 'PAYLOAD_TOO_LARGE') headers['connection'] = 'close';
  const retryAfter = vaultError.details?.['retryAfter'];
  if (typeof retryAfter === 'number') headers['retry-after'] = String(retryAfter);
  return { status: envelope.status_code, headers, body: envelope };
}

/** The client address the limit counts against; see `trustProxyHops`. */
function clientAddress(request: HandlerRequest, auth: AuthRequest, trustProxyHops: number): string | undefined {
  if (trustProxyHops <= 0) return request.clientAddress;
  const forwarded = (auth.headers['x-forwarded-for'] ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  // Each trusted proxy appended the address it saw; the outermost one saw the client.
  return forwarded[forwarded.length - trustProxyHops] ?? forwarded[0] ?? request.clientAddress;
}

// Stateless between calls (never asked to stream), so one serves every request.
const UTF8 = new TextDecoder('utf-8', { fatal: true });

async function parseBody(request: HandlerRequest, limit: number): Promise<unknown> {
  if (request.parsedBody !== undefined) return request.parsedBody;
  const raw = typeof request.body === 'function' ? await request.body() : request.body;
  if (raw === undefined) throw new VaultError('VALIDATION_ERROR', 'Request body is required');
  const size = typeof raw === 'string' ? Buffer.byteLength(raw, 'utf8') : raw.byteLength;
  if (size > limit) {
    throw tooLarge(limit);
  }
  if (size === 0) throw new VaultError('VALIDATION_ERROR', 'Request body is required');
  let text: string;
  if (typeof raw === 'string') {
    // What encoding it as UTF-8 and decoding it again gives, without the two copies: lone
    // surrogates become U+FFFD, and a leading byte order mark goes.
    text = raw.isWellFormed() ? raw : raw.toWellFormed();
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  } else {
    try {
      text = UTF8.decode(raw);
    } catch {
      throw new VaultError('VALIDATION_ERROR', 'Request body is not valid UTF-8');
    }
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    // The parser's own message quotes the body, which may hold a secret.
    throw new VaultError('VALIDATION_ERROR', 'Request body is not valid JSON');
  }
}

/**
 * The path and query are routed as sent, so they must be ASCII: Node reads other bytes of
 * the request line as latin1, which would turn UTF-8 `café` into `cafÃ©`. Percent-encode
 * such characters (as UTF-8) instead.
 */
function checkRequestTarget(request: HandlerRequest): void {
  const query = typeof request.query === 'string' ? request.query : '';
  if (!isAscii(request.path) || !isAscii(query)) {
    throw new VaultError('VALIDATION_ERROR', 'The request path and query must be ASCII; percent-encode other characters as UTF-8');
  }
}

/** A Host header: a name (underscores too: container names have them) or IPv4 address, or a bracketed IPv6 address, with an optional port. */
const HOST = /^(?:[A-Za-z0-9._-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$/;

// eslint-disable-next-line no-control-regex
const isAscii = (text: string) => /^[\x00-\x7f]*$/.test(text);

/** Printable ASCII (and tabs inside), with no whitespace around it. */
// eslint-disable-next-line no-control-regex
const CLEAN_HEADER_VALUE = /^(?:[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?)?$/;

/**
 * Refuses a strict header (`linked_account_id`, `x-api-key`, `authorization`) whose value
 * may not be what the client sent: repeated (Node joins repeats with `, `), holding bytes
 * outside ASCII (read as latin1), or with whitespace around it (trimmed by Node). An id
 * must never silently become another id; the `linked_account_id` query parameter carries
 * any id, percent-encoded as UTF-8.
 */
function checkStrictHeaders(request: HandlerRequest): void {
  // On the path of every request: one pass over each header list, no allocation.
  for (const name of STRICT_HEADERS) {
    if (request.headerDefects?.includes(name) === true || !strictHeaderIsClean(request, name)) {
      // Never the value: x-api-key and authorization carry secrets.
      throw new VaultError(
        'VALIDATION_ERROR',
        name === 'linked_account_id'
          ? 'The linked_account_id header must be sent once, in printable ASCII, with no leading or trailing whitespace; send other ids in the linked_account_id query parameter, percent-encoded as UTF-8'
          : `The ${name} header must be sent once, in printable ASCII, with no leading or trailing whitespace`,
      );
    }
  }
}

/**
 * Whether `name` is absent, or present exactly once in `headers` (under one spelling) with
 * a clean value, and, when `rawHeaders` are given, at most once there with that same value.
 */
function strictHeaderIsClean(request: HandlerRequest, name: StrictHeader): boolean {
  let count = 0;
  let value: string | readonly string[] | undefined;
  for (const key in request.headers) {
    if (key.length !== name.length || key.toLowerCase() !== name) continue;
    const found = request.headers[key];
    if (found === undefined) continue;
    count += 1;
    value = found;
  }
  if (count > 1 || (count === 1 && (typeof value !== 'string' || !CLEAN_HEADER_VALUE.test(value)))) return false;
  const raw = request.rawHeaders;
  if (raw === undefined) return true;
  let rawCount = 0;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const key = raw[i] as string;
    if (key.length !== name.length || key.toLowerCase() !== name) continue;
    rawCount += 1;
    if (rawCount > 1 || raw[i + 1] !== value) return false;
  }
  return true;
}

function decodeParam(raw: string): string {
  if (!raw.includes('%')) return raw;
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new VaultError('VALIDATION_ERROR', 'The path holds a malformed percent-encoding');
  }
}

function lowerCaseHeaders(headers: HandlerRequest['headers']): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = Object.create(null) as Record<string, string | undefined>;
  for (const name of Object.keys(headers)) {
    const value = headers[name];
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

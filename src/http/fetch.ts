/** The Web-standard binding: the API as a `fetch(Request) -> Response` handler. */
import type { Vault } from '../core/vault.js';
import { createHandler, type HandlerOptions } from './handler.js';
import { tooLarge } from './body.js';
import { VaultError } from '../errors.js';

export { attachClientErrorHandler, attachHeaderInspection, credvaultClientError, drainServer, hardenNodeServer } from './node.js';

/** What the runtime knows of the connection, which a `Request` does not carry. */
export interface FetchRequestInfo {
  /** The peer's address, for the failed-authentication limit (e.g. Hono's `getConnInfo(c).remote.address`). */
  clientAddress?: string | undefined;
  /**
   * The request-target exactly as received (Node's `req.url`). When given, the API routes
   * on it: `request.url` has been through URL parsing, which resolves dot segments
   * (`/x/../y` becomes `/y`, `%2e%2e` too), so it is not what the client sent.
   */
  rawUrl?: string | undefined;
  /** Node's `rawHeaders`, when the runtime has them: repeated strict headers are refused. */
  rawHeaders?: readonly string[] | undefined;
  /** Strict headers whose wire bytes were not clean (from `attachHeaderInspection`). */
  headerDefects?: readonly string[] | undefined;
}

/**
 * The path and query of a raw request-target, untouched: origin-form as it is, the path of
 * absolute-form (`http://host/path`) without its scheme and authority.
 */
export function splitRequestTarget(target: string): { path: string; query: string } {
  let rest = target;
  if (!rest.startsWith('/')) {
    const authority = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i.exec(rest);
    if (authority !== null) rest = rest.slice(authority[0].length);
    if (!rest.startsWith('/')) rest = rest.startsWith('?') || rest === '' ? `/${rest}` : rest;
  }
  const hash = rest.indexOf('#');
  if (hash !== -1) rest = rest.slice(0, hash);
  const queryStart = rest.indexOf('?');
  return queryStart === -1 ? { path: rest, query: '' } : { path: rest.slice(0, queryStart), query: rest.slice(queryStart + 1) };
}

/**
 * The credvault API as a Web-standard `fetch` handler: `(Request) => Promise<Response>`.
 * Use it from Hono, Next.js route handlers, Bun, Deno or any runtime with `Request`.
 * Paths outside the base path get the API's JSON 404.
 *
 * @example
 * ```ts
 * // Hono
 * const api = credvaultFetch(vault);
 * app.all('/api/v2/public/*', (c) => api(c.req.raw, { clientAddress: getConnInfo(c).remote.address }));
 *
 * // Next.js: app/api/v2/public/[...path]/route.ts
 * export const PUT = credvaultFetch(vault);
 * ```
 */
export function credvaultFetch(
  vault: Vault,
  options: HandlerOptions = {},
): (request: Request, info?: FetchRequestInfo) => Promise<Response> {
  const handler = createHandler(vault, options);
  return async (request, info) => {
    let path: string;
    let query: string | URLSearchParams;
    if (info?.rawUrl !== undefined) {
      ({ path, query } = splitRequestTarget(info.rawUrl));
    } else {
      const url = new URL(request.url);
      path = url.pathname;
      query = url.searchParams;
    }
    const response = await handler.handle({
      method: request.method,
      path,
      headers: Object.fromEntries(request.headers),
      query,
      clientAddress: info?.clientAddress,
      rawHeaders: info?.rawHeaders,
      headerDefects: info?.headerDefects,
      body: () => readWebBody(request, handler.bodyLimitBytes),
    });
    if (response.raw !== undefined) return new Response(response.raw, { status: response.status, headers: response.headers });
    return new Response(JSON.stringify(response.body), {
      status: response.status,
      headers: { ...response.headers, 'content-type': 'application/json; charset=utf-8' },
    });
  };
}

/** Reads a Web request body, refusing it once it passes `limit` bytes. */
async function readWebBody(request: Request, limit: number): Promise<Uint8Array> {
  const declared = Number(request.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > limit) throw tooLarge(limit);
  if (request.body === null) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = request.body.getReader();
  for (;;) {
    let next: Awaited<ReturnType<typeof reader.read>>;
    try {
      next = await reader.read();
    } catch (error) {
      // The client went away mid-body, or the runtime could not read it.
      throw new VaultError('VALIDATION_ERROR', 'The request body could not be read', { cause: error });
    }
    const { done, value } = next;
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => undefined);
      throw tooLarge(limit);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks, size);
}

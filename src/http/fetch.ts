import type { Vault } from '../core/vault.js';
import { createHandler, type HandlerOptions } from './handler.js';
import { tooLarge } from './body.js';

/** What the runtime knows of the connection, which a `Request` does not carry. */
export interface FetchRequestInfo {
  /** The peer's address, for the failed-authentication limit (e.g. Hono's `getConnInfo(c).remote.address`). */
  clientAddress?: string | undefined;
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
    const url = new URL(request.url);
    const response = await handler.handle({
      method: request.method,
      path: url.pathname,
      headers: Object.fromEntries(request.headers),
      query: url.searchParams,
      clientAddress: info?.clientAddress,
      body: () => readWebBody(request, handler.bodyLimitBytes),
    });
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
    const { done, value } = await reader.read();
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

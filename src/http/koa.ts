/** The Koa binding: the API as middleware, translating requests and responses only. */
import type { Middleware } from 'koa';
import type { Vault } from '../core/vault.js';
import { createHandler, type HandlerOptions } from './handler.js';
import { readNodeBody } from './body.js';
import { wireHeaderDefects } from './node.js';

export { attachClientErrorHandler, attachHeaderInspection, credvaultClientError, drainServer, hardenNodeServer } from './node.js';

/**
 * The credvault API as Koa middleware. Requests outside the base path go on to `next()`.
 *
 * @example
 * ```ts
 * import Koa from 'koa';
 * import { createVault } from 'credvault';
 * import { credvaultKoa } from 'credvault/koa';
 *
 * const vault = await createVault({ store: 'sqlite:./data/credvault.db' });
 * const app = new Koa();
 * app.use(credvaultKoa(vault));
 * app.listen(3000);
 * ```
 */
export function credvaultKoa(vault: Vault, options: HandlerOptions = {}): Middleware {
  const handler = createHandler(vault, options);
  return async (ctx, next) => {
    if (!handler.owns(ctx.path)) {
      await next();
      return;
    }
    const parsed = (ctx.request as { body?: unknown }).body;
    const response = await handler.handle({
      method: ctx.method,
      path: ctx.path,
      headers: ctx.req.headers,
      rawHeaders: ctx.req.rawHeaders,
      headerDefects: wireHeaderDefects(ctx.req),
      clientAddress: ctx.req.socket.remoteAddress,
      query: ctx.querystring,
      ...(parsed !== undefined ? { parsedBody: parsed } : { body: () => readNodeBody(ctx.req, handler.bodyLimitBytes) }),
    });
    ctx.status = response.status;
    ctx.set(response.headers);
    if (response.raw !== undefined) {
      ctx.body = response.raw;
      return;
    }
    ctx.type = 'application/json';
    ctx.body = JSON.stringify(response.body);
  };
}

/** The Express binding: the API as middleware, translating requests and responses only. */
import type { Request, Response, NextFunction, RequestHandler } from 'express';
import type { Vault } from '../core/vault.js';
import { createHandler, type HandlerOptions } from './handler.js';
import { readNodeBody } from './body.js';
import { wireHeaderDefects } from './node.js';

export { attachClientErrorHandler, attachHeaderInspection, credvaultClientError, drainServer, hardenNodeServer } from './node.js';

/**
 * The credvault API as Express middleware. Requests outside the base path go on to
 * `next()`; inside it, every answer (404 and 405 included) is the API's JSON.
 *
 * @example
 * ```ts
 * import express from 'express';
 * import { createVault } from 'credvault';
 * import { credvaultExpress } from 'credvault/express';
 *
 * const vault = await createVault({ store: 'sqlite:./data/credvault.db' });
 * const app = express();
 * app.use(credvaultExpress(vault));
 * app.listen(3000);
 * ```
 */
export function credvaultExpress(vault: Vault, options: HandlerOptions = {}): RequestHandler {
  const handler = createHandler(vault, options);
  return (req: Request, res: Response, next: NextFunction) => {
    if (!handler.owns(req.path)) {
      next();
      return;
    }
    const queryStart = req.originalUrl.indexOf('?');
    handler
      .handle({
        method: req.method,
        path: req.path,
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        headerDefects: wireHeaderDefects(req),
        clientAddress: req.socket.remoteAddress,
        query: queryStart === -1 ? '' : req.originalUrl.slice(queryStart + 1),
        // Respect a body parser mounted before us; otherwise read the raw body ourselves.
        ...(req.body !== undefined ? { parsedBody: req.body as unknown } : { body: () => readNodeBody(req, handler.bodyLimitBytes) }),
      })
      .then((response) => {
        if (response.raw !== undefined) res.status(response.status).set(response.headers).send(response.raw);
        else res.status(response.status).set(response.headers).type('application/json').send(JSON.stringify(response.body));
      }, next);
  };
}

import http from 'node:http';
import express from 'express';
import Koa from 'koa';
import type { Vault } from '../core/vault.js';
import { VaultError } from '../core/errors.js';
import { errorResponse, type HandlerOptions } from '../http/handler.js';
import { credvaultExpress } from '../http/express.js';
import { credvaultKoa } from '../http/koa.js';

export const FRAMEWORKS = ['express', 'koa'] as const;
export type Framework = (typeof FRAMEWORKS)[number];

/** A JSON 404 for paths outside the API, so that every answer the server gives is JSON. */
function notFound(method: string, path: string) {
  return errorResponse(new VaultError('ROUTE_NOT_FOUND', `No route for ${method} ${path}`));
}

/** An HTTP server answering the credvault API on the chosen framework. */
export function createApiServer(vault: Vault, framework: Framework, options: HandlerOptions = {}): http.Server {
  if (framework === 'koa') {
    const app = new Koa();
    app.use(credvaultKoa(vault, options));
    app.use(async (ctx) => {
      const response = notFound(ctx.method, ctx.path);
      ctx.status = response.status;
      ctx.body = response.body;
    });
    return http.createServer(app.callback());
  }
  const app = express();
  app.disable('x-powered-by');
  app.use(credvaultExpress(vault, options));
  app.use((req, res) => {
    const response = notFound(req.method, req.path);
    res.status(response.status).json(response.body);
  });
  return http.createServer(app);
}

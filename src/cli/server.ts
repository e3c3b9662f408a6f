import http from 'node:http';
import { Readable } from 'node:stream';
import express from 'express';
import Koa from 'koa';
import Fastify from 'fastify';
import type { Vault } from '../core/vault.js';
import { VaultError } from '../core/errors.js';
import { errorResponse, type HandlerOptions, type HandlerResponse } from '../http/handler.js';
import { credvaultExpress } from '../http/express.js';
import { credvaultKoa } from '../http/koa.js';
import { credvaultFastify, credvaultFrameworkErrors } from '../http/fastify.js';
import { credvaultFetch } from '../http/fetch.js';

export const FRAMEWORKS = ['express', 'koa', 'fastify', 'fetch'] as const;
export type Framework = (typeof FRAMEWORKS)[number];

/** A JSON 404 for paths outside the API, so that every answer the server gives is JSON. */
function notFound(method: string, path: string): HandlerResponse {
  return errorResponse(new VaultError('ROUTE_NOT_FOUND', `No route for ${method} ${path}`));
}

/** An HTTP server (not yet listening) answering the credvault API on the chosen framework. */
export async function createApiServer(vault: Vault, framework: Framework, options: HandlerOptions = {}): Promise<http.Server> {
  switch (framework) {
    case 'koa': {
      const app = new Koa();
      app.use(credvaultKoa(vault, options));
      app.use(async (ctx) => {
        const response = notFound(ctx.method, ctx.path);
        ctx.status = response.status;
        ctx.body = response.body;
      });
      return http.createServer(app.callback());
    }
    case 'fastify': {
      let server: http.Server | undefined;
      const app = Fastify({
        frameworkErrors: credvaultFrameworkErrors,
        serverFactory: (handler) => (server = http.createServer(handler)),
      });
      await app.register(credvaultFastify, { vault, ...options });
      app.setNotFoundHandler((request, reply) => {
        const response = notFound(request.method, request.url.split('?')[0] ?? '/');
        return reply.code(response.status).send(response.body);
      });
      await app.ready();
      return server as http.Server;
    }
    case 'fetch':
      return http.createServer(nodeToFetch(credvaultFetch(vault, options)));
    default: {
      const app = express();
      app.disable('x-powered-by');
      app.use(credvaultExpress(vault, options));
      app.use((req, res) => {
        const response = notFound(req.method, req.path);
        res.status(response.status).json(response.body);
      });
      return http.createServer(app);
    }
  }
}

/** Serves a Web-standard fetch handler from a Node HTTP server (also used by the benchmark). */
export function nodeToFetch(
  handle: (request: Request, info: { clientAddress?: string | undefined }) => Promise<Response>,
): http.RequestListener {
  return (req, res) => {
    const send = (response: Response) =>
      response.arrayBuffer().then((body) => {
        res.writeHead(response.status, { ...Object.fromEntries(response.headers), 'content-length': String(body.byteLength) });
        res.end(Buffer.from(body));
      });
    let request: Request;
    try {
      const headers = new Headers();
      for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i] as string, req.rawHeaders[i + 1] as string);
      const method = req.method ?? 'GET';
      const hasBody = method !== 'GET' && method !== 'HEAD';
      request = new Request(`http://${req.headers.host ?? 'localhost'}${req.url ?? '/'}`, {
        method,
        headers,
        ...(hasBody ? { body: Readable.toWeb(req) as ReadableStream<Uint8Array>, duplex: 'half' } : {}),
      } as RequestInit);
    } catch {
      // Request refuses some methods and URLs that Node accepts.
      const response = errorResponse(new VaultError('VALIDATION_ERROR', 'The request could not be parsed'));
      void send(new Response(JSON.stringify(response.body), { status: response.status, headers: { 'content-type': 'application/json; charset=utf-8' } }));
      return;
    }
    handle(request, { clientAddress: req.socket.remoteAddress }).then(send, () => {
      res.writeHead(500, { 'content-type': 'application/json; charset=utf-8' });
      res.end(JSON.stringify(errorResponse(new VaultError('INTERNAL', 'Internal server error')).body));
    });
  };
}

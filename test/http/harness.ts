import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import Koa from 'koa';
import type { Vault } from '../../src/core/vault.js';
import type { HandlerOptions } from '../../src/http/handler.js';
import { credvaultExpress } from '../../src/http/express.js';
import { credvaultKoa } from '../../src/http/koa.js';
import Fastify from 'fastify';
import { Hono, type Context } from 'hono';
import { serve } from '@hono/node-server';
import { getConnInfo } from '@hono/node-server/conninfo';
import { credvaultFastify, credvaultFrameworkErrors } from '../../src/http/fastify.js';
import { credvaultFetch } from '../../src/http/fetch.js';

export const BINDINGS = ['express', 'koa', 'fastify', 'fetch'] as const;
export type BindingName = (typeof BINDINGS)[number];

/** A real HTTP server running one binding, on an ephemeral port. */
export interface RunningServer {
  url: string;
  close(): Promise<void>;
}

/**
 * Starts the binding inside its framework, with a route of the application's own outside
 * the base path (answering 418) to show the binding passes such paths on.
 */
export async function startBinding(binding: BindingName, vault: Vault, options: HandlerOptions = {}): Promise<RunningServer> {
  if (binding === 'fastify') {
    const app = Fastify({ frameworkErrors: credvaultFrameworkErrors });
    await app.register(credvaultFastify, { vault, ...options });
    app.setNotFoundHandler((_request, reply) => reply.code(418).send({ outside: true }));
    const address = await app.listen({ port: 0, host: '127.0.0.1' });
    return { url: address, close: () => app.close() };
  }
  if (binding === 'fetch') {
    // Through Hono, served by a real Node server.
    const app = new Hono();
    const api = credvaultFetch(vault, options);
    const base = options.basePath ?? '/api/v2/public';
    const forward = (c: Context) => api(c.req.raw, { clientAddress: getConnInfo(c).remote.address });
    app.all(base, forward);
    app.all(`${base}/*`, forward);
    if (options.openApiPath !== undefined) app.all(options.openApiPath, forward);
    if (options.defaultApp !== undefined) {
      const page = options.connect?.path ?? '/connect';
      app.all(page, forward);
      app.all(`${page}/*`, forward);
    }
    app.all('*', (c) => c.json({ outside: true }, 418));
    const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }) as http.Server;
    await new Promise<void>((resolve) => (server.listening ? resolve() : server.once('listening', () => resolve())));
    const { port } = server.address() as AddressInfo;
    return {
      url: `http://127.0.0.1:${port}`,
      close: () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    };
  }
  let listener: http.RequestListener;
  if (binding === 'express') {
    const app = express();
    app.use(credvaultExpress(vault, options));
    app.use((_req, res) => {
      res.status(418).json({ outside: true });
    });
    listener = app;
  } else {
    const app = new Koa();
    app.use(credvaultKoa(vault, options));
    app.use((ctx) => {
      ctx.status = 418;
      ctx.body = { outside: true };
    });
    listener = app.callback();
  }
  const server = http.createServer(listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface CallResult {
  status: number;
  headers: Headers;
  body: unknown;
  text: string;
}

export async function call(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string | Uint8Array } = {},
): Promise<CallResult> {
  const response = await fetch(url, {
    method: init.method ?? 'GET',
    headers: init.headers ?? {},
    ...(init.body !== undefined ? { body: init.body } : {}),
  });
  const text = await response.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: response.status, headers: response.headers, body, text };
}

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import Koa from 'koa';
import type { Vault } from '../../src/core/vault.js';
import type { HandlerOptions } from '../../src/http/handler.js';
import { credvaultExpress } from '../../src/http/express.js';
import { credvaultKoa } from '../../src/http/koa.js';

export type BindingName = 'express' | 'koa';

/** A real HTTP server running one binding, on an ephemeral port. */
export interface RunningServer {
  url: string;
  close(): Promise<void>;
}

export async function startBinding(binding: BindingName, vault: Vault, options: HandlerOptions = {}): Promise<RunningServer> {
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

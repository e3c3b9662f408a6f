/**
 * The servers the benchmark compares, each on one framework:
 * - `credvault`: the binding, with API-key auth, validation, the cipher and the store;
 * - `bare`: the framework parsing the JSON body and answering a constant 200;
 * - `naive`: the framework parsing the body and writing the plaintext value to the same
 *   kind of Keyv store, with no auth and no cipher.
 */
import http from 'node:http';
import express from 'express';
import Koa from 'koa';
import Fastify from 'fastify';
import Keyv from 'keyv';
import type { Vault } from '../src/core/vault.js';
import { credvaultExpress } from '../src/http/express.js';
import { credvaultKoa } from '../src/http/koa.js';
import { credvaultFastify } from '../src/http/fastify.js';
import { credvaultFetch } from '../src/http/fetch.js';
import { nodeToFetch } from '../src/http/node-fetch.js';
import { readNodeBody } from '../src/http/body.js';
import type { Binding, Mode } from './matrix.js';

const PREFIX = '/api/v2/public/linked-account/default-app/auth-credentials/';
const OK = JSON.stringify({ success: true, message: 'ok', action: 'updated' });

/** What a baseline does with a parsed body: nothing (bare) or a plaintext Keyv write (naive). */
type Sink = ((account: string, key: string, body: unknown) => Promise<void>) | undefined;

function valueOf(body: unknown): string {
  const value = (body as { value?: unknown } | null)?.value;
  return typeof value === 'string' ? value : String(value);
}

function baseline(binding: Binding, sink: Sink): http.Server | Promise<http.Server> {
  const store = async (account: string | undefined, key: string, body: unknown) => {
    if (sink !== undefined) await sink(account ?? '', key, body);
  };
  switch (binding) {
    case 'express': {
      const app = express();
      app.disable('x-powered-by');
      app.use(express.json({ limit: '100kb' }));
      app.put(`${PREFIX}:key`, async (req, res) => {
        await store(req.get('linked_account_id'), req.params.key as string, req.body as unknown);
        res.type('application/json').send(OK);
      });
      return http.createServer(app);
    }
    case 'koa': {
      const app = new Koa();
      app.use(async (ctx) => {
        if (ctx.method !== 'PUT' || !ctx.path.startsWith(PREFIX)) {
          ctx.status = 404;
          return;
        }
        const body = JSON.parse(Buffer.from(await readNodeBody(ctx.req, 100 * 1024)).toString('utf8')) as unknown;
        await store(ctx.get('linked_account_id'), ctx.path.slice(PREFIX.length), body);
        ctx.type = 'application/json';
        ctx.body = OK;
      });
      return http.createServer(app.callback());
    }
    case 'fastify':
      return (async () => {
        let server: http.Server | undefined;
        const app = Fastify({ serverFactory: (handler) => (server = http.createServer(handler)) });
        app.put(`${PREFIX}:key`, async (request, reply) => {
          await store(request.headers['linked_account_id'] as string | undefined, (request.params as { key: string }).key, request.body);
          return reply.type('application/json').send(OK);
        });
        await app.ready();
        return server as http.Server;
      })();
    case 'fetch':
      return http.createServer(
        nodeToFetch(async (request) => {
          const url = new URL(request.url);
          const body = (await request.json()) as unknown;
          await store(request.headers.get('linked_account_id') ?? undefined, url.pathname.slice(PREFIX.length), body);
          return new Response(OK, { headers: { 'content-type': 'application/json' } });
        }),
      );
  }
}

/** The naive baseline's store: a plain Keyv on the same kind of backend, plaintext values. */
export function naiveSink(keyv: Keyv<string>): Sink {
  return async (account, key, body) => {
    await keyv.set(`${account}:${key}`, valueOf(body));
  };
}

export async function buildServer(binding: Binding, mode: Mode, vault: Vault | undefined, keyv: Keyv<string> | undefined): Promise<http.Server> {
  if (mode === 'bare') return baseline(binding, undefined);
  if (mode === 'naive') return baseline(binding, naiveSink(keyv as Keyv<string>));
  const v = vault as Vault;
  // The limit is the default; the benchmark's requests all authenticate.
  switch (binding) {
    case 'express': {
      const app = express();
      app.disable('x-powered-by');
      app.use(credvaultExpress(v));
      return http.createServer(app);
    }
    case 'koa': {
      const app = new Koa();
      app.use(credvaultKoa(v));
      return http.createServer(app.callback());
    }
    case 'fastify': {
      let server: http.Server | undefined;
      const app = Fastify({ serverFactory: (handler) => (server = http.createServer(handler)) });
      await app.register(credvaultFastify, { vault: v });
      await app.ready();
      return server as http.Server;
    }
    case 'fetch':
      return http.createServer(nodeToFetch(credvaultFetch(v)));
  }
}

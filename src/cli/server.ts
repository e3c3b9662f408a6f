/**
 * The HTTP server behind `credvault serve`: the API on a chosen framework, hardened against
 * slow and malformed clients. Each framework is loaded only when chosen (they are optional
 * peer dependencies).
 */
import http from 'node:http';
import type { Vault } from '../core/vault.js';
import { loadOptionalPeer } from '../optional-peers.js';
import { FRAMEWORKS, type Framework } from './frameworks.js';
import { VaultError } from '../errors.js';
import { errorResponse, type HandlerOptions, type HandlerResponse } from '../http/handler.js';
import { credvaultExpress } from '../http/express.js';
import { credvaultKoa } from '../http/koa.js';
import { credvaultFastify, credvaultFrameworkErrors } from '../http/fastify.js';
import { credvaultFetch } from '../http/fetch.js';
import { nodeToFetch } from '../http/node-fetch.js';
import {
  attachHeaderInspection,
  credvaultClientError,
  DEFAULT_DRAIN_TIMEOUT_MS,
  hardenNodeServer,
  trackConnections,
} from '../http/node.js';

export { DEFAULT_DRAIN_TIMEOUT_MS, drainServer, type DrainOptions, type DrainResult } from '../http/node.js';

export { FRAMEWORKS, type Framework };

/** Loads a framework package, or says in one line which package to install. */
const loadFramework = <T>(name: string, load: () => Promise<T>) => loadOptionalPeer([name], `The ${name} framework`, load);

/** A JSON 404 for paths outside the API, so that every answer the server gives is JSON. */
function notFound(method: string, path: string): HandlerResponse {
  return errorResponse(new VaultError('ROUTE_NOT_FOUND', `No route for ${method} ${path}`));
}

/** How the server treats slow clients and how long a shutdown may take. */
export interface ServerOptions {
  /** Time a client has to send the whole request head, in ms (Node's `headersTimeout`). Default 15 000. */
  headersTimeoutMs?: number;
  /** Time a client has to send the whole request, body included, in ms (Node's `requestTimeout`). Default 30 000. */
  requestTimeoutMs?: number;
  /** How long an idle keep-alive connection stays open, in ms. Default 5 000. */
  keepAliveTimeoutMs?: number;
  /** The default bound of {@link drainServer} for this server, in ms. Default 10 000. */
  drainTimeoutMs?: number;
  /** Called with one line per finished request: method, path and query as sent, status, time. Off by default. */
  logRequests?: (line: string) => void;
}

export type ApiServerOptions = HandlerOptions & ServerOptions;

/** A session or page token (`cvs_`) or an API key (`tk_`, `pk_`) in a request target: kept out of the log. */
const SECRET_IN_URL = /\b(cvs_|tk_|pk_)[A-Za-z0-9_.%-]+/g;

/**
 * One line per request once its answer is sent (or the client went away). Paths and queries
 * never carry a secret: tokens and keys travel in headers, the Connect page's in a fragment.
 */
function logEachRequest(server: http.Server, log: (line: string) => void): void {
  server.prependListener('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const started = performance.now();
    res.once('close', () => {
      const status = res.writableFinished ? String(res.statusCode) : 'aborted';
      // Node refuses control characters in the request line; escape anything else unprintable anyway.
      // Tokens never belong in a URL, but a mail client may turn a connect URL's `#` into `?` or `%23`.
      const target = (req.url ?? '').replace(/[^\x21-\x7e]/g, (c) => encodeURIComponent(c)).replace(SECRET_IN_URL, '$1[redacted]');
      log(`credvault: ${req.method ?? '-'} ${target} ${status} ${(performance.now() - started).toFixed(1)}ms`);
    });
  });
}

/** Errors that only say the client closed its connection early. */
const CLIENT_GONE = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE']);

/**
 * An HTTP server (not yet listening) answering the credvault API on the chosen framework.
 * On every framework, Node's own parser errors (431, 400, 408) get the API's JSON envelope,
 * strict headers are checked against their wire bytes, slow clients are timed out, and
 * {@link drainServer} can shut it down within a bound.
 */
export async function createApiServer(vault: Vault, framework: Framework, options: ApiServerOptions = {}): Promise<http.Server> {
  const { headersTimeoutMs, requestTimeoutMs, keepAliveTimeoutMs, drainTimeoutMs, logRequests, ...handlerOptions } = options;
  const requestTimeout = requestTimeoutMs ?? 30_000;
  const serverOptions: http.ServerOptions = {
    headersTimeout: Math.min(headersTimeoutMs ?? 15_000, requestTimeout),
    requestTimeout,
    keepAliveTimeout: keepAliveTimeoutMs ?? 5_000,
    // Node checks the two timeouts above only this often (its default is 30 s).
    connectionsCheckingInterval: 1_000,
  };
  let server: http.Server;
  switch (framework) {
    case 'koa': {
      const { default: Koa } = await loadFramework('koa', () => import('koa'));
      const app = new Koa();
      // Koa's default prints every stream error with its stack; a client that went away is not a fault.
      const logError = handlerOptions.logError ?? ((line: string) => process.stderr.write(`${line}\n`));
      app.on('error', (error: unknown) => {
        const code = (error as { code?: unknown } | null)?.code;
        if (typeof code === 'string' && CLIENT_GONE.has(code)) return;
        logError(`credvault: unexpected ${error instanceof Error ? error.name : typeof error} in Koa`);
      });
      app.use(credvaultKoa(vault, handlerOptions));
      app.use(async (ctx) => {
        const response = notFound(ctx.method, ctx.path);
        ctx.status = response.status;
        ctx.body = response.body;
      });
      server = http.createServer(serverOptions, app.callback());
      break;
    }
    case 'fastify': {
      const { default: Fastify } = await loadFramework('fastify', () => import('fastify'));
      let created: http.Server | undefined;
      const app = Fastify({
        frameworkErrors: credvaultFrameworkErrors,
        // Fastify attaches its own 'clientError' listener; this makes it ours.
        clientErrorHandler: credvaultClientError,
        serverFactory: (handler) => (created = http.createServer(serverOptions, handler)),
      });
      await app.register(credvaultFastify, { vault, ...handlerOptions });
      app.setNotFoundHandler((request, reply) => {
        const response = notFound(request.method, request.url.split('?')[0] ?? '/');
        return reply.code(response.status).send(response.body);
      });
      await app.ready();
      server = created as http.Server;
      // Fastify sets these on servers it creates, not on one from serverFactory.
      server.headersTimeout = serverOptions.headersTimeout as number;
      server.requestTimeout = requestTimeout;
      server.keepAliveTimeout = serverOptions.keepAliveTimeout as number;
      break;
    }
    case 'fetch':
      server = http.createServer(serverOptions, nodeToFetch(credvaultFetch(vault, handlerOptions)));
      break;
    default: {
      const { default: express } = await loadFramework('express', () => import('express'));
      const app = express();
      app.disable('x-powered-by');
      app.use(credvaultExpress(vault, handlerOptions));
      app.use((req, res) => {
        const response = notFound(req.method, req.path);
        res.status(response.status).json(response.body);
      });
      server = http.createServer(serverOptions, app);
    }
  }
  if (framework === 'fastify') attachHeaderInspection(server);
  else hardenNodeServer(server);
  trackConnections(server, drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS);
  if (logRequests !== undefined) logEachRequest(server, logRequests);
  return server;
}


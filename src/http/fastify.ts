/** The Fastify binding: the API as a plugin, translating requests and responses only. */
import type { FastifyError, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { Vault } from '../core/vault.js';
import { VaultError } from '../errors.js';
import { createHandler, errorResponse, type HandlerOptions } from './handler.js';
import { readNodeBody } from './body.js';
import { wireHeaderDefects } from './node.js';

export { attachClientErrorHandler, attachHeaderInspection, credvaultClientError, drainServer, hardenNodeServer } from './node.js';

export interface CredvaultFastifyOptions extends HandlerOptions {
  vault: Vault;
}

/**
 * The credvault API as a Fastify plugin. Inside its own encapsulated context it reads
 * request bodies itself (the app's parsers and body limit stay as they are elsewhere).
 * With `openApiPath`, it also answers that path with the OpenAPI document.
 *
 * @example
 * ```ts
 * import Fastify from 'fastify';
 * import { credvaultFastify } from 'credvault/fastify';
 *
 * const app = Fastify();
 * await app.register(credvaultFastify, { vault });
 * await app.listen({ port: 3000 });
 * ```
 */
export const credvaultFastify: FastifyPluginAsync<CredvaultFastifyOptions> = async (fastify, options) => {
  const { vault, ...handlerOptions } = options;
  const handler = createHandler(vault, handlerOptions);
  // Leave the stream unread: the handler reads it, with its limit, after authentication.
  fastify.removeAllContentTypeParsers();
  fastify.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));
  const route = handler.basePath === '' ? '/*' : `${handler.basePath}/*`;
  const urls = handler.basePath === '' ? [route] : [handler.basePath, route];
  // The Connect page and its files, when it is on.
  if (handler.connectPath !== undefined) urls.push(handler.connectPath, `${handler.connectPath}/*`);
  // The document's own path, unless the base path's routes already take it.
  const openApiPath = handlerOptions.openApiPath;
  if (openApiPath !== undefined && handler.basePath !== '' && !openApiPath.startsWith(`${handler.basePath}/`) && openApiPath !== handler.basePath) {
    urls.push(openApiPath);
  }
  for (const url of urls) {
    fastify.all(url, async (request, reply) => {
      const queryStart = request.url.indexOf('?');
      const path = queryStart === -1 ? request.url : request.url.slice(0, queryStart);
      const response = await handler.handle({
        method: request.method,
        path,
        headers: request.headers,
        rawHeaders: request.raw.rawHeaders,
        headerDefects: wireHeaderDefects(request.raw),
        clientAddress: request.raw.socket.remoteAddress,
        query: queryStart === -1 ? '' : request.url.slice(queryStart + 1),
        body: () => readNodeBody(request.raw, handler.bodyLimitBytes),
      });
      if (response.raw !== undefined) return reply.code(response.status).headers(response.headers).send(response.raw);
      return reply
        .code(response.status)
        .headers(response.headers)
        .type('application/json; charset=utf-8')
        .send(JSON.stringify(response.body));
    });
  }
};

/**
 * Fastify rejects a malformed URL (such as a broken `%` escape) in its router, before any
 * plugin sees it. Pass this as the app's `frameworkErrors` option so that such requests,
 * too, get the API's JSON envelope.
 *
 * @example
 * ```ts
 * const app = Fastify({ frameworkErrors: credvaultFrameworkErrors });
 * ```
 */
export function credvaultFrameworkErrors(error: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const response =
    error.code === 'FST_ERR_BAD_URL'
      ? errorResponse(new VaultError('VALIDATION_ERROR', 'The path holds a malformed percent-encoding'))
      : errorResponse(new VaultError('VALIDATION_ERROR', 'The request could not be parsed'));
  void reply.code(response.status).type('application/json; charset=utf-8').send(JSON.stringify(response.body));
}

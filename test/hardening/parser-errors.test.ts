import http from 'node:http';
import express from 'express';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Vault } from '../../src/index.js';
import { FRAMEWORKS } from '../../src/cli/server.js';
import { attachClientErrorHandler, credvaultExpress } from '../../src/http/express.js';
import { credvaultClientError, credvaultFastify } from '../../src/http/fastify.js';
import { CREDENTIALS, expectEnvelope, head, listen, listenOn, putCredential, rawRequest, rawSocket, seededVault, type Listening, type RawResponse } from './helpers.js';

/** What every answer to a request Node's parser refused must look like: a complete, closing, JSON response. */
function expectParserEnvelope(response: RawResponse, status: number, error: string, httpErrorType: string) {
  expectEnvelope(response, status, error, httpErrorType);
  expect(response.headers['connection']).toBe('close');
  expect(Number(response.headers['content-length'])).toBe(Buffer.byteLength(response.text));
  expect(response.raw.startsWith(`HTTP/1.1 ${status} `)).toBe(true);
}

describe.each(FRAMEWORKS)("Node's parser errors on %s (createApiServer) get the JSON envelope", (framework) => {
  let vault: Vault;
  let apiKey: string;
  let server: Listening;

  beforeAll(async () => {
    ({ vault, apiKey } = await seededVault());
    server = await listen(vault, framework, { failedAuthLimit: false, headersTimeoutMs: 1_000, requestTimeoutMs: 1_000 });
  });

  afterAll(async () => {
    await server?.close();
    await vault?.close();
  });

  const path = `${CREDENTIALS}/k?linked_account_id=cust-1`;

  it('431 for headers over the limit', async () => {
    const response = await rawRequest(server.port, head(`PUT ${path} HTTP/1.1`, 'Host: 127.0.0.1', `x-filler: ${'a'.repeat(20_000)}`));
    expectParserEnvelope(response, 431, 'REQUEST_HEADER_FIELDS_TOO_LARGE', 'REQUEST_HEADER_FIELDS_TOO_LARGE');
  });

  it('400 for a NUL byte in a header value', async () => {
    const response = await rawRequest(server.port, head(`PUT ${path} HTTP/1.1`, 'Host: 127.0.0.1', `x-api-key: ${apiKey}`, 'x-other: a\u0000b'));
    expectParserEnvelope(response, 400, 'VALIDATION_ERROR', 'BAD_REQUEST');
    // The request's own bytes (the API key here) are never echoed.
    expect(response.raw).not.toContain(apiKey);
  });

  it('400 for Content-Length together with Transfer-Encoding: chunked', async () => {
    const response = await rawRequest(
      server.port,
      head(`PUT ${path} HTTP/1.1`, 'Host: 127.0.0.1', `x-api-key: ${apiKey}`, 'content-length: 5', 'transfer-encoding: chunked') + '5\r\nhello\r\n0\r\n\r\n',
    );
    expectParserEnvelope(response, 400, 'VALIDATION_ERROR', 'BAD_REQUEST');
    expect((response.body as { message: string }).message).toMatch(/Content-Length and Transfer-Encoding both sent/);
  });

  it('400 for a request line that is not HTTP', async () => {
    const response = await rawRequest(server.port, 'HELLO THERE\r\n\r\n');
    expectParserEnvelope(response, 400, 'VALIDATION_ERROR', 'BAD_REQUEST');
  });

  it('408 for a client that does not finish its head within headersTimeout', async () => {
    const connection = await rawSocket(server.port);
    await connection.write(`PUT ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n`);
    // Node checks the timeout about once a second here; the wait is bounded, not timed.
    expectParserEnvelope(await connection.response(10_000), 408, 'REQUEST_TIMEOUT', 'REQUEST_TIMEOUT');
    await connection.closed();
  });

  it('the server still answers afterwards', async () => {
    expect((await putCredential(server.url, apiKey, 'cust-1', 'after', 'v')).status).toBe(200);
  });
});

describe('attachClientErrorHandler and credvaultClientError for embedders', () => {
  let vault: Vault;
  const servers: Listening[] = [];

  beforeAll(async () => {
    ({ vault } = await seededVault());
  });

  afterAll(async () => {
    for (const server of servers) await server.close();
    await vault?.close();
  });

  it('an Express app on its own http.Server', async () => {
    const app = express();
    app.use(credvaultExpress(vault));
    const server = await listenOn(attachClientErrorHandler(http.createServer(app)));
    servers.push(server);
    const response = await rawRequest(server.port, head('GET / HTTP/1.1', 'Host: x', `x-filler: ${'a'.repeat(20_000)}`));
    expectParserEnvelope(response, 431, 'REQUEST_HEADER_FIELDS_TOO_LARGE', 'REQUEST_HEADER_FIELDS_TOO_LARGE');
  });

  it("a Fastify app, as its clientErrorHandler", async () => {
    const app = Fastify({ clientErrorHandler: credvaultClientError });
    await app.register(credvaultFastify, { vault });
    await app.listen({ port: 0, host: '127.0.0.1' });
    servers.push({ server: app.server, port: (app.server.address() as { port: number }).port, url: '', close: () => app.close() });
    const port = (app.server.address() as { port: number }).port;
    const response = await rawRequest(port, head('GET / HTTP/1.1', 'Host: x', 'x-other: a\u0000b'));
    expectParserEnvelope(response, 400, 'VALIDATION_ERROR', 'BAD_REQUEST');
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Vault } from '../../src/index.js';
import { FRAMEWORKS } from '../../src/cli/server.js';
import { waitFor } from '../helpers/wait.js';
import { CREDENTIALS, expectEnvelope, head, listen, putCredential, rawSocket, seededVault, storedKeys, type Listening } from './helpers.js';

/**
 * Bodies that end badly: a chunked body past the limit (the fetch binding used to die of an
 * uncaught ERR_INVALID_STATE after its 413), a client that leaves mid-body, and a body the
 * API never reads. After each, the same server must still answer.
 */
describe.each(FRAMEWORKS)('request bodies that end badly, on %s (createApiServer)', (framework) => {
  let vault: Vault;
  let apiKey: string;
  let server: Listening;
  const logged: string[] = [];
  const uncaught: unknown[] = [];
  const onUncaught = (error: unknown) => uncaught.push(error);

  beforeAll(async () => {
    // A store that answers after 20 ms, as a networked one does: the body keeps arriving
    // while the request is authenticated, which is what made the fetch binding crash.
    ({ vault, apiKey } = await seededVault({ latencyMs: 20 }));
    server = await listen(vault, framework, { logError: (line) => logged.push(line), failedAuthLimit: false });
    process.on('uncaughtException', onUncaught);
  });

  afterAll(async () => {
    process.off('uncaughtException', onUncaught);
    await server?.close();
    await vault?.close();
  });

  const attackHead = () =>
    head(
      `PUT ${CREDENTIALS}/k?linked_account_id=cust-1 HTTP/1.1`,
      'Host: 127.0.0.1',
      `x-api-key: ${apiKey}`,
      'content-type: application/json',
      'transfer-encoding: chunked',
    );
  const chunk = (size: number) => `${size.toString(16)}\r\n${'a'.repeat(size)}\r\n`;

  it('a chunked body of three 60,000-byte chunks (no content-length) gets its 413, and the server keeps answering', async () => {
    for (let round = 0; round < 3; round++) {
      const connection = await rawSocket(server.port);
      // All at once, as the reported attack: the chunks are buffered while the request authenticates.
      await connection.write(attackHead() + chunk(60_000) + chunk(60_000) + chunk(60_000) + '0\r\n\r\n');
      const response = await connection.response();
      expectEnvelope(response, 413, 'PAYLOAD_TOO_LARGE', 'PAYLOAD_TOO_LARGE');
      expect(response.headers['connection']).toBe('close');
      await connection.closed();
    }
    // And with the chunks trickling in after the head.
    const connection = await rawSocket(server.port);
    await connection.write(attackHead());
    for (let i = 0; i < 3; i++) await connection.write(chunk(60_000));
    await connection.write('0\r\n\r\n');
    expectEnvelope(await connection.response(), 413, 'PAYLOAD_TOO_LARGE');
    connection.destroy();

    const after = await putCredential(server.url, apiKey, 'cust-1', 'after_attack', 'v1');
    expect(after.status).toBe(200);
    expect(uncaught).toEqual([]);
    expect(await storedKeys(vault, 'cust-1')).not.toContain('k');
  });

  it('a client that goes away mid-body crashes nothing, writes nothing, and the server keeps answering', async () => {
    for (const framing of ['content-length', 'chunked'] as const) {
      const connection = await rawSocket(server.port);
      const lines = [`PUT ${CREDENTIALS}/left_midway?linked_account_id=cust-1 HTTP/1.1`, 'Host: 127.0.0.1', `x-api-key: ${apiKey}`, 'content-type: application/json'];
      if (framing === 'content-length') {
        await connection.write(head(...(lines as [string, ...string[]]), 'content-length: 1000') + '{"value":"par');
      } else {
        await connection.write(head(...(lines as [string, ...string[]]), 'transfer-encoding: chunked') + chunk(10));
      }
      // Let the request reach the handler and start reading, then leave.
      await new Promise((resolve) => setTimeout(resolve, 100));
      connection.socket.resetAndDestroy();
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    const after = await putCredential(server.url, apiKey, 'cust-1', 'after_abort', 'v2');
    expect(after.status).toBe(200);
    expect(uncaught).toEqual([]);
    expect(await storedKeys(vault, 'cust-1')).not.toContain('left_midway');
    // Nothing unexpected was logged: the abort is the client's doing, not a server fault.
    expect(logged.filter((line) => /unexpected/.test(line))).toEqual([]);
  });

  it('a body the API never reads (a 401) does not stall the keep-alive connection', async () => {
    const connection = await rawSocket(server.port);
    const body = JSON.stringify({ value: 'x'.repeat(5_000) });
    await connection.write(
      head(`PUT ${CREDENTIALS}/unread HTTP/1.1`, 'Host: 127.0.0.1', 'x-api-key: tk_0000000000000000_nope', 'linked_account_id: cust-1', 'content-type: application/json', `content-length: ${body.length}`) + body,
    );
    const first = await connection.response();
    expectEnvelope(first, 401, 'SERVER_ERROR');
    expect(first.headers['connection']).not.toBe('close');
    // The same connection then carries the next request.
    const before = connection.received().length;
    await connection.write(head(`GET ${BASE_PATH_404} HTTP/1.1`, 'Host: 127.0.0.1'));
    await waitFor(() => /\r\n\r\n/.test(connection.received().toString('latin1').slice(before)), 'the second response head', 5_000);
    expect(connection.received().toString('latin1').slice(before)).toMatch(/^HTTP\/1\.1 404 /);
    connection.destroy();
  });
});

const BASE_PATH_404 = '/api/v2/public/no-such-route';

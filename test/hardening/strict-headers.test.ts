import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLinkedAccount, issueSessionToken, type Vault } from '../../src/index.js';
import { FRAMEWORKS } from '../../src/cli/server.js';
import { startBinding, type RunningServer } from '../http/harness.js';
import { ACME, CREDENTIALS, expectEnvelope, head, listen, rawRequest, rawSocket, seededVault, storedKeys, type Listening, type RawResponse } from './helpers.js';

/**
 * An id must never silently become another id. Node trims header values (`"tw "` arrives as
 * `tw`, and so do its `rawHeaders`), reads header bytes as latin1 (UTF-8 `café` arrives as
 * `cafÃ©`) and joins repeated headers with `, `. The servers refuse such a
 * `linked_account_id`, `x-api-key` or `authorization` with a 400 instead.
 */
const LOOKALIKES = ['tw', 'cafÃ©', 'café', 'caf\u00e9x', 'tw, tw'];

const utf8 = (text: string) => Buffer.from(text, 'utf8');
const latin1 = (text: string) => Buffer.from(text, 'latin1');

describe.each(FRAMEWORKS)('strict headers on %s (createApiServer, raw sockets)', (framework) => {
  let vault: Vault;
  let apiKey: string;
  let token: string;
  let server: Listening;

  beforeAll(async () => {
    // The accounts a mangled id would land on all exist, so a wrong write would succeed.
    ({ vault, apiKey } = await seededVault({ accounts: LOOKALIKES }));
    token = (await issueSessionToken(vault, { ...ACME, accountId: 'tw' })).token;
    server = await listen(vault, framework, { failedAuthLimit: false });
  });

  afterAll(async () => {
    await server?.close();
    await vault?.close();
  });

  const body = JSON.stringify({ value: 'v' });
  /** A PUT of credential `key` whose head has exactly these header lines (bytes) besides the basics. */
  const put = (key: string, lines: Buffer[], query = ''): Promise<RawResponse> =>
    rawRequest(
      server.port,
      Buffer.concat([
        latin1(`PUT ${CREDENTIALS}/${key}${query} HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n`),
        ...lines.flatMap((line) => [line, latin1('\r\n')]),
        latin1('\r\n'),
        latin1(body),
      ]),
    );
  const withKey = (...lines: Buffer[]) => [latin1(`x-api-key: ${apiKey}`), ...lines];

  async function expectRefused(response: RawResponse, header: string) {
    expectEnvelope(response, 400, 'VALIDATION_ERROR', 'BAD_REQUEST');
    expect((response.body as { message: string }).message).toContain(`The ${header} header must be sent once`);
    expect(response.text).not.toContain(apiKey);
    expect(response.text).not.toContain(token);
  }

  async function expectNothingWritten() {
    for (const account of LOOKALIKES) expect(await storedKeys(vault, account), account).toEqual([]);
  }

  it.each([
    ['a trailing space', latin1('linked_account_id: tw ')],
    ['a trailing tab', latin1('linked_account_id: tw\t')],
    ['two leading spaces', latin1('linked_account_id:  tw')],
    ['a leading tab', latin1('linked_account_id:\ttw')],
    ['UTF-8 bytes', utf8('linked_account_id: café')],
    ['a latin1 byte', latin1('linked_account_id: caf\u00e9x')],
    ['a repeat', latin1('linked_account_id: tw\r\nlinked_account_id: tw')],
    ['a repeat under another case', latin1('linked_account_id: tw\r\nLinked_Account_ID: tw')],
  ])('linked_account_id with %s is refused, and nothing is written', async (_case, line) => {
    await expectRefused(await put('k', withKey(line)), 'linked_account_id');
    await expectNothingWritten();
  });

  it.each([
    ['a trailing space', (key: string) => latin1(`x-api-key: ${key} `)],
    ['two leading spaces', (key: string) => latin1(`x-api-key:  ${key}`)],
    ['UTF-8 bytes', (key: string) => utf8(`x-api-key: ${key}é`)],
    ['a repeat', (key: string) => latin1(`x-api-key: ${key}\r\nx-api-key: ${key}`)],
  ])('x-api-key with %s is refused, and nothing is written', async (_case, line) => {
    await expectRefused(await put('k', [line(apiKey), latin1('linked_account_id: tw')]), 'x-api-key');
    await expectNothingWritten();
  });

  it.each([
    ['a trailing space', (t: string) => latin1(`authorization: Bearer ${t} `)],
    ['UTF-8 bytes', (t: string) => utf8(`authorization: Bearer ${t}é`)],
    // Node keeps only the first of repeated Authorization headers.
    ['a repeat', (t: string) => latin1(`authorization: Bearer ${t}\r\nauthorization: Bearer other`)],
  ])('authorization with %s is refused, and nothing is written', async (_case, line) => {
    await expectRefused(await put('k', [line(token)]), 'authorization');
    await expectNothingWritten();
  });

  it('an id in raw UTF-8 bytes in the query is refused too (by the parser, in the envelope)', async () => {
    const response = await put('k', withKey(), '?linked_account_id=' + 'caf\u00c3\u00a9');
    expectEnvelope(response, 400, 'VALIDATION_ERROR');
    await expectNothingWritten();
  });

  it('clean headers still work: one space or none after the colon, any header-name case; non-ASCII ids percent-encoded in the query', async () => {
    expect((await put('a', withKey(latin1('linked_account_id: tw')))).status).toBe(200);
    expect((await put('b', withKey(latin1('linked_account_id:tw')))).status).toBe(200);
    expect((await put('c', withKey(latin1('LINKED_ACCOUNT_ID: tw')))).status).toBe(200);
    expect((await put('d', [latin1(`Authorization: Bearer ${token}`)])).status).toBe(200);
    expect(await storedKeys(vault, 'tw')).toEqual(['a', 'b', 'c', 'd']);
    expect((await put('e', withKey(), `?linked_account_id=${encodeURIComponent('café')}`)).status).toBe(200);
    expect(await storedKeys(vault, 'café')).toEqual(['e']);
    expect(await storedKeys(vault, 'cafÃ©')).toEqual([]);
  });

  it('pipelined requests on one connection are judged one by one, across chunked and sized bodies', async () => {
    await createLinkedAccount(vault, { ...ACME, accountId: 'pipe' }, { credentials: {} });
    const chunked = `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;
    const request = (key: string, idLine: string, framing: 'chunked' | 'sized', last = false) =>
      `PUT ${CREDENTIALS}/${key} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: ${apiKey}\r\n${idLine}\r\ncontent-type: application/json\r\n` +
      (framing === 'chunked' ? `transfer-encoding: chunked\r\n` : `content-length: ${body.length}\r\n`) +
      (last ? 'connection: close\r\n' : '') +
      '\r\n' +
      (framing === 'chunked' ? chunked : body);
    const connection = await rawSocket(server.port);
    await connection.write(
      request('p1', 'linked_account_id: pipe', 'chunked') +
        request('p2', 'linked_account_id: pipe ', 'sized') +
        request('p3', 'linked_account_id: pipe', 'sized') +
        request('p4', 'linked_account_id:  pipe', 'chunked') +
        request('p5', 'linked_account_id: pipe', 'chunked', true),
    );
    await connection.closed();
    const statuses = [...connection.received().toString('latin1').matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
    expect(statuses).toEqual([200, 400, 200, 400, 200]);
    expect(await storedKeys(vault, 'pipe')).toEqual(['p1', 'p3', 'p5']);
  });
});

/**
 * Embedded without createApiServer (the test harness's plain servers, Hono for fetch), the
 * bindings still refuse what the parsed headers show: bytes outside ASCII, and (where the
 * runtime gives `rawHeaders`) repeats.
 */
describe.each(['express', 'koa', 'fastify', 'fetch'] as const)('strict headers on %s embedded in its framework', (binding) => {
  let vault: Vault;
  let apiKey: string;
  let server: RunningServer;

  beforeAll(async () => {
    ({ vault, apiKey } = await seededVault({ accounts: LOOKALIKES }));
    server = await startBinding(binding, vault, { failedAuthLimit: false });
  });

  afterAll(async () => {
    await server?.close();
    await vault?.close();
  });

  it('a UTF-8 linked_account_id header is refused and writes nothing', async () => {
    const port = Number(new URL(server.url).port);
    const body = JSON.stringify({ value: 'v' });
    const response = await rawRequest(
      port,
      Buffer.concat([
        latin1(head(`PUT ${CREDENTIALS}/k HTTP/1.1`, 'Host: 127.0.0.1', `x-api-key: ${apiKey}`, 'content-type: application/json', `content-length: ${body.length}`, 'connection: close').slice(0, -2)),
        utf8('linked_account_id: café\r\n\r\n'),
        latin1(body),
      ]),
    );
    expectEnvelope(response, 400, 'VALIDATION_ERROR');
    for (const account of LOOKALIKES) expect(await storedKeys(vault, account)).toEqual([]);
  });
});

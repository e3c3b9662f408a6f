import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Vault } from '../../src/index.js';
import { FRAMEWORKS } from '../../src/cli/server.js';
import { CREDENTIALS, expectEnvelope, head, listen, putCredential, rawRequest, seededVault, storedKeys, type Listening } from './helpers.js';

/**
 * The API routes on the request path exactly as the client sent it: the Host header is
 * never part of it, and dot segments (`..`, `.`, `%2e%2e`) are not resolved. The fetch
 * binding used to build a URL from Host + path and route on its resolved pathname.
 */
describe.each(FRAMEWORKS)('routing on the raw request path, on %s (createApiServer)', (framework) => {
  let vault: Vault;
  let apiKey: string;
  let server: Listening;

  beforeAll(async () => {
    ({ vault, apiKey } = await seededVault());
    server = await listen(vault, framework, { failedAuthLimit: false });
  });

  afterAll(async () => {
    await server?.close();
    await vault?.close();
  });

  const send = (target: string, host = '127.0.0.1') => {
    const body = JSON.stringify({ value: 'smuggled-value' });
    return rawRequest(
      server.port,
      head(
        `PUT ${target} HTTP/1.1`,
        `Host: ${host}`,
        `x-api-key: ${apiKey}`,
        'linked_account_id: cust-1',
        'content-type: application/json',
        `content-length: ${body.length}`,
        'connection: close',
      ) + body,
    );
  };

  it('a path in the Host header is never routed: PUT /healthz stays a 404 and writes nothing', async () => {
    const response = await send('/healthz', `127.0.0.1/api/v2/public/linked-account/default-app/auth-credentials/K?linked_account_id=cust-1&x=`);
    expectEnvelope(response, 404, 'RESOURCE_NOT_FOUND', 'NOT_FOUND');
    const other = await send('/', `127.0.0.1${CREDENTIALS}/K2`);
    expectEnvelope(other, 404, 'RESOURCE_NOT_FOUND');
    expect(await storedKeys(vault, 'cust-1')).toEqual([]);
  });

  it.each([
    ['x/../y', 'a parent segment'],
    ['x/%2e%2e/y', 'a percent-encoded parent segment'],
    ['x/%2E%2E/y', 'an upper-case percent-encoded parent segment'],
    ['x/.%2e/y', 'a half-encoded parent segment'],
    ['./y', 'a current-directory segment'],
    ['%2e/y', 'a percent-encoded current-directory segment'],
    ['x/./y', 'an inner current-directory segment'],
  ])('%s (%s) under the credential path is a 404 and writes nothing', async (tail) => {
    const response = await send(`${CREDENTIALS}/${tail}`);
    expectEnvelope(response, 404, 'RESOURCE_NOT_FOUND', 'NOT_FOUND');
    expect(await storedKeys(vault, 'cust-1')).toEqual([]);
  });

  it('dot segments that would climb back into the API are a 404 too', async () => {
    for (const target of [
      `/api/v2/public/linked-account/../linked-account/default-app/auth-credentials/y`,
      `/api/v2/public/nothing/%2e%2e/linked-account/default-app/auth-credentials/y`,
      `/other/../api/v2/public/linked-account/default-app/auth-credentials/y`,
    ]) {
      const response = await send(target);
      expect(response.status, target).toBe(404);
      expectEnvelope(response, 404, 'RESOURCE_NOT_FOUND');
    }
    expect(await storedKeys(vault, 'cust-1')).toEqual([]);
  });

  it('the plain path still writes (the tests above are not 404 for another reason)', async () => {
    const response = await send(`${CREDENTIALS}/y`);
    expect(response.status).toBe(200);
    expect(await storedKeys(vault, 'cust-1')).toEqual(['y']);
    // Through fetch as well.
    expect((await putCredential(server.url, apiKey, 'cust-1', 'z', 'v')).status).toBe(200);
    expect(await storedKeys(vault, 'cust-1')).toEqual(['y', 'z']);
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { createConfig, lintFromString } from '@redocly/openapi-core';
import { createVault, type Vault } from '../../src/index.js';
import { openApiDocument } from '../../src/http/openapi.js';
import { call, startBinding, type RunningServer } from './harness.js';

const UPSTREAM_OPERATION_IDS = [
  'upsertDefaultAppAuthCredential',
  'deleteDefaultAppAuthCredential',
  'createLinkedAccount',
  'upsertLinkedAccount',
  'getLinkedAccountById',
  'deleteLinkedAccount',
  'generateSessionTokenForLinkedAccount',
  'revokeLinkedAccountSessionToken',
  'getLinkedAccountBySessionToken',
];
const METHODS = ['GET', 'PUT', 'POST', 'DELETE', 'PATCH'];

type Doc = {
  openapi: string;
  paths: Record<string, Record<string, { operationId: string; responses: Record<string, unknown>; security: unknown[] }>>;
  components: { securitySchemes: Record<string, { type: string }>; schemas: Record<string, unknown> };
};

describe('OpenAPI document', () => {
  const document = openApiDocument() as unknown as Doc;
  let vault: Vault;
  let server: RunningServer;

  beforeAll(async () => {
    vault = await createVault({ store: 'memory:', keys: `k:${randomBytes(32).toString('base64')}` });
    server = await startBinding('express', vault, { openApiPath: '/openapi.json' });
  });
  afterAll(async () => {
    await server.close();
    await vault.close();
  });

  it('passes the Redocly linter with no errors', async () => {
    const config = await createConfig({ extends: ['recommended'] });
    const problems = await lintFromString({ source: JSON.stringify(document), absoluteRef: 'openapi.json', config });
    const errors = problems.filter((p) => p.severity === 'error').map((p) => `${p.ruleId}: ${p.message} at ${p.location[0]?.pointer}`);
    expect(errors).toEqual([]);
    const warnings = problems.filter((p) => p.severity === 'warn').map((p) => `${p.ruleId}: ${p.message}`);
    expect(warnings).toEqual([]);
  });

  it('is OpenAPI 3.1 with the upstream operation ids and both security schemes', () => {
    expect(document.openapi).toBe('3.1.0');
    const ids = Object.values(document.paths).flatMap((ops) => Object.values(ops).map((op) => op.operationId));
    expect(ids.sort()).toEqual([...UPSTREAM_OPERATION_IDS].sort());
    expect(document.components.securitySchemes['OrgApiKey']).toMatchObject({ type: 'apiKey', in: 'header', name: 'x-api-key' });
    expect(document.components.securitySchemes['LinkedAccountToken']).toMatchObject({ type: 'http', scheme: 'bearer' });
  });

  it('documents every error response and the envelope', () => {
    const put = document.paths['/api/v2/public/linked-account/default-app/auth-credentials/{key}']?.['put'];
    expect(Object.keys(put?.responses ?? {}).sort()).toEqual(['200', '400', '401', '404', '413', '500', '503']);
    const post = document.paths['/api/v2/public/linked-account']?.['post'];
    expect(Object.keys(post?.responses ?? {})).toEqual(expect.arrayContaining(['403', '409']));
    expect(document.components.schemas['ErrorEnvelope']).toMatchObject({
      required: ['status_code', 'http_error_type', 'error', 'message'],
    });
  });

  it('documents request bodies from the validating schemas', () => {
    expect(document.components.schemas['UpsertDefaultAppCredentialRequest']).toMatchObject({
      type: 'object',
      required: ['value'],
      properties: { value: { anyOf: [{ type: 'string', minLength: 1 }, { type: 'number' }, { type: 'boolean' }] } },
    });
  });

  it('is served at /openapi.json when asked for', async () => {
    const result = await call(`${server.url}/openapi.json`);
    expect(result.status).toBe(200);
    expect(result.headers.get('content-type')).toMatch(/^application\/json/);
    expect(result.body).toEqual(document);
  });

  it('documents exactly the routes the server answers', async () => {
    const fill = (path: string) => path.replace(/\{[^}]+\}/g, 'probe');
    for (const [path, operations] of Object.entries(document.paths)) {
      for (const method of METHODS) {
        const result = await call(`${server.url}${fill(path)}`, { method, ...(method === 'GET' ? {} : { body: '{}' }) });
        const documented = operations[method.toLowerCase()] !== undefined;
        // Served routes ask for credentials; known paths with other methods answer 405.
        expect({ path, method, status: result.status }).toEqual({ path, method, status: documented ? 401 : 405 });
      }
    }
    // And nothing else under the base path is served.
    for (const path of ['/api/v2/public/linked-accounts', '/api/v2/public/session-token/extra', '/api/v2/public']) {
      expect((await call(`${server.url}${path}`)).status).toBe(404);
    }
  });
});

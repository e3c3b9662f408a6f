import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { createConfig, lintFromString } from '@redocly/openapi-core';
import { createVault, type Vault } from '../../src/index.js';
import { openApiDocument } from '../../src/http/openapi.js';
import { call, startBinding, type RunningServer } from './harness.js';

const UPSTREAM_OPERATION_IDS = [
  'listLinkedAccounts',
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
/** credvault's own operations, each marked `x-credvault-extension` in the document. */
const EXTENSION_OPERATION_IDS = ['getDefaultAppAuthCredentialFields', 'createConnectUrl'];
const METHODS = ['GET', 'PUT', 'POST', 'DELETE', 'PATCH'];

type Doc = {
  openapi: string;
  paths: Record<
    string,
    Record<string, { operationId: string; responses: Record<string, unknown>; security: unknown[]; 'x-credvault-extension'?: boolean }>
  >;
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
    const operations = Object.values(document.paths).flatMap((ops) => Object.values(ops));
    const upstream = operations.filter((op) => op['x-credvault-extension'] !== true).map((op) => op.operationId);
    const extensions = operations.filter((op) => op['x-credvault-extension'] === true).map((op) => op.operationId);
    expect(upstream.sort()).toEqual([...UPSTREAM_OPERATION_IDS].sort());
    expect(extensions.sort()).toEqual([...EXTENSION_OPERATION_IDS].sort());
    expect(document.components.securitySchemes['OrgApiKey']).toMatchObject({ type: 'apiKey', in: 'header', name: 'x-api-key' });
    expect(document.components.securitySchemes['LinkedAccountToken']).toMatchObject({ type: 'http', scheme: 'bearer' });
  });

  it('documents every error response and the envelope', () => {
    const put = document.paths['/api/v2/public/linked-account/default-app/auth-credentials/{key}']?.['put'];
    // 403: a session token naming another account; 405: other methods on the path; 429: the failed-auth limit.
    expect(Object.keys(put?.responses ?? {}).sort()).toEqual(['200', '400', '401', '403', '404', '405', '413', '429', '500', '503']);
    const post = document.paths['/api/v2/public/linked-account']?.['post'];
    expect(Object.keys(post?.responses ?? {})).toEqual(expect.arrayContaining(['403', '409']));
    const list = document.paths['/api/v2/public/linked-account']?.['get'];
    expect(Object.keys(list?.responses ?? {}).sort()).toEqual(['200', '400', '401', '403', '405', '429', '500', '503']);
    expect(document.components.schemas['ErrorEnvelope']).toMatchObject({
      required: ['status_code', 'http_error_type', 'error', 'message'],
    });
  });

  it('names the exact error values of each status, and the Allow and Retry-After headers', () => {
    const put = document.paths['/api/v2/public/linked-account/default-app/auth-credentials/{key}']?.['put'] as unknown as {
      responses: Record<string, { headers?: Record<string, { required?: boolean }>; content: { 'application/json': { schema: unknown } } }>;
    };
    expect(put.responses['404']?.content['application/json'].schema).toEqual({
      allOf: [
        { $ref: '#/components/schemas/ErrorEnvelope' },
        { type: 'object', properties: { status_code: { const: 404 }, error: { enum: ['INVALID_LINKED_ACCOUNT_ID', 'RESOURCE_NOT_FOUND'] } } },
      ],
    });
    expect(put.responses['400']?.content['application/json'].schema).toMatchObject({
      allOf: [{}, { properties: { error: { enum: ['MISSING_LINKED_ACCOUNT_ID', 'VALIDATION_ERROR'] } } }],
    });
    expect(put.responses['405']?.headers?.['Allow']).toMatchObject({ required: true });
    expect(put.responses['429']?.headers?.['Retry-After']).toMatchObject({ required: true });
  });

  it('without the failed-authentication limit, documents no 429', () => {
    const unlimited = openApiDocument({ failedAuthLimit: false }) as unknown as Doc;
    for (const operations of Object.values(unlimited.paths)) {
      for (const op of Object.values(operations)) {
        expect(Object.keys(op.responses)).not.toContain('429');
        expect(Object.keys(op.responses)).toContain('405');
      }
    }
  });

  it('documents the list parameters: page and limit as bounded integers with their defaults, the filters as refused', () => {
    const list = document.paths['/api/v2/public/linked-account']?.['get'] as unknown as { parameters: Array<{ name: string; in: string; schema: Record<string, unknown>; description: string }> };
    const byName = Object.fromEntries(list.parameters.map((p) => [p.name, p]));
    expect(Object.keys(byName)).toEqual(['page', 'limit', 'env_variable_name', 'env_variable_value']);
    expect(byName['page']?.schema).toMatchObject({ type: 'integer', minimum: 1, maximum: 1_000_000_000, default: 1 });
    expect(byName['limit']?.schema).toMatchObject({ type: 'integer', minimum: 1, maximum: 100, default: 10 });
    expect(byName['env_variable_name']?.description).toMatch(/not supported/i);
  });

  it('documents the account and page shapes that wire.ts builds', () => {
    expect(document.components.schemas['LinkedAccount']).toMatchObject({
      required: ['_id', 'associated_org', 'account_id', 'name', 'environment', 'udf', 'integrations', 'createdAt', 'updatedAt'],
      additionalProperties: false,
      properties: { integrations: { type: 'array', items: { $ref: '#/components/schemas/IntegrationBase' } } },
    });
    expect(document.components.schemas['IntegrationBase']).toMatchObject({ required: ['_id', 'type', 'name', 'createdAt', 'updatedAt'] });
    expect(document.components.schemas['PaginatedLinkedAccounts']).toMatchObject({
      required: ['docs', 'totalDocs', 'limit', 'page', 'totalPages', 'hasNextPage', 'hasPrevPage', 'nextPage', 'prevPage', 'pagingCounter'],
    });
    expect(document.components.schemas['UDFEntry']).toBeDefined();
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

/** The OpenAPI 3.1 document, generated from the route table and its zod schemas. */
import { z } from 'zod';
import type { VaultErrorCode } from '../errors.js';
import { VaultError } from '../errors.js';
import { errorEnvelope } from './errors.js';
import { DEFAULT_BASE_PATH, routes, type Route } from './routes.js';
import { errorEnvelopeSchema } from './schemas.js';
import { API_KEY_PREFIXES } from '../core/api-keys.js';

/** Errors any endpoint can answer, whatever it does. */
const COMMON_ERRORS: VaultErrorCode[] = ['AUTH_MISSING', 'INVALID_API_KEY', 'INVALID_SESSION_TOKEN', 'STORE_UNAVAILABLE', 'INTERNAL'];

const SECURITY: Record<Route['auth'], Array<Record<string, string[]>>> = {
  api_key: [{ OrgApiKey: [] }],
  session: [{ LinkedAccountToken: [] }],
  either: [{ OrgApiKey: [] }, { LinkedAccountToken: [] }],
};

type JsonObject = Record<string, unknown>;

/** A schema on its own, as an OpenAPI 3.1 (JSON Schema 2020-12) fragment. */
function inlineSchema(schema: z.ZodType): JsonObject {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as JsonObject;
  return rest;
}

const ref = (schema: z.ZodType): JsonObject => {
  const id = z.globalRegistry.get(schema)?.id;
  return id === undefined ? inlineSchema(schema) : { $ref: `#/components/schemas/${id}` };
};

function errorResponses(route: Route): Record<string, JsonObject> {
  const byStatus = new Map<number, Set<string>>();
  const codes = [...COMMON_ERRORS, ...route.errors];
  if (route.auth !== 'either') codes.push('FORBIDDEN');
  for (const code of codes) {
    const envelope = errorEnvelope(new VaultError(code, ''));
    const errors = byStatus.get(envelope.status_code) ?? new Set<string>();
    errors.add(envelope.error);
    byStatus.set(envelope.status_code, errors);
  }
  const out: Record<string, JsonObject> = {};
  for (const [status, errors] of [...byStatus].sort(([a], [b]) => a - b)) {
    out[String(status)] = {
      description: `Error envelope; \`error\` is one of: ${[...errors].join(', ')}`,
      ...(status === 401
        ? {
            headers: {
              'WWW-Authenticate': {
                description: 'The challenge: `Bearer realm="credvault"`, with `error="invalid_token"` when a session token was refused.',
                schema: { type: 'string' },
              },
            },
          }
        : {}),
      content: { 'application/json': { schema: { $ref: '#/components/schemas/ErrorEnvelope' } } },
    };
  }
  return out;
}

function operation(route: Route): JsonObject {
  const parameters: JsonObject[] = [];
  for (const [name, param] of Object.entries(route.pathParams ?? {})) {
    parameters.push({ name, in: 'path', required: true, description: param.description, schema: inlineSchema(param.schema) });
  }
  if (route.linkedAccountParam === true) {
    const description = 'The linked account to act on. Required with an org API key; with a session token it may only name the token\'s own account.';
    const asHeader =
      ' As a header it must be sent once, in printable ASCII, with no leading or trailing whitespace (400 otherwise); any other id goes in the query parameter, percent-encoded as UTF-8.';
    for (const where of ['header', 'query']) {
      parameters.push({
        name: 'linked_account_id',
        in: where,
        required: false,
        description: where === 'header' ? description + asHeader : description,
        schema: { type: 'string', minLength: 1, maxLength: 256 },
      });
    }
  }
  for (const [name, param] of Object.entries(route.query ?? {})) {
    parameters.push({ name, in: 'query', required: false, description: param.description, schema: inlineSchema(param.schema) });
  }
  const op: JsonObject = {
    operationId: route.operationId,
    tags: [route.tag],
    summary: route.summary,
    description: route.description,
    security: SECURITY[route.auth],
  };
  if (parameters.length > 0) op['parameters'] = parameters;
  if (route.body !== undefined) {
    op['requestBody'] = { required: true, content: { 'application/json': { schema: ref(route.body) } } };
  }
  op['responses'] = {
    '200': { description: 'OK', content: { 'application/json': { schema: ref(route.response) } } },
    ...errorResponses(route),
  };
  return op;
}

/**
 * The OpenAPI 3.1 document of the API, generated from the same zod schemas the handler
 * validates with.
 *
 * @example
 * ```ts
 * const document = openApiDocument({ serverUrl: 'https://vault.example.com' });
 * ```
 */
export function openApiDocument(options: { basePath?: string; serverUrl?: string; version?: string } = {}): JsonObject {
  const basePath = (options.basePath ?? DEFAULT_BASE_PATH).replace(/\/+$/, '');
  const paths: Record<string, Record<string, JsonObject>> = {};
  for (const route of routes) {
    const path = `${basePath}${route.path}`;
    (paths[path] ??= {})[route.method.toLowerCase()] = operation(route);
  }
  const registered = z.toJSONSchema(z.globalRegistry, {
    io: 'input',
    unrepresentable: 'any',
    uri: (id) => `#/components/schemas/${id}`,
  }) as { schemas: Record<string, JsonObject> };
  const schemas: Record<string, JsonObject> = {};
  const ours = new Set(
    [...routes.flatMap((r) => [r.body, r.response]), errorEnvelopeSchema]
      .filter((s): s is z.ZodType => s !== undefined)
      .map((s) => z.globalRegistry.get(s)?.id)
      .filter((id): id is string => id !== undefined),
  );
  for (const [id, schema] of Object.entries(registered.schemas)) {
    if (!ours.has(id)) continue;
    const { $schema: _ignored, $id: _id, ...rest } = schema;
    schemas[id] = rest;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'credvault API',
      version: options.version ?? '1.0.0',
      description:
        "Store linked accounts' default-app auth credentials encrypted at rest, and manage linked accounts and their session tokens. Authenticate with an org API key (x-api-key) or a linked-account session token (Authorization: Bearer).",
      license: { name: 'MIT', identifier: 'MIT' },
    },
    servers: [{ url: options.serverUrl ?? '/' }],
    tags: [
      { name: 'Credentials', description: 'Default-app auth credentials, encrypted at rest.' },
      { name: 'Linked Accounts', description: 'The customers whose credentials the vault keeps.' },
      { name: 'Session Tokens', description: 'Short-lived tokens that act for one linked account.' },
    ],
    paths,
    components: {
      schemas,
      securitySchemes: {
        OrgApiKey: {
          type: 'apiKey',
          in: 'header',
          name: 'x-api-key',
          description: `An org API key: \`${API_KEY_PREFIXES.test}...\` for the test environment, \`${API_KEY_PREFIXES.production}...\` for production.`,
        },
        LinkedAccountToken: {
          type: 'http',
          scheme: 'bearer',
          description: 'A linked-account session token from `POST /session-token`.',
        },
      },
    },
  };
}

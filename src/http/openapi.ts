/** The OpenAPI 3.1 document, generated from the route table and its zod schemas. */
import { z } from 'zod';
import { VaultError } from '../errors.js';
import { errorEnvelope } from './errors.js';
import { answerableErrors, DEFAULT_BASE_PATH, routes, type AnswerOptions, type Route } from './routes.js';
import { errorEnvelopeSchema } from './schemas.js';
import { API_KEY_PREFIXES } from '../core/api-keys.js';

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

/** Headers some error statuses carry, as the handler sets them. */
const ERROR_HEADERS: Record<number, JsonObject> = {
  401: {
    'WWW-Authenticate': {
      description: 'The challenge: `Bearer realm="credvault"`, with `error="invalid_token"` when a session token was refused.',
      schema: { type: 'string' },
    },
  },
  405: {
    Allow: { description: 'The methods this path serves, e.g. `PUT, DELETE`.', required: true, schema: { type: 'string' } },
  },
  429: {
    'Retry-After': {
      description: 'Seconds until the failed-authentication window ends and requests are heard again.',
      required: true,
      schema: { type: 'integer', minimum: 1 },
    },
  },
};

const STATUS_MEANING: Record<number, string> = {
  405: 'Another method on this path than it serves',
  413: 'The request body is over the limit',
  429: 'Too many failed authentications from this client (or for this API key id)',
  500: 'An unexpected failure; the message says nothing of it',
  503: 'The store did not answer in time, or failed',
};

/** The error answers of a route, one per status, each naming exactly the `error` values it can carry. */
function errorResponses(route: Route, options: AnswerOptions): Record<string, JsonObject> {
  const byStatus = new Map<number, Set<string>>();
  for (const code of answerableErrors(route, options)) {
    const envelope = errorEnvelope(new VaultError(code, ''));
    const errors = byStatus.get(envelope.status_code) ?? new Set<string>();
    errors.add(envelope.error);
    byStatus.set(envelope.status_code, errors);
  }
  const out: Record<string, JsonObject> = {};
  for (const [status, errors] of [...byStatus].sort(([a], [b]) => a - b)) {
    const list = [...errors].sort();
    const meaning = STATUS_MEANING[status];
    const headers = ERROR_HEADERS[status];
    out[String(status)] = {
      description: `${meaning === undefined ? '' : `${meaning}. `}Error envelope; \`error\` is ${list.length === 1 ? '' : 'one of '}${list.join(', ')}.`,
      ...(headers === undefined ? {} : { headers }),
      content: {
        'application/json': {
          schema: {
            allOf: [
              { $ref: '#/components/schemas/ErrorEnvelope' },
              { type: 'object', properties: { status_code: { const: status }, error: list.length === 1 ? { const: list[0] } : { enum: list } } },
            ],
          },
        },
      },
    };
  }
  return out;
}

function operation(route: Route, options: AnswerOptions): JsonObject {
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
  for (const param of route.query ?? []) {
    parameters.push({ name: param.name, in: 'query', required: false, description: param.description, schema: inlineSchema(param.schema) });
  }
  const op: JsonObject = {
    operationId: route.operationId,
    tags: [route.tag],
    summary: route.summary,
    description: route.description,
    security: SECURITY[route.auth],
  };
  if (route.extension === true) op['x-credvault-extension'] = true;
  if (parameters.length > 0) op['parameters'] = parameters;
  if (route.body !== undefined) {
    op['requestBody'] = { required: true, content: { 'application/json': { schema: ref(route.body) } } };
  }
  op['responses'] = {
    '200': { description: 'OK', content: { 'application/json': { schema: ref(route.response) } } },
    ...errorResponses(route, options),
  };
  return op;
}

/**
 * The OpenAPI 3.1 document of the API, generated from the same route table and zod schemas
 * the handler validates with; each operation lists every status it can answer
 * (see `answerableErrors`). `failedAuthLimit: false` documents a handler with the limit off (no 429).
 *
 * @example
 * ```ts
 * const document = openApiDocument({ serverUrl: 'https://vault.example.com' });
 * ```
 */
export function openApiDocument(
  options: { basePath?: string; serverUrl?: string; version?: string; failedAuthLimit?: boolean } = {},
): JsonObject {
  const answerOptions: AnswerOptions = { failedAuthLimit: options.failedAuthLimit ?? true };
  const basePath = (options.basePath ?? DEFAULT_BASE_PATH).replace(/\/+$/, '');
  const paths: Record<string, Record<string, JsonObject>> = {};
  for (const route of routes) {
    const path = `${basePath}${route.path}`;
    (paths[path] ??= {})[route.method.toLowerCase()] = operation(route, answerOptions);
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
  // And the schemas those refer to (an account's integrations, say), however deep.
  for (const id of ours) {
    for (const [, referred] of JSON.stringify(registered.schemas[id] ?? {}).matchAll(/"#\/components\/schemas\/([^"]+)"/g)) {
      ours.add(referred as string);
    }
  }
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

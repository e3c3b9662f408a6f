/**
 * The upstream contract as the tests read it: the OpenAPI excerpt, its operations, and
 * validators for each operation's 200 body (JSON Schema 2020-12, the 3.0-style `nullable`
 * converted) and for credvault's error envelope.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import path from 'node:path';
import { parseYaml } from '@redocly/openapi-core';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';

const ROOT = path.resolve(import.meta.dirname, '../..');

/**
 * The full excerpt, when this machine has it: `CREDVAULT_UPSTREAM_OPENAPI`, else beside the
 * checkout, in `../shared/reference/`. The tests run on {@link UPSTREAM_FACTS} either way.
 */
export const UPSTREAM_EXCERPT =
  process.env['CREDVAULT_UPSTREAM_OPENAPI'] ?? path.resolve(ROOT, '../shared/reference/refold-openapi-excerpt.yaml');

/**
 * The upstream contract's facts, committed: the excerpt with its prose (every `description`
 * and `summary`, the info block's text and contact) taken out, so paths, operation ids,
 * parameters, schemas and example messages stay while no upstream wording is kept.
 */
export const UPSTREAM_FACTS = path.resolve(import.meta.dirname, 'upstream-facts.json');

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

export interface UpstreamOperation {
  operationId: string;
  method: 'get' | 'put' | 'post' | 'delete';
  path: string;
}

const METHODS = ['get', 'put', 'post', 'delete'] as const;

export interface UpstreamDocument {
  paths: Record<string, Record<string, { operationId: string; responses: Record<string, { content?: Record<string, { schema?: Json }> }> }>>;
  components: { schemas: Record<string, Json> };
}

const PROSE = new Set(['description', 'summary']);

/** The document without its prose: what {@link UPSTREAM_FACTS} holds. */
export function factsOf(document: Json): Json {
  const strip = (node: Json, key: string | undefined): Json => {
    if (Array.isArray(node)) return node.map((item) => strip(item, undefined));
    if (typeof node !== 'object' || node === null) return node;
    const out: JsonObject = {};
    for (const [name, value] of Object.entries(node)) {
      // A property *named* description inside a schema's `properties` is a fact, not prose.
      if (PROSE.has(name) && key !== 'properties' && typeof value === 'string') continue;
      if (key === undefined && name === 'info') {
        const { title, version } = value as JsonObject;
        out[name] = { title: title ?? null, version: version ?? null };
        continue;
      }
      out[name] = strip(value, name);
    }
    return out;
  };
  return strip(document, undefined);
}

/**
 * The upstream document the tests run on: the committed facts. Where the full excerpt is on this
 * machine, the facts must be exactly its facts (a changed excerpt fails here until the file is
 * refreshed with `CREDVAULT_UPDATE_UPSTREAM_FACTS=1 npx vitest run test/contract`).
 */
export function loadUpstreamDocument(): UpstreamDocument {
  const committed = JSON.parse(readFileSync(UPSTREAM_FACTS, 'utf8')) as Json;
  if (existsSync(UPSTREAM_EXCERPT)) {
    const current = factsOf(parseYaml(readFileSync(UPSTREAM_EXCERPT, 'utf8')) as Json);
    if (process.env['CREDVAULT_UPDATE_UPSTREAM_FACTS'] === '1') {
      writeFileSync(UPSTREAM_FACTS, `${JSON.stringify(current, null, 2)}\n`);
      return current as unknown as UpstreamDocument;
    }
    if (!isDeepStrictEqual(current, committed)) {
      throw new Error(
        `${UPSTREAM_FACTS} no longer matches ${UPSTREAM_EXCERPT}; refresh it with CREDVAULT_UPDATE_UPSTREAM_FACTS=1 npx vitest run test/contract`,
      );
    }
  }
  return committed as unknown as UpstreamDocument;
}

export function upstreamOperations(document: UpstreamDocument): UpstreamOperation[] {
  return Object.entries(document.paths).flatMap(([template, item]) =>
    METHODS.filter((method) => item[method] !== undefined).map((method) => ({
      operationId: (item[method] as { operationId: string }).operationId,
      method,
      path: template,
    })),
  );
}

const isObject = (value: Json | undefined): value is JsonObject => typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * OpenAPI 3.0's `nullable: true` (which the excerpt uses inside 3.1) as 2020-12 says it:
 * `null` joins the type (and the enum, if any); without a type the schema becomes
 * `anyOf [schema, null]`. Component refs point into `$defs`, where the components go.
 */
export function toJsonSchema(schema: Json): Json {
  if (Array.isArray(schema)) return schema.map(toJsonSchema);
  if (!isObject(schema)) return schema;
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key === 'nullable') continue;
    if (key === '$ref' && typeof value === 'string') {
      out[key] = value.replace(/^#\/components\/schemas\//, '#/$defs/');
      continue;
    }
    // Property names are data, not keywords: only their schemas are converted.
    if ((key === 'properties' || key === '$defs') && isObject(value)) {
      out[key] = Object.fromEntries(Object.entries(value).map(([name, sub]) => [name, toJsonSchema(sub)]));
      continue;
    }
    out[key] = toJsonSchema(value);
  }
  if (schema['nullable'] !== true) return out;
  if (Array.isArray(out['enum']) && !out['enum'].includes(null)) out['enum'] = [...out['enum'], null];
  const type = out['type'];
  if (typeof type === 'string') out['type'] = [type, 'null'];
  else if (Array.isArray(type)) {
    if (!type.includes('null')) out['type'] = [...type, 'null'];
  } else return { anyOf: [out, { type: 'null' }] };
  return out;
}

const SCHEMAS_ID = 'urn:credvault:upstream-excerpt';

// ajv-formats is CommonJS: its default export arrives as the module object or as the function, by loader.
const addFormats = ((addFormatsModule as unknown as { default?: typeof addFormatsModule }).default ?? addFormatsModule) as unknown as (
  ajv: Ajv2020,
) => Ajv2020;

/** Validates bodies against the upstream schemas (as strict as they are, no stricter) and against the error envelope. */
export class UpstreamValidator {
  private readonly ajv = new Ajv2020({ strict: true, allErrors: true });
  private readonly byOperation = new Map<string, ValidateFunction>();
  private readonly envelope: ValidateFunction;

  constructor(document: UpstreamDocument) {
    // The excerpt documents examples; they do not constrain anything.
    this.ajv.addKeyword('example');
    addFormats(this.ajv);
    const defs = Object.fromEntries(Object.entries(document.components.schemas).map(([name, schema]) => [name, toJsonSchema(schema)]));
    this.ajv.addSchema({ $id: SCHEMAS_ID, $defs: defs });
    for (const operation of upstreamOperations(document)) {
      const schema = document.paths[operation.path]?.[operation.method]?.responses['200']?.content?.['application/json']?.schema;
      if (schema === undefined) throw new Error(`${operation.operationId} documents no JSON 200 body`);
      const converted = toJsonSchema(schema);
      const rooted = isObject(converted) && typeof converted['$ref'] === 'string' ? { $ref: `${SCHEMAS_ID}${converted['$ref']}` } : converted;
      this.byOperation.set(operation.operationId, this.ajv.compile(rooted as object));
    }
    this.envelope = this.ajv.compile({
      type: 'object',
      required: ['status_code', 'http_error_type', 'error', 'message'],
      additionalProperties: false,
      properties: {
        status_code: { type: 'integer' },
        http_error_type: { type: 'string', pattern: '^[A-Z_]+$' },
        error: { type: 'string', pattern: '^[A-Z_]+$' },
        message: { type: 'string', minLength: 1 },
      },
    });
  }

  /** Schema violations of a 200 body of the operation, one line each; empty when it conforms. */
  success(operationId: string, body: unknown): string[] {
    const validate = this.byOperation.get(operationId);
    if (validate === undefined) return [`${operationId} is not an upstream operation`];
    return validate(body) ? [] : (validate.errors ?? []).map((e) => `${operationId} ${e.instancePath || '/'} ${e.message ?? ''}`);
  }

  /** Violations of the error envelope, whose `status_code` must be the HTTP status; empty when it conforms. */
  error(status: number, body: unknown): string[] {
    const problems = this.envelope(body) ? [] : (this.envelope.errors ?? []).map((e) => `envelope ${e.instancePath || '/'} ${e.message ?? ''}`);
    const code = (body as { status_code?: unknown } | undefined)?.status_code;
    if (code !== status) problems.push(`envelope status_code ${String(code)} is not the HTTP status ${status}`);
    return problems;
  }
}

import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  createApiKey,
  createHandler,
  createLinkedAccount,
  createVault,
  issueSessionToken,
  linkedAccountExists,
  revokeApiKey,
  revokeSessionToken,
  verifySessionToken,
  type CredvaultHandler,
  type HandlerOptions,
  type HandlerRequest,
  type HandlerResponse,
  type Vault,
  type VaultStore,
} from '../../src/index.js';
import { createMemoryStore } from '../../adapters/memory.js';
import { startBinding, type RunningServer } from '../http/harness.js';
import { openApiDocument } from '../../src/http/openapi.js';
import { apiKeySecret, keyEntry, tokenSecret } from './helpers.js';

/**
 * Property-based fuzzing of the HTTP surface. The seed is fixed (override with
 * CREDVAULT_FUZZ_SEED); fast-check prints seed and path of any counterexample, so a
 * failure replays exactly with the same seed.
 */
const SEED = Number(process.env.CREDVAULT_FUZZ_SEED ?? 20_250_614);
const HANDLER_RUNS = Number(process.env.CREDVAULT_FUZZ_RUNS ?? 2500);
const LIMITED_RUNS = Math.ceil(HANDLER_RUNS / 4);
const SERVER_RUNS = Math.ceil(HANDLER_RUNS / 8);
const BASE = '/api/v2/public';

// The failed-authentication limit (when the handler has one) writes counters on failures by
// design and answers 429 once tripped; the main runs switch it off to reach deeper, and one
// run keeps the default. Typed loosely: the option is newer than this file may be.
const NO_LIMIT = { failedAuthLimit: false } as HandlerOptions;

// ---------------------------------------------------------------------------------------
// Fixtures: referenced symbolically by the arbitraries, resolved at run time, because a
// successful request may revoke or delete them (they are then re-created).

interface Fixtures {
  apiKey: string;
  prodKey: string;
  otherOrgKey: string;
  revokedKey: string;
  token: string;
  revokedToken: string;
}

const PLACEHOLDER = /\{\{(\w+)\}\}/g;
function resolve(text: string, fx: Fixtures): string {
  return text.replace(PLACEHOLDER, (whole, name: string) => {
    if (name === 'apiKeyWrongSecret') return `${fx.apiKey.slice(0, fx.apiKey.lastIndexOf('_') + 1)}${'A'.repeat(43)}`;
    if (name === 'apiKeyOtherPrefix') return `pk_${fx.apiKey.slice(3)}`;
    if (name === 'tokenWrongSecret') return `${fx.token.slice(0, fx.token.lastIndexOf('.') + 1)}${'A'.repeat(43)}`;
    if (name === 'tokenOtherAccount') {
      const [, id, secret] = fx.token.split('.') as [string, string, string];
      return `cvs_${Buffer.from(JSON.stringify(['acme', 'test', 'cust-2'])).toString('base64url')}.${id}.${secret}`;
    }
    const value = (fx as unknown as Record<string, string>)[name];
    return value ?? whole;
  });
}

const b64url = (text: string) => Buffer.from(text, 'utf8').toString('base64url');
const forgedToken = (locator: string) => `cvs_${locator}.${'A'.repeat(22)}.${'B'.repeat(43)}`;

// ---------------------------------------------------------------------------------------
// Arbitraries.

const weirdMethods = fc.constantFrom('', 'CONSTRUCTOR', '__proto__', 'toString', 'hasOwnProperty', 'M-SEARCH', 'ß', 'G\u0000ET', 'PUT ', 'x'.repeat(300));
const methodArb = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('GET', 'PUT', 'POST', 'DELETE', 'put', 'Delete', 'post') },
  { weight: 2, arbitrary: fc.constantFrom('PATCH', 'HEAD', 'OPTIONS', 'TRACE', 'PROPFIND', 'PURGE') },
  { weight: 1, arbitrary: weirdMethods },
  { weight: 1, arbitrary: fc.string({ maxLength: 10 }) },
);

function safeEncode(text: string): string {
  try {
    return encodeURIComponent(text);
  } catch {
    return '%ED%A0%80'; // what a lone surrogate would be, were it encodable
  }
}

const segmentArb = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.constantFrom(
      'api_key', 'cust-1', 'cust-2', 'missing', 'we%3Aird%2F%C3%BC%20id', '__proto__', 'constructor', 'prototype',
      'hasOwnProperty', '..', '.', '%2e%2e', '%2E%2E%2F', '%2F', '%5C', '%00', '%0A', '%ZZ', '%', '%E0%A4%A', '%C0%AF',
      '%ED%A0%80', '%F0%9F%94%91', 'default-app', 'a'.repeat(128), 'a'.repeat(129), 'x'.repeat(5000), '%41'.repeat(3000),
    ),
  },
  { weight: 3, arbitrary: fc.stringMatching(/^[A-Za-z0-9_.-]{1,12}$/) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 20 }).map(safeEncode) },
  { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
);

const templateArb = fc.oneof(
  segmentArb.map((s) => `/linked-account/default-app/auth-credentials/${s}`),
  segmentArb.map((s) => `/linked-account/${s}`),
  fc.constantFrom(
    '/linked-account', '/linked-account/', '/session-token', '/session-token/revoke', '/session/active-linked-account',
    '', '/', '//', '/linked-account/default-app/auth-credentials/', '/linked-account/default-app/auth-credentials',
    '/linked-account//default-app', '/session-token/', '/openapi.json',
  ),
  fc.tuple(segmentArb, segmentArb).map(([a, b]) => `/${a}/${b}`),
);

const prefixArb = fc.oneof(
  { weight: 8, arbitrary: fc.constant(BASE) },
  {
    weight: 1,
    arbitrary: fc.constantFrom('', '/api/v2', '/api/v2/publicX', '/API/V2/PUBLIC', `${BASE}/..`, `${BASE}/../..`, `/${'x'.repeat(BASE.length - 1)}`, `/${BASE}`, '/%61pi/v2/public'),
  },
);
const pathArb = fc.tuple(prefixArb, templateArb).map(([p, t]) => p + t);

const apiKeyArb = fc.oneof(
  { weight: 6, arbitrary: fc.constant('{{apiKey}}') },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      '{{prodKey}}', '{{otherOrgKey}}', '{{revokedKey}}', '  {{apiKey}}  ', '{{apiKeyWrongSecret}}', '{{apiKeyOtherPrefix}}',
      '{{apiKey}}x', 'tk_', 'tk_0000000000000000_', '', 'Bearer {{apiKey}}', 'x'.repeat(10_000), 'tk_%00', '__proto__',
    ),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 80 }) },
);
const authorizationArb = fc.oneof(
  { weight: 5, arbitrary: fc.constant('Bearer {{token}}') },
  {
    weight: 4,
    arbitrary: fc.constantFrom(
      'bearer   {{token}}  ', 'BEARER\t{{token}}', 'Bearer {{revokedToken}}', 'Bearer {{token}}x', 'Bearer {{tokenWrongSecret}}',
      'Bearer {{tokenOtherAccount}}', 'Bearer {{token}} {{token}}', 'Bearer', 'Bearer ', 'Basic dXNlcjpwYXNz', 'Token {{token}}', '',
      `Bearer ${forgedToken(b64url('{"__proto__":{"polluted":"yes"}}'))}`,
      `Bearer ${forgedToken(b64url('["acme","test"]'))}`,
      `Bearer ${forgedToken(b64url('[1,2,3]'))}`,
      `Bearer ${forgedToken(b64url('["acme","staging","cust-1"]'))}`,
      `Bearer ${forgedToken(b64url('["acme","test","__proto__"]'))}`,
      `Bearer ${forgedToken(b64url(`["acme","test","${'\\ud800'.repeat(50)}"]`))}`,
      `Bearer ${forgedToken(b64url(`["${'o'.repeat(400)}","test","${'ü'.repeat(600)}"]`))}`,
      `Bearer ${forgedToken(b64url('not json'))}`,
      `Bearer ${forgedToken('A'.repeat(2048))}`,
      `Bearer ${forgedToken('A'.repeat(2049))}`,
    ),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 80 }).map((s) => `Bearer ${s}`) },
);
const accountIdArb = fc.oneof(
  { weight: 5, arbitrary: fc.constantFrom('cust-1', 'cust-2', 'we:ird/ü id', 'missing') },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      '', ' ', '__proto__', 'constructor', 'prototype', 'a\u0000b', 'a\nb', '\u0085', '\ud800', 'x'.repeat(256), 'x'.repeat(257),
      '../cust-1', 'cust-1/../cust-2', '%63ust-1', 'cust-1\u200b', 'acct:acme:test:cust-1', '{cust-1}', 'cust-1%0000',
    ),
  },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }) },
);
const headerValue = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined, freq: 2 });
const headersArb = fc
  .record({
    'x-api-key': headerValue(fc.oneof({ weight: 9, arbitrary: apiKeyArb }, { weight: 1, arbitrary: fc.array(apiKeyArb, { minLength: 2, maxLength: 2 }) })),
    authorization: headerValue(authorizationArb),
    linked_account_id: headerValue(
      fc.oneof({ weight: 9, arbitrary: accountIdArb }, { weight: 1, arbitrary: fc.array(accountIdArb, { minLength: 2, maxLength: 2 }) }),
    ),
    'content-type': headerValue(fc.constantFrom('application/json', 'text/plain', 'application/json; charset=latin1', '')),
    extra: headerValue(fc.constantFrom<[string, string]>(['__proto__', 'x'], ['constructor', 'y'], ['X-API-KEY', '{{apiKey}}'], ['Linked_Account_Id', 'cust-2'], ['x-forwarded-for', '1.2.3.4'])),
  })
  .map(({ extra, ...named }) => {
    // Object.fromEntries makes own properties even for '__proto__'.
    const entries: Array<[string, string | string[]]> = [];
    for (const [k, v] of Object.entries(named)) if (v !== undefined) entries.push([k, v]);
    if (extra !== undefined) entries.push(extra);
    return entries;
  });

const queryArb = fc.oneof(
  { weight: 4, arbitrary: fc.constant('') },
  {
    weight: 4,
    arbitrary: fc.constantFrom(
      'linked_account_id=cust-1', 'linked_account_id=cust-2', 'linked_account_id=cust-1&linked_account_id=cust-2',
      'linked_account_id=cust-1&linked_account_id=cust-1', 'linked_account_id=', 'linked_account_id=%ZZ', 'linked_account_id=%00',
      'linked_account_id=we%3Aird%2F%C3%BC%20id', 'linked_account_id=%ED%A0%80', 'force_refresh=true', 'force_refresh=false', 'force_refresh=maybe',
      'force_refresh=true&force_refresh=false', 'force_refresh=', '__proto__=x&constructor=y&prototype=z', '&&&', '=', '?', '%',
      'linked_account_id', `linked_account_id=${'x'.repeat(5000)}`,
      'page=1&limit=2', 'page=2&limit=1', 'page=0', 'page=1.5', 'page=9007199254740991&limit=100', 'limit=101', 'limit=', 'page=1&page=2',
      'env_variable_name=A', 'env_variable_value=', 'page=%31',
    ),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 30 }) },
  { weight: 1, arbitrary: fc.dictionary(fc.constantFrom('linked_account_id', 'force_refresh', 'page', 'limit', 'x'), fc.string({ maxLength: 8 })).map((d) => new URLSearchParams(d)) },
);

const deepArray = (n: number) => '['.repeat(n) + ']'.repeat(n);
const deepObject = (n: number) => '{"a":'.repeat(n) + '1' + '}'.repeat(n);
const SECRET_MARK = 'SECRETVALUE';
const secretValueArb = fc.stringMatching(/^[A-Za-z0-9]{4,12}$/).map((s) => `${SECRET_MARK}-${s}`);
const valueArb = fc.oneof(
  { weight: 4, arbitrary: secretValueArb },
  {
    weight: 3,
    arbitrary: fc.constantFrom<unknown>(
      -0, 0, 1e21, 1e-7, Number.MAX_VALUE, 5e-324, -1, 1.5, true, false, null, [], {}, '', ' ', '\u0000', 'ключ-🔑',
      ['a'], { value: 'x' }, 'x'.repeat(64 * 1024), 'x'.repeat(64 * 1024 + 1), 'é'.repeat(40_000),
    ),
  },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
);
const keyNameArb = fc.oneof(fc.constantFrom('api_key', '__proto__', 'constructor', 'prototype', 'bad key', '', 'a'.repeat(129)), fc.stringMatching(/^[A-Za-z0-9_.-]{1,10}$/));
const credentialsMapArb = fc
  .array(fc.tuple(keyNameArb, valueArb), { maxLength: 3 })
  .map((pairs) => `{${pairs.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v) ?? 'null'}`).join(',')}}`);

const utf8 = (text: string) => Buffer.from(text, 'utf8');
const rawBodies: Array<string | Uint8Array> = [
  '', ' ', 'null', 'true', '123', '"str"', '[]', '{}', '{', 'hello', '\ufeff{"value":"x"}', '{"value":"x"}garbage', '{"value":"x"}{"value":"y"}',
  '{"value":1e400}', '{"value":-1e400}', '{"value":-0}', '{"value":1e21}', '{"value":123456789012345678901234567890}', '{"value":NaN}',
  '{"value":"a","value":"b"}', '{"value":"a","value":{}}', '{"value":{},"value":"a"}',
  '{"__proto__":{"polluted":"yes"},"value":"x"}', '{"value":"x","__proto__":{"value":"y"}}',
  '{"constructor":{"prototype":{"polluted":"yes"}},"value":"x"}', '{"prototype":{"polluted":"yes"},"value":"x"}',
  '{"account_id":"p1","udf":{"__proto__":"x","constructor":"y"}}', '{"account_id":"p2","udf":{"__proto__":{"polluted":"yes"}}}',
  '{"account_id":"p3","your_app":{"auth_credentials":{"__proto__":"v1","constructor":"v2","prototype":"v3"}}}',
  '{"account_id":"p4","your_app":{"auth_credentials":{"__proto__":{"polluted":"yes"}}}}',
  '{"account_id":"cust-1","payload":{"__proto__":{"polluted":"yes"},"name":"n"}}', '{"payload":{"udf":{"__proto__":"z"}},"account_id":"cust-1"}',
  '{"linked_account_id":"cust-1","__proto__":{"linked_account_id":"cust-2"}}',
  '{"account_id":"a","linked_account_id":"b"}', '{"account_id":"__proto__"}', '{"account_id":"constructor","name":"toString"}',
  deepArray(10_000), `{"value":${deepArray(10_000)}}`, deepObject(5_000), `{"account_id":"d","udf":${deepObject(3_000)}}`,
  `{"value":${deepArray(100_000).slice(0, 100 * 1024 - 20)}`,
  `{"value":"${'x'.repeat(100 * 1024)}"}`, // over the 100 KiB body limit
  'x'.repeat(100 * 1024 + 1),
  Uint8Array.from([0xff, 0xfe, 0xfd]),
  Buffer.concat([utf8('{"value":"'), Buffer.from([0xc3, 0x28]), utf8('"}')]),
  Buffer.concat([utf8('{"value":"'), Buffer.from([0xed, 0xa0, 0x80]), utf8('"}')]), // a surrogate, UTF-8 encoded
  Buffer.concat([utf8('{"value":"'), Buffer.from([0xc0, 0xaf]), utf8('"}')]), // overlong '/'
  Buffer.concat([utf8('{"value":"x"}'), Buffer.from([0x80])]),
  utf8('{"value":"\\ud800"}'), utf8('{"value":"\\udc00x\\ud800"}'), utf8('{"account_id":"\\ud800"}'),
  new Uint8Array(0),
];
const bodyArb: fc.Arbitrary<string | Uint8Array | undefined> = fc.oneof(
  { weight: 1, arbitrary: fc.constant(undefined) },
  { weight: 5, arbitrary: valueArb.map((value) => JSON.stringify({ value }) ?? '{}') },
  { weight: 4, arbitrary: fc.constantFrom(...rawBodies) },
  {
    weight: 3,
    arbitrary: fc
      .record({
        account_id: fc.option(accountIdArb, { nil: undefined }),
        linked_account_id: fc.option(accountIdArb, { nil: undefined }),
        name: fc.option(fc.oneof(fc.string({ maxLength: 20 }), fc.constant('n'.repeat(257)), fc.constant(null)), { nil: undefined }),
        nested: fc.boolean(),
      })
      .chain((fields) =>
        fc.tuple(fc.constant(fields), credentialsMapArb, fc.dictionary(fc.string({ maxLength: 6 }), fc.oneof(fc.string({ maxLength: 6 }), secretValueArb), { maxKeys: 3 })),
      )
      .map(([{ nested, ...fields }, creds, udf]) => {
        const inner = `"your_app":{"auth_credentials":${creds}},"udf":${JSON.stringify(udf)}`;
        const named = JSON.stringify(fields).slice(1, -1);
        const body = nested ? `{${named}${named ? ',' : ''}"payload":{${inner}}}` : `{${named}${named ? ',' : ''}${inner}}`;
        return body;
      }),
  },
  { weight: 1, arbitrary: accountIdArb.map((id) => JSON.stringify({ linked_account_id: id })) },
  { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }) },
);

interface FuzzRequest {
  method: string;
  path: string;
  headers: Array<[string, string | string[]]>;
  query: string | URLSearchParams;
  body: string | Uint8Array | undefined;
  lazyBody: boolean;
}
/** Anything at all. */
const wildRequestArb: fc.Arbitrary<FuzzRequest> = fc.record({
  method: methodArb,
  path: pathArb,
  headers: headersArb,
  query: queryArb,
  body: bodyArb,
  lazyBody: fc.boolean(),
});

/** A real route and mostly valid credentials, so that requests get past routing and authentication. */
const keySegmentArb = fc.oneof(
  { weight: 5, arbitrary: fc.oneof(fc.stringMatching(/^[A-Za-z0-9_.-]{1,12}$/), fc.constantFrom('api_key', '__proto__', 'constructor', 'prototype')) },
  { weight: 2, arbitrary: segmentArb },
);
const accountSegmentArb = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('cust-1', 'cust-2', 'missing', encodeURIComponent('we:ird/ü id'), 'p1', 'p3') },
  { weight: 2, arbitrary: segmentArb },
);
const routeArb: fc.Arbitrary<[string, string]> = fc.oneof<fc.Arbitrary<[string, string]>[]>(
  fc.tuple(fc.constantFrom('PUT', 'put', 'DELETE'), keySegmentArb.map((k) => `/linked-account/default-app/auth-credentials/${k}`)),
  fc.tuple(fc.constantFrom('GET', 'POST', 'PUT'), fc.constant('/linked-account')),
  fc.tuple(fc.constantFrom('GET', 'DELETE'), accountSegmentArb.map((a) => `/linked-account/${a}`)),
  fc.tuple(fc.constant('POST'), fc.constantFrom('/session-token', '/session-token/revoke')),
  fc.tuple(fc.constant('GET'), fc.constant('/session/active-linked-account')),
);
const validIdArb = fc.constantFrom('cust-1', 'cust-2', 'we:ird/ü id', 'p1', 'missing');
const routedHeadersArb = fc.oneof(
  { weight: 4, arbitrary: validIdArb.map((id): Array<[string, string]> => [['x-api-key', '{{apiKey}}'], ['linked_account_id', id]]) },
  { weight: 1, arbitrary: fc.constant<Array<[string, string]>>([['x-api-key', '{{apiKey}}']]) },
  { weight: 3, arbitrary: fc.constant<Array<[string, string]>>([['authorization', 'Bearer {{token}}']]) },
  { weight: 3, arbitrary: headersArb },
);
const routedRequestArb: fc.Arbitrary<FuzzRequest> = fc.record({
  route: routeArb,
  headers: routedHeadersArb,
  query: queryArb,
  body: bodyArb,
  lazyBody: fc.boolean(),
}).map(({ route: [method, path], ...rest }) => ({ method, path: BASE + path, ...rest }));

const requestArb: fc.Arbitrary<FuzzRequest> = fc.oneof({ weight: 3, arbitrary: routedRequestArb }, { weight: 1, arbitrary: wildRequestArb });

// ---------------------------------------------------------------------------------------
// Checks.

const ERROR_TYPES: Record<number, string> = {
  400: 'BAD_REQUEST',
  401: 'UNAUTHORIZED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  409: 'CONFLICT',
  413: 'PAYLOAD_TOO_LARGE',
  429: 'TOO_MANY_REQUESTS',
};

const keysOf = (body: object) => Object.keys(body).sort().join(',');
const ACCOUNT_KEYS = '_id,account_id,associated_org,createdAt,environment,integrations,name,udf,updatedAt';
const PAGE_KEYS = 'docs,hasNextPage,hasPrevPage,limit,nextPage,page,pagingCounter,prevPage,totalDocs,totalPages';
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** A linked account as every account answer gives it: never a credential. */
function expectAccountShape(b: Record<string, unknown>): void {
  expect(typeof b['_id']).toBe('string');
  expect(typeof b['associated_org']).toBe('string');
  expect(typeof b['account_id']).toBe('string');
  expect(typeof b['name']).toBe('string');
  expect(['test', 'production']).toContain(b['environment']);
  expect(b['createdAt']).toMatch(ISO);
  expect(b['updatedAt']).toMatch(ISO);
  for (const field of b['udf'] as unknown[]) expect(keysOf(field as object)).toBe('key_name,key_value');
  const integrations = b['integrations'] as Array<Record<string, unknown>>;
  expect(Array.isArray(integrations)).toBe(true);
  expect(integrations.length).toBeLessThanOrEqual(1);
  for (const integration of integrations) {
    expect(keysOf(integration)).toBe('_id,createdAt,name,type,updatedAt');
    expect(integration['type']).toBe('default_app');
  }
}

/** The body of a 200: one of the documented success shapes, exactly. */
function expectSuccessShape(body: unknown): void {
  expect(typeof body === 'object' && body !== null && !Array.isArray(body), 'success body is an object').toBe(true);
  const b = body as Record<string, unknown>;
  switch (keysOf(b)) {
    case 'action,message,success':
      expect(b['success']).toBe(true);
      expect(['added', 'updated']).toContain(b['action']);
      expect(b['message']).toMatch(/^Auth credential '[A-Za-z0-9_.-]{1,128}' (added|updated) successfully$/);
      return;
    case 'message,success':
      expect(b['success']).toBe(true);
      expect(b['message']).toMatch(/^Auth credential '[A-Za-z0-9_.-]{1,128}' deleted successfully$/);
      return;
    case ACCOUNT_KEYS:
    case `${ACCOUNT_KEYS},new_account`.split(',').sort().join(','):
      expectAccountShape(b);
      if ('new_account' in b) expect(typeof b['new_account']).toBe('boolean');
      return;
    case PAGE_KEYS: {
      const docs = b['docs'] as Array<Record<string, unknown>>;
      expect(docs.length).toBeLessThanOrEqual(b['limit'] as number);
      for (const doc of docs) {
        expect(keysOf(doc)).toBe(ACCOUNT_KEYS);
        expectAccountShape(doc);
      }
      expect(b['pagingCounter']).toBe(((b['page'] as number) - 1) * (b['limit'] as number) + 1);
      return;
    }
    case 'message':
      expect(b['message']).toBe('User deleted successfully');
      return;
    case 'expires_in,token':
      expect(b['token']).toMatch(/^cvs_/);
      expect(Number.isInteger(b['expires_in'])).toBe(true);
      return;
    case 'revoked_count,success':
      expect(b).toEqual({ success: true, revoked_count: expect.any(Number) });
      return;
    default:
      expect.fail(`undocumented success shape: ${keysOf(b)}`);
  }
}

function expectErrorEnvelope(status: number, body: unknown): void {
  expect(typeof body === 'object' && body !== null && !Array.isArray(body), 'error body is an object').toBe(true);
  const b = body as Record<string, unknown>;
  expect(keysOf(b)).toBe('error,http_error_type,message,status_code');
  expect(b['status_code']).toBe(status);
  expect(b['http_error_type']).toBe(ERROR_TYPES[status]);
  expect(typeof b['error']).toBe('string');
  expect(typeof b['message']).toBe('string');
  expect(b['message'] as string).not.toContain(SECRET_MARK);
  expect(b['message'] as string).not.toMatch(/\n\s+at /);
}

type Documented = Array<{ pattern: RegExp; methods: Map<string, Set<string>> }>;

/** The served document's operations, as path patterns under the base path and their statuses. */
function documentedStatuses(failedAuthLimit: boolean): Documented {
  const doc = openApiDocument({ failedAuthLimit }) as { paths: Record<string, Record<string, { responses: Record<string, unknown> }>> };
  return Object.entries(doc.paths).map(([path, operations]) => ({
    pattern: new RegExp(`^${path.replace(/\{[^}]+\}/g, '[^/]*')}$`),
    methods: new Map(Object.entries(operations).map(([method, op]) => [method.toUpperCase(), new Set(Object.keys(op.responses))])),
  }));
}

/** Every answer of a documented operation has a status that operation documents; a documented path answers other methods 405. */
function expectDocumented(documented: Documented, method: string, path: string, status: number): void {
  const operations = documented.find((d) => d.pattern.test(path))?.methods;
  if (operations === undefined) return; // not an API path: 404 or the application's own
  const statuses = operations.get(method.toUpperCase());
  if (statuses === undefined) expect({ method, path, status }).toEqual({ method, path, status: 405 });
  else expect(statuses.has(String(status)), `${method} ${path} answered ${status}, documented: ${[...statuses].join(' ')}`).toBe(true);
}

/** The whole store: every record of every group, with timestamps. */
async function snapshot(store: VaultStore, ignoreGroup: (group: string) => boolean = () => false): Promise<string> {
  const out: string[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < 10_000; page++) {
    const result = await store.scan(cursor, 1000);
    for (const { group, member, entry } of result.items) {
      if (!ignoreGroup(group)) out.push(JSON.stringify([group, member, entry]));
    }
    cursor = result.cursor;
    if (cursor === undefined) break;
  }
  return out.join('\n');
}

const PROTO_NAMES = Object.getOwnPropertyNames(Object.prototype).sort().join();
function expectPrototypesClean(): void {
  expect(Object.getOwnPropertyNames(Object.prototype).sort().join()).toBe(PROTO_NAMES);
  expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  expect(({} as Record<string, unknown>)['value']).toBeUndefined();
  expect(({} as Record<string, unknown>)['linked_account_id']).toBeUndefined();
  expect(Object.getOwnPropertyNames(Array.prototype).includes('polluted')).toBe(false);
}

const DOCUMENTED_WITHOUT_LIMIT = documentedStatuses(false);
const DOCUMENTED_WITH_LIMIT = documentedStatuses(true);

// ---------------------------------------------------------------------------------------

interface World {
  vault: Vault;
  store: VaultStore;
  fx: Fixtures;
  secrets: () => string[];
  /** Re-creates fixtures a successful request removed. */
  restore(): Promise<void>;
}

async function makeWorld(): Promise<World> {
  const store = createMemoryStore();
  const vault = await createVault({ store, keys: keyEntry('k1').entry, log: () => undefined });
  const apiKey = (await createApiKey(vault, { org: 'acme', environment: 'test' })).apiKey;
  const prodKey = (await createApiKey(vault, { org: 'acme', environment: 'production' })).apiKey;
  const otherOrgKey = (await createApiKey(vault, { org: 'globex', environment: 'test' })).apiKey;
  const revoked = await createApiKey(vault, { org: 'acme', environment: 'test' });
  await revokeApiKey(vault, revoked.keyId);
  const cust1 = { org: 'acme', environment: 'test', accountId: 'cust-1' };
  const ensureAccounts = async () => {
    if (!(await linkedAccountExists(vault, cust1))) await createLinkedAccount(vault, cust1, { credentials: { api_key: 'seed' } });
    const cust2 = { ...cust1, accountId: 'cust-2' };
    if (!(await linkedAccountExists(vault, cust2))) await createLinkedAccount(vault, cust2);
    const weird = { ...cust1, accountId: 'we:ird/ü id' };
    if (!(await linkedAccountExists(vault, weird))) await createLinkedAccount(vault, weird, { credentials: {} });
  };
  await ensureAccounts();
  const revokedToken = (await issueSessionToken(vault, cust1, { forceRefresh: true })).token;
  await revokeSessionToken(vault, revokedToken);
  const fx: Fixtures = {
    apiKey,
    prodKey,
    otherOrgKey,
    revokedKey: revoked.apiKey,
    token: (await issueSessionToken(vault, cust1, { forceRefresh: true })).token,
    revokedToken,
  };
  return {
    vault,
    store,
    fx,
    secrets: () => [fx.apiKey, fx.prodKey, fx.otherOrgKey, fx.revokedKey].map(apiKeySecret).concat([fx.token, fx.revokedToken].map(tokenSecret)),
    async restore() {
      await ensureAccounts();
      const valid = await verifySessionToken(vault, fx.token).then(
        () => true,
        () => false,
      );
      if (!valid) fx.token = (await issueSessionToken(vault, cust1, { forceRefresh: true })).token;
    },
  };
}

function toHandlerRequest(req: FuzzRequest, fx: Fixtures): HandlerRequest {
  const headers = Object.fromEntries(
    req.headers.map(([name, value]) => [name, Array.isArray(value) ? value.map((v) => resolve(v, fx)) : resolve(value, fx)]),
  ) as Record<string, string | string[]>;
  const body = req.body;
  const out: HandlerRequest = {
    method: req.method,
    path: resolve(req.path, fx),
    headers,
    query: typeof req.query === 'string' ? resolve(req.query, fx) : req.query,
  };
  if (body !== undefined) {
    out.body = req.lazyBody ? async () => (typeof body === 'string' ? utf8(body) : body) : body;
  }
  return out;
}

/** One request through `send`, with every property checked. */
async function checkOne(
  world: World,
  req: FuzzRequest,
  send: (req: FuzzRequest) => Promise<{ status: number; body: unknown; owned: boolean; head: boolean; method: string; path: string }>,
  ignoreGroup?: (group: string) => boolean,
  documented: Documented = DOCUMENTED_WITHOUT_LIMIT,
): Promise<void> {
  const before = await snapshot(world.store, ignoreGroup);
  const res = await send(req);
  expect(res.status, 'never a 5xx').toBeLessThan(500);
  if (res.status !== 418 && res.status !== -1) expectDocumented(documented, res.method, res.path, res.status);
  expectPrototypesClean();
  if (res.head) {
    expect(res.body).toBeUndefined();
    if (res.status === 418) expect(res.owned).toBe(false);
  } else if (res.status === 418) {
    // Only the test server's own route outside the API answers 418.
    expect(res.owned).toBe(false);
    expect(res.body).toEqual({ outside: true });
  } else if (res.status === 200) {
    expectSuccessShape(res.body);
  } else {
    expectErrorEnvelope(res.status, res.body);
  }
  if (!res.head && res.status !== 200) {
    const text = JSON.stringify(res.body);
    for (const secret of world.secrets()) expect(text).not.toContain(secret);
  }
  if (res.status !== 200) {
    expect(await snapshot(world.store, ignoreGroup), 'a failed request changed the store').toBe(before);
  } else {
    await world.restore();
  }
}

describe('fuzzing the framework-agnostic handler (memory store)', () => {
  let world: World;
  let handler: CredvaultHandler;
  const logged: string[] = [];

  beforeAll(async () => {
    world = await makeWorld();
    handler = createHandler(world.vault, { ...NO_LIMIT, logError: (line) => logged.push(line) });
  });
  afterAll(async () => {
    await world?.vault.close();
  });

  const send = async (req: FuzzRequest) => {
    const request = toHandlerRequest(req, world.fx);
    const res: HandlerResponse = await handler.handle(request);
    // The body must survive the trip through JSON as the bindings send it.
    const body: unknown = JSON.parse(JSON.stringify(res.body));
    return { status: res.status, body, owned: handler.owns(request.path), head: false, method: request.method, path: request.path };
  };

  it(`arbitrary requests: never a 5xx, always a documented shape, failures change nothing, no prototype pollution (seed ${SEED}, ${HANDLER_RUNS} runs)`, async () => {
    const statuses: Record<number, number> = {};
    await fc.assert(
      fc.asyncProperty(requestArb, async (req) => {
        await checkOne(world, req, async (r) => {
          const res = await send(r);
          statuses[res.status] = (statuses[res.status] ?? 0) + 1;
          return res;
        });
      }),
      { seed: SEED, numRuns: HANDLER_RUNS, endOnFailure: true },
    );
    expect(logged, 'nothing unexpected was logged').toEqual([]);
    // The generators must reach past authentication and validation, not only bounce off them.
    expect(statuses[200] ?? 0, JSON.stringify(statuses)).toBeGreaterThan(HANDLER_RUNS / 50);
    expect(Object.keys(statuses).length, JSON.stringify(statuses)).toBeGreaterThanOrEqual(7);
  }, 60_000);

  it('the classic hostile bodies, each on every body-reading endpoint with valid credentials', async () => {
    const endpoints: Array<Pick<FuzzRequest, 'method' | 'path' | 'headers'>> = [
      { method: 'PUT', path: `${BASE}/linked-account/default-app/auth-credentials/api_key`, headers: [['x-api-key', '{{apiKey}}'], ['linked_account_id', 'cust-1']] },
      { method: 'PUT', path: `${BASE}/linked-account/default-app/auth-credentials/api_key`, headers: [['authorization', 'Bearer {{token}}']] },
      { method: 'POST', path: `${BASE}/linked-account`, headers: [['x-api-key', '{{apiKey}}']] },
      { method: 'PUT', path: `${BASE}/linked-account`, headers: [['x-api-key', '{{apiKey}}']] },
      { method: 'PUT', path: `${BASE}/linked-account`, headers: [['authorization', 'Bearer {{token}}']] },
      { method: 'POST', path: `${BASE}/session-token`, headers: [['x-api-key', '{{apiKey}}']] },
    ];
    for (const endpoint of endpoints) {
      for (const body of rawBodies) {
        for (const lazyBody of [false, true]) {
          await checkOne(world, { ...endpoint, query: '', body, lazyBody }, send);
        }
      }
    }
    expect(logged).toEqual([]);
  }, 30_000);

  it('prototype keys are ordinary names: a credential, udf entry and account called __proto__ round-trip', async () => {
    // A world of its own: the runs above may have made a '__proto__' account already.
    const own = await makeWorld();
    const ownHandler = createHandler(own.vault, NO_LIMIT);
    const send = async (req: FuzzRequest) => {
      const res = await ownHandler.handle(toHandlerRequest(req, own.fx));
      return { status: res.status, body: res.body };
    };
    const put = await send({
      method: 'PUT', path: `${BASE}/linked-account/default-app/auth-credentials/__proto__`, query: '', lazyBody: false,
      headers: [['x-api-key', '{{apiKey}}'], ['linked_account_id', 'cust-1']], body: '{"value":"proto-value"}',
    });
    expect(put.status).toBe(200);
    const seeded = await send({
      method: 'POST', path: `${BASE}/linked-account`, query: '', lazyBody: false, headers: [['x-api-key', '{{prodKey}}']],
      body: '{"account_id":"__proto__","udf":{"__proto__":"u"},"your_app":{"auth_credentials":{"__proto__":"p","constructor":"c"}}}',
    });
    expect(seeded.status).toBe(200);
    const { getDefaultAppCredential } = await import('../../src/index.js');
    const ref = { org: 'acme', environment: 'production', accountId: '__proto__' };
    expect(await getDefaultAppCredential(own.vault, { org: 'acme', environment: 'test', accountId: 'cust-1' }, '__proto__')).toBe('proto-value');
    expect(await getDefaultAppCredential(own.vault, ref, '__proto__')).toBe('p');
    expect(await getDefaultAppCredential(own.vault, ref, 'constructor')).toBe('c');
    expectPrototypesClean();
    await own.vault.close();
  });
});

describe('fuzzing the handler with its default failed-authentication limit (memory store)', () => {
  let world: World;
  let handler: CredvaultHandler;

  beforeAll(async () => {
    world = await makeWorld();
    handler = createHandler(world.vault, { logError: (line) => expect.fail(`unexpected error logged: ${line}`) });
  });
  afterAll(async () => {
    await world?.vault.close();
  });

  it(`never a 5xx, and failures change nothing but the limiter's own counters (seed ${SEED}, ${LIMITED_RUNS} runs)`, async () => {
    let address = 0;
    await fc.assert(
      fc.asyncProperty(requestArb, async (req) => {
        await checkOne(
          world,
          req,
          async (r) => {
            const request = { ...toHandlerRequest(r, world.fx), clientAddress: `10.0.0.${(address++ % 3) + 1}` };
            const res = await handler.handle(request);
            return {
              status: res.status,
              body: JSON.parse(JSON.stringify(res.body)) as unknown,
              owned: handler.owns(request.path),
              head: false,
              method: request.method,
              path: request.path,
            };
          },
          (group) => group.startsWith('limit:'),
          DOCUMENTED_WITH_LIMIT,
        );
      }),
      { seed: SEED + 1, numRuns: LIMITED_RUNS, endOnFailure: true },
    );
  }, 60_000);
});

// Bindings that do not check `owns` themselves (credvault/fetch) rely on the handler to refuse
// paths outside the base path, however much they look like ones inside it.
describe('paths outside the base path', () => {
  let world: World;
  let handler: CredvaultHandler;
  beforeAll(async () => {
    world = await makeWorld();
    handler = createHandler(world.vault, NO_LIMIT);
  });
  afterAll(async () => {
    await world?.vault.close();
  });

  it('handle() answers 404 ROUTE_NOT_FOUND, and writes nothing, for any path the handler does not own', async () => {
    const outside = fc.tuple(
      fc.constantFrom(`/${'x'.repeat(BASE.length - 1)}`, '/API/V2/PUBLIC', '/api/v2/publiC', '/api/v3/public', `${BASE.slice(0, -1)}X`),
      fc.constantFrom('/linked-account', '/session-token', '/session/active-linked-account', '/linked-account/cust-1'),
      fc.constantFrom('GET', 'POST', 'PUT', 'DELETE'),
    );
    await fc.assert(
      fc.asyncProperty(outside, async ([prefix, rest, method]) => {
        const path = prefix + rest;
        expect(handler.owns(path)).toBe(false);
        const before = await snapshot(world.store);
        const res = await handler.handle({
          method,
          path,
          headers: { 'x-api-key': world.fx.apiKey, 'content-type': 'application/json' },
          body: JSON.stringify({ account_id: 'outside', linked_account_id: 'cust-1' }),
        });
        expect({ path, method, status: res.status, error: (res.body as { error?: string }).error }).toEqual({
          path, method, status: 404, error: 'RESOURCE_NOT_FOUND',
        });
        expect(await snapshot(world.store)).toBe(before);
      }),
      { seed: SEED, numRuns: 40 },
    );
  });
});

// ---------------------------------------------------------------------------------------
// The same properties through a real Express server (raw node:http, so that nothing on the
// client side normalises paths or rejects odd methods).

/** Methods Node's HTTP parser accepts (others never reach the framework). */
const nodeMethodArb = fc.constantFrom('GET', 'PUT', 'POST', 'DELETE', 'put', 'PATCH', 'OPTIONS', 'HEAD', 'PROPFIND', 'PURGE', 'SEARCH', 'MKCOL', 'LOCK');
/** What a Node client may put in a header value. */
const headerSafe = (text: string) => text.replace(/[^\t\x20-\x7e]/g, (c) => (c.charCodeAt(0) <= 0xff && c.charCodeAt(0) >= 0x80 ? c : '?'));
/** What a Node client may put in a request target. */
const pathSafe = (text: string) => (text.replace(/[^\x21-\x7e]/g, (c) => encodeURIComponent(c === ' ' ? ' ' : c.isWellFormed() ? c : '?')) || '/');

function rawRequest(url: string, req: { method: string; path: string; headers: Record<string, string | string[]>; body?: Uint8Array }) {
  const { hostname, port } = new URL(url);
  // An explicit length: without one Node sends a DELETE's or GET's body unframed, and the server reads it as a new request.
  const headers = req.body === undefined ? req.headers : { ...req.headers, 'content-length': String(req.body.byteLength) };
  return new Promise<{ status: number; text: string }>((resolvePromise, reject) => {
    const request = http.request(
      { host: hostname, port: Number(port), method: req.method, path: req.path, headers, timeout: 10_000 },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => resolvePromise({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        response.on('error', reject);
      },
    );
    request.on('timeout', () => request.destroy(new Error('request timed out')));
    request.on('error', (error: NodeJS.ErrnoException) => {
      // A 413 answered before the whole body was sent may reset the socket under us.
      if (error.code === 'EPIPE' || error.code === 'ECONNRESET') resolvePromise({ status: -1, text: '' });
      else reject(error);
    });
    if (req.body !== undefined) request.end(req.body);
    else request.end();
  });
}

describe('fuzzing a real Express server (memory store)', () => {
  let world: World;
  let server: RunningServer;
  beforeAll(async () => {
    world = await makeWorld();
    server = await startBinding('express', world.vault, NO_LIMIT);
  });
  afterAll(async () => {
    await server?.close();
    await world?.vault.close();
  });

  it(`arbitrary requests over HTTP: never a 5xx, documented shapes only, failures change nothing (seed ${SEED}, ${SERVER_RUNS} runs)`, async () => {
    const httpRequestArb = fc.record({ req: requestArb, method: nodeMethodArb });
    let resets = 0;
    await fc.assert(
      fc.asyncProperty(httpRequestArb, async ({ req, method }) => {
        await checkOne(world, { ...req, method }, async (r) => {
          const h = toHandlerRequest(r, world.fx);
          const headers: Record<string, string | string[]> = {};
          for (const [name, value] of Object.entries(h.headers)) {
            if (value === undefined || name === '__proto__' || name === 'constructor') continue;
            headers[name] = typeof value === 'string' ? headerSafe(value) : value.map(headerSafe);
          }
          const query = typeof h.query === 'string' ? h.query : (h.query?.toString() ?? '');
          const target = pathSafe(h.path) + (query === '' ? '' : `?${pathSafe(query)}`);
          const body = r.body === undefined ? undefined : typeof r.body === 'string' ? utf8(r.body) : r.body;
          const res = await rawRequest(server.url, { method, path: target.startsWith('/') ? target : `/${target}`, headers, ...(body ? { body } : {}) });
          if (res.status === -1) {
            resets += 1;
            const pathOnly = target.split('?')[0] as string;
            return {
              status: 413,
              body: { status_code: 413, http_error_type: 'PAYLOAD_TOO_LARGE', error: 'PAYLOAD_TOO_LARGE', message: '' },
              owned: true,
              head: false,
              method,
              path: pathOnly,
            };
          }
          let parsed: unknown;
          try {
            parsed = res.text === '' ? undefined : JSON.parse(res.text);
          } catch {
            expect.fail(`not JSON (status ${res.status}): ${res.text.slice(0, 200)}`);
          }
          const pathOnly = target.split('?')[0] as string;
          return { status: res.status, body: parsed, owned: pathOnly === BASE || pathOnly.startsWith(`${BASE}/`), head: method === 'HEAD', method, path: pathOnly };
        });
      }),
      { seed: SEED + 2, numRuns: SERVER_RUNS, endOnFailure: true },
    );
    expect(resets).toBeLessThan(SERVER_RUNS / 4);
  }, 60_000);
});

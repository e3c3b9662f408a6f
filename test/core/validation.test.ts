/**
 * Input rules, checked by hand: every message and every edge pinned, lengths counted in code
 * points, and each rule the HTTP layer also has as a zod schema (for its bodies and the
 * OpenAPI document) giving the same verdict, value and words as that schema.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  accountNameSchema,
  credentialKeySchema,
  credentialValueSchema,
  DEFAULT_MAX_VALUE_BYTES,
  environmentSchema,
  linkedAccountIdSchema,
  orgIdSchema,
  parseInput,
  stringSchema,
  type InputRule,
} from '../../src/core/validation.js';
import * as http from '../../src/http/schemas.js';
import { createLinkedAccount } from '../../src/index.js';
import { VaultError } from '../../src/errors.js';
import { openTestVault } from './vaults.js';

type Outcome = { ok: true; value: unknown } | { ok: false; message: string };

function outcome(run: () => unknown): Outcome {
  try {
    return { ok: true, value: run() };
  } catch (error) {
    expect(error).toBeInstanceOf(VaultError);
    expect((error as VaultError).code).toBe('VALIDATION_ERROR');
    return { ok: false, message: (error as VaultError).message };
  }
}

const check = (rule: InputRule<unknown>, input: unknown, field = 'f') => outcome(() => parseInput(rule, input, field));
const ok = (value: unknown): Outcome => ({ ok: true, value });
const refused = (message: string): Outcome => ({ ok: false, message });

const SMILE = '\ud83d\ude00';
const CONTROLS = ['\u0000', '\u0001', '\t', '\n', '\u001f', '\u007f', '\u0080', '\u0085', '\u009f'];
/** Not a string, each refused with the same words; `undefined` is the missing field. */
const NOT_STRINGS: unknown[] = [null, 0, 1.5, true, {}, [], ['a'], { toString: () => 'a' }, Object('a'), 1n, Symbol('s')];

describe('credentialKeySchema', () => {
  const shape = refused('key must be 1 to 128 characters of A-Z a-z 0-9 _ . -');
  it.each([
    ['a', ok('a')],
    ['k'.repeat(128), ok('k'.repeat(128))],
    ['api_key.v2-A9', ok('api_key.v2-A9')],
    ['__proto__', ok('__proto__')],
    ['constructor', ok('constructor')],
    ['', shape],
    ['k'.repeat(129), shape],
    ['api key', shape],
    ['api/key', shape],
    ['%41', shape],
    ['é', shape],
    ['a\u0000', shape],
    ['a\n', shape],
    [undefined, refused('key is required')],
  ])('%j', (input, expected) => {
    expect(check(credentialKeySchema, input, 'key')).toEqual(expected);
  });

  it('refuses every non-string with one message', () => {
    for (const input of NOT_STRINGS) expect(check(credentialKeySchema, input, 'key')).toEqual(refused('key must be a string'));
  });
});

describe('linkedAccountIdSchema', () => {
  const tooLong = refused('linked_account_id must be at most 256 characters');
  it.each([
    ['a', ok('a')],
    ['cust-1', ok('cust-1')],
    ['user:1 a/b ünï', ok('user:1 a/b ünï')],
    ['__proto__', ok('__proto__')],
    ['a\u00a0b', ok('a\u00a0b')],
    ['\ufeffa', ok('\ufeffa')],
    ['a'.repeat(256), ok('a'.repeat(256))],
    ['é'.repeat(256), ok('é'.repeat(256))],
    // Code points, not UTF-16 units: 256 emoji are 512 units.
    [SMILE.repeat(256), ok(SMILE.repeat(256))],
    ['a'.repeat(255) + SMILE, ok('a'.repeat(255) + SMILE)],
    ['a'.repeat(257), tooLong],
    [SMILE.repeat(257), tooLong],
    ['a'.repeat(256) + SMILE, tooLong],
    // A lone surrogate is one code point, and ill-formed.
    ['\ud800'.repeat(257), tooLong],
    ['', refused('linked_account_id must not be empty')],
    ['a\ud800', refused('linked_account_id must be well-formed Unicode')],
    ['\udc00a', refused('linked_account_id must be well-formed Unicode')],
    [`${SMILE.slice(0, 1)}x`, refused('linked_account_id must be well-formed Unicode')],
    [undefined, refused('linked_account_id is required')],
    // The first rule broken words the error: length, then control characters, then Unicode.
    ['\u0001'.repeat(257), tooLong],
    ['\ud800\u0001', refused('linked_account_id must not contain control characters')],
  ])('%j', (input, expected) => {
    expect(check(linkedAccountIdSchema, input, 'linked_account_id')).toEqual(expected);
  });

  it('refuses every C0, DEL and C1 control character, anywhere, and every non-string', () => {
    for (const c of CONTROLS) {
      for (const input of [c, `a${c}`, `${c}a`, `a${c}b`]) {
        expect(check(linkedAccountIdSchema, input, 'id'), JSON.stringify(input)).toEqual(refused('id must not contain control characters'));
      }
    }
    for (const input of NOT_STRINGS) expect(check(linkedAccountIdSchema, input, 'id')).toEqual(refused('id must be a string'));
  });
});

describe('orgIdSchema', () => {
  it.each([
    ['acme', ok('acme')],
    ['o'.repeat(128), ok('o'.repeat(128))],
    [SMILE.repeat(128), ok(SMILE.repeat(128))],
    // Unlike an account id, an org is not held to well-formed Unicode.
    ['a\ud800', ok('a\ud800')],
    ['o'.repeat(129), refused('org must be at most 128 characters')],
    [SMILE.repeat(129), refused('org must be at most 128 characters')],
    ['', refused('org must not be empty')],
    ['a\u0085', refused('org must not contain control characters')],
    [undefined, refused('org is required')],
    [42, refused('org must be a string')],
  ])('%j', (input, expected) => {
    expect(check(orgIdSchema, input, 'org')).toEqual(expected);
  });
});

describe('environmentSchema', () => {
  it('takes exactly "test" and "production"; anything else, missing too, gets one message', () => {
    expect(check(environmentSchema, 'test')).toEqual(ok('test'));
    expect(check(environmentSchema, 'production')).toEqual(ok('production'));
    for (const input of [undefined, '', 'Test', 'prod', 'production ', ...NOT_STRINGS]) {
      expect(check(environmentSchema, input, 'environment')).toEqual(refused('environment must be "test" or "production"'));
    }
  });
});

describe('accountNameSchema', () => {
  it.each([
    ['', ok('')],
    ['Customer One', ok('Customer One')],
    ['n'.repeat(256), ok('n'.repeat(256))],
    [SMILE.repeat(256), ok(SMILE.repeat(256))],
    ['n'.repeat(257), refused('name must be at most 256 characters')],
    ['a\tb', refused('name must not contain control characters')],
    [undefined, refused('name is required')],
    [null, refused('name must be a string')],
  ])('%j', (input, expected) => {
    expect(check(accountNameSchema, input, 'name')).toEqual(expected);
  });
});

describe('stringSchema (udf values)', () => {
  it('takes any string as it is, the empty one too', () => {
    for (const input of ['', 'gold', 'a\u0000\ud800']) expect(check(stringSchema, input)).toEqual(ok(input));
    expect(check(stringSchema, undefined, 'udf.plan')).toEqual(refused('udf.plan is required'));
    for (const input of NOT_STRINGS) expect(check(stringSchema, input, 'udf.plan')).toEqual(refused('udf.plan must be a string'));
  });
});

describe('credentialValueSchema', () => {
  const value = credentialValueSchema();
  const notAValue = refused('value must be a non-empty string, a finite number or a boolean');

  it('is one rule per limit', () => {
    expect(credentialValueSchema()).toBe(credentialValueSchema(DEFAULT_MAX_VALUE_BYTES));
    expect(credentialValueSchema(12)).toBe(credentialValueSchema(12));
  });

  it.each([
    ['sk_test_1', ok('sk_test_1')],
    [' ', ok(' ')],
    ['a\u0000b', ok('a\u0000b')],
    [SMILE, ok(SMILE)],
    // Numbers and booleans become their string form.
    [42, ok('42')],
    [-1.5, ok('-1.5')],
    [-0, ok('0')],
    [1e21, ok('1e+21')],
    [true, ok('true')],
    [false, ok('false')],
    ['', refused('value must not be empty')],
    ['a\ud800', refused('value must be well-formed Unicode')],
    [undefined, notAValue],
    [null, notAValue],
    [Number.NaN, notAValue],
    [Number.POSITIVE_INFINITY, notAValue],
    [Number.NEGATIVE_INFINITY, notAValue],
    [{}, notAValue],
    [[], notAValue],
    [['a'], notAValue],
    [{ toString: () => 'a' }, notAValue],
    [Object('a'), notAValue],
  ])('%j', (input, expected) => {
    expect(check(value, input, 'value')).toEqual(expected);
  });

  it('refuses bigints and symbols with the same message', () => {
    for (const input of [1n, Symbol('s')]) expect(check(value, input, 'value')).toEqual(notAValue);
  });

  it('caps a value at 64 KiB of UTF-8, whether it is long in units or in bytes', () => {
    const over = refused('value must be at most 65536 bytes');
    expect(DEFAULT_MAX_VALUE_BYTES).toBe(65536);
    expect(check(value, 'a'.repeat(65536), 'value')).toEqual(ok('a'.repeat(65536)));
    expect(check(value, 'a'.repeat(65537), 'value')).toEqual(over);
    expect(check(value, 'é'.repeat(32768), 'value')).toEqual(ok('é'.repeat(32768)));
    expect(check(value, `${'é'.repeat(32768)}a`, 'value')).toEqual(over);
    expect(check(value, '€'.repeat(21845), 'value')).toEqual(ok('€'.repeat(21845)));
    expect(check(value, `${'€'.repeat(21845)}a`, 'value')).toEqual(ok(`${'€'.repeat(21845)}a`));
    expect(check(value, `${'€'.repeat(21845)}é`, 'value')).toEqual(over);
    expect(check(value, SMILE.repeat(16384), 'value')).toEqual(ok(SMILE.repeat(16384)));
    expect(check(value, `${SMILE.repeat(16384)}a`, 'value')).toEqual(over);
  });

  it('a smaller limit counts UTF-8 bytes at the edge, for strings and for the string form of numbers and booleans', () => {
    const twelve = credentialValueSchema(12);
    expect(check(twelve, 'a'.repeat(12))).toEqual(ok('a'.repeat(12)));
    expect(check(twelve, 'é'.repeat(6))).toEqual(ok('é'.repeat(6)));
    expect(check(twelve, SMILE.repeat(3))).toEqual(ok(SMILE.repeat(3)));
    for (const input of ['a'.repeat(13), 'é'.repeat(7), `${SMILE.repeat(3)}a`, 123456789012.5]) {
      expect(check(twelve, input, 'value')).toEqual(refused('value must be at most 12 bytes'));
    }
    expect(check(credentialValueSchema(1), 42, 'value')).toEqual(refused('value must be at most 1 bytes'));
    expect(check(credentialValueSchema(4), true)).toEqual(ok('true'));
    expect(check(credentialValueSchema(4), false, 'value')).toEqual(refused('value must be at most 4 bytes'));
  });
});

describe('parseInput', () => {
  it('without a field name, the message is the reason alone; a refusal never echoes the input', () => {
    expect(check(orgIdSchema, '', '')).toEqual(refused('must not be empty'));
    expect(check(credentialKeySchema, undefined, '')).toEqual(refused('is required'));
    const secret = 'sk_live_secret\u0000value';
    for (const rule of [credentialKeySchema, linkedAccountIdSchema, orgIdSchema, environmentSchema, accountNameSchema]) {
      const result = check(rule, secret, 'f');
      expect(result.ok).toBe(false);
      expect(JSON.stringify(result)).not.toContain('secret');
    }
  });

  it('takes a zod schema too (the HTTP bodies), worded by its first issue and prefixed by its path', () => {
    const body = z.object({ a: z.object({ b: z.string({ error: 'must be a string' }) }) }, { error: 'must be an object' });
    expect(outcome(() => parseInput(body, { a: { b: 'x' } }, ''))).toEqual(ok({ a: { b: 'x' } }));
    expect(outcome(() => parseInput(body, { a: { b: 1 } }, ''))).toEqual(refused('a.b must be a string'));
    expect(outcome(() => parseInput(body, { a: {} }, 'body'))).toEqual(refused('body.a.b must be a string'));
    expect(outcome(() => parseInput(body, undefined, 'body'))).toEqual(refused('body is required'));
    expect(outcome(() => parseInput(body, 1, ''))).toEqual(refused('must be an object'));
  });
});

describe('a map of named values (udf, seeded credentials)', () => {
  it('names each entry in its error, __proto__ as an ordinary name', async () => {
    const { vault, done } = await openTestVault();
    try {
      const ref = { org: 'acme', environment: 'test', accountId: 'cust-1' };
      const create = (input: Record<string, unknown>) => createLinkedAccount(vault, ref, input).then(() => 'created', (error: VaultError) => error.message);
      expect(await create({ udf: JSON.parse('{"__proto__": 1}') as Record<string, unknown> })).toBe('udf.__proto__ must be a string');
      expect(await create({ udf: { plan: undefined } })).toBe('udf.plan is required');
      expect(await create({ udf: { 'a b': 'x' } })).toBe('udf key must be 1 to 128 characters of A-Z a-z 0-9 _ . -');
      expect(await create({ credentials: { api_key: '' } })).toBe('your_app.auth_credentials.api_key must not be empty');
      expect(await create({ credentials: { api_key: null } })).toBe(
        'your_app.auth_credentials.api_key must be a non-empty string, a finite number or a boolean',
      );
      expect(await create({ name: 'n'.repeat(257) })).toBe('name must be at most 256 characters');
      expect(await create({ udf: JSON.parse('{"__proto__": "x"}') as Record<string, unknown>, credentials: { __proto__x: 7 } })).toBe('created');
    } finally {
      await done();
    }
  });
});

/** Inputs near every rule's edges, for comparing a rule with its zod twin. */
function samples(): unknown[] {
  const list: unknown[] = [
    undefined, null, 0, -0, 1, -1.5, 1e21, Number.NaN, Number.POSITIVE_INFINITY, true, false, {}, [], ['a'], { toString: () => 'a' },
    '', ' ', 'a', 'api_key', 'api.key-1', 'api key', 'é', '__proto__', '\ufeffa', ...CONTROLS, 'a\u00a0', '\ud800', 'a\udc00b', SMILE, `x${SMILE.slice(0, 1)}`,
  ];
  for (const n of [1, 127, 128, 129, 255, 256, 257]) {
    for (const unit of ['k', 'é', SMILE, '\ud800']) list.push(unit.repeat(n), `${'k'.repeat(n - 1)}${unit}`, `${unit.repeat(n - 1)}\u0001`);
  }
  for (const n of [21845, 21846, 32768, 32769, 65536, 65537]) list.push('a'.repeat(n), '€'.repeat(n >> 1), SMILE.repeat(n >> 2));
  return list;
}

describe('the HTTP layer’s zod schemas', () => {
  const twins: Array<[string, InputRule<unknown>, z.ZodType]> = [
    ['credential key', credentialKeySchema, http.credentialKeySchema],
    ['linked account id', linkedAccountIdSchema, http.linkedAccountIdSchema],
    ['account name', accountNameSchema, http.accountNameSchema],
    ['credential value', credentialValueSchema(), http.credentialValueSchema],
  ];
  // fast-check makes objects without a prototype, which String() cannot convert.
  const describeInput = (input: unknown): string => {
    try {
      return String(input);
    } catch {
      return Object.prototype.toString.call(input);
    }
  };
  const same = (rule: InputRule<unknown>, schema: z.ZodType, input: unknown) => {
    expect(check(rule, input), typeof input === 'string' ? `${input.length} units: ${JSON.stringify(input.slice(0, 40))}` : describeInput(input)).toEqual(
      outcome(() => parseInput(schema, input, 'f')),
    );
  };

  it.each(twins)('%s: the same verdict, value and message as the zod schema, at every edge', (_name, rule, schema) => {
    for (const input of samples()) same(rule, schema, input);
  });

  it.each(twins)('%s: and for arbitrary strings and values', (_name, rule, schema) => {
    const unit = fc.constantFrom('a', '_', ' ', 'é', '€', '\u0000', '\u009f', '\u00a0', '\ud800', '\udc00', '\ud83d', '\ude00');
    const text = fc.array(unit, { maxLength: 600 }).map((units) => units.join(''));
    fc.assert(
      fc.property(fc.oneof(text, fc.string({ unit: 'binary', maxLength: 300 }), fc.anything(), fc.double()), (input) => same(rule, schema, input)),
      { numRuns: 500 },
    );
  });
});

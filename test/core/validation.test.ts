/** Input rules: the shortcut parseInput takes for valid input accepts exactly what zod accepts, unchanged, and errors still come from zod. */
import { describe, expect, it } from 'vitest';
import {
  accountNameSchema,
  credentialKeySchema,
  credentialValueSchema,
  environmentSchema,
  linkedAccountIdSchema,
  orgIdSchema,
  parseInput,
} from '../../src/core/validation.js';
import { VaultError } from '../../src/errors.js';

/** Inputs near every rule's edges: lengths, control characters, lone surrogates, non-strings. */
function samples(): unknown[] {
  const list: unknown[] = [
    undefined, null, 0, 1, -1.5, Number.NaN, Number.POSITIVE_INFINITY, true, false, {}, [], ['a'], { toString: () => 'a' },
    '', ' ', 'a', 'test', 'production', 'Test', 'prod', 'api_key', 'api.key-1', 'api key', 'api/key', 'é', 'cust-1',
    '\u0000', 'a\u001f', 'a\u007f', 'a\u0085', 'a\u009f', 'a\u00a0', '\ud800', 'a\udc00b', '\ud83d\ude00', 'x\ud83d',
    '__proto__', 'constructor', '%41', '\ufeffa', 'a\tb', 'a\nb',
  ];
  for (const n of [127, 128, 129, 255, 256, 257]) {
    list.push('k'.repeat(n), 'é'.repeat(n), `${'k'.repeat(n - 1)}\u0001`, `${'k'.repeat(n - 1)}\ud800`);
  }
  return list;
}

const fields: Array<[string, Parameters<typeof parseInput>[0]]> = [
  ['credentialKeySchema', credentialKeySchema],
  ['linkedAccountIdSchema', linkedAccountIdSchema],
  ['orgIdSchema', orgIdSchema],
  ['environmentSchema', environmentSchema],
  ['accountNameSchema', accountNameSchema],
  ['credentialValueSchema(default)', credentialValueSchema()],
];

function outcome(run: () => unknown): { ok: true; value: unknown } | { ok: false; message: string } {
  try {
    return { ok: true, value: run() };
  } catch (error) {
    expect(error).toBeInstanceOf(VaultError);
    return { ok: false, message: (error as VaultError).message };
  }
}

/** What zod alone decides, worded as parseInput words it. */
function zodOutcome(schema: Parameters<typeof parseInput>[0], input: unknown): ReturnType<typeof outcome> {
  const result = schema.safeParse(input);
  if (result.success) return { ok: true, value: result.data };
  return outcome(() => parseInput(schema, input, 'f'));
}

describe('parseInput', () => {
  it.each(fields)('%s: accepts and refuses exactly what the schema does, returning what it returns', (_name, schema) => {
    for (const input of samples()) {
      const got = outcome(() => parseInput(schema, input, 'f'));
      expect(got.ok, `input ${JSON.stringify(input)}`).toBe(schema.safeParse(input).success);
      expect(got).toEqual(zodOutcome(schema, input));
    }
  });

  it('a value limit counts UTF-8 bytes at the edge, whether the value is long in units or in bytes', () => {
    const schema = credentialValueSchema(12);
    expect(parseInput(schema, 'a'.repeat(12), 'value')).toBe('a'.repeat(12));
    expect(parseInput(schema, 'é'.repeat(6), 'value')).toBe('é'.repeat(6));
    expect(parseInput(schema, '\ud83d\ude00'.repeat(3), 'value')).toBe('\ud83d\ude00'.repeat(3));
    expect(() => parseInput(schema, 'é'.repeat(7), 'value')).toThrow('value must be at most 12 bytes');
    expect(() => parseInput(schema, 'a'.repeat(13), 'value')).toThrow('value must be at most 12 bytes');
    expect(() => parseInput(schema, '\ud83d\ude00'.repeat(3) + 'a', 'value')).toThrow('value must be at most 12 bytes');
  });

  it('numbers and booleans still become their string form, and refusals never echo the input', () => {
    const schema = credentialValueSchema();
    expect(parseInput(schema, 42, 'value')).toBe('42');
    expect(parseInput(schema, false, 'value')).toBe('false');
    const error = outcome(() => parseInput(linkedAccountIdSchema, 'secret\u0000value', 'linked_account_id'));
    expect(error).toEqual({ ok: false, message: 'linked_account_id must not contain control characters' });
    expect(outcome(() => parseInput(credentialKeySchema, undefined, 'key'))).toEqual({ ok: false, message: 'key is required' });
  });
});

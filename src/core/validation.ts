/** Input rules (zod) for keys, values, ids and names, and the one way inputs are parsed into VALIDATION_ERRORs. */
import { z } from 'zod';
import { VaultError } from '../errors.js';

/** Default cap on one credential value, in UTF-8 bytes. */
export const DEFAULT_MAX_VALUE_BYTES = 64 * 1024;

// C0, DEL and C1 control characters.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * For the schemas on every request: a plain check that accepts only what the schema accepts
 * unchanged, so {@link parseInput} can skip zod for valid input. Anything it does not accept
 * goes to zod, which decides and words the error.
 */
const acceptsAsIs = new WeakMap<z.ZodType, (input: unknown) => boolean>();

const CREDENTIAL_KEY = /^[A-Za-z0-9_.-]{1,128}$/;

export const credentialKeySchema = z
  .string({ error: 'must be a string' })
  .regex(CREDENTIAL_KEY, {
    error: 'must be 1 to 128 characters of A-Z a-z 0-9 _ . -',
  });

export const linkedAccountIdSchema = z
  .string({ error: 'must be a string' })
  .min(1, { error: 'must not be empty' })
  .max(256, { error: 'must be at most 256 characters' })
  .refine((s) => !CONTROL.test(s), { error: 'must not contain control characters' })
  .refine((s) => s.isWellFormed(), { error: 'must be well-formed Unicode' });

export const orgIdSchema = z
  .string({ error: 'must be a string' })
  .min(1, { error: 'must not be empty' })
  .max(128, { error: 'must be at most 128 characters' })
  .refine((s) => !CONTROL.test(s), { error: 'must not contain control characters' });

export const environmentSchema = z.enum(['test', 'production'], {
  error: 'must be "test" or "production"',
});
export type Environment = z.infer<typeof environmentSchema>;

/** A string of `min` to `max` UTF-16 units with no control character. */
const plainString = (input: unknown, min: number, max: number): input is string =>
  typeof input === 'string' && input.length >= min && input.length <= max && !CONTROL.test(input);

acceptsAsIs.set(credentialKeySchema, (input) => typeof input === 'string' && CREDENTIAL_KEY.test(input));
acceptsAsIs.set(linkedAccountIdSchema, (input) => plainString(input, 1, 256) && input.isWellFormed());
acceptsAsIs.set(orgIdSchema, (input) => plainString(input, 1, 128));
acceptsAsIs.set(environmentSchema, (input) => input === 'test' || input === 'production');

export const accountNameSchema = z
  .string({ error: 'must be a string' })
  .max(256, { error: 'must be at most 256 characters' })
  .refine((s) => !CONTROL.test(s), { error: 'must not contain control characters' });
acceptsAsIs.set(accountNameSchema, (input) => plainString(input, 0, 256));

const valueSchemas = new Map<number, ReturnType<typeof buildValueSchema>>();

/**
 * A credential value: strings as they are, finite numbers and booleans through `String()`.
 * `null`, objects, arrays and `''` are refused: coercing them would store garbage.
 * Built once per size limit: constructing a zod schema costs more than using one.
 */
export function credentialValueSchema(maxBytes: number = DEFAULT_MAX_VALUE_BYTES) {
  let schema = valueSchemas.get(maxBytes);
  if (schema === undefined) {
    schema = buildValueSchema(maxBytes);
    valueSchemas.set(maxBytes, schema);
    // A string is stored as it is; a UTF-16 unit takes at most 3 UTF-8 bytes.
    acceptsAsIs.set(
      schema,
      (input) =>
        typeof input === 'string' &&
        input.length >= 1 &&
        input.isWellFormed() &&
        (input.length * 3 <= maxBytes || Buffer.byteLength(input, 'utf8') <= maxBytes),
    );
  }
  return schema;
}

function buildValueSchema(maxBytes: number) {
  return z
    .union(
      [
        z
          .string()
          .min(1, { error: 'must not be empty' })
          .refine((s) => s.isWellFormed(), { error: 'must be well-formed Unicode' }),
        z.number().refine(Number.isFinite, { error: 'must be a finite number' }),
        z.boolean(),
      ],
      { error: 'must be a non-empty string, a finite number or a boolean' },
    )
    .transform((v) => String(v))
    .refine((s) => Buffer.byteLength(s, 'utf8') <= maxBytes, {
      error: `must be at most ${maxBytes} bytes`,
    });
}

/** Parses `input` or throws a VALIDATION_ERROR naming the field; the offending value is never echoed. */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown, field: string): z.output<S> {
  if (acceptsAsIs.get(schema)?.(input) === true) return input as z.output<S>;
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const path = [field, ...(issue?.path ?? []).map(String)].filter(Boolean).join('.');
  const reason = issue?.code === 'invalid_type' && input === undefined ? 'is required' : issue?.message ?? 'is invalid';
  throw new VaultError('VALIDATION_ERROR', `${path} ${reason}`.trim());
}

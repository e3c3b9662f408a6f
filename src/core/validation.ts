/**
 * Input rules for keys, values, ids and names, checked by hand, and the one way inputs are
 * parsed into VALIDATION_ERRORs. Hand-written rather than zod: they run on every request, and
 * loading zod (some 75 ms) would slow the start-up of every CLI command that opens a vault.
 */
// Types only, erased from the output: parseInput also takes the HTTP layer's zod schemas.
import type { z } from 'zod';
import { VaultError } from '../errors.js';

/** Default cap on one credential value, in UTF-8 bytes. */
export const DEFAULT_MAX_VALUE_BYTES = 64 * 1024;

/** The longest credential key name, in characters. */
export const MAX_CREDENTIAL_KEY_LENGTH = 128;
/** The longest linked account id, in code points (as every length here: a surrogate pair counts once). */
export const MAX_LINKED_ACCOUNT_ID_LENGTH = 256;
/** The longest org id, in code points. */
export const MAX_ORG_ID_LENGTH = 128;
/** The longest linked account display name, in code points. */
export const MAX_ACCOUNT_NAME_LENGTH = 256;

/** A credential key name: 1 to 128 of A-Z a-z 0-9 _ . - */
export const CREDENTIAL_KEY_PATTERN = /^[A-Za-z0-9_.-]{1,128}$/;

// C0, DEL and C1 control characters.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** Why an input was refused, worded to follow the field's name ("org must not be empty"). */
export class Refusal {
  constructor(readonly reason: string) {}
}

/**
 * One input rule: `accept` returns what is stored for an accepted input, or the refusal
 * (created once per rule, so a check allocates nothing).
 */
export class InputRule<T> {
  constructor(readonly accept: (input: unknown) => T | Refusal) {}
}

// The wording of every refusal: the HTTP API's 400 messages and the CLI's errors say exactly these.
const REQUIRED = new Refusal('is required');
const NOT_A_STRING = new Refusal('must be a string');
const EMPTY = new Refusal('must not be empty');
const CONTROL_CHARACTERS = new Refusal('must not contain control characters');
const ILL_FORMED = new Refusal('must be well-formed Unicode');
const tooLong = (max: number) => new Refusal(`must be at most ${max} characters`);

/** A refusal for a value that is not a string: "is required" when it is missing. */
const notAString = (input: unknown) => (input === undefined ? REQUIRED : NOT_A_STRING);

const KEY_CHARACTERS = new Refusal(`must be 1 to ${MAX_CREDENTIAL_KEY_LENGTH} characters of A-Z a-z 0-9 _ . -`);
export const credentialKeySchema = new InputRule<string>((input) => {
  if (typeof input !== 'string') return notAString(input);
  return CREDENTIAL_KEY_PATTERN.test(input) ? input : KEY_CHARACTERS;
});

/** Code points in `s`, a lone surrogate counting as one: only for strings longer than a limit in UTF-16 units. */
function codePoints(s: string): number {
  let count = s.length;
  for (let i = 0; i < s.length - 1; i++) {
    if ((s.charCodeAt(i) & 0xfc00) === 0xd800 && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      count--;
      i++;
    }
  }
  return count;
}

/**
 * A string of `min` (0 or 1) to `max` code points with no control character; a refusal
 * names the first rule broken, in that order.
 */
function plainString(min: 0 | 1, max: number, wellFormed: boolean): InputRule<string> {
  const over = tooLong(max);
  return new InputRule<string>((input) => {
    if (typeof input !== 'string') return notAString(input);
    if (input.length < min) return EMPTY;
    // A code point is one or two units: a string within `max` units is within `max` code points.
    if (input.length > max && codePoints(input) > max) return over;
    if (CONTROL.test(input)) return CONTROL_CHARACTERS;
    if (wellFormed && !input.isWellFormed()) return ILL_FORMED;
    return input;
  });
}

export const linkedAccountIdSchema = plainString(1, MAX_LINKED_ACCOUNT_ID_LENGTH, true);
export const orgIdSchema = plainString(1, MAX_ORG_ID_LENGTH, false);
/** A display name may be empty. */
export const accountNameSchema = plainString(0, MAX_ACCOUNT_NAME_LENGTH, false);

export type Environment = 'test' | 'production';
const NOT_AN_ENVIRONMENT = new Refusal('must be "test" or "production"');
/** Missing or not, anything but the two names gets the one message. */
export const environmentSchema = new InputRule<Environment>((input) =>
  input === 'test' || input === 'production' ? input : NOT_AN_ENVIRONMENT,
);

/** A string, as it is; a missing one "is required". */
export const stringSchema = new InputRule<string>((input) => (typeof input === 'string' ? input : notAString(input)));

const NOT_A_VALUE = new Refusal('must be a non-empty string, a finite number or a boolean');
const valueSchemas = new Map<number, InputRule<string>>();

/**
 * A credential value: strings as they are, finite numbers and booleans through `String()`.
 * `null`, objects, arrays and `''` are refused: coercing them would store garbage. A missing
 * value gets the same message (not "is required"), and so does `NaN` or an infinity.
 */
export function credentialValueSchema(maxBytes: number = DEFAULT_MAX_VALUE_BYTES): InputRule<string> {
  let schema = valueSchemas.get(maxBytes);
  if (schema === undefined) {
    const tooBig = new Refusal(`must be at most ${maxBytes} bytes`);
    // A UTF-16 unit takes at most 3 UTF-8 bytes: most values need no byte count.
    const fits = (s: string) => s.length * 3 <= maxBytes || Buffer.byteLength(s, 'utf8') <= maxBytes;
    schema = new InputRule<string>((input) => {
      if (typeof input === 'string') {
        if (input.length === 0) return EMPTY;
        if (!input.isWellFormed()) return ILL_FORMED;
        return fits(input) ? input : tooBig;
      }
      if ((typeof input === 'number' && Number.isFinite(input)) || typeof input === 'boolean') {
        const value = String(input);
        return fits(value) ? value : tooBig;
      }
      return NOT_A_VALUE;
    });
    valueSchemas.set(maxBytes, schema);
  }
  return schema;
}

/**
 * Parses `input` or throws a VALIDATION_ERROR naming the field; the offending value is never
 * echoed. Takes a rule of this module, or a zod schema (the HTTP layer's bodies and queries),
 * whose first issue words the error, prefixed by its path.
 */
export function parseInput<T>(rule: InputRule<T>, input: unknown, field: string): T;
export function parseInput<S extends z.ZodType>(schema: S, input: unknown, field: string): z.output<S>;
export function parseInput(schema: InputRule<unknown> | z.ZodType, input: unknown, field: string): unknown {
  if (schema instanceof InputRule) {
    const value = schema.accept(input);
    if (!(value instanceof Refusal)) return value;
    throw new VaultError('VALIDATION_ERROR', field === '' ? value.reason : `${field} ${value.reason}`);
  }
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const path = [field, ...(issue?.path ?? []).map(String)].filter(Boolean).join('.');
  const reason = issue?.code === 'invalid_type' && input === undefined ? 'is required' : issue?.message ?? 'is invalid';
  throw new VaultError('VALIDATION_ERROR', `${path} ${reason}`.trim());
}

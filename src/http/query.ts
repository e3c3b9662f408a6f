/**
 * Query parameters of the HTTP API: each declared once, with the zod schema the OpenAPI
 * document shows and the parser the handler (and the CLI, for the same values) reads it with.
 */
import { z } from 'zod';
import { VaultError } from '../errors.js';
import { parseInput } from '../core/validation.js';

/** One query parameter: how it is documented, and how a request's values for it are read. */
export interface QueryParam<T> {
  name: string;
  /** What the document shows (type, bounds, default). */
  schema: z.ZodType;
  description: string;
  /** Reads the parameter from a request's values (absent, once, or repeated). */
  read(values: readonly string[]): T;
}

/**
 * A whole number in decimal digits only: `1.5`, `1e2`, ` 5`, `abc` and the empty string are
 * refused with one message that states the bound, and so is a repeated parameter.
 *
 * @example
 * ```ts
 * const limit = integerQuery({ name: 'limit', min: 1, max: 100, default: 10, description: 'Page size.' });
 * limit.read(['25']); // 25
 * ```
 */
export function integerQuery(options: {
  name: string;
  min: number;
  max?: number;
  default: number;
  description: string;
}): QueryParam<number> & { parse(raw: string): number } {
  const { name, min, max } = options;
  const bound = max === undefined ? `an integer of at least ${min}` : `an integer from ${min} to ${max}`;
  const message = `${name} must be ${bound}`;
  const parse = (raw: string): number => {
    // Number() would take '1e2', ' 5', '0x10' and ''.
    const value = /^[0-9]{1,16}$/.test(raw) ? Number(raw) : Number.NaN;
    if (!Number.isSafeInteger(value) || value < min || (max !== undefined && value > max)) {
      throw new VaultError('VALIDATION_ERROR', message);
    }
    return value;
  };
  let schema = z.int().min(min);
  if (max !== undefined) schema = schema.max(max);
  return {
    name,
    schema: schema.default(options.default).meta({ description: options.description }),
    description: options.description,
    parse,
    read(values) {
      if (values.length > 1) throw new VaultError('VALIDATION_ERROR', `${name} must be given once, as ${bound}`);
      const [raw] = values;
      return raw === undefined ? options.default : parse(raw);
    },
  };
}

/**
 * One of a few literal values (`force_refresh=true|false`); absent means `fallback`.
 *
 * @example
 * ```ts
 * const force = enumQuery({ name: 'force_refresh', values: ['true', 'false'], fallback: 'false', description: '...' });
 * ```
 */
export function enumQuery<const V extends readonly [string, ...string[]]>(options: {
  name: string;
  values: V;
  fallback: V[number];
  description: string;
}): QueryParam<V[number]> {
  const { name } = options;
  const schema = z
    .enum(options.values, { error: `${name} must be ${options.values.map((v) => `"${v}"`).join(' or ')}` })
    .meta({ description: options.description });
  return {
    name,
    schema,
    description: options.description,
    read(values) {
      if (values.length > 1) throw new VaultError('VALIDATION_ERROR', `${name} must be given once`);
      const [raw] = values;
      return raw === undefined ? options.fallback : (parseInput(schema, raw, '') as V[number]);
    },
  };
}

/**
 * A parameter upstream defines and credvault does not implement: documented as such, and
 * any use of it (even empty) is a 400 rather than a filter silently ignored.
 */
export function unsupportedQuery(options: { name: string; message: string; description: string }): QueryParam<undefined> {
  return {
    name: options.name,
    schema: z.string().meta({ description: options.description }),
    description: options.description,
    read(values) {
      if (values.length > 0) throw new VaultError('VALIDATION_ERROR', options.message);
      return undefined;
    },
  };
}

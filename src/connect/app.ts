/**
 * The default app an embedding server declares: its name and the fields its customers fill
 * in (Refold's `auth_type_options`). Checked once at start; the Connect page shows it and
 * the credential endpoints hold session-token writes to it.
 */
import { z } from 'zod';
import { VaultError } from '../errors.js';
import { CREDENTIAL_KEY_PATTERN } from '../core/validation.js';

// C0, DEL and C1 control characters: never in a label the page shows.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

export const FIELD_TYPES = ['text', 'password', 'textarea', 'select', 'number', 'url', 'email'] as const;

const fieldOption = z
  .strictObject({
    label: z.string().min(1, { error: 'must not be empty' }).max(200, { error: 'must be at most 200 characters' }),
    value: z.string().min(1, { error: 'must not be empty' }).max(1024, { error: 'must be at most 1024 characters' }),
  })
  .meta({ id: 'DefaultAppFieldOption' });

const shortText = (max: number) =>
  z
    .string({ error: 'must be a string' })
    .max(max, { error: `must be at most ${max} characters` })
    .refine((s) => !CONTROL.test(s), { error: 'must not contain control characters' });

/** One field of the default app, as the embedding server declares it (and as it is served). */
export const defaultAppFieldSchema = z
  .strictObject({
    name: z.string({ error: 'must be a string' }).regex(CREDENTIAL_KEY_PATTERN, { error: 'must be 1 to 128 characters of A-Z a-z 0-9 _ . -' }).meta({ description: 'The credential key the field is stored under.' }),
    type: z.enum(FIELD_TYPES, { error: `must be one of ${FIELD_TYPES.join(', ')}` }),
    required: z.boolean({ error: 'must be true or false' }).optional(),
    label: shortText(200).optional(),
    placeholder: shortText(200).optional(),
    help_text: shortText(1000).optional(),
    options: z.array(fieldOption).min(1, { error: 'must list at least one option' }).max(200).optional(),
  })
  .meta({ id: 'DefaultAppFieldDefinition' });

/** The default app the Connect page asks for: its name and fields. */
export const defaultAppDefinitionSchema = z.strictObject({
  name: shortText(200).refine((s) => s.trim() !== '', { error: 'must not be empty' }),
  fields: z.array(defaultAppFieldSchema).min(1, { error: 'must declare at least one field' }).max(100, { error: 'must declare at most 100 fields' }),
});


/** The kinds of field the Connect page can show. */
export type DefaultAppFieldType = (typeof FIELD_TYPES)[number];

/** One field of the default app: a credential key and how the page asks for it. */
export interface DefaultAppField {
  /** The credential key the value is stored under (1 to 128 of `A-Z a-z 0-9 _ . -`). */
  name: string;
  /** `password` is masked; `select` takes one of `options`; `number`, `url` and `email` are checked. */
  type: DefaultAppFieldType;
  /** Whether the page insists on a value when none is stored yet. Default false. */
  required?: boolean;
  /** The label shown; default the name. */
  label?: string;
  placeholder?: string;
  help_text?: string;
  /** The choices of a `select` field (required there, refused elsewhere). */
  options?: Array<{ label: string; value: string }>;
}

/** The default app as the Connect page presents it. */
export interface DefaultAppDefinition {
  /** The app's name, shown as the page's title. */
  name: string;
  fields: DefaultAppField[];
}

/**
 * Checks a declared default app, and answers it with every optional attribute settled
 * (`required` and `label` filled in).
 *
 * @throws VaultError `INVALID_CONFIGURATION`, naming the first problem (a declaration holds no secret)
 * @example
 * ```ts
 * const app = checkDefaultApp({ name: 'Acme CRM', fields: [{ name: 'api_key', type: 'password', required: true }] });
 * ```
 */
export function checkDefaultApp(input: unknown): SettledDefaultApp {
  const parsed = defaultAppDefinitionSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue === undefined || issue.path.length === 0 ? 'the default app' : `defaultApp.${issue.path.join('.')}`;
    throw new VaultError('INVALID_CONFIGURATION', `${where}: ${issue?.message ?? 'is not valid'}`);
  }
  const seen = new Set<string>();
  const fields: SettledField[] = [];
  for (const [index, field] of parsed.data.fields.entries()) {
    const where = `defaultApp.fields.${index}`;
    // A URL path resolves these segments away: no browser can address them (`credvault/client` refuses them).
    if (field.name === '.' || field.name === '..') {
      throw new VaultError('INVALID_CONFIGURATION', `${where}.name: '${field.name}' cannot be a field name (a URL path resolves it away)`);
    }
    if (seen.has(field.name)) throw new VaultError('INVALID_CONFIGURATION', `${where}.name: '${field.name}' is declared twice`);
    seen.add(field.name);
    if (field.type === 'select' && field.options === undefined) {
      throw new VaultError('INVALID_CONFIGURATION', `${where}.options: a select field must list its options`);
    }
    if (field.type !== 'select' && field.options !== undefined) {
      throw new VaultError('INVALID_CONFIGURATION', `${where}.options: only a select field takes options`);
    }
    if (field.options !== undefined && new Set(field.options.map((o) => o.value)).size !== field.options.length) {
      throw new VaultError('INVALID_CONFIGURATION', `${where}.options: two options share a value`);
    }
    const settled: SettledField = { ...field, required: field.required ?? false, label: field.label ?? field.name } as SettledField;
    fields.push(settled);
  }
  return { name: parsed.data.name, fields, byName: new Map(fields.map((field) => [field.name, field])) };
}

/** A checked default app: its fields settled, and found by name. */
export interface SettledDefaultApp {
  name: string;
  fields: SettledField[];
  byName: ReadonlyMap<string, SettledField>;
}

/** A declared field with `required` and `label` settled. */
export type SettledField = DefaultAppField & { required: boolean; label: string };

// A plain decimal number: no hex, binary or octal prefixes, no Infinity.
const DECIMAL = /^-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

// Deliberately loose: a mailbox, an @, a domain with a dot; the address's owner checks the rest.
const EMAIL = /^[^\s@]{1,64}@[^\s@]+\.[^\s@]+$/;

/**
 * Whether `value` (as stored: a string) fits the field; the reason it does not otherwise.
 * Reasons name the field's label, never the value.
 */
export function fieldValueProblem(field: SettledField, value: string): string | undefined {
  if (value.trim() === '') return `${field.label} must not be blank`;
  // Stored as sent: a value that only fits once trimmed would be stored untrimmed.
  if (field.type !== 'password' && field.type !== 'text' && field.type !== 'textarea' && value !== value.trim()) {
    return `${field.label} must not begin or end with spaces`;
  }
  switch (field.type) {
    case 'select':
      return field.options?.some((option) => option.value === value) === true
        ? undefined
        : `${field.label} must be one of: ${(field.options ?? []).map((o) => o.value).join(', ')}`;
    case 'number':
      return DECIMAL.test(value) && Number.isFinite(Number(value)) ? undefined : `${field.label} must be a number`;
    case 'url': {
      let url: URL | undefined;
      try {
        url = new URL(value);
      } catch {
        url = undefined;
      }
      return url !== undefined && (url.protocol === 'https:' || url.protocol === 'http:') ? undefined : `${field.label} must be an http or https URL`;
    }
    case 'email':
      return EMAIL.test(value) ? undefined : `${field.label} must be an email address`;
    default:
      return undefined;
  }
}

/**
 * Request and response schemas of the HTTP API. The handler validates with them and
 * `openapi.ts` documents from them, so the two cannot drift apart.
 *
 * Maps (credentials, udf) are validated here for shape, but their entries reach the core
 * from the raw body: a zod record drops a `__proto__` entry, and such names are ordinary
 * keys here.
 */
import { z } from 'zod';
import {
  CREDENTIAL_KEY_PATTERN,
  DEFAULT_MAX_VALUE_BYTES,
  MAX_ACCOUNT_NAME_LENGTH,
  MAX_LINKED_ACCOUNT_ID_LENGTH,
} from '../core/validation.js';
import { DEFAULT_ACCOUNT_PAGE_LIMIT, MAX_ACCOUNT_PAGE_LIMIT } from '../core/accounts.js';
import { enumQuery, integerQuery, unsupportedQuery } from './query.js';
import { defaultAppFieldSchema } from '../connect/app.js';

// The core's input rules (core/validation.ts) as zod schemas, for the bodies and the document;
// test/core/validation.test.ts holds each to the same verdicts and words as its rule.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

export const credentialKeySchema = z
  .string({ error: 'must be a string' })
  .regex(CREDENTIAL_KEY_PATTERN, { error: 'must be 1 to 128 characters of A-Z a-z 0-9 _ . -' });

export const linkedAccountIdSchema = z
  .string({ error: 'must be a string' })
  .min(1, { error: 'must not be empty' })
  .max(MAX_LINKED_ACCOUNT_ID_LENGTH, { error: `must be at most ${MAX_LINKED_ACCOUNT_ID_LENGTH} characters` })
  .refine((s) => !CONTROL.test(s), { error: 'must not contain control characters' })
  .refine((s) => s.isWellFormed(), { error: 'must be well-formed Unicode' });

export const accountNameSchema = z
  .string({ error: 'must be a string' })
  .max(MAX_ACCOUNT_NAME_LENGTH, { error: `must be at most ${MAX_ACCOUNT_NAME_LENGTH} characters` })
  .refine((s) => !CONTROL.test(s), { error: 'must not contain control characters' });

/** A credential value of at most the default size: the vault's own limit is checked by the core. */
export const credentialValueSchema = z
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
  .refine((s) => Buffer.byteLength(s, 'utf8') <= DEFAULT_MAX_VALUE_BYTES, {
    error: `must be at most ${DEFAULT_MAX_VALUE_BYTES} bytes`,
  });

const bodyObject = <T extends z.ZodRawShape>(shape: T) =>
  z.object(shape, { error: 'Request body must be a JSON object' });

export const credentialValueBody = bodyObject({
  value: credentialValueSchema.meta({
    description: 'The credential value. Numbers and booleans are stored as their string form.',
    examples: ['sk_test_4eC39HqLyjWDarjtT1zdp7dc'],
  }),
}).meta({ id: 'UpsertDefaultAppCredentialRequest' });

const credentialMap = z
  .record(credentialKeySchema, credentialValueSchema, { error: 'must be an object of key names to values' })
  .meta({ description: 'Credential key names to values, stored encrypted in the default app.' });

const udfMap = z
  .record(z.string(), z.string({ error: 'values must be strings' }), { error: 'must be an object of strings' })
  .meta({ description: 'Custom key/value fields.' });

const yourAppFields = { auth_credentials: credentialMap };

/** POST: `your_app` seeds the default app, so it must say with what. */
const createYourApp = z
  .object(yourAppFields, { error: 'must be an object with auth_credentials' })
  .meta({ description: 'Gives the account a default-app integration seeded with these credentials.' });

/** PUT: `your_app: {}` gives the account a default app (if it has none) and sets no credential. */
const upsertYourApp = z
  .object({ auth_credentials: credentialMap.optional() }, { error: 'must be an object' })
  .meta({ description: 'Gives the account a default-app integration if it has none, and adds or replaces these credentials in it.' });

const idFields = {
  account_id: linkedAccountIdSchema.optional().meta({ description: 'The linked account id.' }),
  linked_account_id: linkedAccountIdSchema.optional().meta({ description: 'Alias of `account_id`.' }),
};

export const createLinkedAccountBody = bodyObject({
  ...idFields,
  name: accountNameSchema.optional(),
  udf: udfMap.optional(),
  your_app: createYourApp.optional(),
}).meta({ id: 'CreateLinkedAccountRequest' });

const upsertFields = {
  name: accountNameSchema.optional(),
  udf: udfMap.optional(),
  your_app: upsertYourApp.optional(),
};

export const upsertLinkedAccountBody = bodyObject({
  ...idFields,
  ...upsertFields,
  payload: z
    .object(upsertFields, { error: 'must be an object' })
    .optional()
    .meta({ description: 'The same fields, nested; when present, they win over the flat ones.' }),
}).meta({ id: 'UpsertLinkedAccountRequest' });

export const sessionTokenBody = bodyObject({
  linked_account_id: linkedAccountIdSchema,
}).meta({ id: 'SessionTokenRequest' });

export const forceRefreshQuery = enumQuery({
  name: 'force_refresh',
  values: ['true', 'false'],
  fallback: 'false',
  description: 'Issue a new token even when a valid one exists.',
});

/** The highest `page` asked for over HTTP: far past any store's last page, and `(page - 1) * limit` stays exact. */
export const MAX_PAGE = 1_000_000_000;

export const pageQuery = integerQuery({
  name: 'page',
  min: 1,
  max: MAX_PAGE,
  default: 1,
  description: 'The page to answer, from 1. A page past the last one answers no accounts.',
});

export const limitQuery = integerQuery({
  name: 'limit',
  min: 1,
  max: MAX_ACCOUNT_PAGE_LIMIT,
  default: DEFAULT_ACCOUNT_PAGE_LIMIT,
  description: `Accounts per page, at most ${MAX_ACCOUNT_PAGE_LIMIT}.`,
});

/** What a client that filters by environment variable is told. */
export const ENV_VARIABLE_FILTER_UNSUPPORTED =
  'The env_variable_name and env_variable_value filters are not supported: credvault keeps no environment variables on linked accounts';

const envVariableFilter = (name: string) =>
  unsupportedQuery({
    name,
    message: ENV_VARIABLE_FILTER_UNSUPPORTED,
    description: 'Not supported by credvault: any use of it answers 400 VALIDATION_ERROR.',
  });

export const envVariableNameQuery = envVariableFilter('env_variable_name');
export const envVariableValueQuery = envVariableFilter('env_variable_value');

// Responses: documented only, built by wire.ts.

export const credentialActionResponse = z
  .object({
    success: z.literal(true),
    message: z.string().meta({ examples: ["Auth credential 'api_key' added successfully"] }),
    action: z.enum(['added', 'updated']),
  })
  .meta({ id: 'DefaultAppCredentialActionResponse' });

export const genericSuccessResponse = z
  .object({
    success: z.literal(true),
    message: z.string().meta({ examples: ["Auth credential 'api_key' deleted successfully"] }),
  })
  .meta({ id: 'GenericSuccess' });

const timestamp = (description: string) => z.string().meta({ format: 'date-time', description });

export const integrationResponse = z
  .strictObject({
    _id: z.string().meta({ description: "The default app's id: 24 hex digits, stable while the account has it." }),
    type: z.literal('default_app'),
    name: z.literal('Default App'),
    createdAt: timestamp('When the account got its default app.'),
    updatedAt: timestamp('When a credential was last set through it.'),
  })
  .meta({ id: 'IntegrationBase', description: "The account's default-app integration. Its credentials are never returned." });

const udfEntry = z.strictObject({ key_name: z.string(), key_value: z.string() }).meta({ id: 'UDFEntry' });

export const linkedAccountResponse = z
  .strictObject({
    _id: z.string().meta({ description: 'The id the vault gave the account: 24 hex digits.' }),
    associated_org: z.string(),
    account_id: z.string(),
    name: z.string(),
    environment: z.enum(['test', 'production']),
    udf: z.array(udfEntry).meta({ description: 'Custom fields, in the order they were first set.' }),
    integrations: z
      .array(integrationResponse)
      .meta({ description: 'The default-app integration when the account has one, else empty.' }),
    createdAt: timestamp('When the account was created.'),
    updatedAt: timestamp('When its profile last changed.'),
  })
  .meta({ id: 'LinkedAccount' });

export const upsertedLinkedAccountResponse = linkedAccountResponse
  .extend({ new_account: z.boolean().meta({ description: 'Whether this request created the account.' }) })
  .meta({ id: 'UpsertedLinkedAccount' });

const pageNumber = z.int().min(1);

export const linkedAccountPageResponse = z
  .strictObject({
    docs: z.array(linkedAccountResponse),
    totalDocs: z.int().min(0).meta({ description: 'How many accounts the org and environment hold.' }),
    limit: pageNumber,
    page: pageNumber,
    totalPages: pageNumber.meta({ description: 'At least 1, even with no accounts.' }),
    hasNextPage: z.boolean(),
    hasPrevPage: z.boolean(),
    nextPage: pageNumber.nullable(),
    prevPage: pageNumber.nullable(),
    pagingCounter: pageNumber.meta({ description: 'The position of the first account of this page, from 1.' }),
  })
  .meta({ id: 'PaginatedLinkedAccounts' });

export const deleteLinkedAccountResponse = z
  .object({ message: z.string().meta({ examples: ['User deleted successfully'] }) })
  .meta({ id: 'DeleteLinkedAccountResponse' });

export const sessionTokenResponse = z
  .object({
    token: z.string(),
    expires_in: z.number().int().meta({ description: 'Seconds until the token expires.' }),
  })
  .meta({ id: 'SessionTokenResponse' });

export const revokeSessionTokenResponse = z
  .object({ success: z.literal(true), revoked_count: z.union([z.literal(0), z.literal(1)]) })
  .meta({ id: 'RevokeSessionTokenResponse' });

export const defaultAppFieldsResponse = z
  .strictObject({
    name: z.string().nullable().meta({ description: "The default app's name, or null when the server declares no fields." }),
    fields: z
      .array(
        defaultAppFieldSchema.extend({
          required: z.boolean(),
          label: z.string(),
          is_set: z.boolean().meta({ description: 'Whether a value is stored under this field (never the value).' }),
        }),
      )
      .meta({ description: 'The fields the server declares, in order.' }),
    set: z.array(z.string()).meta({ description: 'Every credential key stored for the account, declared or not, sorted. Names only.' }),
  })
  .meta({ id: 'DefaultAppFields' });

export const connectUrlResponse = z
  .strictObject({
    url: z.string().meta({ description: 'The Connect page, with a short-lived page token in its fragment (never in its path or query).' }),
    expires_in: z.number().int().meta({ description: 'Seconds until the page token expires.' }),
  })
  .meta({ id: 'ConnectUrlResponse' });

export const errorEnvelopeSchema = z
  .object({
    status_code: z.number().int(),
    http_error_type: z.string(),
    error: z.string(),
    message: z.string(),
  })
  .meta({ id: 'ErrorEnvelope' });

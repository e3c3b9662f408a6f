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
  accountNameSchema,
  credentialKeySchema,
  credentialValueSchema,
  linkedAccountIdSchema,
} from '../core/validation.js';

const bodyObject = <T extends z.ZodRawShape>(shape: T) =>
  z.object(shape, { error: 'Request body must be a JSON object' });

export const credentialValueBody = bodyObject({
  value: credentialValueSchema().meta({
    description: 'The credential value. Numbers and booleans are stored as their string form.',
    examples: ['sk_test_4eC39HqLyjWDarjtT1zdp7dc'],
  }),
}).meta({ id: 'UpsertDefaultAppCredentialRequest' });

const credentialMap = z
  .record(credentialKeySchema, credentialValueSchema(), { error: 'must be an object of key names to values' })
  .meta({ description: 'Credential key names to values, stored encrypted in the default app.' });

const udfMap = z
  .record(z.string(), z.string({ error: 'values must be strings' }), { error: 'must be an object of strings' })
  .meta({ description: 'Custom key/value fields.' });

const yourApp = z
  .object(
    { auth_credentials: credentialMap },
    { error: 'must be an object with auth_credentials' },
  )
  .meta({ description: 'Seeds the default-app integration.' });

const accountFields = {
  account_id: linkedAccountIdSchema.optional().meta({ description: 'The linked account id.' }),
  linked_account_id: linkedAccountIdSchema.optional().meta({ description: 'Alias of `account_id`.' }),
  name: accountNameSchema.optional(),
  udf: udfMap.optional(),
  your_app: yourApp.optional(),
};

export const createLinkedAccountBody = bodyObject(accountFields).meta({ id: 'CreateLinkedAccountRequest' });

export const upsertLinkedAccountBody = bodyObject({
  ...accountFields,
  payload: z
    .object(
      {
        name: accountNameSchema.optional(),
        udf: udfMap.optional(),
        your_app: yourApp.optional(),
      },
      { error: 'must be an object' },
    )
    .optional()
    .meta({ description: 'The same fields, nested; when present, they win over the flat ones.' }),
}).meta({ id: 'UpsertLinkedAccountRequest' });

export const sessionTokenBody = bodyObject({
  linked_account_id: linkedAccountIdSchema,
}).meta({ id: 'SessionTokenRequest' });

export const forceRefreshQuery = z
  .enum(['true', 'false'], { error: 'force_refresh must be "true" or "false"' })
  .meta({ description: 'Issue a new token even when a valid one exists.' });

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

export const linkedAccountResponse = z
  .object({
    _id: z.string(),
    account_id: z.string(),
    name: z.string(),
    environment: z.enum(['test', 'production']),
    integrations: z.null().meta({ description: 'Never returned: credentials stay in the vault.' }),
  })
  .meta({ id: 'LinkedAccount' });

export const upsertedLinkedAccountResponse = linkedAccountResponse
  .extend({ new_account: z.boolean() })
  .meta({ id: 'UpsertedLinkedAccount' });

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

export const errorEnvelopeSchema = z
  .object({
    status_code: z.number().int(),
    http_error_type: z.string(),
    error: z.string(),
    message: z.string(),
  })
  .meta({ id: 'ErrorEnvelope' });

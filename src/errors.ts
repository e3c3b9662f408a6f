/**
 * Every failure credvault reports is a {@link VaultError} with one of these codes.
 * `src/http/errors.ts` maps each code to exactly one row of the HTTP error table.
 */
export type VaultErrorCode =
  | 'AUTH_MISSING'
  | 'INVALID_API_KEY'
  | 'INVALID_SESSION_TOKEN'
  | 'MISSING_LINKED_ACCOUNT_ID'
  | 'FORBIDDEN'
  | 'LINKED_ACCOUNT_NOT_FOUND'
  | 'UNKNOWN_LINKED_ACCOUNT'
  | 'DEFAULT_APP_NOT_FOUND'
  | 'CREDENTIAL_NOT_FOUND'
  | 'API_KEY_NOT_FOUND'
  | 'LINKED_ACCOUNT_EXISTS'
  | 'VALIDATION_ERROR'
  | 'PAYLOAD_TOO_LARGE'
  | 'TOO_MANY_REQUESTS'
  | 'ROUTE_NOT_FOUND'
  | 'METHOD_NOT_ALLOWED'
  | 'STORE_UNAVAILABLE'
  | 'DECRYPTION_FAILED'
  | 'KEYRING_MISMATCH'
  | 'ROTATION_INCOMPLETE'
  | 'INVALID_CONFIGURATION'
  | 'INTERNAL';

/**
 * The one error class credvault throws. `message` is safe to show a caller: it never
 * holds a credential value, an API key or a token.
 *
 * @example
 * ```ts
 * try {
 *   await upsertDefaultAppCredential(vault, principal, 'api_key', value);
 * } catch (error) {
 *   if (error instanceof VaultError && error.code === 'DEFAULT_APP_NOT_FOUND') { ... }
 * }
 * ```
 */
export class VaultError extends Error {
  override readonly name = 'VaultError';
  readonly code: VaultErrorCode;
  /** Extra facts for the HTTP layer, e.g. the methods a path allows. */
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(
    code: VaultErrorCode,
    message: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options?.details;
  }
}

export function isVaultError(error: unknown): error is VaultError {
  return error instanceof VaultError;
}

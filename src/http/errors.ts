/** The one table from error codes to HTTP statuses and the error envelope. */
import type { VaultErrorCode } from '../errors.js';
import { VaultError } from '../errors.js';

/** The one place where error codes become HTTP: status, `http_error_type`, `error`. */
const HTTP_ERRORS: Record<VaultErrorCode, readonly [status: number, httpErrorType: string, error: string]> = {
  AUTH_MISSING: [401, 'UNAUTHORIZED', 'INVALID_TOKEN'],
  INVALID_API_KEY: [401, 'UNAUTHORIZED', 'SERVER_ERROR'],
  INVALID_SESSION_TOKEN: [401, 'UNAUTHORIZED', 'INVALID_TOKEN'],
  MISSING_LINKED_ACCOUNT_ID: [400, 'BAD_REQUEST', 'MISSING_LINKED_ACCOUNT_ID'],
  FORBIDDEN: [403, 'FORBIDDEN', 'FORBIDDEN'],
  LINKED_ACCOUNT_NOT_FOUND: [404, 'NOT_FOUND', 'INVALID_LINKED_ACCOUNT_ID'],
  UNKNOWN_LINKED_ACCOUNT: [400, 'BAD_REQUEST', 'INVALID_LINKED_ACCOUNT_ID'],
  DEFAULT_APP_NOT_FOUND: [404, 'NOT_FOUND', 'RESOURCE_NOT_FOUND'],
  CREDENTIAL_NOT_FOUND: [404, 'NOT_FOUND', 'RESOURCE_NOT_FOUND'],
  // No endpoint revokes API keys today; the row keeps the table total.
  API_KEY_NOT_FOUND: [404, 'NOT_FOUND', 'RESOURCE_NOT_FOUND'],
  LINKED_ACCOUNT_EXISTS: [409, 'CONFLICT', 'CONFLICT'],
  VALIDATION_ERROR: [400, 'BAD_REQUEST', 'VALIDATION_ERROR'],
  PAYLOAD_TOO_LARGE: [413, 'PAYLOAD_TOO_LARGE', 'PAYLOAD_TOO_LARGE'],
  TOO_MANY_REQUESTS: [429, 'TOO_MANY_REQUESTS', 'TOO_MANY_REQUESTS'],
  ROUTE_NOT_FOUND: [404, 'NOT_FOUND', 'RESOURCE_NOT_FOUND'],
  METHOD_NOT_ALLOWED: [405, 'METHOD_NOT_ALLOWED', 'METHOD_NOT_ALLOWED'],
  STORE_UNAVAILABLE: [503, 'SERVICE_UNAVAILABLE', 'STORE_UNAVAILABLE'],
  // The 500 row of the error table: clients learn nothing of what failed inside.
  DECRYPTION_FAILED: [500, 'INTERNAL_SERVER_ERROR', 'INTERNAL_SERVER_ERROR'],
  KEYRING_MISMATCH: [500, 'INTERNAL_SERVER_ERROR', 'INTERNAL_SERVER_ERROR'],
  ROTATION_INCOMPLETE: [500, 'INTERNAL_SERVER_ERROR', 'INTERNAL_SERVER_ERROR'],
  INVALID_CONFIGURATION: [500, 'INTERNAL_SERVER_ERROR', 'INTERNAL_SERVER_ERROR'],
  INTERNAL: [500, 'INTERNAL_SERVER_ERROR', 'INTERNAL_SERVER_ERROR'],
};

/** The documented error body. */
export interface ErrorEnvelope {
  status_code: number;
  http_error_type: string;
  error: string;
  message: string;
}

/** Status and envelope for an error code. Server-side failures never pass their message on. */
export function errorEnvelope(error: VaultError): ErrorEnvelope {
  const [status, httpErrorType, code] = HTTP_ERRORS[error.code];
  const message = status === 500 ? 'Internal server error' : error.message;
  return { status_code: status, http_error_type: httpErrorType, error: code, message };
}

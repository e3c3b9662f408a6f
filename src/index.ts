/**
 * credvault: an embeddable, encrypted-at-rest vault for linked accounts' default-app
 * auth credentials. Framework bindings live in `credvault/express` and `credvault/koa`;
 * storage adapters in `credvault/adapters/*`; the store conformance suite in
 * `credvault/testing`.
 */
export { createVault, resolveKeyring, DEFAULT_SESSION_TOKEN_TTL_SECONDS } from './vault.js';
export type { VaultOptions, VaultKeyOptions, ResolveKeyringOptions, ResolvedKeyring } from './vault.js';
export { openVault } from './core/vault.js';
export type { Vault, VaultSettings } from './core/vault.js';
export { VaultError, isVaultError } from './errors.js';
export type { VaultErrorCode } from './errors.js';
export type {
  VaultStore,
  StoreEntry,
  StoreListItem,
  ScanPage,
  PutOptions,
  PutResult,
  InsertOptions,
  BatchWrite,
  BatchOptions,
  BatchResult,
  RemoveGroupOptions,
  IndexEntry,
  IndexPage,
  CounterState,
} from './core/store.js';
export { markInProcess, isInProcess } from './core/store.js';
export { openStore, parseStoreUrl, DEFAULT_STORE_URL } from './store-url.js';
export type { AccountRef, AccountScope } from './core/layout.js';
export type { Principal } from './core/principal.js';
export type { Actor, VaultEvent, VaultEventType, EventSink } from './core/events.js';
export {
  upsertDefaultAppCredential,
  getDefaultAppCredential,
  listDefaultAppCredentials,
  deleteDefaultAppCredential,
} from './core/credentials.js';
export type { UpsertResult, CredentialInfo } from './core/credentials.js';
export {
  createLinkedAccount,
  getLinkedAccount,
  linkedAccountExists,
  listLinkedAccounts,
  upsertLinkedAccount,
  deleteLinkedAccount,
  MAX_ACCOUNT_PAGE_LIMIT,
  DEFAULT_ACCOUNT_PAGE_LIMIT,
} from './core/accounts.js';
export type { UpsertedLinkedAccount } from './core/accounts.js';
export { reindexLinkedAccounts } from './core/account-index.js';
export type { ReindexResult, ReindexOptions } from './core/account-index.js';
export type { LinkedAccount, LinkedAccountPage, DefaultAppInfo, CreateLinkedAccountInput } from './core/accounts.js';
export { createApiKey, revokeApiKey, verifyApiKey } from './core/api-keys.js';
export { rotateKeys, countRecords } from './core/rotation.js';
export type { RotationResult, RotationOptions } from './core/rotation.js';
export type { CreatedApiKey, ApiKeyIdentity } from './core/api-keys.js';
export { issueSessionToken, verifySessionToken, revokeSessionToken } from './core/session-tokens.js';
export type { IssuedSessionToken, SessionIdentity } from './core/session-tokens.js';
export { resolveApiKey, resolveSessionToken, resolveCaller, defaultResolvers } from './auth/index.js';
export type { AuthRequest, AuthResolver, Caller } from './auth/index.js';
export { createHandler, DEFAULT_BASE_PATH } from './http/handler.js';
export type { CredvaultHandler, HandlerOptions, HandlerRequest, HandlerResponse } from './http/handler.js';
export type { ErrorEnvelope } from './http/errors.js';
export type { DefaultAppDefinition, DefaultAppField, DefaultAppFieldType } from './connect/app.js';
export type { ConnectOptions, ConnectTheme } from './connect/page.js';
export { DEFAULT_BODY_LIMIT_BYTES } from './http/body.js';
export { parseKeyring, generateKey } from './crypto/index.js';
export type { Keyring } from './crypto/index.js';
export { chainKeyProviders, localKeyProvider, isValidKekId, wrapAdditionalData, DATA_KEY_BYTES } from './crypto/key-provider.js';
export type { KeyProvider, WrapContext, WrappedKey } from './crypto/key-provider.js';
export type { DataKeyCacheOptions } from './core/data-keys.js';
export { openApiDocument } from './http/openapi.js';

/**
 * Org API keys: creating, revoking and checking them. This module owns the key format
 * (`tk_`/`pk_`, a public id, a secret) and the stored record (a hash, never the key).
 */
import { hash, randomBytes, timingSafeEqual } from 'node:crypto';
import { VaultError } from '../errors.js';
import { API_KEY_EXISTS, META_GROUP, RECORD, apiKeyGroup } from './layout.js';
import { environmentSchema, orgIdSchema, parseInput, type Environment } from './validation.js';
import type { Vault } from './vault.js';
import { auditedRemoval, type Actor } from './events.js';
import { hashSecret, randomToken } from '../crypto/secrets.js';

/** A freshly created API key. `apiKey` is shown once and never stored. */
export interface CreatedApiKey {
  apiKey: string;
  /** The public id inside the key, which names it for revocation. */
  keyId: string;
  org: string;
  environment: Environment;
}

/** The org and environment an API key acts for. */
export interface ApiKeyIdentity {
  org: string;
  environment: Environment;
  keyId: string;
}

interface ApiKeyRecord {
  hash: string;
  org: string;
  environment: Environment;
}

/** How an API key starts, by environment: `tk_` for test keys, `pk_` for production keys. */
export const API_KEY_PREFIXES: Readonly<Record<Environment, string>> = { test: 'tk_', production: 'pk_' };
const PREFIX = API_KEY_PREFIXES;
// tk_/pk_, a 16-hex public id, then 43 base64url characters of secret (256 bits).
const API_KEY_FORMAT = /^(tk|pk)_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
const KEY_ID_FORMAT = /^[0-9a-f]{16}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;

/**
 * Creates an API key for one org and environment. Only a hash of its secret is stored.
 *
 * @example
 * ```ts
 * const { apiKey, keyId } = await createApiKey(vault, { org: 'acme', environment: 'test' });
 * // apiKey: 'tk_3f2a..._Xk9...'
 * ```
 */
export async function createApiKey(
  vault: Vault,
  input: { org: string; environment?: string },
  actor: Actor = { type: 'system' },
): Promise<CreatedApiKey> {
  const org = parseInput(orgIdSchema, input.org, 'org');
  const environment = parseInput(environmentSchema, input.environment ?? 'test', 'environment');
  const keyId = randomBytes(8).toString('hex');
  const secret = randomToken(32);
  const record: ApiKeyRecord = { hash: hashSecret(secret), org, environment };
  if (!(await vault.store.insert(apiKeyGroup(keyId), RECORD, JSON.stringify(record)))) {
    throw new VaultError('INTERNAL', 'API key id collision; try again');
  }
  await vault.store.put(META_GROUP, API_KEY_EXISTS, '1');
  await vault.emit({ type: 'api_key.created', org, environment, actor }, () => vault.store.remove(apiKeyGroup(keyId), RECORD));
  return { apiKey: `${PREFIX[environment]}${keyId}_${secret}`, keyId, org, environment };
}

/**
 * Revokes an API key by its public id; it stops working at once on every process.
 * Returns whether the key existed.
 *
 * @example
 * ```ts
 * await revokeApiKey(vault, '3f2a9c...');
 * ```
 */
export async function revokeApiKey(vault: Vault, keyId: string, actor: Actor = { type: 'system' }): Promise<boolean> {
  if (!KEY_ID_FORMAT.test(keyId)) return false;
  const entry = await vault.store.get(apiKeyGroup(keyId), RECORD);
  if (entry === undefined) return false;
  const record = JSON.parse(entry.value) as ApiKeyRecord;
  return auditedRemoval(vault, { type: 'api_key.revoked', org: record.org, environment: record.environment, actor }, () =>
    vault.store.remove(apiKeyGroup(keyId), RECORD),
  );
}

/**
 * Checks an API key against the store, in constant time.
 *
 * @throws VaultError `INVALID_API_KEY` when it is malformed, unknown or revoked
 */
export async function verifyApiKey(vault: Vault, apiKey: string): Promise<ApiKeyIdentity> {
  const match = API_KEY_FORMAT.exec(apiKey);
  if (match === null) throw invalidApiKey();
  const [, prefix, keyId, secret] = match as unknown as [string, string, string, string];
  // Read on every call: a revocation on any process takes effect at once.
  const entry = await vault.store.get(apiKeyGroup(keyId), RECORD);
  if (entry === undefined) throw invalidApiKey();
  const record = parsedRecord(vault, keyId, entry.value);
  const presented = hash('sha256', secret, 'buffer');
  if (presented.length !== record.hash.length || !timingSafeEqual(presented, record.hash) || `${prefix}_` !== PREFIX[record.environment]) {
    // The id names a real key: the failed-auth limit counts against it (unknown ids are not
    // counted, so random ids cannot fill the store with counters).
    throw invalidApiKey({ keyId });
  }
  return { org: record.org, environment: record.environment, keyId };
}

/** A stored API-key record, parsed, with its hash as bytes. */
interface ParsedRecord {
  readonly raw: string;
  readonly hash: Buffer;
  readonly org: string;
  readonly environment: Environment;
}

/** Most parsed records kept per vault; past it the map starts over. */
const PARSED_RECORDS_MAX = 1024;
const parsedRecords = new WeakMap<Vault, Map<string, ParsedRecord>>();

/**
 * The record `raw` parsed, reused while the stored string is the same one: the store is
 * still read on every call, so this only saves decoding what was just read (it decides
 * nothing, and holds hashes, never a key).
 */
function parsedRecord(vault: Vault, keyId: string, raw: string): ParsedRecord {
  let byId = parsedRecords.get(vault);
  const known = byId?.get(keyId);
  if (known !== undefined && known.raw === raw) return known;
  const record = JSON.parse(raw) as ApiKeyRecord;
  // Buffer.from stops at the first non-hex character: only a whole SHA-256 hex digest may match.
  const hash = typeof record.hash === 'string' && SHA256_HEX.test(record.hash) ? Buffer.from(record.hash, 'hex') : Buffer.alloc(0);
  const parsed: ParsedRecord = { raw, hash, org: record.org, environment: record.environment };
  if (byId === undefined) parsedRecords.set(vault, (byId = new Map()));
  if (byId.size >= PARSED_RECORDS_MAX) byId.clear();
  byId.set(keyId, parsed);
  return parsed;
}

/** Whether any API key was ever created in this store (for the `serve` hint). */
export async function anyApiKeyCreated(vault: Vault): Promise<boolean> {
  return (await vault.store.get(META_GROUP, API_KEY_EXISTS)) !== undefined;
}

const invalidApiKey = (details?: { keyId: string }) =>
  new VaultError('INVALID_API_KEY', 'Invalid Credentials', details === undefined ? {} : { details });

/**
 * The public id of the real API key an `INVALID_API_KEY` failure presented (a known id with
 * the wrong secret or prefix), or `undefined`: malformed keys and unknown ids name none, so
 * counting failures per id cannot fill the store with counters.
 *
 * @example
 * ```ts
 * const keyId = presentedApiKeyId(error); // '3f2a9c...' or undefined
 * ```
 */
export function presentedApiKeyId(error: VaultError): string | undefined {
  const keyId = error.code === 'INVALID_API_KEY' ? error.details?.['keyId'] : undefined;
  return typeof keyId === 'string' && KEY_ID_FORMAT.test(keyId) ? keyId : undefined;
}

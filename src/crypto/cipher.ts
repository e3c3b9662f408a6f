/** The cipher: AES-256-GCM sealing and opening of values bound to their record, and the keyring check over samples. */
import { createCipheriv, createDecipheriv, randomFillSync } from 'node:crypto';
import { VaultError } from '../errors.js';
import { isValidKeyId, type Keyring, type KeyringKey } from './keyring.js';

/**
 * What a sealed value belongs to. All four fields are bound into the ciphertext as
 * additional authenticated data, so a value copied onto another record fails to open.
 */
export interface SealContext {
  readonly org: string;
  readonly environment: string;
  readonly accountId: string;
  /** The credential key name, or a purpose label such as `session-token:<id>`. */
  readonly name: string;
}

/** The format version sealed under a keyring key; the first dot-separated part of the string. */
export const SEALED_FORMAT_VERSION = 'cv1';

/**
 * The format version sealed under a linked account's data key (envelope encryption):
 * `cv2.<data key id>.<nonce>.<ciphertext>.<tag>`. The data key's own record names the KEK
 * that wraps it, so re-wrapping a data key under a new KEK leaves its values as they are.
 */
export const DATA_KEY_FORMAT_VERSION = 'cv2';

/** Every format version this module opens. */
export type SealedVersion = typeof SEALED_FORMAT_VERSION | typeof DATA_KEY_FORMAT_VERSION;

/**
 * A linked account's data key: a random id (written into every value it seals, never
 * reused: a recreated account gets a new one) and 32 secret bytes.
 */
export interface DataKey {
  /** 1 to 32 of `A-Z a-z 0-9 _ -`. */
  readonly id: string;
  /** Exactly 32 bytes (AES-256). */
  readonly key: Buffer;
}

const ALGORITHM = 'aes-256-gcm';
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const BASE64URL = /^[A-Za-z0-9_-]*$/;

const OPAQUE_MESSAGE = 'Stored credential could not be decrypted';

/** One error for every cause, so a failure tells nobody which check it tripped. */
function decryptionFailed(): VaultError {
  return new VaultError('DECRYPTION_FAILED', OPAQUE_MESSAGE);
}

/** Strings with lone surrogates become U+FFFD in UTF-8, which would break round trips and injectivity. */
function isWellFormed(value: unknown): value is string {
  return typeof value === 'string' && value.isWellFormed();
}

function contextIsWellFormed(context: SealContext): boolean {
  return (
    isWellFormed(context.org) &&
    isWellFormed(context.environment) &&
    isWellFormed(context.accountId) &&
    isWellFormed(context.name)
  );
}

/**
 * AAD = for each of [version, keyId, org, environment, accountId, name]: its UTF-8 byte
 * length as a 4-byte big-endian integer, then those bytes. Length prefixes make it
 * injective whatever characters the fields hold.
 */
function additionalData(keyId: string, context: SealContext, version: SealedVersion = SEALED_FORMAT_VERSION): Buffer {
  const { org, environment, accountId, name } = context;
  // One buffer, written in place: this runs on every seal and every open.
  const size =
    24 +
    version.length +
    Buffer.byteLength(keyId, 'utf8') +
    Buffer.byteLength(org, 'utf8') +
    Buffer.byteLength(environment, 'utf8') +
    Buffer.byteLength(accountId, 'utf8') +
    Buffer.byteLength(name, 'utf8');
  const aad = Buffer.allocUnsafe(size);
  let at = 0;
  for (const field of [version, keyId, org, environment, accountId, name]) {
    const written = aad.write(field, at + 4, 'utf8');
    aad.writeUInt32BE(written, at);
    at += 4 + written;
  }
  return aad;
}

/** The value of each base64url character, by char code (-1 for the others). */
const BASE64URL_VALUE = new Int8Array(128).fill(-1);
'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.split('').forEach((c, i) => (BASE64URL_VALUE[c.charCodeAt(0)] = i));

/** Below this length a sealed part is decoded here: a native call per part cost more than the loop. */
const DECODE_IN_JS_BELOW = 256;

/**
 * Strict base64url: Buffer.from ignores bad characters and stray bits, which would make sealed
 * strings malleable. Only the canonical unpadded form of some bytes is accepted: base64url
 * characters only, a length that is not 1 modulo 4, and a last character whose bits past the
 * final byte are zero (what re-encoding the decoded bytes would check, without encoding them again).
 */
function decodeBase64url(text: string): Buffer | undefined {
  const length = text.length;
  const rest = length % 4;
  if (rest === 1) return undefined;
  if (length >= DECODE_IN_JS_BELOW) {
    if (!BASE64URL.test(text)) return undefined;
    if (rest !== 0 && ((BASE64URL_VALUE[text.charCodeAt(length - 1)] as number) & (rest === 2 ? 0x0f : 0x03)) !== 0) return undefined;
    return Buffer.from(text, 'base64url');
  }
  const bytes = Buffer.allocUnsafe((length * 3) >> 2);
  let bits = 0;
  let held = 0;
  let at = 0;
  for (let i = 0; i < length; i++) {
    const code = text.charCodeAt(i);
    const value = code < 128 ? (BASE64URL_VALUE[code] as number) : -1;
    if (value < 0) return undefined;
    bits = ((bits & 0xff) << 6) | value;
    held += 6;
    if (held >= 8) {
      held -= 8;
      bytes[at++] = (bits >> held) & 0xff;
    }
  }
  // Bits left past the last whole byte must be zero.
  return (bits & ((1 << held) - 1)) === 0 ? bytes : undefined;
}

/** A sealed string's parts, parsed once (see {@link parseSealedValue}); opaque outside this module. */
export interface SealedParts {
  readonly version: SealedVersion;
  /** The keyring key id (cv1) or the data key id (cv2). */
  readonly keyId: string;
  readonly nonce: Buffer;
  readonly ciphertext: Buffer;
  readonly tag: Buffer;
}

function parseSealed(sealed: unknown): SealedParts | undefined {
  if (typeof sealed !== 'string') return undefined;
  const parts = sealed.split('.');
  if (parts.length !== 5) return undefined;
  const [version, keyId, nonceText, ciphertextText, tagText] = parts;
  if ((version !== SEALED_FORMAT_VERSION && version !== DATA_KEY_FORMAT_VERSION) || keyId === undefined || !isValidKeyId(keyId)) return undefined;
  if (nonceText === undefined || ciphertextText === undefined || tagText === undefined) return undefined;
  const nonce = decodeBase64url(nonceText);
  const ciphertext = decodeBase64url(ciphertextText);
  const tag = decodeBase64url(tagText);
  if (nonce?.length !== NONCE_BYTES || ciphertext === undefined || tag?.length !== TAG_BYTES) return undefined;
  return { version, keyId, nonce, ciphertext, tag };
}

/**
 * Encrypt `plaintext` with the keyring's primary key (AES-256-GCM, a fresh random 96-bit
 * nonce each call), bound to `context`. Returns
 * `cv1.<keyId>.<nonce>.<ciphertext>.<tag>` (the last three base64url, unpadded).
 * Throws `VALIDATION_ERROR` if `plaintext` or a context field holds a lone UTF-16
 * surrogate (it could not round-trip).
 *
 * @example
 * ```ts
 * const sealed = sealCredential(keyring, 'sk_live_…', { org: 'acme', environment: 'prod', accountId: 'u1', name: 'api_key' });
 * // 'cv1.k20250314-9f2c.q3J…'
 * ```
 */
export function sealCredential(keyring: Keyring, plaintext: string, context: SealContext): string {
  return sealUnder(SEALED_FORMAT_VERSION, keyring.primary, plaintext, context);
}

/**
 * Encrypt `plaintext` under a linked account's data key (AES-256-GCM, a fresh random 96-bit
 * nonce each call), bound to `context` and to the data key's id. Returns
 * `cv2.<dataKeyId>.<nonce>.<ciphertext>.<tag>`. Same refusals as {@link sealCredential}.
 *
 * @example
 * ```ts
 * const sealed = sealWithDataKey(dataKey, 'sk_live_…', { org: 'acme', environment: 'test', accountId: 'u1', name: 'api_key' });
 * // 'cv2.3f9a…'
 * ```
 */
export function sealWithDataKey(dataKey: DataKey, plaintext: string, context: SealContext): string {
  return sealUnder(DATA_KEY_FORMAT_VERSION, dataKey, plaintext, context);
}

function sealUnder(version: SealedVersion, sealingKey: KeyringKey | DataKey, plaintext: string, context: SealContext): string {
  if (!isWellFormed(plaintext)) {
    throw new VaultError('VALIDATION_ERROR', 'Value to encrypt is not a well-formed Unicode string');
  }
  if (!contextIsWellFormed(context)) {
    throw new VaultError('VALIDATION_ERROR', 'Encryption context is not made of well-formed Unicode strings');
  }
  const { id, key } = sealingKey;
  if (version === DATA_KEY_FORMAT_VERSION) {
    // An id that could not be parsed back, or a key of the wrong size, would store values that never open.
    if (!isValidKeyId(id) || key.length !== 32) throw new VaultError('INTERNAL', 'A data key is a valid id and 32 bytes');
    // A data key released by its cache is zeroed: never seal under known bytes.
    if (isAllZero(key)) throw new VaultError('INTERNAL', 'A released data key cannot seal');
  }
  const nonce = freshNonce();
  const cipher = createCipheriv(ALGORITHM, key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(additionalData(id, context, version));
  const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  const tag = cipher.getAuthTag();
  return [version, id, nonce.toString('base64url'), ciphertext.toString('base64url'), tag.toString('base64url')].join('.');
}

function isAllZero(bytes: Buffer): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

// Nonces come from a pool of CSPRNG output, each byte used once: one system call per 341
// seals instead of one per seal, which showed in profiles.
const NONCE_POOL_BYTES = NONCE_BYTES * 341;
let noncePool = Buffer.alloc(0);
let noncePoolOffset = 0;

function freshNonce(): Buffer {
  if (noncePoolOffset + NONCE_BYTES > noncePool.length) {
    noncePool = randomFillSync(Buffer.allocUnsafe(NONCE_POOL_BYTES));
    noncePoolOffset = 0;
  }
  const nonce = noncePool.subarray(noncePoolOffset, noncePoolOffset + NONCE_BYTES);
  noncePoolOffset += NONCE_BYTES;
  return nonce;
}

/**
 * Decrypt a string made by {@link sealCredential}, choosing the key by the id it names.
 * Any failure — malformed string, unknown version, key id not in the keyring, wrong key,
 * tampering, a different `context` — throws the same opaque
 * `VaultError('DECRYPTION_FAILED', 'Stored credential could not be decrypted')`.
 *
 * @example
 * ```ts
 * const value = openCredential(keyring, sealed, { org: 'acme', environment: 'prod', accountId: 'u1', name: 'api_key' });
 * ```
 */
export function openCredential(keyring: Keyring, sealed: string, context: SealContext): string {
  const parts = parseSealed(sealed);
  if (parts === undefined || parts.version !== SEALED_FORMAT_VERSION) throw decryptionFailed();
  return openParts(parts, keyring.keys.get(parts.keyId), context);
}

/**
 * Decrypt a `cv2` string made by {@link sealWithDataKey} with that data key. Any failure
 * (another format, another data key id, tampering, another `context`) throws the same
 * opaque `DECRYPTION_FAILED` as {@link openCredential}.
 *
 * @example
 * ```ts
 * const value = openWithDataKey(dataKey, sealed, { org: 'acme', environment: 'test', accountId: 'u1', name: 'api_key' });
 * ```
 */
export function openWithDataKey(dataKey: DataKey, sealed: string, context: SealContext): string {
  const parts = parseSealed(sealed);
  if (parts === undefined || parts.version !== DATA_KEY_FORMAT_VERSION) throw decryptionFailed();
  return openDataKeyParts(parts, dataKey, context);
}

/** Opens `cv2` parts with `dataKey`, which must be the key their header names. */
function openDataKeyParts(parts: SealedParts, dataKey: DataKey | undefined, context: SealContext): string {
  if (dataKey === undefined || dataKey.id !== parts.keyId) throw decryptionFailed();
  // A released (zeroed) key is a bug of the caller's, not a bad value: say so instead of "cannot decrypt".
  if (dataKey.key.length !== 32 || isAllZero(dataKey.key)) throw new VaultError('INTERNAL', 'A released data key cannot open');
  return openParts(parts, dataKey, context);
}

function openParts(parts: SealedParts, entry: KeyringKey | DataKey | undefined, context: SealContext): string {
  if (entry === undefined || !contextIsWellFormed(context)) throw decryptionFailed();
  try {
    const decipher = createDecipheriv(ALGORITHM, entry.key, parts.nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(additionalData(parts.keyId, context, parts.version));
    decipher.setAuthTag(parts.tag);
    const plaintext = Buffer.concat([decipher.update(parts.ciphertext), decipher.final()]);
    return plaintext.toString('utf8');
  } catch {
    // Node's error says nothing secret, but dropping it keeps every failure identical.
    throw decryptionFailed();
  }
}

/**
 * A sealed string's parts, parsed once, for {@link openSealedParts}; `undefined` when the
 * string is not a well-formed sealed value.
 *
 * @example
 * ```ts
 * const parts = parseSealedValue(sealed);
 * ```
 */
export function parseSealedValue(sealed: string): SealedParts | undefined {
  return parseSealed(sealed);
}

/**
 * Opens parts from {@link parseSealedValue}: a `cv1` value with the keyring, a `cv2` value with
 * `dataKey` (which must be the one its header names). One parse per read, whatever the format.
 * Fails with the one opaque `DECRYPTION_FAILED`.
 */
export function openSealedParts(parts: SealedParts, keys: { keyring: Keyring; dataKey?: DataKey | undefined }, context: SealContext): string {
  if (parts.version === SEALED_FORMAT_VERSION) return openParts(parts, keys.keyring.keys.get(parts.keyId), context);
  return openDataKeyParts(parts, keys.dataKey, context);
}

/**
 * The format of a sealed string and the id of the key it names (a keyring key for `cv1`, a
 * data key for `cv2`), read from its header without decrypting; `undefined` when the string
 * is not a well-formed sealed value.
 *
 * @example
 * ```ts
 * sealedHeader(sealed); // { version: 'cv2', keyId: '3f9a…' }
 * ```
 */
export function sealedHeader(sealed: string): { version: SealedVersion; keyId: string } | undefined {
  const parts = parseSealed(sealed);
  return parts === undefined ? undefined : { version: parts.version, keyId: parts.keyId };
}

/**
 * The id of the key that sealed `sealed`, read from its header without decrypting, or
 * `undefined` if the string is not a well-formed sealed value. For rotation: find what
 * still needs re-sealing under the new primary.
 *
 * @example
 * ```ts
 * if (sealedKeyId(sealed) !== keyring.primary.id) {
 *   sealed = sealCredential(keyring, openCredential(keyring, sealed, context), context);
 * }
 * ```
 */
export function sealedKeyId(sealed: string): string | undefined {
  const parts = parseSealed(sealed);
  return parts?.version === SEALED_FORMAT_VERSION ? parts.keyId : undefined;
}

/** A stored sealed value and the context it was sealed under, for {@link assertKeyringOpens}. */
export interface SealedSample {
  readonly sealed: string;
  readonly context: SealContext;
}

/**
 * Startup check: throw `KEYRING_MISMATCH` unless the keyring opens every sample (pass, say,
 * one stored value per key id). The message names key ids only, never values, and tells
 * apart "key id missing from the keyring" from "key present but wrong".
 *
 * @example
 * ```ts
 * assertKeyringOpens(keyring, [{ sealed: stored.value, context: stored.context }]);
 * ```
 */
export function assertKeyringOpens(keyring: Keyring, samples: Iterable<SealedSample>): void {
  const missing = new Set<string>();
  const wrong = new Set<string>();
  let unreadable = 0;
  for (const { sealed, context } of samples) {
    const keyId = sealedKeyId(sealed);
    if (keyId === undefined) {
      unreadable += 1;
    } else if (!keyring.keys.has(keyId)) {
      missing.add(keyId);
    } else {
      try {
        openCredential(keyring, sealed, context);
      } catch {
        wrong.add(keyId);
      }
    }
  }
  const problems: string[] = [];
  if (missing.size > 0) problems.push(`sealed with key id(s) not in the keyring: ${[...missing].join(', ')}`);
  if (wrong.size > 0) problems.push(`key id(s) present but unable to open stored data: ${[...wrong].join(', ')}`);
  if (unreadable > 0) problems.push(`${unreadable} stored value(s) not in a known sealed format`);
  if (problems.length > 0) {
    throw new VaultError(
      'KEYRING_MISMATCH',
      `The configured keys cannot open what is stored: ${problems.join('; ')}`,
      { details: { missingKeyIds: [...missing], wrongKeyIds: [...wrong] } },
    );
  }
}

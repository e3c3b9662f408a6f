/**
 * Key providers: where the key-encryption keys (KEKs) live. A provider wraps and unwraps the
 * data keys (DEKs) of linked accounts; the vault never sees a KEK, only the provider does.
 * The local keyring is the default; PKCS#11 (`credvault/pkcs11`) keeps the KEK in an HSM.
 */
import { createCipheriv, createDecipheriv, randomFillSync } from 'node:crypto';
import { VaultError } from '../errors.js';
import type { Keyring } from './keyring.js';

/** Bytes in a data key: AES-256. */
export const DATA_KEY_BYTES = 32;

/**
 * What a data key is wrapped for. Every field is bound into the wrap, so a wrapped key
 * copied onto another account, or onto another data key's id, does not unwrap.
 */
export interface WrapContext {
  readonly org: string;
  readonly environment: string;
  readonly accountId: string;
  /** The data key's own id (random, per key: a recreated account gets another). */
  readonly dekId: string;
}

/** A data key as stored: the KEK that wrapped it, and the provider's wrapped bytes as base64url. */
export interface WrappedKey {
  /** 1 to 64 of `A-Z a-z 0-9 _ . : -`, chosen by the provider (e.g. `local:k1`, `pkcs11:kek-1`). */
  readonly kekId: string;
  /** Opaque to the vault. */
  readonly wrapped: string;
}

/**
 * A source of key-encryption keys. Implementations must:
 * - wrap only under their primary KEK, and unwrap with whichever of their KEKs `kekId` names;
 * - bind the whole {@link WrapContext} into the wrap (authenticated encryption);
 * - fail an unwrap that does not open (tampered bytes, another context, a KEK they do not
 *   have) with `VaultError` `DECRYPTION_FAILED`, one opaque message for every cause;
 * - fail when the KEK cannot be reached (HSM down, session lost, KMS timing out) with
 *   `VaultError` `STORE_UNAVAILABLE` (answered 503), never `DECRYPTION_FAILED`, and never
 *   fall back to anything else; recover by themselves once it is back;
 * - never put key material, a PIN or a plaintext data key into an error or a log line.
 *
 * @example
 * ```ts
 * const provider: KeyProvider = {
 *   kind: 'kms',
 *   primaryKekId: 'kms:alias-credvault',
 *   hasKek: (kekId) => kekId === 'kms:alias-credvault',
 *   async wrap(dek, context) { return { kekId: 'kms:alias-credvault', wrapped: await myKms.encrypt(dek, context) }; },
 *   async unwrap(wrapped, context) { return myKms.decrypt(wrapped.wrapped, context); },
 * };
 * const vault = await createVault({ store: 'sqlite:./data/credvault.db', kek: provider });
 * ```
 */
export interface KeyProvider {
  /** A short name for messages, e.g. `local` or `pkcs11`. */
  readonly kind: string;
  /** The id new data keys are wrapped under; what `keys rotate` re-wraps towards. */
  readonly primaryKekId: string;
  /** Wraps a 32-byte data key under the primary KEK. */
  wrap(dek: Buffer, context: WrapContext): Promise<WrappedKey>;
  /** Unwraps a data key with the KEK `wrapped.kekId` names; returns its 32 bytes. */
  unwrap(wrapped: WrappedKey, context: WrapContext): Promise<Buffer>;
  /** Whether `kekId` names a KEK this provider can unwrap with (without trying). */
  hasKek(kekId: string): boolean;
  /** Releases sessions and handles. */
  close?(): Promise<void>;
  /**
   * True when the provider itself says on its log, once, that its KEK became unreachable and
   * once that it is back (the PKCS#11 provider does). Otherwise the vault says so on its own
   * `log`, quoting the provider's `STORE_UNAVAILABLE` message.
   */
  readonly logsOutages?: boolean;
}

const KEK_ID = /^[A-Za-z0-9_.:-]{1,64}$/;

/** True if `kekId` is a well-formed KEK id: 1 to 64 of `A-Z a-z 0-9 _ . : -`. */
export function isValidKekId(kekId: string): boolean {
  return KEK_ID.test(kekId);
}

/** Format tag inside the AAD of every wrap this module makes: versioned like sealed values. */
const WRAP_VERSION = 'cvk1';

/**
 * The AAD of a wrap: for each of [version, kekId, org, environment, accountId, dekId], its
 * UTF-8 length as 4 bytes big-endian, then its bytes (injective whatever the fields hold).
 * Exported for providers that do their own AES-GCM (PKCS#11 passes it to the token).
 */
export function wrapAdditionalData(kekId: string, context: WrapContext): Buffer {
  const fields = [WRAP_VERSION, kekId, context.org, context.environment, context.accountId, context.dekId];
  for (const field of fields) {
    if (typeof field !== 'string' || !field.isWellFormed()) throw new VaultError('DECRYPTION_FAILED', WRAP_FAILED);
  }
  const parts = fields.map((field) => Buffer.from(field, 'utf8'));
  const out = Buffer.allocUnsafe(parts.reduce((size, part) => size + 4 + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.writeUInt32BE(part.length, at);
    part.copy(out, at + 4);
    at += 4 + part.length;
  }
  return out;
}

const WRAP_FAILED = 'Stored data key could not be unwrapped';
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

/** One opaque failure for every cause of an unwrap that does not open. */
export const unwrapFailed = (): VaultError => new VaultError('DECRYPTION_FAILED', WRAP_FAILED);

/**
 * The local key provider: the keyring's keys are the KEKs (`CREDVAULT_KEYS` or the key file).
 * The primary wraps (AES-256-GCM, a fresh 96-bit nonce each time, the context as AAD); every
 * key of the keyring unwraps what it wrapped. KEK ids are `local:<key id>`.
 *
 * @example
 * ```ts
 * const provider = localKeyProvider(parseKeyring(process.env.CREDVAULT_KEYS!));
 * ```
 */
export function localKeyProvider(keyring: Keyring): KeyProvider {
  const kekIdOf = (keyId: string) => `local:${keyId}`;
  const keyOf = (kekId: string) => (kekId.startsWith('local:') ? keyring.keys.get(kekId.slice('local:'.length)) : undefined);
  const primaryKekId = kekIdOf(keyring.primary.id);
  return {
    kind: 'local',
    primaryKekId,
    hasKek: (kekId) => keyOf(kekId) !== undefined,
    async wrap(dek, context) {
      if (dek.length !== DATA_KEY_BYTES) throw new VaultError('INTERNAL', `A data key is ${DATA_KEY_BYTES} bytes`);
      const nonce = randomFillSync(Buffer.allocUnsafe(NONCE_BYTES));
      const cipher = createCipheriv('aes-256-gcm', keyring.primary.key, nonce, { authTagLength: TAG_BYTES });
      cipher.setAAD(wrapAdditionalData(primaryKekId, context));
      const sealed = Buffer.concat([nonce, cipher.update(dek), cipher.final(), cipher.getAuthTag()]);
      return { kekId: primaryKekId, wrapped: sealed.toString('base64url') };
    },
    async unwrap(wrapped, context) {
      const key = keyOf(wrapped.kekId);
      const bytes = typeof wrapped.wrapped === 'string' ? Buffer.from(wrapped.wrapped, 'base64url') : undefined;
      if (key === undefined || bytes === undefined || bytes.length !== NONCE_BYTES + DATA_KEY_BYTES + TAG_BYTES) throw unwrapFailed();
      // Buffer.from ignores stray characters: only the canonical encoding is accepted.
      if (bytes.toString('base64url') !== wrapped.wrapped) throw unwrapFailed();
      try {
        const decipher = createDecipheriv('aes-256-gcm', key.key, bytes.subarray(0, NONCE_BYTES), { authTagLength: TAG_BYTES });
        decipher.setAAD(wrapAdditionalData(wrapped.kekId, context));
        decipher.setAuthTag(bytes.subarray(NONCE_BYTES + DATA_KEY_BYTES));
        return Buffer.concat([decipher.update(bytes.subarray(NONCE_BYTES, NONCE_BYTES + DATA_KEY_BYTES)), decipher.final()]);
      } catch {
        throw unwrapFailed();
      }
    },
  };
}

/**
 * One provider made of several: `primary` wraps every new data key (and is what `keys rotate`
 * re-wraps towards); each of the others only unwraps the keys its KEKs wrapped, so a store
 * moves from one provider to another (the local keyring to an HSM, one KMS to another) by
 * opening it with the new one first and running `keys rotate`. The vault itself chains the
 * local keyring after any provider it is given (so `vault.keyProvider` is such a chain), so
 * keys the keyring wrapped keep opening without this.
 *
 * @example
 * ```ts
 * // Moving from one KMS key to another: the new one wraps, the old one still unwraps.
 * const provider = chainKeyProviders(kmsProvider({ key: 'prod-2' }), kmsProvider({ key: 'prod-1' }));
 * ```
 */
export function chainKeyProviders(primary: KeyProvider, ...others: KeyProvider[]): KeyProvider {
  const all = [primary, ...others];
  const owner = (kekId: string) => all.find((provider) => provider.hasKek(kekId));
  return {
    kind: primary.kind,
    primaryKekId: primary.primaryKekId,
    logsOutages: primary.logsOutages === true,
    hasKek: (kekId) => owner(kekId) !== undefined,
    wrap: (dek, context) => primary.wrap(dek, context),
    async unwrap(wrapped, context) {
      // A KEK no provider has: the primary answers, with its own opaque failure.
      return (owner(wrapped.kekId) ?? primary).unwrap(wrapped, context);
    },
    async close() {
      const results = await Promise.allSettled(all.map((provider) => provider.close?.()));
      const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
      if (failed !== undefined) throw failed.reason;
    },
  };
}

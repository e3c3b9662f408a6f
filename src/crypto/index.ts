/** The crypto layer's public surface: keyrings and key files, sealing, secret hashing. */
export {
  KEY_BYTES,
  createKeyring,
  ensureKeyFile,
  generateKey,
  isKeyFileExposed,
  isValidKeyId,
  loadKeyring,
  parseKeyring,
  readKeyFile,
  type GeneratedKey,
  type EnsuredKeyFile,
  type KeyFileOptions,
  type Keyring,
  type KeyringKey,
  type LoadKeyringOptions,
  type LoadedKeyring,
} from './keyring.js';
export {
  SEALED_FORMAT_VERSION,
  assertKeyringOpens,
  openCredential,
  sealCredential,
  sealedKeyId,
  type SealContext,
  type SealedSample,
} from './cipher.js';
export { MIN_TOKEN_BYTES, hashSecret, randomToken, secretsEqual } from './secrets.js';

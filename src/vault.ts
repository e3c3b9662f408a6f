/**
 * The composition root of a vault: turns a store URL and key options into an open store and
 * a keyring (the embedded SQLite default gets its key file here), then hands both to the
 * core's `openVault`. Adapters load lazily through `store-url.ts`.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { VaultError } from './errors.js';
import type { VaultStore } from './core/store.js';
import { openVault, type Vault, type VaultSettings } from './core/vault.js';
import { loadKeyring, parseKeyring, type Keyring } from './crypto/keyring.js';
import type { KeyProvider } from './crypto/key-provider.js';
import { defaultKeyFileFor, openStore } from './store-url.js';

export { DEFAULT_SESSION_TOKEN_TTL_SECONDS } from './core/vault.js';

/** Where a vault's keys come from; see {@link VaultOptions}. */
export interface VaultKeyOptions {
  /**
   * The keyring: a parsed {@link Keyring} or text in the `id:base64,id:base64` format
   * (the first key seals, all open). Without it, `keyFile` is read; without both, a SQLite
   * store gets a generated key file beside its database, and `memory:` an ephemeral key.
   */
  keys?: Keyring | string;
  /** A file holding the keyring text. */
  keyFile?: string;
  /** Where notices (such as "created a key file") go. Default: stderr. */
  log?: (line: string) => void;
}

export interface VaultOptions extends VaultKeyOptions, VaultSettings {
  /**
   * Where records live: a {@link VaultStore}, or a URL: `memory:`, `sqlite:<path>`,
   * `redis://...`, `postgres://...`.
   */
  store: VaultStore | string;
  /** Keeps this vault's records apart from other vaults sharing one backend. */
  namespace?: string;
  /**
   * Where the key-encryption keys live: a {@link KeyProvider}, or an RFC 7512 PKCS#11 URI
   * (`pkcs11:token=credvault;object=kek-1?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:CREDVAULT_PKCS11_PIN`,
   * `CREDVAULT_KEK` for the CLI). Default: the keyring's own keys. The vault closes it.
   */
  kek?: KeyProvider | string;
}

/** How {@link resolveKeyring} reads keys, beyond {@link VaultKeyOptions}. */
export interface ResolveKeyringOptions extends VaultKeyOptions {
  /** What text `keys` is called in messages. Default `keys option`. */
  keysSource?: string;
  /** Accept a key file that group or others may access (see `KeyFileOptions`). Default false. */
  allowInsecureKeyFile?: boolean;
}

/** The keyring a vault will use, and facts about the key file it came from. */
export interface ResolvedKeyring {
  readonly keyring: Keyring;
  /** The key file read, if any. */
  readonly keyFile?: string;
  /** True if group or others may access that key file (only with `allowInsecureKeyFile`). */
  readonly insecurePermissions: boolean;
}

/**
 * Opens a vault: connects the store, loads the keyring and checks that it opens what the
 * store already holds.
 *
 * @example
 * ```ts
 * const vault = await createVault({ store: 'sqlite:./data/credvault.db' });
 * await upsertDefaultAppCredential(vault, { org: 'acme', environment: 'test', accountId: 'cust-1' }, 'api_key', 'sk_live_...');
 * ```
 */
export async function createVault(options: VaultOptions): Promise<Vault> {
  const { store, namespace, keys, keyFile, log, kek, ...settings } = options;
  const { keyring } = await resolveKeyring(store, { keys, keyFile, log });
  const keyProvider = await openKeyProvider(kek, log);
  let rawStore: VaultStore;
  try {
    rawStore = typeof store === 'string' ? await openStore(store, { namespace, storeTimeoutMs: settings.storeTimeoutMs }) : store;
  } catch (error) {
    await keyProvider?.close?.().catch(() => undefined);
    throw error;
  }
  return openVault(rawStore, keyring, { ...settings, log, ...(keyProvider === undefined ? {} : { keyProvider }) });
}

/** The provider `kek` names: itself, or a PKCS#11 provider opened from its URI (pkcs11js loads only then). */
async function openKeyProvider(kek: KeyProvider | string | undefined, log: ((line: string) => void) | undefined): Promise<KeyProvider | undefined> {
  if (kek === undefined || typeof kek !== 'string') return kek;
  if (!/^pkcs11:/i.test(kek)) {
    throw new VaultError('INVALID_CONFIGURATION', 'kek must be a PKCS#11 URI (pkcs11:token=...;object=...?module-path=...) or a KeyProvider');
  }
  const { openPkcs11KeyProvider } = await import('./crypto/pkcs11.js');
  return openPkcs11KeyProvider(kek, log === undefined ? {} : { log });
}

/**
 * The keyring for a store, from the first of: `keys`; `keyFile`; for a SQLite URL, the key
 * file beside its database (created, mode 0600, and announced through `log` when missing);
 * for `memory:`, an ephemeral key. Throws `INVALID_CONFIGURATION` otherwise, or when the
 * keys or the file are invalid.
 *
 * @example
 * ```ts
 * const { keyring } = await resolveKeyring('sqlite:./data/credvault.db', { keys: process.env.CREDVAULT_KEYS });
 * ```
 */
export async function resolveKeyring(store: VaultStore | string, options: ResolveKeyringOptions = {}): Promise<ResolvedKeyring> {
  const { keys } = options;
  if (keys !== undefined && typeof keys !== 'string') return { keyring: keys, insecurePermissions: false };
  const url = typeof store === 'string' ? store : undefined;
  const beside = url === undefined || keys !== undefined || options.keyFile !== undefined ? undefined : defaultKeyFileFor(url);
  if (keys === undefined && options.keyFile === undefined && beside === undefined && url?.startsWith('memory:') === true) {
    return { keyring: parseKeyring(`ephemeral:${randomBytes(32).toString('base64')}`), insecurePermissions: false };
  }
  if (keys === undefined && options.keyFile === undefined && beside === undefined) {
    throw new VaultError('INVALID_CONFIGURATION', 'No encryption keys given: set CREDVAULT_KEYS (or the keys / keyFile option) for this store');
  }
  // Keys given as text must be valid themselves: a blank value never falls back to a file.
  const loaded = await loadKeyring({
    env: keys,
    envSource: options.keysSource ?? 'keys option',
    keyFile: keys === undefined ? (options.keyFile ?? beside) : undefined,
    create: beside !== undefined,
    allowInsecurePermissions: options.allowInsecureKeyFile === true,
  });
  if (loaded.created && loaded.keyFile !== undefined) {
    const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
    log(`credvault: created a new encryption key file at ${path.resolve(loaded.keyFile)} (mode 0600); back it up: without it the stored credentials cannot be read`);
  }
  return {
    keyring: loaded.keyring,
    insecurePermissions: loaded.insecurePermissions,
    ...(loaded.keyFile === undefined ? {} : { keyFile: loaded.keyFile }),
  };
}

/** Keyrings: parsing `id:base64,...`, generating keys, reading and creating key files (mode 0600), loading from env or file. */
import { randomBytes } from 'node:crypto';
import { link, mkdir, open, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { VaultError } from '../errors.js';

/** One key of a {@link Keyring}: a short public id and 32 secret bytes. */
export interface KeyringKey {
  /** 1 to 32 of `A-Z a-z 0-9 _ -`; written into every ciphertext this key seals. */
  readonly id: string;
  /** Exactly 32 bytes (AES-256). */
  readonly key: Buffer;
}

/**
 * Several keys: `primary` seals, every key in `keys` (the primary included) opens.
 * Build one with {@link parseKeyring} or {@link createKeyring}.
 */
export interface Keyring {
  readonly primary: KeyringKey;
  readonly keys: ReadonlyMap<string, KeyringKey>;
}

/** Bytes in every key: AES-256. */
export const KEY_BYTES = 32;

const KEY_ID = /^[A-Za-z0-9_-]{1,32}$/;
const STANDARD_BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const URL_SAFE_BASE64 = /^[A-Za-z0-9_-]+={0,2}$/;

/** True if `id` is a valid key id: 1 to 32 of `A-Z a-z 0-9 _ -`. */
export function isValidKeyId(id: string): boolean {
  return KEY_ID.test(id);
}

function invalid(message: string): VaultError {
  return new VaultError('INVALID_CONFIGURATION', message);
}

/**
 * Build a keyring from keys already in memory; the first key is the primary.
 * Throws `INVALID_CONFIGURATION` on an empty list, a bad id, a key that is not 32 bytes
 * or a repeated id. Messages name the entry and id, never the key bytes.
 *
 * @example
 * ```ts
 * const keyring = createKeyring([
 *   { id: 'k2', key: newKey },
 *   { id: 'k1', key: oldKey }, // still opens what k1 sealed
 * ]);
 * ```
 */
export function createKeyring(keys: readonly KeyringKey[], source = 'keyring'): Keyring {
  if (keys.length === 0) throw invalid(`${source}: no keys given`);
  const map = new Map<string, KeyringKey>();
  keys.forEach((entry, index) => {
    const where = `${source}: entry ${index + 1}`;
    // An invalid id may be a mis-pasted key, so it is described, never echoed.
    if (!isValidKeyId(entry.id)) {
      throw invalid(`${where}: key id must be 1 to 32 of A-Z a-z 0-9 _ - (got ${entry.id.length} characters)`);
    }
    if (entry.key.length !== KEY_BYTES) {
      throw invalid(`${where} (id "${entry.id}"): key must be ${KEY_BYTES} bytes, got ${entry.key.length}`);
    }
    if (map.has(entry.id)) throw invalid(`${where}: key id "${entry.id}" appears more than once`);
    map.set(entry.id, { id: entry.id, key: Buffer.from(entry.key) }); // a copy: later changes to the caller's buffer cannot swap keys
  });
  const [primary] = map.values();
  if (primary === undefined) throw invalid(`${source}: no keys given`);
  return { primary, keys: map };
}

/** Decodes standard or url-safe base64 strictly: Buffer.from alone skips bad characters silently. */
function decodeKey(text: string): Buffer | undefined {
  const isStandard = STANDARD_BASE64.test(text);
  if (!isStandard && !URL_SAFE_BASE64.test(text)) return undefined;
  const unpadded = text.replace(/=+$/, '');
  const padding = text.length - unpadded.length;
  if (padding !== 0 && padding !== (4 - (unpadded.length % 4)) % 4) return undefined;
  const bytes = Buffer.from(unpadded, isStandard ? 'base64' : 'base64url');
  // Round-tripping rejects non-canonical text (a dangling character, stray trailing bits).
  const canonical = isStandard ? bytes.toString('base64').replace(/=+$/, '') : bytes.toString('base64url');
  return canonical === unpadded ? bytes : undefined;
}

/**
 * Parse `CREDVAULT_KEYS` or key-file text: `id:base64,id:base64`, first entry primary.
 * Entries are separated by commas and/or newlines; whitespace around entries and a
 * trailing newline are ignored. Keys may be standard or url-safe base64 and must decode to
 * exactly 32 bytes. Throws `INVALID_CONFIGURATION` with one line naming the entry index
 * (and the id when it is valid) — never any key text. `source` prefixes that line.
 *
 * @example
 * ```ts
 * const keyring = parseKeyring(process.env.CREDVAULT_KEYS ?? '', 'CREDVAULT_KEYS');
 * keyring.primary.id; // the id of the first entry
 * ```
 */
export function parseKeyring(text: string, source = 'keyring'): Keyring {
  const entries = text
    .split(/[,\r\n]/)
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
  if (entries.length === 0) throw invalid(`${source}: no keys given (expected id:base64,id:base64)`);
  const keys = entries.map((entry, index): KeyringKey => {
    const where = `${source}: entry ${index + 1}`;
    const colon = entry.indexOf(':');
    if (colon === -1) throw invalid(`${where}: expected id:base64 (no ":" found)`);
    const id = entry.slice(0, colon).trim();
    const encoded = entry.slice(colon + 1).trim();
    if (!isValidKeyId(id)) {
      throw invalid(`${where}: key id must be 1 to 32 of A-Z a-z 0-9 _ - (got ${id.length} characters)`);
    }
    const key = decodeKey(encoded);
    if (key === undefined) throw invalid(`${where} (id "${id}"): key is not valid base64`);
    if (key.length !== KEY_BYTES) {
      throw invalid(`${where} (id "${id}"): key must be ${KEY_BYTES} bytes after base64 decoding, got ${key.length}`);
    }
    return { id, key };
  });
  return createKeyring(keys, source);
}

/** A freshly generated key, ready to paste into `CREDVAULT_KEYS` or a key file. */
export interface GeneratedKey {
  readonly id: string;
  /** The 32 key bytes, standard base64. */
  readonly key: string;
  /** `ID:BASE64`, one keyring entry. */
  readonly entry: string;
}

/**
 * Generate 32 random bytes and an id. The default id is `k` + the UTC date + a random
 * suffix, e.g. `k20250314-9f2c`, so keys made on one day still differ.
 *
 * @example
 * ```ts
 * const next = generateKey();
 * // rotate: the new key first, the old ones after it
 * process.env.CREDVAULT_KEYS = `${next.entry},${process.env.CREDVAULT_KEYS}`;
 * ```
 */
export function generateKey(id?: string): GeneratedKey {
  const keyId = id ?? defaultKeyId();
  if (!isValidKeyId(keyId)) {
    throw invalid(`generateKey: key id must be 1 to 32 of A-Z a-z 0-9 _ - (got ${keyId.length} characters)`);
  }
  const key = randomBytes(KEY_BYTES).toString('base64');
  return { id: keyId, key, entry: `${keyId}:${key}` };
}

function defaultKeyId(): string {
  const date = new Date().toISOString().slice(0, 10).replaceAll('-', '');
  return `k${date}-${randomBytes(2).toString('hex')}`;
}

/** The result of {@link ensureKeyFile}. */
export interface EnsuredKeyFile {
  readonly keyring: Keyring;
  /** True if this call created the file. */
  readonly created: boolean;
  /**
   * True if group or others may access the file (see {@link isKeyFileExposed}). Only ever
   * true when `allowInsecurePermissions` was given: otherwise such a file is refused.
   */
  readonly insecurePermissions: boolean;
}

/** Options for {@link readKeyFile} and {@link ensureKeyFile}. */
export interface KeyFileOptions {
  /**
   * Accept a key file that group or others may read, write or execute (`mode & 0o077`).
   * Default false: such a file is refused with `INVALID_CONFIGURATION`, since anyone who
   * can read it can open every stored credential. Fix the file with `chmod 600` instead.
   */
  readonly allowInsecurePermissions?: boolean;
}

function errorCode(error: unknown): string | undefined {
  return error instanceof Error && 'code' in error && typeof error.code === 'string' ? error.code : undefined;
}

/** The permission bits (`0o644`) as text, for messages: `0644`. */
export function formatMode(mode: number): string {
  return `0${(mode & 0o777).toString(8).padStart(3, '0')}`;
}

/** True if `mode` grants group or others any access. Always false on Windows. */
function modeIsExposed(mode: number): boolean {
  return process.platform !== 'win32' && (mode & 0o077) !== 0;
}

/** The refusal of an exposed key file: one line, naming the file and its mode, never its content. */
function insecureKeyFileError(path: string, mode: number): VaultError {
  return new VaultError(
    'INVALID_CONFIGURATION',
    `Key file ${path} is accessible by group or others (mode ${formatMode(mode)}); run chmod 600 on it`,
    { details: { keyFile: path, mode: mode & 0o777 } },
  );
}

/**
 * Read and parse a key file (same format as `CREDVAULT_KEYS`). Throws
 * `INVALID_CONFIGURATION` if it cannot be read or parsed, or if group or others may access
 * it (unless `allowInsecurePermissions`): its mode is checked on the very file read.
 *
 * @example
 * ```ts
 * const keyring = await readKeyFile('/var/lib/credvault/credvault.keys');
 * ```
 */
export async function readKeyFile(path: string, options: KeyFileOptions = {}): Promise<Keyring> {
  return (await readKeyFileChecked(path, options)).keyring;
}

/** Reads through one open handle, so the mode checked is that of the content read. */
async function readKeyFileChecked(path: string, options: KeyFileOptions): Promise<{ keyring: Keyring; exposed: boolean }> {
  let text: string;
  let exposed: boolean;
  try {
    const handle = await open(path, 'r');
    try {
      const { mode } = await handle.stat();
      exposed = modeIsExposed(mode);
      if (exposed && options.allowInsecurePermissions !== true) throw insecureKeyFileError(path, mode);
      text = await handle.readFile('utf8');
    } finally {
      await handle.close().catch(() => undefined);
    }
  } catch (error) {
    if (error instanceof VaultError) throw error;
    const code = errorCode(error) ?? 'unknown error';
    throw new VaultError('INVALID_CONFIGURATION', `Key file ${path} could not be read (${code})`, { cause: error });
  }
  return { keyring: parseKeyring(text, `Key file ${path}`), exposed };
}

/**
 * True if group or others have any access to the key file (`mode & 0o077`): the key-file
 * readers refuse such a file unless told otherwise. Always false on Windows, where POSIX
 * modes mean nothing, and if it cannot be stat'ed.
 *
 * @example
 * ```ts
 * if (await isKeyFileExposed(keyFile)) console.error(`credvault: ${keyFile} is readable by others; chmod 600 it`);
 * ```
 */
export async function isKeyFileExposed(path: string): Promise<boolean> {
  try {
    return modeIsExposed((await stat(path)).mode);
  } catch {
    return false;
  }
}

/**
 * Read a key file, or create it with one new key if it does not exist: mode 0600, its
 * directory created (0700) if missing. Safe when several processes race: exactly one
 * creates the file, the rest read that same key, and no reader sees a half-written file.
 * An existing file that group or others may access is refused, as by {@link readKeyFile}.
 *
 * @example
 * ```ts
 * const { keyring, created } = await ensureKeyFile(join(dataDir, 'credvault.keys'));
 * if (created) process.stderr.write(`credvault: created key file ${join(dataDir, 'credvault.keys')}\n`);
 * ```
 */
export async function ensureKeyFile(path: string, options: KeyFileOptions = {}): Promise<EnsuredKeyFile> {
  let created = true;
  try {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  } catch (error) {
    throw cannotCreate(path, error);
  }
  try {
    await createExclusively(path, `${generateKey().entry}\n`);
  } catch (error) {
    if (errorCode(error) !== 'EEXIST') throw cannotCreate(path, error);
    created = false;
  }
  const { keyring, exposed } = await readKeyFileChecked(path, options);
  return { keyring, created, insecurePermissions: exposed };
}

function cannotCreate(path: string, error: unknown): VaultError {
  const code = errorCode(error) ?? 'unknown error';
  return new VaultError('INVALID_CONFIGURATION', `Key file ${path} could not be created (${code})`, { cause: error });
}

/**
 * Writes a private temp file, then hard-links it into place: link fails with EEXIST rather
 * than clobbering, and publishes the file complete, never half-written.
 */
async function createExclusively(path: string, text: string): Promise<void> {
  const temp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(temp, text, { flag: 'wx', mode: 0o600 });
  try {
    await link(temp, path);
  } catch (error) {
    const code = errorCode(error);
    // Some filesystems (FAT, some network mounts) lack hard links; O_EXCL alone still never clobbers.
    if (code === 'EPERM' || code === 'ENOTSUP' || code === 'ENOSYS' || code === 'EOPNOTSUPP') {
      await writeFile(path, text, { flag: 'wx', mode: 0o600 });
    } else {
      throw error;
    }
  } finally {
    await unlink(temp).catch(() => undefined);
  }
}

/** Where a keyring came from, as returned by {@link loadKeyring}. */
export interface LoadedKeyring {
  readonly keyring: Keyring;
  readonly source: 'env' | 'keyFile';
  /** The key file read, when `source` is `keyFile`. */
  readonly keyFile?: string;
  /** True if this call created the key file (only with `create: true`). */
  readonly created: boolean;
  /** True if the key file is group- or world-accessible (only with `allowInsecurePermissions`): warn about it. */
  readonly insecurePermissions: boolean;
}

/** Options for {@link loadKeyring}. */
export interface LoadKeyringOptions {
  /** The `CREDVAULT_KEYS` value; wins over `keyFile` when non-blank. */
  readonly env?: string | undefined;
  /** What `env` is called in messages. Default `CREDVAULT_KEYS`. */
  readonly envSource?: string;
  /** A key file to read when `env` is blank or absent. */
  readonly keyFile?: string | undefined;
  /** Create `keyFile` with a new key if it is missing (the embedded SQLite default). */
  readonly create?: boolean;
  /** Accept a key file group or others may access; see {@link KeyFileOptions}. Default false. */
  readonly allowInsecurePermissions?: boolean;
}

/**
 * Load the keyring: from `env` (the `CREDVAULT_KEYS` value) if it is non-blank, otherwise
 * from `keyFile` (created first if `create` is set). Throws `INVALID_CONFIGURATION` when
 * neither is given or either is invalid, or when the key file is accessible by group or
 * others and `allowInsecurePermissions` is not set.
 *
 * @example
 * ```ts
 * const loaded = await loadKeyring({ env: process.env.CREDVAULT_KEYS, keyFile: join(dir, 'credvault.keys'), create: true });
 * if (loaded.created) process.stderr.write(`credvault: created key file ${loaded.keyFile}\n`);
 * ```
 */
export async function loadKeyring(options: LoadKeyringOptions): Promise<LoadedKeyring> {
  if (options.env !== undefined && options.env.trim() !== '') {
    return {
      keyring: parseKeyring(options.env, options.envSource ?? 'CREDVAULT_KEYS'),
      source: 'env',
      created: false,
      insecurePermissions: false,
    };
  }
  if (options.keyFile !== undefined) {
    const fileOptions: KeyFileOptions = { allowInsecurePermissions: options.allowInsecurePermissions === true };
    let file: EnsuredKeyFile;
    if (options.create === true) {
      file = await ensureKeyFile(options.keyFile, fileOptions);
    } else {
      const { keyring, exposed } = await readKeyFileChecked(options.keyFile, fileOptions);
      file = { keyring, created: false, insecurePermissions: exposed };
    }
    return { ...file, source: 'keyFile', keyFile: options.keyFile };
  }
  throw invalid('No encryption keys configured: set CREDVAULT_KEYS (id:base64,...) or give a key file');
}

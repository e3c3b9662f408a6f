/**
 * The PKCS#11 key provider: the KEK is an AES-256 secret key on an HSM token and never
 * leaves it; data keys are wrapped and unwrapped by AES-256-GCM on the token. pkcs11js (an
 * optional peer) is loaded only when a provider is opened.
 */
import { endianness } from 'node:os';
import { randomFillSync } from 'node:crypto';
import { realpathSync } from 'node:fs';
import type pkcs11js from 'pkcs11js';
import { VaultError } from '../errors.js';
import { loadOptionalPeer } from '../optional-peers.js';
import { DATA_KEY_BYTES, isValidKekId, unwrapFailed, wrapAdditionalData, type KeyProvider, type WrapContext, type WrappedKey } from './key-provider.js';
import { parsePkcs11Uri, resolvePkcs11Pin, type Pkcs11Uri } from './pkcs11-uri.js';

type Pkcs11Js = typeof pkcs11js;
type Handle = pkcs11js.Handle;

/** Options of {@link openPkcs11KeyProvider}. */
export interface Pkcs11KeyProviderOptions {
  /** Where `pin-source=env:NAME` reads; default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Where the provider says the token became unavailable and came back; default stderr. */
  log?: (line: string) => void;
  /**
   * How many wraps and unwraps may run on the token at once, each on a session of its own
   * (opened when first needed, then kept and reused), besides the session that logs in and
   * finds keys; further calls wait their turn. Default 4, at most 1024. Each call in flight
   * also takes one of libuv's thread pool threads (`UV_THREADPOOL_SIZE`, default 4, shared
   * with `fs`, `dns.lookup` and `zlib`), so more sessions than threads add no overlap.
   */
  sessions?: number;
}

const IV_BYTES = 12;
const TAG_BYTES = 16;
const SEALED_BYTES = DATA_KEY_BYTES + TAG_BYTES;
const WRAPPED_BYTES = IV_BYTES + SEALED_BYTES;
/** base64url of {@link WRAPPED_BYTES} bytes, unpadded: 80 characters. */
const WRAPPED_TEXT = /^[A-Za-z0-9_-]{80}$/;
const KEK_PREFIX = 'pkcs11:';
/** Recovery attempts are at least this far apart, so an outage is not a C_Initialize loop. */
const RETRY_INTERVAL_MS = 250;
const AES_256_BYTES = 32;
const DEFAULT_SESSIONS = 4;
/** libuv's own cap on its thread pool: more calls than that can never run at once. */
const MAX_SESSIONS = 1024;

/**
 * Return values meaning the token, the session or a handle is gone (or the session may be
 * left with an operation active): never a verdict on the wrapped bytes.
 */
const GONE = new Set([
  'CKR_OBJECT_HANDLE_INVALID',
  'CKR_KEY_HANDLE_INVALID',
  'CKR_WRAPPING_KEY_HANDLE_INVALID',
  'CKR_SESSION_HANDLE_INVALID',
  'CKR_SESSION_CLOSED',
  'CKR_SESSION_COUNT',
  'CKR_DEVICE_ERROR',
  'CKR_DEVICE_MEMORY',
  'CKR_DEVICE_REMOVED',
  'CKR_TOKEN_NOT_PRESENT',
  'CKR_TOKEN_NOT_RECOGNIZED',
  'CKR_CRYPTOKI_NOT_INITIALIZED',
  'CKR_USER_NOT_LOGGED_IN',
  'CKR_OPERATION_ACTIVE',
  'CKR_BUFFER_TOO_SMALL',
  'CKR_HOST_MEMORY',
  'CKR_FUNCTION_FAILED',
]);
/** Of {@link GONE}, those that mean the device itself cannot be reached (when met while opening). */
const DEVICE_DOWN = new Set(['CKR_DEVICE_ERROR', 'CKR_DEVICE_MEMORY', 'CKR_DEVICE_REMOVED', 'CKR_TOKEN_NOT_PRESENT', 'CKR_TOKEN_NOT_RECOGNIZED']);
const WRONG_PIN = new Set(['CKR_PIN_INCORRECT', 'CKR_PIN_INVALID', 'CKR_PIN_LEN_RANGE']);

let pkcs11jsLoaded: Promise<Pkcs11Js> | undefined;

function loadPkcs11js(): Promise<Pkcs11Js> {
  pkcs11jsLoaded ??= loadOptionalPeer(['pkcs11js'], 'The PKCS#11 key provider', () => import('pkcs11js')).then((module) => module.default);
  // A failed load is not remembered: installing the package and trying again works.
  pkcs11jsLoaded.catch(() => (pkcs11jsLoaded = undefined));
  return pkcs11jsLoaded;
}

let ckrNames: Map<number, string> | undefined;

/** The CKR_ name of a pkcs11js error, or the error's class name for anything else. */
function reasonOf(lib: Pkcs11Js, error: unknown): string {
  if (error instanceof lib.Pkcs11Error) {
    if (/^CKR_[A-Z0-9_]+$/.test(error.message)) return error.message;
    if (ckrNames === undefined) {
      ckrNames = new Map();
      for (const [name, value] of Object.entries(lib)) if (name.startsWith('CKR_') && typeof value === 'number' && !ckrNames.has(value)) ckrNames.set(value, name);
    }
    return ckrNames.get(error.code) ?? `CKR 0x${error.code.toString(16)}`;
  }
  return error instanceof Error ? error.name : 'unknown error';
}

// --- One loaded module per file per process ---------------------------------------------
// C_Initialize, C_Finalize and the login are per process and token, not per PKCS11 object:
// providers on one module share it, and a C_Finalize by one ends every other's sessions.

interface LoadedModule {
  readonly p11: pkcs11js.PKCS11;
  readonly key: string;
  users: number;
  /** Bumped at every C_Finalize: sessions and handles of an earlier generation are gone. */
  generation: number;
  initialized: boolean;
  /**
   * Sessions of every provider on the module held by a wrap or unwrap, from just before its
   * *Init to the end of its call on libuv's thread pool. No C_Finalize while any is: finalising
   * the library under a call running on another thread is undefined behaviour.
   */
  leased: number;
  /**
   * Whether this code's C_Initialize, asking for OS locking, set the library up: only then may
   * calls run on other threads. When other code of the process initialised it first, it may
   * have asked for no locking (a NULL pInitArgs promises one thread at a time), so wraps and
   * unwraps stay on the event loop.
   */
  threadSafe: boolean;
}

const modules = new Map<string, LoadedModule>();

function acquireModule(lib: Pkcs11Js, modulePath: string): LoadedModule {
  let key: string;
  try {
    // dlopen gives one library per file, whatever the path: key the registry the same way.
    key = realpathSync(modulePath);
  } catch {
    throw new VaultError('INVALID_CONFIGURATION', `PKCS#11 module ${modulePath} not found`);
  }
  const loaded = modules.get(key);
  if (loaded !== undefined) {
    loaded.users += 1;
    return loaded;
  }
  const p11 = new lib.PKCS11();
  try {
    p11.load(key);
  } catch (error) {
    const detail = error instanceof Error ? (error.message.split('\n')[0] ?? '') : '';
    throw new VaultError('INVALID_CONFIGURATION', `PKCS#11 module ${modulePath} could not be loaded${detail === '' ? '' : `: ${detail}`}`);
  }
  const created: LoadedModule = { p11, key, users: 1, generation: 0, initialized: false, leased: 0, threadSafe: false };
  modules.set(key, created);
  return created;
}

/** Ends a user; the last one finalises the module (every provider closed has waited for its calls, so none is running). */
function releaseModule(module: LoadedModule): void {
  module.users -= 1;
  if (module.users > 0) return;
  modules.delete(module.key);
  if (module.initialized) quietly(() => module.p11.C_Finalize());
  module.initialized = false;
  module.generation += 1;
  quietly(() => module.p11.close());
}

function initializeModule(lib: Pkcs11Js, module: LoadedModule): void {
  if (module.initialized) return;
  try {
    module.p11.C_Initialize({ flags: lib.CKF_OS_LOCKING_OK });
    module.threadSafe = true;
  } catch (error) {
    // Initialised by other code in this process: the library state is shared, which is fine,
    // but whether it locks for several threads is unknown.
    if (!(error instanceof lib.Pkcs11Error && error.code === lib.CKR_CRYPTOKI_ALREADY_INITIALIZED)) throw error;
    module.threadSafe = false;
  }
  module.initialized = true;
}

/**
 * C_Finalize then C_Initialize: SoftHSM serves a token that vanished and came back only after
 * this. Only while no session of the module is leased ({@link LoadedModule.leased}).
 */
function reinitializeModule(lib: Pkcs11Js, module: LoadedModule): void {
  if (module.initialized) quietly(() => module.p11.C_Finalize());
  module.initialized = false;
  module.generation += 1;
  initializeModule(lib, module);
}

function quietly(action: () => unknown): void {
  try {
    action();
  } catch {
    // Cleanup of something that may be gone already.
  }
}

// --- Opening a session on the token -----------------------------------------------------

/** Why opening failed: a message for the caller, and a short reason for a recovery's log line. */
class OpenFailure extends Error {
  constructor(
    readonly code: 'INVALID_CONFIGURATION' | 'STORE_UNAVAILABLE',
    message: string,
    readonly reason: string,
  ) {
    super(message);
  }
}

interface TokenSession {
  readonly slot: Handle;
  readonly session: Handle;
  readonly generation: number;
}

const trimPadding = (text: string): string => text.replace(/[ \0]+$/, '');

function ulong(value: Buffer): number {
  if (value.length === 8) return Number(endianness() === 'LE' ? value.readBigUInt64LE(0) : value.readBigUInt64BE(0));
  if (value.length === 4) return endianness() === 'LE' ? value.readUInt32LE(0) : value.readUInt32BE(0);
  return Number.NaN;
}

function findObjects(p11: pkcs11js.PKCS11, session: Handle, template: pkcs11js.Template): Handle[] {
  p11.C_FindObjectsInit(session, template);
  try {
    return p11.C_FindObjects(session, 2);
  } finally {
    // A find left active would refuse the next one (CKR_OPERATION_ACTIVE) and so count as a lost session.
    quietly(() => p11.C_FindObjectsFinal(session));
  }
}

function findSecretKeys(lib: Pkcs11Js, p11: pkcs11js.PKCS11, session: Handle, label: string, id?: Buffer): Handle[] {
  const template: pkcs11js.Template = [
    { type: lib.CKA_CLASS, value: lib.CKO_SECRET_KEY },
    { type: lib.CKA_LABEL, value: label },
  ];
  if (id !== undefined) template.push({ type: lib.CKA_ID, value: id });
  return findObjects(p11, session, template);
}

/** Initialises the module if needed, finds the token, opens an RW session and logs in. */
function openTokenSession(lib: Pkcs11Js, module: LoadedModule, uri: Pkcs11Uri, pin: string): TokenSession {
  const p11 = module.p11;
  const failed = (step: string, error: unknown): OpenFailure => {
    const reason = reasonOf(lib, error);
    return new OpenFailure(DEVICE_DOWN.has(reason) ? 'STORE_UNAVAILABLE' : 'INVALID_CONFIGURATION', `PKCS#11 ${step} failed (${reason})`, reason);
  };
  try {
    initializeModule(lib, module);
  } catch (error) {
    throw failed(`C_Initialize of module ${uri.modulePath}`, error);
  }
  const generation = module.generation;
  let slots: Handle[];
  try {
    slots = p11.C_GetSlotList(true);
  } catch (error) {
    throw failed(`C_GetSlotList of module ${uri.modulePath}`, error);
  }
  const matches: Handle[] = [];
  let unreadable: string | undefined;
  for (const slot of slots) {
    let info: pkcs11js.TokenInfo;
    try {
      info = p11.C_GetTokenInfo(slot);
    } catch (error) {
      unreadable ??= reasonOf(lib, error);
      continue;
    }
    if ((info.flags & lib.CKF_TOKEN_INITIALIZED) === 0 || trimPadding(info.label) !== uri.token) continue;
    if (uri.manufacturer !== undefined && trimPadding(info.manufacturerID) !== uri.manufacturer) continue;
    if (uri.serial !== undefined && trimPadding(info.serialNumber) !== uri.serial) continue;
    if (uri.model !== undefined && trimPadding(info.model) !== uri.model) continue;
    matches.push(slot);
  }
  const [slot] = matches;
  if (slot === undefined) {
    const why = unreadable === undefined ? '' : ` (a slot did not answer: ${unreadable})`;
    throw new OpenFailure('INVALID_CONFIGURATION', `No PKCS#11 token labelled '${uri.token}' in module ${uri.modulePath}${why}`, unreadable ?? `token '${uri.token}' not found`);
  }
  if (matches.length > 1) {
    throw new OpenFailure('INVALID_CONFIGURATION', `${matches.length} PKCS#11 tokens match token '${uri.token}': add serial= to the URI`, 'ambiguous token');
  }
  let gcmFlags = 0;
  try {
    gcmFlags = p11.C_GetMechanismInfo(slot, lib.CKM_AES_GCM).flags;
  } catch (error) {
    if (DEVICE_DOWN.has(reasonOf(lib, error))) throw failed(`C_GetMechanismInfo on token '${uri.token}'`, error);
  }
  if ((gcmFlags & lib.CKF_ENCRYPT) === 0 || (gcmFlags & lib.CKF_DECRYPT) === 0) {
    throw new OpenFailure('INVALID_CONFIGURATION', `PKCS#11 token '${uri.token}' does not offer AES-GCM encryption and decryption (CKM_AES_GCM)`, 'CKM_AES_GCM missing');
  }
  let session: Handle;
  try {
    session = p11.C_OpenSession(slot, lib.CKF_SERIAL_SESSION | lib.CKF_RW_SESSION);
  } catch (error) {
    throw failed(`C_OpenSession on token '${uri.token}'`, error);
  }
  try {
    p11.C_Login(session, lib.CKU_USER, pin);
  } catch (error) {
    const reason = reasonOf(lib, error);
    // Another session of this process logged in already: login state is per process and token.
    if (reason === 'CKR_USER_ALREADY_LOGGED_IN') return { slot, session, generation };
    quietly(() => p11.C_CloseSession(session));
    const refused = `PKCS#11 login to token '${uri.token}' refused`;
    if (WRONG_PIN.has(reason)) throw new OpenFailure('INVALID_CONFIGURATION', `${refused}: wrong PIN`, reason);
    if (reason === 'CKR_PIN_LOCKED') throw new OpenFailure('INVALID_CONFIGURATION', `${refused}: the PIN is locked`, reason);
    if (reason === 'CKR_PIN_EXPIRED') throw new OpenFailure('INVALID_CONFIGURATION', `${refused}: the PIN has expired`, reason);
    throw failed(`login to token '${uri.token}'`, error);
  }
  return { slot, session, generation };
}

function closeTokenSession(module: LoadedModule, opened: TokenSession): void {
  if (opened.generation !== module.generation || !module.initialized) return;
  // Logging out is per process and token: only the last user of the module may do it.
  if (module.users === 1) quietly(() => module.p11.C_Logout(opened.session));
  quietly(() => module.p11.C_CloseSession(opened.session));
}

function kekIdOf(label: string): string {
  const kekId = `${KEK_PREFIX}${label}`;
  if (!isValidKekId(kekId)) {
    throw new VaultError('INVALID_CONFIGURATION', `A PKCS#11 key label must be 1 to ${64 - KEK_PREFIX.length} of A-Z a-z 0-9 _ . : - (so that pkcs11:<label> is a KEK id)`);
  }
  return kekId;
}

const labelOf = (kekId: string): string | undefined =>
  typeof kekId === 'string' && kekId.startsWith(KEK_PREFIX) && isValidKekId(kekId) ? kekId.slice(KEK_PREFIX.length) : undefined;

/**
 * A logged-in session with the primary key found and checked, and the sessions that carry
 * wraps and unwraps. The login session only finds keys and asks the token, always
 * synchronously, so it never holds an operation across an await.
 */
interface Connection extends TokenSession {
  readonly primary: Handle;
  /** Keys found by label on this connection (object handles hold for every session of the process until C_Finalize). */
  readonly keys: Map<string, Handle>;
  /** Sessions for wraps and unwraps, open and free. */
  readonly idle: Handle[];
  /** Such sessions open on this connection, free or carrying a call. */
  opened: number;
  /** Set once the connection is forgotten: a session of it that still carries a call is closed when the call ends. */
  dropped: boolean;
}

function connect(lib: Pkcs11Js, module: LoadedModule, uri: Pkcs11Uri, pin: string): Connection {
  const opened = openTokenSession(lib, module, uri, pin);
  const p11 = module.p11;
  try {
    let found: Handle[];
    let attributes: pkcs11js.TemplateResult;
    try {
      found = findSecretKeys(lib, p11, opened.session, uri.object, uri.id);
      attributes = found.length === 1 && found[0] !== undefined ? p11.C_GetAttributeValue(opened.session, found[0], [
        { type: lib.CKA_KEY_TYPE },
        { type: lib.CKA_VALUE_LEN },
        { type: lib.CKA_ENCRYPT },
        { type: lib.CKA_DECRYPT },
      ]) : [];
    } catch (error) {
      const reason = reasonOf(lib, error);
      throw new OpenFailure(DEVICE_DOWN.has(reason) ? 'STORE_UNAVAILABLE' : 'INVALID_CONFIGURATION', `PKCS#11 search for key '${uri.object}' on token '${uri.token}' failed (${reason})`, reason);
    }
    const [primary] = found;
    if (primary === undefined) {
      // Never created here: a missing KEK is a configuration error, and a new one could not open what is stored.
      throw new OpenFailure('INVALID_CONFIGURATION', `PKCS#11 token '${uri.token}' has no secret key labelled '${uri.object}'${uri.id === undefined ? '' : ' with that id'} (provision one with generatePkcs11Kek)`, `key '${uri.object}' not found`);
    }
    if (found.length > 1) {
      throw new OpenFailure('INVALID_CONFIGURATION', `PKCS#11 token '${uri.token}' has more than one secret key labelled '${uri.object}'`, `key '${uri.object}' ambiguous`);
    }
    const [keyType, valueLength, encrypt, decrypt] = attributes.map((attribute) => attribute.value);
    const isTrue = (value: Buffer | undefined) => value !== undefined && value.length > 0 && value[0] !== 0;
    if (keyType === undefined || ulong(keyType) !== lib.CKK_AES || valueLength === undefined || ulong(valueLength) !== AES_256_BYTES || !isTrue(encrypt) || !isTrue(decrypt)) {
      throw new OpenFailure('INVALID_CONFIGURATION', `PKCS#11 key '${uri.object}' on token '${uri.token}' is not an AES-256 key allowed to encrypt and decrypt`, `key '${uri.object}' unusable`);
    }
    return { ...opened, primary, keys: new Map([[uri.object, primary]]), idle: [], opened: 0, dropped: false };
  } catch (error) {
    closeTokenSession(module, opened);
    throw error;
  }
}

const toVaultError = (error: unknown): unknown => (error instanceof OpenFailure ? new VaultError(error.code, error.message) : error);

const unavailable = (reason: string): VaultError => new VaultError('STORE_UNAVAILABLE', `The key-encryption key is unavailable (PKCS#11: ${reason})`);

const closedError = (): VaultError => new VaultError('STORE_UNAVAILABLE', 'The PKCS#11 key provider is closed');

/** C_Encrypt or C_Decrypt in pkcs11js's callback form. */
type SinglePart = (session: Handle, input: Buffer, output: Buffer, done: (error: Error | null, data: Buffer) => void) => void;

/**
 * Runs C_Encrypt or C_Decrypt on libuv's thread pool (pkcs11js's callback form: the token
 * call runs on a pool thread and `done` on the event loop). The native work reads `input` and
 * writes `output` through raw pointers without holding either buffer; this callback holds
 * both, and the binding holds the callback until it has run, so neither can be collected
 * while the token uses it.
 */
function offThread(call: SinglePart, session: Handle, input: Buffer, output: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    call(session, input, output, (error, data) => {
      void [input, output]; // Named here, so this closure keeps them reachable.
      if (error) reject(error);
      else resolve(data);
    });
  });
}

/**
 * Opens a key provider on a PKCS#11 token (an HSM, a KMS, SoftHSM), configured by an
 * RFC 7512 URI (see {@link parsePkcs11Uri}). The KEK is the secret key whose CKA_LABEL is
 * the URI's `object`: an AES-256 key that must exist (provision it with
 * {@link generatePkcs11Kek}; nothing is created here). Data keys are wrapped on the token by
 * AES-256-GCM (random 96-bit IV, 128-bit tag, the wrap context as AAD) under that key,
 * `kekId` `pkcs11:<label>`; any secret key of the same token unwraps what it wrapped, so a
 * provider whose primary is `kek-2` still opens `kek-1`'s wraps.
 *
 * Opening throws `INVALID_CONFIGURATION` for a bad URI, a missing PIN, module, token or key,
 * a refused login, or a bad `sessions` (messages never hold the PIN). Later, when the token,
 * the session or a handle is lost, calls reject with `STORE_UNAVAILABLE` (never
 * `DECRYPTION_FAILED`, which is kept for unwraps that do not open while the token is
 * healthy); the provider reconnects by itself (at most once per call, at most every 250 ms)
 * and says on `log` once when the token became unavailable and once when it is back.
 * `hasKek` asks the token (synchronous) and throws `STORE_UNAVAILABLE` when it cannot answer.
 *
 * `wrap` and `unwrap` run their C_Encrypt or C_Decrypt on libuv's thread pool, off the event
 * loop. Their C_EncryptInit or C_DecryptInit, which pkcs11js 2.1 offers only synchronously,
 * runs on the event loop just before, on the same session, with nothing in between: a token
 * that works or goes to the device at Init (SoftHSM decrypts the key object there) still
 * blocks the loop for that part. Up to `sessions` calls (default 4) run at once, each on a
 * session of its own, opened when first needed and reused; more wait their turn. A session
 * whose call failed because the token or the session went is closed, not reused. `close`
 * refuses new and waiting calls, waits for those running, then closes every session. When
 * other code of the process initialised the module before any provider did, its locking is
 * unknown, so the calls stay on the event loop (synchronous, as with one thread).
 *
 * @example
 * ```ts
 * const kek = await openPkcs11KeyProvider(
 *   'pkcs11:token=credvault;object=kek-1?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:CREDVAULT_PKCS11_PIN',
 * );
 * const vault = await createVault({ store: 'sqlite:./data/credvault.db', kek });
 * ```
 */
export async function openPkcs11KeyProvider(uri: string | Pkcs11Uri, options: Pkcs11KeyProviderOptions = {}): Promise<KeyProvider> {
  const parsed = typeof uri === 'string' ? parsePkcs11Uri(uri) : uri;
  const primaryKekId = kekIdOf(parsed.object);
  const sessions = options.sessions ?? DEFAULT_SESSIONS;
  if (!Number.isInteger(sessions) || sessions < 1 || sessions > MAX_SESSIONS) {
    throw new VaultError('INVALID_CONFIGURATION', `sessions of a PKCS#11 key provider must be a whole number from 1 to ${MAX_SESSIONS}`);
  }
  const pin = resolvePkcs11Pin(parsed, options.env);
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const lib = await loadPkcs11js();
  const module = acquireModule(lib, parsed.modulePath);
  const p11 = module.p11;
  let connection: Connection | undefined;
  try {
    connection = connect(lib, module, parsed, pin);
  } catch (error) {
    releaseModule(module);
    throw toVaultError(error);
  }

  /** Set while the token is unavailable; `generation` is the module's when it was lost. */
  let outage: { reason: string; lastAttempt: number; generation: number } | undefined;
  let closed = false;
  let closing: Promise<void> | undefined;

  // --- Turns: at most `limit` calls hold a session at once -----------------------------
  /** Calls admitted: holding a session, or about to take one. */
  let running = 0;
  /** `sessions`, or fewer after the token refused to open more (CKR_SESSION_COUNT) on this connection. */
  let limit = sessions;
  const waiting: Array<{ resolve: () => void; reject: (error: unknown) => void }> = [];
  /** Set by `close` while it waits for the calls running. */
  let drained: (() => void) | undefined;

  const pump = (): void => {
    while (running < limit && waiting.length > 0) {
      running += 1;
      waiting.shift()?.resolve();
    }
  };
  /** Undefined when the call may go on now; otherwise its turn (rejected if the provider closes first). */
  const admit = (): Promise<void> | undefined => {
    if (closed) throw closedError();
    if (running < limit) {
      running += 1;
      return undefined;
    }
    return new Promise((resolve, reject) => waiting.push({ resolve, reject }));
  };
  const leave = (): void => {
    running -= 1;
    pump();
    if (running === 0) drained?.();
  };

  /** Forgets `lost`: closes its free sessions and its login session (those carrying a call close when it ends). */
  const drop = (lost: Connection): void => {
    lost.dropped = true;
    if (connection === lost) connection = undefined;
    const current = lost.generation === module.generation && module.initialized;
    for (const session of lost.idle.splice(0)) {
      lost.opened -= 1;
      if (current) quietly(() => p11.C_CloseSession(session));
    }
    if (current) quietly(() => p11.C_CloseSession(lost.session));
  };

  /**
   * The token, a session or a handle is gone: drops `from` (the connection the call used) and
   * answers STORE_UNAVAILABLE, saying so on `log` once. A call that began on a connection
   * already dropped (others in flight met the loss first) changes nothing.
   */
  const lose = (reason: string, from?: Connection): VaultError => {
    if (from !== undefined) {
      if (from.dropped) return unavailable(reason);
      drop(from);
    }
    if (closed) return unavailable(reason);
    if (outage === undefined) log(`credvault: PKCS#11 token '${parsed.token}' is unavailable (${reason}); key operations fail with STORE_UNAVAILABLE until it is back`);
    outage = { reason, lastAttempt: Date.now(), generation: module.generation };
    return unavailable(reason);
  };

  /** The live connection, reconnecting (once, if the last attempt is old enough) when there is none. */
  const live = (): Connection => {
    if (closed) throw closedError();
    if (connection !== undefined && connection.generation === module.generation && module.initialized) return connection;
    if (connection !== undefined) {
      // Another provider re-initialised the module: every handle of this connection is gone (none is closed: it may be another's now).
      connection.dropped = true;
      connection.idle.length = 0;
      connection = undefined;
    }
    if (outage !== undefined && Date.now() - outage.lastAttempt < RETRY_INTERVAL_MS) throw unavailable(outage.reason);
    // Re-initialise only if nobody did since the loss (after another provider did, a new session is enough),
    // and only while no call of any provider holds a session of the module; otherwise try a new session alone.
    const mustReinitialize = outage !== undefined && outage.generation === module.generation && module.leased === 0;
    try {
      if (mustReinitialize) reinitializeModule(lib, module);
      connection = connect(lib, module, parsed, pin);
    } catch (error) {
      throw lose(error instanceof OpenFailure ? error.reason : reasonOf(lib, error));
    }
    limit = sessions;
    pump();
    if (outage !== undefined) {
      outage = undefined;
      log(`credvault: PKCS#11 token '${parsed.token}' is available again`);
    }
    return connection;
  };

  /**
   * Waits for the call's turn, then gives it a session of the live connection to itself: a
   * free one, or a new one. Until {@link release} nothing else uses that session (so its *Init
   * and its operation follow each other alone), and `module.leased` keeps C_Finalize away.
   */
  const begin = async (): Promise<{ current: Connection; session: Handle }> => {
    for (;;) {
      const turn = admit();
      if (turn !== undefined) await turn;
      let current: Connection;
      try {
        current = live();
      } catch (error) {
        leave();
        throw error;
      }
      let session = current.idle.pop();
      if (session === undefined) {
        try {
          // Read-only is enough to use the key: the login is the process's, for every session of the token.
          session = p11.C_OpenSession(current.slot, lib.CKF_SERIAL_SESSION);
        } catch (error) {
          leave();
          const reason = reasonOf(lib, error);
          // The token opens no more sessions for this process: go on with those this connection has, fewer at once.
          if (reason === 'CKR_SESSION_COUNT' && current.opened > 0) {
            limit = Math.min(limit, current.opened);
            continue;
          }
          throw lose(reason, current);
        }
        current.opened += 1;
      }
      module.leased += 1;
      return { current, session };
    }
  };

  /** Ends a call's hold on `session`: kept for the next call if it and its connection are sound, else closed. */
  const release = (current: Connection, session: Handle, sound: boolean): void => {
    module.leased -= 1;
    if (sound && !closed && !current.dropped) {
      current.idle.push(session);
    } else {
      current.opened -= 1;
      if (current.generation === module.generation && module.initialized) quietly(() => p11.C_CloseSession(session));
    }
    leave();
  };

  /** Undefined when the token answers and still holds `label`; otherwise why not. */
  const unhealthy = (current: Connection, label: string): string | undefined => {
    // Dropped meanwhile by another call: its login session is closed, and its handle may be another session's now.
    if (current.dropped) return outage?.reason ?? 'CKR_SESSION_CLOSED';
    try {
      p11.C_GetSessionInfo(current.session);
      p11.C_GetTokenInfo(current.slot);
      return findSecretKeys(lib, p11, current.session, label).length === 1 ? undefined : `key '${label}' not found`;
    } catch (error) {
      return reasonOf(lib, error);
    }
  };

  /** The handle of the secret key labelled `label`, found once per connection; undefined if the token has none. */
  const keyHandle = (current: Connection, label: string): Handle | undefined => {
    if (current.dropped) throw unavailable(outage?.reason ?? 'CKR_SESSION_CLOSED');
    const cached = current.keys.get(label);
    if (cached !== undefined) return cached;
    let found: Handle[];
    try {
      found = findSecretKeys(lib, p11, current.session, label);
    } catch (error) {
      throw lose(reasonOf(lib, error), current);
    }
    // SoftHSM answers a search on a vanished token with nothing: ask the token before saying "absent".
    if (found.length === 0) {
      try {
        p11.C_GetTokenInfo(current.slot);
      } catch (error) {
        throw lose(reasonOf(lib, error), current);
      }
      return undefined;
    }
    const [handle] = found;
    if (handle === undefined || found.length > 1) return undefined;
    current.keys.set(label, handle);
    return handle;
  };

  const gcm = (iv: Buffer, aad: Buffer): pkcs11js.Mechanism => {
    // The tag length is always given: a token's default could be shorter.
    const parameter: pkcs11js.GcmParams = { type: lib.CK_PARAMS_GCM, iv, ivBits: IV_BYTES * 8, aad, tagBits: TAG_BYTES * 8 };
    return { mechanism: lib.CKM_AES_GCM, parameter };
  };
  /** C_Encrypt on libuv's thread pool, or on the event loop when the module may not be called from several threads. */
  const encrypt = (session: Handle, input: Buffer, output: Buffer): Promise<Buffer> =>
    module.threadSafe ? offThread((...args) => p11.C_Encrypt(...args), session, input, output) : Promise.resolve(p11.C_Encrypt(session, input, output));
  /** C_Decrypt, likewise. */
  const decrypt = (session: Handle, input: Buffer, output: Buffer): Promise<Buffer> =>
    module.threadSafe ? offThread((...args) => p11.C_Decrypt(...args), session, input, output) : Promise.resolve(p11.C_Decrypt(session, input, output));

  return {
    kind: 'pkcs11',
    primaryKekId,
    // Says on `log` itself, naming the token and the reason, when it goes and comes back.
    logsOutages: true,
    hasKek(kekId: string): boolean {
      const label = labelOf(kekId);
      if (label === undefined) return false;
      return keyHandle(live(), label) !== undefined;
    },
    async wrap(dek: Buffer, context: WrapContext): Promise<WrappedKey> {
      if (!Buffer.isBuffer(dek) || dek.length !== DATA_KEY_BYTES) throw new VaultError('INTERNAL', `A data key is ${DATA_KEY_BYTES} bytes`);
      const aad = wrapAdditionalData(primaryKekId, context);
      const iv = randomFillSync(Buffer.allocUnsafe(IV_BYTES));
      const { current, session } = await begin();
      let sound = false;
      try {
        let sealed: Buffer;
        try {
          p11.C_EncryptInit(session, gcm(iv, aad), current.primary);
          // Exactly ciphertext plus tag: a smaller buffer would leave the operation active.
          sealed = await encrypt(session, dek, Buffer.alloc(SEALED_BYTES));
        } catch (error) {
          // Encrypting with a key found and checked at connect fails only when the token or session does.
          throw lose(reasonOf(lib, error), current);
        }
        sound = true;
        if (sealed.length !== SEALED_BYTES) throw new VaultError('INTERNAL', `PKCS#11 AES-GCM gave ${sealed.length} bytes for a data key, not ${SEALED_BYTES}`);
        return { kekId: primaryKekId, wrapped: Buffer.concat([iv, sealed]).toString('base64url') };
      } finally {
        release(current, session, sound);
      }
    },
    async unwrap(wrapped: WrappedKey, context: WrapContext): Promise<Buffer> {
      const label = labelOf(wrapped.kekId);
      const text = wrapped.wrapped;
      if (label === undefined || typeof text !== 'string' || !WRAPPED_TEXT.test(text)) throw unwrapFailed();
      const bytes = Buffer.from(text, 'base64url');
      // The last character may carry stray bits Buffer.from drops: only the canonical text is accepted.
      if (bytes.length !== WRAPPED_BYTES || bytes.toString('base64url') !== text) throw unwrapFailed();
      const aad = wrapAdditionalData(wrapped.kekId, context);
      const { current, session } = await begin();
      let sound = false;
      // SoftHSM wants room for the whole input (it holds the tag back); too small would leave the operation active.
      const out = Buffer.alloc(SEALED_BYTES);
      try {
        const key = keyHandle(current, label);
        if (key === undefined) {
          sound = true;
          throw unwrapFailed();
        }
        let opened: Buffer;
        try {
          p11.C_DecryptInit(session, gcm(bytes.subarray(0, IV_BYTES), aad), key);
          opened = await decrypt(session, bytes.subarray(IV_BYTES), out);
        } catch (error) {
          const reason = reasonOf(lib, error);
          // SoftHSM says CKR_GENERAL_ERROR both for a wrong tag and for a vanished token: ask the token which.
          // (A single-part C_Decrypt that fails ends its operation, so the session stays usable.)
          if (!GONE.has(reason) && unhealthy(current, label) === undefined) {
            sound = true;
            throw unwrapFailed();
          }
          throw lose(reason, current);
        }
        sound = true;
        if (opened.length !== DATA_KEY_BYTES) throw unwrapFailed();
        return Buffer.from(opened);
      } finally {
        out.fill(0);
        release(current, session, sound);
      }
    },
    close(): Promise<void> {
      closing ??= (async () => {
        closed = true;
        for (const waiter of waiting.splice(0)) waiter.reject(closedError());
        if (running > 0) await new Promise<void>((resolve) => (drained = resolve));
        const last = connection;
        connection = undefined;
        if (last !== undefined) {
          last.dropped = true;
          if (last.generation === module.generation && module.initialized) for (const session of last.idle.splice(0)) quietly(() => p11.C_CloseSession(session));
          closeTokenSession(module, last);
        }
        releaseModule(module);
      })();
      return closing;
    },
  };
}

/**
 * Provisions a KEK: generates a persistent AES-256 secret key on the token, CKA_LABEL the
 * URI's `object` (CKA_ID its `id`, else the label's bytes), private, sensitive, never
 * extractable, allowed only to encrypt and decrypt. Refuses (`INVALID_CONFIGURATION`) when
 * an object with that label exists already; returns the KEK id to configure.
 *
 * @example
 * ```ts
 * const { kekId } = await generatePkcs11Kek('pkcs11:token=credvault;object=kek-2?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:CREDVAULT_PKCS11_PIN');
 * // kekId === 'pkcs11:kek-2'
 * ```
 */
export async function generatePkcs11Kek(uri: string | Pkcs11Uri, options: { env?: NodeJS.ProcessEnv } = {}): Promise<{ kekId: string }> {
  const parsed = typeof uri === 'string' ? parsePkcs11Uri(uri) : uri;
  const kekId = kekIdOf(parsed.object);
  const pin = resolvePkcs11Pin(parsed, options.env);
  const lib = await loadPkcs11js();
  const module = acquireModule(lib, parsed.modulePath);
  let opened: TokenSession | undefined;
  try {
    opened = openTokenSession(lib, module, parsed, pin);
    const session = opened.session;
    const p11 = module.p11;
    let existing: Handle[];
    try {
      existing = findObjects(p11, session, [{ type: lib.CKA_LABEL, value: parsed.object }]);
    } catch (error) {
      throw new OpenFailure('STORE_UNAVAILABLE', `PKCS#11 search for '${parsed.object}' on token '${parsed.token}' failed (${reasonOf(lib, error)})`, '');
    }
    if (existing.length > 0) {
      throw new VaultError('INVALID_CONFIGURATION', `PKCS#11 token '${parsed.token}' already has an object labelled '${parsed.object}'`);
    }
    try {
      p11.C_GenerateKey(session, { mechanism: lib.CKM_AES_KEY_GEN }, [
        { type: lib.CKA_CLASS, value: lib.CKO_SECRET_KEY },
        { type: lib.CKA_KEY_TYPE, value: lib.CKK_AES },
        { type: lib.CKA_VALUE_LEN, value: AES_256_BYTES },
        { type: lib.CKA_LABEL, value: parsed.object },
        { type: lib.CKA_ID, value: parsed.id ?? Buffer.from(parsed.object, 'utf8') },
        { type: lib.CKA_TOKEN, value: true },
        { type: lib.CKA_PRIVATE, value: true },
        { type: lib.CKA_SENSITIVE, value: true },
        { type: lib.CKA_EXTRACTABLE, value: false },
        { type: lib.CKA_ENCRYPT, value: true },
        { type: lib.CKA_DECRYPT, value: true },
        // Least privilege: the provider only encrypts and decrypts with it.
        { type: lib.CKA_WRAP, value: false },
        { type: lib.CKA_UNWRAP, value: false },
        { type: lib.CKA_DERIVE, value: false },
      ]);
    } catch (error) {
      const reason = reasonOf(lib, error);
      throw new OpenFailure(DEVICE_DOWN.has(reason) ? 'STORE_UNAVAILABLE' : 'INVALID_CONFIGURATION', `PKCS#11 token '${parsed.token}' could not generate key '${parsed.object}' (${reason})`, reason);
    }
    return { kekId };
  } catch (error) {
    throw toVaultError(error);
  } finally {
    if (opened !== undefined) closeTokenSession(module, opened);
    releaseModule(module);
  }
}

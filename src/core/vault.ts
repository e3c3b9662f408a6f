/**
 * The open vault: a store behind its deadline, a checked keyring, accounts stored before
 * account indexes existed put in their index, the audit sink, and the background sweep of
 * expired records. Opening one from a URL lives above core, in
 * `src/vault.ts`.
 */
import { randomBytes } from 'node:crypto';
import { VaultError, isVaultError } from '../errors.js';
import type { StoreListItem, VaultStore } from './store.js';
import { withDeadline, DEFAULT_STORE_TIMEOUT_MS } from './deadline.js';
import type { EventSink, VaultEvent } from './events.js';
import { CANARY_PREFIX, KEK_CANARY_PREFIX, KEYRING_FOUNDER, META_GROUP, canaryKeyIdOf, canaryMember, kekCanaryMember, kekIdOfCanary } from './layout.js';
import { DEFAULT_MAX_VALUE_BYTES } from './validation.js';
import { indexExistingAccounts } from './account-index.js';
import type { Keyring } from '../crypto/keyring.js';
import { assertKeyringOpens, sealCredential } from '../crypto/cipher.js';
import { chainKeyProviders, localKeyProvider, type KeyProvider, type WrapContext } from '../crypto/key-provider.js';
import { DataKeyCache, type DataKeyCacheOptions } from './data-keys.js';

/** Default lifetime of issued session tokens: 24 hours. */
export const DEFAULT_SESSION_TOKEN_TTL_SECONDS = 24 * 60 * 60;

/**
 * How an open vault behaves. The store and the keyring are given to {@link openVault}
 * already open and parsed; `createVault` (in `credvault`) builds them from a URL and key
 * options.
 */
export interface VaultSettings {
  /** Lifetime of issued session tokens. Default 24 h. */
  sessionTokenTtlSeconds?: number;
  /** Deadline for each store call; past it the caller gets `STORE_UNAVAILABLE`. Default 2000. */
  storeTimeoutMs?: number;
  /** Largest credential value accepted, in UTF-8 bytes. Default 64 KiB. */
  maxValueBytes?: number;
  /** Receives audit events. Its failures are ignored unless `failClosedEvents` is set. */
  onEvent?: EventSink;
  /**
   * Fail closed: when the `onEvent` sink throws, the operation does not happen (a write
   * already made is taken back) and the caller gets `STORE_UNAVAILABLE` (HTTP 503).
   */
  failClosedEvents?: boolean;
  /** Where notices (such as how many existing accounts were indexed) go. Default: stderr. */
  log?: (line: string) => void;
  /**
   * Where the key-encryption keys live, which wrap each account's data key. Default: the
   * keyring itself (`localKeyProvider(keyring)`). Given one, new data keys are wrapped by it
   * and the keyring still unwraps those it wrapped earlier (see `chainKeyProviders`), until
   * `keys rotate` has moved them. The vault owns it: `close()` closes it.
   */
  keyProvider?: KeyProvider;
  /** Bounds of the in-process cache of unwrapped data keys (count and TTL). */
  dataKeyCache?: DataKeyCacheOptions;
}

/** An open vault. Pass it to the operations (`upsertDefaultAppCredential`, ...). */
export interface Vault {
  readonly store: VaultStore;
  /** Opens values sealed before data keys existed (`cv1`), and the store's canaries. */
  readonly keyring: Keyring;
  /** Wraps and unwraps the accounts' data keys. */
  readonly keyProvider: KeyProvider;
  /** Unwrapped data keys, bounded. */
  readonly dataKeys: DataKeyCache;
  /** Where the vault's notices go (the `log` setting; stderr by default). */
  readonly log: (line: string) => void;
  readonly sessionTokenTtlSeconds: number;
  readonly maxValueBytes: number;
  /** True when a failing audit sink must stop the operation. */
  readonly failClosedEvents: boolean;
  /**
   * Delivers an audit event after a write. If the sink fails and events fail closed,
   * `undo` takes the write back and the call throws `STORE_UNAVAILABLE`.
   */
  emit(event: Omit<VaultEvent, 'time'>, undo?: () => Promise<unknown>): Promise<void>;
  /**
   * Deletes a bounded number of expired records (failed-auth counters, session tokens) in
   * the background, at most once per sweep interval per process; called after writes that
   * leave expiring records behind, so failure traffic cannot grow the store.
   */
  sweepExpired(): void;
  /** Closes the store. */
  close(): Promise<void>;
}

/** The context canaries are sealed under (see `checkKeyring`). */
export const CANARY_CONTEXT = { org: '', environment: '', accountId: '', name: 'credvault:keyring-canary' };

/**
 * Opens a vault over a store that is already connected: wraps every store call in its
 * deadline and checks that the keyring opens what the store already holds. On a refused
 * keyring the store is closed and the call throws `KEYRING_MISMATCH`. The first open of a
 * store written by a release without account indexes walks it once to index its accounts
 * (and says how many on `log`); every later open costs one read for that. Accounts that
 * processes still on that release create afterwards need `reindexLinkedAccounts`.
 *
 * @example
 * ```ts
 * import { createMemoryStore } from 'credvault/adapters/memory';
 * const vault = await openVault(createMemoryStore(), parseKeyring(process.env.CREDVAULT_KEYS ?? ''));
 * ```
 */
export async function openVault(rawStore: VaultStore, keyring: Keyring, options: VaultSettings = {}): Promise<Vault> {
  let dataKeys: DataKeyCache;
  try {
    checkSettings(options);
    dataKeys = new DataKeyCache(options.dataKeyCache);
  } catch (error) {
    await rawStore.close().catch(() => undefined);
    throw error;
  }
  const store = withDeadline(rawStore, options.storeTimeoutMs ?? DEFAULT_STORE_TIMEOUT_MS);
  // The keyring keeps unwrapping what it wrapped, so a store moves to another provider by
  // `keys rotate` alone.
  const local = localKeyProvider(keyring);
  const keyProvider = options.keyProvider === undefined ? local : chainKeyProviders(options.keyProvider, local);
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  try {
    await checkKeyring(store, keyring);
    await checkKeyProvider(store, keyProvider);
    const indexed = await indexExistingAccounts(store);
    if (indexed > 0) {
      log(`credvault: indexed ${indexed} existing linked account${indexed === 1 ? '' : 's'} for listing`);
    }
  } catch (error) {
    await rawStore.close().catch(() => undefined);
    await keyProvider.close?.().catch(() => undefined);
    throw error;
  }
  const sink = options.onEvent;
  const failClosed = options.failClosedEvents === true;
  let lastSweep = 0;
  let sweeping = false;
  return {
    store,
    keyring,
    keyProvider,
    dataKeys,
    log,
    sessionTokenTtlSeconds: options.sessionTokenTtlSeconds ?? DEFAULT_SESSION_TOKEN_TTL_SECONDS,
    maxValueBytes: options.maxValueBytes ?? DEFAULT_MAX_VALUE_BYTES,
    failClosedEvents: failClosed,
    async emit(event, undo) {
      if (!sink) return;
      try {
        await sink({ ...event, time: new Date().toISOString() });
      } catch (error) {
        if (!failClosed) return;
        if (undo !== undefined) await undo().catch(() => undefined);
        throw new VaultError('STORE_UNAVAILABLE', 'The audit sink is unavailable', { cause: error });
      }
    },
    sweepExpired() {
      const now = Date.now();
      if (sweeping || now - lastSweep < SWEEP_INTERVAL_MS) return;
      lastSweep = now;
      sweeping = true;
      void (async () => {
        // Bounded per sweep; a backlog is worked off over the following sweeps.
        for (let round = 0; round < SWEEP_ROUNDS; round++) {
          if ((await store.purgeExpired(SWEEP_BATCH)) < SWEEP_BATCH) break;
        }
      })()
        .catch(() => undefined)
        .finally(() => (sweeping = false));
    },
    async close() {
      dataKeys.clear();
      try {
        await rawStore.close();
      } finally {
        // The vault owns its provider: closing the vault releases its sessions.
        await keyProvider.close?.();
      }
    },
  };
}

/** Largest delay a Node timer takes (2^31 - 1 ms); beyond it Node fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Numeric settings must be whole and in range: `Infinity` or `0` would not mean "no limit". */
function checkSettings(options: VaultSettings): void {
  const whole = (name: keyof VaultSettings, value: number | undefined, max: number): void => {
    if (value === undefined) return;
    if (!Number.isSafeInteger(value) || value < 1 || value > max) {
      throw new VaultError('INVALID_CONFIGURATION', `${name} must be a whole number from 1 to ${max}`);
    }
  };
  whole('storeTimeoutMs', options.storeTimeoutMs, MAX_TIMER_MS);
  // A token's lifetime in ms is a store TTL; a century is far past any sensible session.
  whole('sessionTokenTtlSeconds', options.sessionTokenTtlSeconds, 100 * 365 * 86_400);
  // A value travels in one request body and one record.
  whole('maxValueBytes', options.maxValueBytes, 2 ** 30);
}

/** At most one sweep of expired records per this interval, per process. */
const SWEEP_INTERVAL_MS = 10_000;
const SWEEP_BATCH = 500;
const SWEEP_ROUNDS = 10;

/**
 * Each key that ever sealed into this store left a canary sealed under it. A keyring that
 * lacks one of those keys, or holds different material under its id, cannot open what is
 * stored: refuse to start rather than write under the wrong keys.
 *
 * A fresh store is claimed in one atomic step: a founder record and the first canary are
 * inserted together, so when servers with different keys start at once exactly one claims
 * the store and every other re-reads the canaries and refuses. Nothing is ever taken back,
 * so a server that started on a canary can rely on it staying.
 */
async function checkKeyring(store: VaultStore, keyring: Keyring): Promise<void> {
  const primary = keyring.primary.id;
  const hasPrimary = (items: readonly StoreListItem[]) =>
    items.some((c) => canaryKeyIdOf(c.member) === primary);
  const canaries = await store.list(META_GROUP, CANARY_PREFIX);
  verifyCanaries(canaries, keyring);
  if (hasPrimary(canaries)) return;
  const sealed = sealCredential(keyring, randomBytes(16).toString('base64url'), CANARY_CONTEXT);
  if (canaries.length === 0) {
    const claim = await store.batch(META_GROUP, [
      { op: 'insert', member: KEYRING_FOUNDER, value: primary },
      { op: 'insert', member: canaryMember(primary), value: sealed },
    ]);
    if (claim.committed) return;
  } else {
    await store.insert(META_GROUP, canaryMember(primary), sealed);
  }
  // Another server wrote first, or meanwhile: whatever is there now must open with our keys.
  const now = await store.list(META_GROUP, CANARY_PREFIX);
  verifyCanaries(now, keyring);
  if (!hasPrimary(now)) await store.insert(META_GROUP, canaryMember(primary), sealed);
}

/** What the KEK canaries' wraps are bound to: no account's. */
export const KEK_CANARY_CONTEXT: WrapContext = { org: 'credvault', environment: 'meta', accountId: 'kek-canary', dekId: '0000000000000000' };

/**
 * The key provider's counterpart of {@link checkKeyring}: each KEK that ever wrapped a data
 * key here left a canary (a random key it wrapped); a provider that lacks one of those KEKs,
 * or whose KEK of that id unwraps none of it, would leave accounts unreadable, so the vault
 * refuses to start. A provider that cannot be reached at all refuses the start as well
 * (`STORE_UNAVAILABLE`): nothing falls back.
 */
async function checkKeyProvider(store: VaultStore, provider: KeyProvider): Promise<void> {
  const canaries = await store.list(META_GROUP, KEK_CANARY_PREFIX);
  const missing: string[] = [];
  const wrong: string[] = [];
  for (const { member, entry } of canaries) {
    const kekId = kekIdOfCanary(member);
    if (!provider.hasKek(kekId)) {
      missing.push(kekId);
      continue;
    }
    try {
      await provider.unwrap({ kekId, wrapped: entry.value }, KEK_CANARY_CONTEXT);
    } catch (error) {
      if (!isVaultError(error) || error.code !== 'DECRYPTION_FAILED') throw error;
      wrong.push(kekId);
    }
  }
  if (missing.length > 0 || wrong.length > 0) {
    const problems = [
      ...(missing.length > 0 ? [`KEK id(s) the ${provider.kind} key provider does not have: ${missing.join(', ')}`] : []),
      ...(wrong.length > 0 ? [`KEK id(s) present but unable to unwrap stored keys: ${wrong.join(', ')}`] : []),
    ];
    throw new VaultError('KEYRING_MISMATCH', `The key provider cannot open what is stored: ${problems.join('; ')}`, {
      details: { missingKekIds: missing, wrongKekIds: wrong },
    });
  }
  if (canaries.some(({ member }) => kekIdOfCanary(member) === provider.primaryKekId)) return;
  const wrapped = await provider.wrap(randomBytes(32), KEK_CANARY_CONTEXT);
  await store.insert(META_GROUP, kekCanaryMember(wrapped.kekId), wrapped.wrapped);
}

function verifyCanaries(canaries: readonly StoreListItem[], keyring: Keyring): void {
  assertKeyringOpens(keyring, canaries.map(({ entry }) => ({ sealed: entry.value, context: CANARY_CONTEXT })));
}

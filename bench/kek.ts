/**
 * The KEK measurement: what keeping the key-encryption key in an HSM costs, with and without
 * the data key cache. In process (no HTTP), on the memory store and on SQLite (a temp file),
 * for each key provider: the local keyring (the default) and PKCS#11 on a SoftHSM2 token this
 * step provisions itself (its own SOFTHSM2_CONF and token directory under the run's temp
 * directory, the KEK made by `generatePkcs11Kek`, the PIN passed as `pin-source=env:...`).
 *
 * Each store and provider gets two vaults, seeded alike with `accounts` accounts of one
 * credential each: one with the default data key cache, one with it off
 * (`dataKeyCache: { maxEntries: 0 }`, so every call asks the provider). Each round measures
 * these figures one after the other, each on both providers back to back (which goes first
 * alternates), so a change in the machine's other load falls between figures, not sides:
 * - PUTs/s (`upsertDefaultAppCredential`, cycling over the accounts, a value never sent
 *   before each time) and reads/s (`getDefaultAppCredential`, every value checked), one
 *   caller and `concurrency` callers, on both vaults;
 * - the cold first read of each account (the cache emptied first, so each read unwraps its
 *   account's data key), µs per account, one caller and `concurrency` callers;
 * - `createLinkedAccount` with one credential (a new data key, wrapped), µs per account;
 * - the provider's own `unwrap` and `wrap` of a data key, µs per call (5,000 calls each), with
 *   no vault around them.
 *
 * Without SoftHSM2 (or pkcs11js) the step says so and measures the local keyring alone.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createLinkedAccount, createVault, getDefaultAppCredential, upsertDefaultAppCredential } from '../src/index.js';
import { generatePkcs11Kek } from '../src/crypto/pkcs11.js';
import type { Vault } from '../src/core/vault.js';
import type { AccountRef } from '../src/core/layout.js';
import type { KeyProvider, WrapContext, WrappedKey } from '../src/crypto/key-provider.js';
import { opsPerSecond } from './reads.js';

/** The key providers compared; `local` is the baseline of every ratio. */
export const KEK_PROVIDERS = ['local', 'pkcs11'] as const;
export type KekProvider = (typeof KEK_PROVIDERS)[number];

/** One provider's figures on one store, one entry per round. */
export interface KekFigures {
  /** PUTs/s with the default data key cache, one caller. */
  putCached: number[];
  /** PUTs/s with the default cache, `concurrency` callers. */
  putCachedConcurrent: number[];
  /** PUTs/s with the cache off, one caller. */
  putUncached: number[];
  /** PUTs/s with the cache off, `concurrency` callers. */
  putUncachedConcurrent: number[];
  /** Reads/s with the default cache, one caller. */
  readCached: number[];
  readCachedConcurrent: number[];
  /** Reads/s with the cache off, one caller. */
  readUncached: number[];
  readUncachedConcurrent: number[];
  /** µs per account: the first read of every account after the cache was emptied, one caller. */
  coldMicros: number[];
  /** The same with `concurrency` callers: wall time over accounts. */
  coldMicrosConcurrent: number[];
  /** µs per account created with one credential (a new data key wrapped), one caller. */
  createMicros: number[];
  /** µs per call of the provider's own `unwrap`, no vault around it, one caller. */
  unwrapMicros: number[];
  /** µs per call of the provider's own `wrap`, one caller. */
  wrapMicros: number[];
}

/** All rounds of one store. */
export interface KekRow {
  store: string;
  local: KekFigures;
  /** Absent when PKCS#11 was skipped. */
  pkcs11?: KekFigures | undefined;
}

export interface KekResult {
  /** Accounts seeded per vault, one credential each, cycled over by the PUTs and reads. */
  accounts: number;
  /** Accounts created per provider and round for `createMicros`. */
  created: number;
  /** Callers at once in the concurrent figures. */
  concurrency: number;
  rounds: number;
  /** Seconds per throughput figure (per provider, cache setting, operation, callers and round). */
  duration: number;
  /** The PKCS#11 token measured, e.g. `SoftHSM2 2.6.1`. */
  token?: string | undefined;
  /** Why the PKCS#11 figures are missing, when they are. */
  pkcs11Skipped?: string | undefined;
  rows: KekRow[];
}

export interface KekSettings {
  /** Any of `memory`, `sqlite`. */
  stores: readonly string[];
  rounds: number;
  /** Seconds per throughput figure. */
  duration: number;
  accounts: number;
  concurrency: number;
  /** The vault's keyring, `id:base64` (the local provider's KEK; the canaries' key with PKCS#11). */
  keys: string;
  /** A directory for the SQLite files and the SoftHSM2 token. */
  dir: string;
  /** The SoftHSM2 PKCS#11 module. */
  softhsmModule: string;
  log: (line: string) => void;
}

/** The stores this step knows: in process, so the provider's cost is not hidden behind a network store. */
export const KEK_STORES = ['memory', 'sqlite'] as const;
/** Seconds of untimed PUTs and reads per vault first, at `concurrency` callers: the JIT and the caches warm up. */
const WARM_UP_SECONDS = 0.5;
const KEY = 'api_key';
/** Calls per probe of the provider alone (`wrap`, `unwrap`). */
const PROBE_CALLS = 5000;
const PIN_VARIABLE = 'CREDVAULT_BENCH_PKCS11_PIN';
const TOKEN_LABEL = 'credvault-bench';
const KEK_LABEL = 'bench-kek';

const secondsSince = (started: bigint) => Number(process.hrtime.bigint() - started) / 1e9;

/** A throwaway SoftHSM2 token and its KEK, or why there is none. */
type Token = { uri: string; version: string; cleanup(): void } | { skipped: string };

/**
 * Initialises a SoftHSM2 token in `dir` with its own softhsm2.conf (SoftHSM reads
 * SOFTHSM2_CONF at C_Initialize, so the variable is set for this process until cleanup),
 * generates the KEK on it, and puts the PIN in an environment variable the URI names.
 */
async function provisionToken(dir: string, modulePath: string): Promise<Token> {
  let version: string;
  try {
    version = execFileSync('softhsm2-util', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return { skipped: 'softhsm2-util is not on PATH' };
  }
  if (!existsSync(modulePath)) return { skipped: `${modulePath} does not exist` };
  const tokenDir = path.join(dir, 'softhsm', 'tokens');
  mkdirSync(tokenDir, { recursive: true });
  const conf = path.join(dir, 'softhsm', 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${tokenDir}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
  const pin = randomBytes(8).toString('hex');
  try {
    execFileSync('softhsm2-util', ['--init-token', '--free', '--label', TOKEN_LABEL, '--so-pin', randomBytes(8).toString('hex'), '--pin', pin], {
      env: { ...process.env, SOFTHSM2_CONF: conf },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (error) {
    // The command line holds the PINs: only softhsm2-util's own words are quoted.
    return { skipped: `softhsm2-util --init-token failed: ${String((error as { stderr?: unknown }).stderr ?? '').trim()}` };
  }
  const previousConf = process.env['SOFTHSM2_CONF'];
  process.env['SOFTHSM2_CONF'] = conf;
  process.env[PIN_VARIABLE] = pin;
  const cleanup = () => {
    delete process.env[PIN_VARIABLE];
    if (previousConf === undefined) delete process.env['SOFTHSM2_CONF'];
    else process.env['SOFTHSM2_CONF'] = previousConf;
  };
  const uri = `pkcs11:token=${TOKEN_LABEL};object=${KEK_LABEL}?module-path=${modulePath}&pin-source=env:${PIN_VARIABLE}`;
  try {
    await generatePkcs11Kek(uri);
  } catch (error) {
    cleanup();
    return { skipped: `the KEK could not be generated: ${error instanceof Error ? error.message : String(error)}` };
  }
  return { uri, version: `SoftHSM2 ${version}`, cleanup };
}

const emptyFigures = (): KekFigures => ({
  putCached: [],
  putCachedConcurrent: [],
  putUncached: [],
  putUncachedConcurrent: [],
  readCached: [],
  readCachedConcurrent: [],
  readUncached: [],
  readUncachedConcurrent: [],
  coldMicros: [],
  coldMicrosConcurrent: [],
  createMicros: [],
  unwrapMicros: [],
  wrapMicros: [],
});

/** One vault under test, the accounts it holds and the value each must read back. */
interface Subject {
  vault: Vault;
  refs: readonly AccountRef[];
  expected: string[];
}

let counter = 0;
/** A value never sent before: a store may skip a write that changes nothing. */
const freshValue = () => `sk_live_${'x'.repeat(40)}_${counter++}`;

async function openSubject(store: string, provider: KekProvider, cached: boolean, settings: KekSettings, kek: string | undefined): Promise<Subject> {
  const url = store === 'memory' ? 'memory:' : `sqlite:${path.join(settings.dir, `kek-${provider}-${cached ? 'cached' : 'uncached'}.db`)}`;
  const vault = await createVault({
    store: url,
    keys: settings.keys,
    ...(kek === undefined ? {} : { kek }),
    ...(cached ? {} : { dataKeyCache: { maxEntries: 0 } }),
  });
  const refs = Array.from({ length: settings.accounts }, (_, a): AccountRef => ({ org: 'bench', environment: 'test', accountId: `kek-${a}` }));
  const expected = refs.map(() => freshValue());
  // 100 at a time: on SQLite each is a durable commit, and seeding is not measured.
  for (let start = 0; start < refs.length; start += 100) {
    await Promise.all(refs.slice(start, start + 100).map((ref, i) => createLinkedAccount(vault, ref, { credentials: { [KEY]: expected[start + i] as string } })));
  }
  return { vault, refs, expected };
}


const putOf = (subject: Subject) => async (i: number) => {
  const value = freshValue();
  await upsertDefaultAppCredential(subject.vault, subject.refs[i] as AccountRef, KEY, value);
  subject.expected[i] = value;
};

/** A read of account `i`, checked: a side that reads wrongly fails the run instead of looking fast. */
const readOf = (subject: Subject) => async (i: number) => {
  const value = await getDefaultAppCredential(subject.vault, subject.refs[i] as AccountRef, KEY);
  // The value is a secret of the benchmark's own making, but stays out of the message anyway.
  if (value !== subject.expected[i]) throw new Error(`read of ${subject.refs[i]?.accountId} returned the wrong value`);
};

/** µs per account of reading every account once with an empty cache, `callers` at once. */
async function coldMicros(subject: Subject, callers: number): Promise<number> {
  subject.vault.dataKeys.clear();
  const read = readOf(subject);
  let next = 0;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: callers }, async () => {
      while (next < subject.refs.length) await read(next++);
    }),
  );
  return (secondsSince(started) * 1e6) / subject.refs.length;
}

/** µs per account created with one credential, one at a time. */
async function createMicros(subject: Subject, count: number, tag: string): Promise<number> {
  const started = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    await createLinkedAccount(subject.vault, { org: 'bench', environment: 'test', accountId: `kek-new-${tag}-${i}` }, { credentials: { [KEY]: freshValue() } });
  }
  return (secondsSince(started) * 1e6) / count;
}

/** What the probes of the provider alone wrap for: no account of the vault's. */
const probeContext = (i: number): WrapContext => ({ org: 'bench', environment: 'test', accountId: `kek-probe-${i}`, dekId: i.toString(16).padStart(16, '0') });

/** µs per call of `provider.wrap` (or, with `unwrap`, of unwrapping what it wrapped), `count` calls one at a time. */
async function providerMicros(provider: KeyProvider, count: number, unwrap: boolean): Promise<number> {
  const keys = Array.from({ length: count }, () => randomBytes(32));
  const wrapped: WrappedKey[] = [];
  let started = process.hrtime.bigint();
  for (let i = 0; i < count; i++) wrapped.push(await provider.wrap(keys[i] as Buffer, probeContext(i)));
  if (!unwrap) return (secondsSince(started) * 1e6) / count;
  started = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    const key = await provider.unwrap(wrapped[i] as WrappedKey, probeContext(i));
    if (!key.equals(keys[i] as Buffer)) throw new Error('a probe data key unwrapped to other bytes');
  }
  return (secondsSince(started) * 1e6) / count;
}

/** The vaults of one provider on one store: the default cache and the cache off. */
interface Pair {
  cached: Subject;
  uncached: Subject;
}

/** One figure of a round: which field it goes in, and how it is measured on a provider's vaults. */
type Figure = [keyof KekFigures, (pair: Pair, tag: string) => Promise<number>];

function figuresOf(settings: KekSettings, created: number): Figure[] {
  const { accounts, concurrency, duration } = settings;
  return [
    ['coldMicros', (pair) => coldMicros(pair.cached, 1)],
    ['coldMicrosConcurrent', (pair) => coldMicros(pair.cached, concurrency)],
    ['putCached', (pair) => opsPerSecond(putOf(pair.cached), accounts, 1, duration)],
    ['putUncached', (pair) => opsPerSecond(putOf(pair.uncached), accounts, 1, duration)],
    ['readCached', (pair) => opsPerSecond(readOf(pair.cached), accounts, 1, duration)],
    ['readUncached', (pair) => opsPerSecond(readOf(pair.uncached), accounts, 1, duration)],
    ['putCachedConcurrent', (pair) => opsPerSecond(putOf(pair.cached), accounts, concurrency, duration)],
    ['putUncachedConcurrent', (pair) => opsPerSecond(putOf(pair.uncached), accounts, concurrency, duration)],
    ['readCachedConcurrent', (pair) => opsPerSecond(readOf(pair.cached), accounts, concurrency, duration)],
    ['readUncachedConcurrent', (pair) => opsPerSecond(readOf(pair.uncached), accounts, concurrency, duration)],
    // On the vault without a cache, so the cached vault's cache holds only the measured accounts.
    ['createMicros', (pair, tag) => createMicros(pair.uncached, created, tag)],
    ['unwrapMicros', (pair) => providerMicros(pair.cached.vault.keyProvider, PROBE_CALLS, true)],
    ['wrapMicros', (pair) => providerMicros(pair.cached.vault.keyProvider, PROBE_CALLS, false)],
  ];
}

const last = (values: readonly number[]) => values.at(-1) as number;

/**
 * One row per store (memory, SQLite): both providers' vaults seeded and warmed first, then
 * the rounds, each figure measured on the providers back to back, alternating which goes first.
 */
export async function measureKek(settings: KekSettings): Promise<KekResult> {
  const created = Math.max(10, Math.round(settings.accounts / 5));
  const result: KekResult = { accounts: settings.accounts, created, concurrency: settings.concurrency, rounds: settings.rounds, duration: settings.duration, rows: [] };
  const token = await provisionToken(settings.dir, settings.softhsmModule);
  if ('skipped' in token) {
    settings.log(`kek: PKCS#11 skipped (${token.skipped}); measuring the local keyring alone`);
    result.pkcs11Skipped = token.skipped;
  } else {
    result.token = token.version;
    settings.log(`kek: PKCS#11 on a ${token.version} token in ${path.join(settings.dir, 'softhsm')}`);
  }
  const providers: KekProvider[] = 'skipped' in token ? ['local'] : [...KEK_PROVIDERS];
  try {
    for (const store of settings.stores) {
      settings.log(`kek: seeding ${settings.accounts} accounts into 2 ${store} vaults per provider (${providers.join(', ')})`);
      const pairs: Partial<Record<KekProvider, Pair>> = {};
      const row: KekRow = { store, local: emptyFigures(), ...(providers.includes('pkcs11') ? { pkcs11: emptyFigures() } : {}) };
      try {
        for (const provider of providers) {
          const kek = provider === 'pkcs11' && !('skipped' in token) ? token.uri : undefined;
          const cached = await openSubject(store, provider, true, settings, kek);
          // Held at once, so the `finally` closes it even if the second vault fails to open.
          pairs[provider] = { cached, uncached: cached };
          pairs[provider] = { cached, uncached: await openSubject(store, provider, false, settings, kek) };
        }
        for (const provider of providers) {
          const pair = pairs[provider] as Pair;
          for (const subject of [pair.cached, pair.uncached]) {
            await opsPerSecond(putOf(subject), settings.accounts, settings.concurrency, WARM_UP_SECONDS);
            await opsPerSecond(readOf(subject), settings.accounts, settings.concurrency, WARM_UP_SECONDS);
          }
        }
        const figures = figuresOf(settings, created);
        for (let round = 0; round < settings.rounds; round++) {
          // Figure by figure, the providers back to back (the first one alternating), so both
          // see the same moment of the machine: other load drifts between figures, not between sides.
          for (const [index, [field, measure]] of figures.entries()) {
            const order = (round + index) % 2 === 0 ? providers : [...providers].reverse();
            for (const provider of order) (row[provider] as KekFigures)[field].push(await measure(pairs[provider] as Pair, `${provider}-${round}`));
          }
          for (const provider of providers) {
            const f = row[provider] as KekFigures;
            settings.log(
              `kek: ${store.padEnd(6)} ${provider.padEnd(6)} round ${round + 1}: PUT/s cached ${Math.round(last(f.putCached))} / ${Math.round(last(f.putCachedConcurrent))}, ` +
                `uncached ${Math.round(last(f.putUncached))} / ${Math.round(last(f.putUncachedConcurrent))}; ` +
                `reads/s cached ${Math.round(last(f.readCached))} / ${Math.round(last(f.readCachedConcurrent))}, ` +
                `uncached ${Math.round(last(f.readUncached))} / ${Math.round(last(f.readUncachedConcurrent))} (1 / ${settings.concurrency} callers); ` +
                `cold ${last(f.coldMicros).toFixed(1)} / ${last(f.coldMicrosConcurrent).toFixed(1)} µs per account; create ${last(f.createMicros).toFixed(1)} µs; ` +
                `provider alone: unwrap ${last(f.unwrapMicros).toFixed(1)} µs, wrap ${last(f.wrapMicros).toFixed(1)} µs`,
            );
          }
        }
      } finally {
        for (const pair of Object.values(pairs)) {
          await pair.cached.vault.close();
          if (pair.uncached !== pair.cached) await pair.uncached.vault.close();
        }
      }
      result.rows.push(row);
    }
  } finally {
    if (!('skipped' in token)) token.cleanup();
  }
  return result;
}

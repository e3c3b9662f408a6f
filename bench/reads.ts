/**
 * The read measurement: credentials read per second in process, the call an embedding server
 * makes before each request it sends to a customer's app. For each store, `getDefaultAppCredential`
 * against the naive read of the same sealed value: on `memory`, a `Map.get` plus an
 * AES-256-GCM open; on SQLite, Redis and PostgreSQL, a Keyv `get` on the same backend plus
 * the open. Both sides read the same seeded accounts x keys in the same order, one caller at a
 * time and then `concurrency` callers at once, alternating sides over the rounds.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import path from 'node:path';
import Keyv from 'keyv';
import { KeyvSqlite } from '@keyv/sqlite';
import KeyvPostgres from '@keyv/postgres';
import { createKeyv as createRedisKeyv } from '@keyv/redis';
import { createVault, getDefaultAppCredential, upsertDefaultAppCredential, upsertLinkedAccount } from '../src/index.js';
import type { Vault } from '../src/core/vault.js';
import type { AccountRef } from '../src/core/layout.js';

/** The two sides of the read comparison. */
export const READ_SIDES = ['credvault', 'naive'] as const;
export type ReadSide = (typeof READ_SIDES)[number];

/** Reads/s of each side, one figure per round. */
export type ReadFigures = Record<ReadSide, number[]>;

/** All rounds of one store. */
export interface ReadRow {
  store: string;
  /** Credentials seeded and read: accounts x keys per account. */
  credentials: number;
  /** Callers awaiting reads at once in the concurrent figures. */
  concurrency: number;
  sequential: ReadFigures;
  concurrent: ReadFigures;
}

export interface ReadSettings {
  /** Any of `memory`, `sqlite`, `redis`, `postgres`. */
  stores: readonly string[];
  rounds: number;
  /** Seconds of reading per side, mode and round. */
  duration: number;
  concurrency: number;
  /** The vault's keyring, `id:base64`. */
  keys: string;
  redisUrl: string;
  postgresUrl: string;
  /** A directory for the SQLite files. */
  dir: string;
  log: (line: string) => void;
}

const ACCOUNTS = 100;
const KEYS_PER_ACCOUNT = 10;
/** Seconds of untimed reads per side first, as many callers as the concurrent figure: the JIT, connections and caches warm up. */
const WARM_UP_SECONDS = 1;
const NAMESPACE = 'bench-reads';

/** One credential as both sides address it, and the value it must read back. */
interface Target {
  ref: AccountRef;
  key: string;
  naiveKey: string;
  value: string;
}

function targets(): Target[] {
  const list: Target[] = [];
  // Key-major order, so consecutive reads hit different accounts, as real traffic does.
  for (let k = 0; k < KEYS_PER_ACCOUNT; k++) {
    for (let a = 0; a < ACCOUNTS; a++) {
      const accountId = `reads-${a}`;
      const key = `key_${k}`;
      list.push({ ref: { org: 'bench', environment: 'test', accountId }, key, naiveKey: `${accountId}:${key}`, value: `sk_live_${'x'.repeat(40)}_${a}_${k}` });
    }
  }
  return list;
}

/** The naive side's cipher: AES-256-GCM with a random nonce, `nonce.ciphertext.tag` in base64url. */
function naiveCipher() {
  const key = randomBytes(32);
  return {
    seal(value: string): string {
      const nonce = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, nonce);
      const ct = Buffer.concat([cipher.update(value, 'utf8'), cipher.final()]);
      return `${nonce.toString('base64url')}.${ct.toString('base64url')}.${cipher.getAuthTag().toString('base64url')}`;
    },
    open(sealed: string): string {
      const [nonce, ct, tag] = sealed.split('.') as [string, string, string];
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(nonce, 'base64url'));
      decipher.setAuthTag(Buffer.from(tag, 'base64url'));
      return Buffer.concat([decipher.update(Buffer.from(ct, 'base64url')), decipher.final()]).toString('utf8');
    },
  };
}

/** A read of target `t`: the value it returned. */
type Reader = (t: Target) => Promise<string | undefined>;

interface Side {
  read: Reader;
  close(): Promise<void>;
}

function vaultUrl(store: string, settings: ReadSettings): string {
  if (store === 'memory') return 'memory:';
  if (store === 'sqlite') return `sqlite:${path.join(settings.dir, 'reads.db')}`;
  return store === 'redis' ? settings.redisUrl : settings.postgresUrl;
}

async function credvaultSide(store: string, list: readonly Target[], settings: ReadSettings): Promise<Side> {
  const vault: Vault = await createVault({ store: vaultUrl(store, settings), namespace: NAMESPACE, keys: settings.keys });
  for (let a = 0; a < ACCOUNTS; a++) {
    await upsertLinkedAccount(vault, { org: 'bench', environment: 'test', accountId: `reads-${a}` }, { credentials: {} });
  }
  // ACCOUNTS upserts at a time: on SQLite each is a durable commit, and seeding is not measured.
  for (let start = 0; start < list.length; start += ACCOUNTS) {
    await Promise.all(list.slice(start, start + ACCOUNTS).map((t) => upsertDefaultAppCredential(vault, t.ref, t.key, t.value)));
  }
  return { read: (t) => getDefaultAppCredential(vault, t.ref, t.key), close: () => vault.close() };
}

async function naiveKeyv(store: string, settings: ReadSettings): Promise<Keyv<string>> {
  if (store === 'sqlite') {
    const sqlite = new KeyvSqlite({ uri: `sqlite://${path.join(settings.dir, 'reads-naive.db')}`, busyTimeout: 5000 });
    // The vault's SQLite settings, so both read the same kind of file.
    await sqlite.query('PRAGMA journal_mode=WAL');
    await sqlite.query('PRAGMA synchronous=FULL');
    return new Keyv<string>({ store: sqlite, namespace: NAMESPACE });
  }
  if (store === 'redis') return createRedisKeyv(settings.redisUrl, { namespace: NAMESPACE }) as unknown as Keyv<string>;
  return new Keyv<string>({ store: new KeyvPostgres({ uri: settings.postgresUrl, table: 'bench_naive' }), namespace: NAMESPACE });
}

async function naiveSide(store: string, list: readonly Target[], settings: ReadSettings): Promise<Side> {
  const cipher = naiveCipher();
  if (store === 'memory') {
    const map = new Map<string, string>();
    for (const t of list) map.set(t.naiveKey, cipher.seal(t.value));
    return {
      read: (t) => {
        const sealed = map.get(t.naiveKey);
        return Promise.resolve(sealed === undefined ? undefined : cipher.open(sealed));
      },
      close: () => Promise.resolve(),
    };
  }
  const keyv = await naiveKeyv(store, settings);
  for (let start = 0; start < list.length; start += ACCOUNTS) {
    await Promise.all(list.slice(start, start + ACCOUNTS).map((t) => keyv.set(t.naiveKey, cipher.seal(t.value))));
  }
  return {
    read: async (t) => {
      const sealed = await keyv.get(t.naiveKey);
      return sealed === undefined ? undefined : cipher.open(sealed);
    },
    close: async () => {
      await keyv.clear();
      await keyv.disconnect();
    },
  };
}

/**
 * `callers` loops doing `op` on items `0..count-1` in turn until `seconds` have passed;
 * operations per second. Each loop looks at the clock after every call (a timer could not
 * fire between calls that never leave the microtask queue).
 */
export async function opsPerSecond(op: (i: number) => Promise<void>, count: number, callers: number, seconds: number): Promise<number> {
  const started = performance.now();
  const end = started + seconds * 1000;
  let done = 0;
  let next = 0;
  const caller = async () => {
    while (performance.now() < end) {
      await op(next++ % count);
      done++;
    }
  };
  await Promise.all(Array.from({ length: callers }, caller));
  return done / ((performance.now() - started) / 1000);
}

/**
 * Reads/s of `read` over `list` (see {@link opsPerSecond}). Every value read is checked, so a
 * side that reads wrongly fails the run instead of looking fast.
 */
function readFor(read: Reader, list: readonly Target[], callers: number, seconds: number): Promise<number> {
  return opsPerSecond(
    async (i) => {
      const t = list[i] as Target;
      const value = await read(t);
      // The value is a secret of the benchmark's own making, but stays out of the message anyway.
      if (value !== t.value) throw new Error(`read of ${t.ref.accountId}/${t.key} returned the wrong value`);
    },
    list.length,
    callers,
    seconds,
  );
}

/** One row per store: both sides seeded first, then the rounds, alternating which side goes first. */
export async function measureReads(settings: ReadSettings): Promise<ReadRow[]> {
  const list = targets();
  const rows: ReadRow[] = [];
  for (const store of settings.stores) {
    settings.log(`reads: seeding ${list.length} credentials into ${store} (credvault and naive)`);
    const sides: Record<ReadSide, Side> = {
      credvault: await credvaultSide(store, list, settings),
      naive: await naiveSide(store, list, settings),
    };
    const row: ReadRow = {
      store,
      credentials: list.length,
      concurrency: settings.concurrency,
      sequential: { credvault: [], naive: [] },
      concurrent: { credvault: [], naive: [] },
    };
    try {
      for (const side of READ_SIDES) await readFor(sides[side].read, list, settings.concurrency, WARM_UP_SECONDS);
      for (let round = 0; round < settings.rounds; round++) {
        const order = round % 2 === 0 ? READ_SIDES : [...READ_SIDES].reverse();
        for (const side of order) {
          const sequential = await readFor(sides[side].read, list, 1, settings.duration);
          const concurrent = await readFor(sides[side].read, list, settings.concurrency, settings.duration);
          row.sequential[side].push(sequential);
          row.concurrent[side].push(concurrent);
          settings.log(`reads: ${store.padEnd(8)} ${side.padEnd(9)} round ${round + 1}: ${Math.round(sequential)} reads/s sequential, ${Math.round(concurrent)} at ${settings.concurrency} callers`);
        }
      }
    } finally {
      await sides.credvault.close();
      await sides.naive.close();
    }
    rows.push(row);
  }
  return rows;
}

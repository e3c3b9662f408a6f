/**
 * The scale measurement: does an upsert slow down as the store fills? Upsert latency (p50,
 * p99 of 1800 timed upserts through the library) on SQLite and Redis holding 10^3, 10^5 and
 * 10^6 credentials, and the bytes each stored credential takes (the SQLite file's size, or
 * Redis's `used_memory` growth, indexes included). The baseline is the smallest size: a
 * store that scales keeps the larger sizes' latency near it.
 */
import { statSync } from 'node:fs';
import path from 'node:path';
import { createVault, createLinkedAccount, openStore, upsertDefaultAppCredential } from '../src/index.js';
import { accountGroup, credentialMember } from '../src/core/layout.js';
import { sealCredential } from '../src/crypto/cipher.js';
import { parseKeyring } from '../src/crypto/keyring.js';
import { PER_ACCOUNT, SEED_ENVIRONMENT, SEED_ORG, seedSqlite, seededCredential } from './seed.js';
import { flushRedis, redisUsedMemory } from './services.js';

export interface ScaleRow {
  store: string;
  stored: number;
  /** Milliseconds. */
  p50: number;
  /** Milliseconds. */
  p99: number;
  bytesPerCredential: number;
}

export interface ScaleSettings {
  /** The stores of the run; only `sqlite` and `redis` are measured here. */
  stores: readonly string[];
  /** Credentials stored before timing, one row per size. */
  sizes: readonly number[];
  /** The vault's keyring, `id:base64`. */
  keys: string;
  redisUrl: string;
  /** A directory for the SQLite files. */
  dir: string;
  log: (line: string) => void;
}

const UPSERTS = 2000;
/** Upserts not timed: the vault's caches and the JIT warm up. */
const UNTIMED = 200;
/** Accounts the timed upserts cycle through. */
const TOUCHED_ACCOUNTS = 50;
const SEED_BATCH = 2000;

/** Seeds through the adapter itself, so every index it keeps is counted in the bytes. */
async function seedRedis(url: string, namespace: string, count: number, sealed: string): Promise<void> {
  const store = await openStore(url, { namespace });
  try {
    for (let start = 0; start < count; start += SEED_BATCH) {
      await Promise.all(
        Array.from({ length: Math.min(SEED_BATCH, count - start) }, (_, j) => {
          const { accountId, key } = seededCredential(start + j);
          return store.put(accountGroup({ org: SEED_ORG, environment: SEED_ENVIRONMENT, accountId }), credentialMember(key), sealed);
        }),
      );
    }
  } finally {
    await store.close();
  }
}

/** Seeds `stored` credentials into `store` and returns its URL and the bytes they take. */
async function fill(store: string, stored: number, namespace: string, sealed: string, settings: ScaleSettings): Promise<{ url: string; bytes: number }> {
  settings.log(`scale: seeding ${stored} credentials into ${store === 'sqlite' ? 'SQLite' : 'Redis'}`);
  if (store === 'sqlite') {
    const file = path.join(settings.dir, `scale-${stored}.db`);
    // Every record holds the same ciphertext: it is never opened, only its size counts.
    await seedSqlite(file, namespace, stored, () => sealed);
    return { url: `sqlite:${file}`, bytes: statSync(file).size };
  }
  await flushRedis(settings.redisUrl);
  const before = await redisUsedMemory(settings.redisUrl);
  await seedRedis(settings.redisUrl, namespace, stored, sealed);
  return { url: settings.redisUrl, bytes: (await redisUsedMemory(settings.redisUrl)) - before };
}

/** Times upserts through the library into a store already holding `stored` credentials. */
async function upsertLatencies(url: string, namespace: string, stored: number, keys: string): Promise<number[]> {
  const vault = await createVault({ store: url, namespace, keys });
  const accounts = Math.min(Math.max(1, Math.floor(stored / PER_ACCOUNT)), TOUCHED_ACCOUNTS);
  const ref = (a: number) => ({ org: SEED_ORG, environment: SEED_ENVIRONMENT, accountId: `a${a}` });
  try {
    // The seeded credentials have no account record; the upserts need one.
    for (let a = 0; a < accounts; a++) await createLinkedAccount(vault, ref(a), { credentials: {} }).catch(() => undefined);
    const latencies: number[] = [];
    for (let i = 0; i < UPSERTS; i++) {
      const started = process.hrtime.bigint();
      await upsertDefaultAppCredential(vault, ref(i % accounts), `k${i % PER_ACCOUNT}`, `value-${i}`);
      if (i >= UNTIMED) latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
    }
    return latencies.sort((a, b) => a - b);
  } finally {
    await vault.close();
  }
}

/** One row per store (SQLite, then Redis) and size. Empties the Redis database as it goes. */
export async function measureScale(settings: ScaleSettings): Promise<ScaleRow[]> {
  const rows: ScaleRow[] = [];
  const sealed = sealCredential(parseKeyring(settings.keys), `sk_live_${'x'.repeat(40)}`, {
    org: SEED_ORG,
    environment: SEED_ENVIRONMENT,
    accountId: 'a0',
    name: 'k0',
  });
  for (const store of ['sqlite', 'redis'].filter((s) => settings.stores.includes(s))) {
    for (const stored of settings.sizes) {
      const namespace = `scale-${stored}`;
      const { url, bytes } = await fill(store, stored, namespace, sealed, settings);
      const latencies = await upsertLatencies(url, namespace, stored, settings.keys);
      const row: ScaleRow = {
        store,
        stored,
        p50: latencies[Math.floor(latencies.length * 0.5)] as number,
        p99: latencies[Math.floor(latencies.length * 0.99)] as number,
        bytesPerCredential: bytes / stored,
      };
      rows.push(row);
      settings.log(`scale: ${store} with ${stored}: p50 ${row.p50.toFixed(3)} ms, p99 ${row.p99.toFixed(3)} ms, ${Math.round(bytes / stored)} B/credential`);
      if (store === 'redis') await flushRedis(settings.redisUrl);
    }
  }
  return rows;
}

/**
 * Fills a SQLite file with many credentials quickly, for the scale and rotation
 * measurements: rows in the SQLite adapter's own format (keys from the adapter kernel's
 * `storageKey`, records typed by its row module), written in big transactions
 * straight into the file (through the store, every put would be one durable commit, and
 * seeding 10^6 credentials would take longer than measuring them). Measures nothing.
 */
import { randomBytes } from 'node:crypto';
import sqlite3 from 'sqlite3';
import { storageKey } from '../adapters/kernel.js';
import type { Stored } from '../adapters/record.js';
import { accountGroup, credentialMember, DEFAULT_APP, PROFILE } from '../src/core/layout.js';

/** Credentials per seeded linked account: account `a<i / 100>` holds keys `k0`..`k99`. */
export const PER_ACCOUNT = 100;

/** The org and environment of every seeded account. */
export const SEED_ORG = 'scale';
export const SEED_ENVIRONMENT = 'test';

/** The account and key name of the `i`-th seeded credential. */
export function seededCredential(i: number): { accountId: string; key: string } {
  return { accountId: `a${Math.floor(i / PER_ACCOUNT)}`, key: `k${i % PER_ACCOUNT}` };
}

/**
 * Writes `count` credentials into `file` (created if need be) under `namespace`, each
 * holding `sealed(accountId, key)`, then checkpoints the WAL so the file's size is the data's.
 */
export async function seedSqlite(
  file: string,
  namespace: string,
  count: number,
  sealed: (accountId: string, key: string) => string,
  options: { accounts?: boolean } = {},
): Promise<void> {
  const db = new sqlite3.Database(file);
  const run = (sql: string, ...params: unknown[]) =>
    new Promise<void>((resolve, reject) => db.run(sql, params, (error: Error | null) => (error ? reject(error) : resolve())));
  try {
    await run('PRAGMA journal_mode=WAL');
    await run('CREATE TABLE IF NOT EXISTS keyv(key VARCHAR(2048) PRIMARY KEY, value TEXT )');
    const now = Date.now();
    for (let start = 0; start < count; start += 20_000) {
      await run('BEGIN');
      for (let i = start; i < Math.min(count, start + 20_000); i++) {
        const { accountId, key } = seededCredential(i);
        const group = accountGroup({ org: SEED_ORG, environment: SEED_ENVIRONMENT, accountId });
        if (options.accounts === true && i % PER_ACCOUNT === 0) {
          // A whole account, as an earlier release stored it (profile and default app, no data
          // key): rotation gives it a data key and moves its values onto it.
          const profile = { _id: randomBytes(12).toString('hex'), account_id: accountId, name: accountId, environment: SEED_ENVIRONMENT, associated_org: SEED_ORG, udf: [], created_at: now, updated_at: now };
          for (const [member, value] of [[PROFILE, JSON.stringify(profile)], [DEFAULT_APP, JSON.stringify({ type: 'default_app' })]] as const) {
            const record: Stored = { value: { v: value, c: now, u: now, w: randomBytes(8).toString('hex') } };
            await run('INSERT OR REPLACE INTO keyv(key, value) VALUES (?, ?)', storageKey(namespace, group, member), JSON.stringify(record));
          }
        }
        // A 16-hex-digit write id, as earlier runs seeded, so bytes per credential stay comparable.
        const row: Stored = { value: { v: sealed(accountId, key), c: now, u: now, w: randomBytes(8).toString('hex') } };
        await run('INSERT OR REPLACE INTO keyv(key, value) VALUES (?, ?)', storageKey(namespace, group, credentialMember(key)), JSON.stringify(row));
      }
      await run('COMMIT');
    }
    await run('PRAGMA wal_checkpoint(TRUNCATE)');
  } finally {
    await new Promise<void>((resolve) => db.close(() => resolve()));
  }
}

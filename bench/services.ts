/**
 * The benchmark's view of its backing services, beside the stores under test: Redis's command
 * counter and memory use, PostgreSQL's transaction counter, and the cleanup that lets a run
 * start from empty. Nothing here is measured itself; the measurements read these counters
 * before and after their load.
 */
import pg from 'pg';
import { createClient, type RedisClientType } from '@keyv/redis';

/** Runs `call` on a fresh Redis connection and closes it. */
async function withRedis<T>(url: string, call: (client: RedisClientType) => Promise<T>): Promise<T> {
  const client = createClient({ url }) as RedisClientType;
  await client.connect();
  try {
    return await call(client);
  } finally {
    await client.quit();
  }
}

/** Commands Redis has run since its start, all kinds together (INFO commandstats). */
export async function redisCommandCount(url: string): Promise<number> {
  const info = await withRedis(url, (client) => client.info('commandstats'));
  return [...info.matchAll(/calls=(\d+)/g)].reduce((sum, m) => sum + Number(m[1]), 0);
}

/** Bytes Redis holds (`used_memory`). */
export async function redisUsedMemory(url: string): Promise<number> {
  const info = await withRedis(url, (client) => client.info('memory'));
  return Number(/used_memory:(\d+)/.exec(info)?.[1]);
}

/** Empties the benchmark's own Redis database (the number in `url`). */
export async function flushRedis(url: string): Promise<void> {
  await withRedis(url, (client) => client.flushDb());
}

/** Transactions committed or rolled back in the URL's database (pg_stat_database). */
export async function postgresTransactions(url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    // Without this the statistics snapshot of the session would be reused.
    await client.query('SELECT pg_stat_clear_snapshot()');
    const { rows } = await client.query<{ n: string }>('SELECT xact_commit + xact_rollback AS n FROM pg_stat_database WHERE datname = current_database()');
    return Number(rows[0]?.n ?? 0);
  } finally {
    await client.end();
  }
}

/** Which backends a run uses, and where. */
export interface Backends {
  stores: readonly string[];
  redisUrl: string;
  postgresUrl: string;
}

/** Earlier runs' records, under other keys, would make the vault refuse to start. */
export async function clearBackends({ stores, redisUrl, postgresUrl }: Backends): Promise<void> {
  if (stores.includes('redis')) await flushRedis(redisUrl);
  if (stores.includes('postgres')) {
    const client = new pg.Client({ connectionString: postgresUrl });
    await client.connect();
    try {
      await client.query(`DELETE FROM keyv WHERE starts_with(key, 'bench-') OR starts_with(key, 'scale-')`).catch(() => undefined);
      await client.query('DROP TABLE IF EXISTS bench_naive');
    } finally {
      await client.end();
    }
  }
}

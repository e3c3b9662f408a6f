import pg from 'pg';
import { afterAll, expect, it } from 'vitest';
import { createPostgresStore } from '../../adapters/postgres.js';
import { runStoreConformance } from '../../src/testing/index.js';
import { batchFaultHook, openThenCut } from '../helpers/faults.js';
import { dropSchema } from '../helpers/postgres.js';
import { POSTGRES_URL, runId, serviceSuite } from '../helpers/services.js';

const service = await serviceSuite('PostgreSQL', POSTGRES_URL);
const suite = service.describe;
// Each run gets its own schema, dropped afterwards; every store opens its own pool.
const schema = runId('cvpg');
const open = ({ namespace }: { namespace: string }) => createPostgresStore({ url: POSTGRES_URL, schema, namespace });

afterAll(async () => {
  if (service.available) await dropSchema(schema);
});

runStoreConformance({ describe: suite, it, expect }, open, {
  name: 'postgres',
  concurrencyFactory: open,
  faults: {
    factory: ({ namespace }, controls) => createPostgresStore({ url: POSTGRES_URL, schema, namespace, faults: batchFaultHook(controls) }),
  },
  unreachableFactory: ({ namespace }) =>
    createPostgresStore({ url: 'postgres://postgres@127.0.0.1:1/test', schema, namespace, connectTimeoutMs: 500 }),
  failingFactory: ({ namespace }) =>
    openThenCut(POSTGRES_URL, (proxied) => createPostgresStore({ url: proxied, schema, namespace, connectTimeoutMs: 500 })),
});

suite('postgres store: query plans', () => {
  it('reads and deletes a group through the byte-order index, never a full scan', async () => {
    const plansNamespace = runId('plans');
    const store = open({ namespace: plansNamespace });
    const client = new pg.Client({ connectionString: POSTGRES_URL });
    await client.connect();
    try {
      await store.put('g1', 'm', 'v'); // creates the table and its index
      // On a near-empty table a sequential or bitmap scan is cheapest; forbid both to see
      // whether a plain index scan applies, which also yields byte order without a sort.
      await client.query('SET enable_seqscan = off');
      await client.query('SET enable_bitmapscan = off');
      const plan = async (sql: string): Promise<string> =>
        (await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${sql}`)).rows.map((row) => row['QUERY PLAN']).join('\n');
      const table = `"${schema}"."keyv"`;
      const range = `key COLLATE "C" >= 'ns{g1}:' AND key COLLATE "C" < 'ns{g1};'`;
      for (const sql of [
        `SELECT key, value FROM ${table} WHERE ${range} ORDER BY key COLLATE "C"`,
        `DELETE FROM ${table} WHERE ${range}`,
        `SELECT key, value FROM ${table} WHERE ${range} AND key COLLATE "C" > 'ns{g1}:a' ORDER BY key COLLATE "C" LIMIT 10`,
      ]) {
        const text = await plan(sql);
        expect(text).toMatch(/Index (Only )?Scan using keyv_key_c/);
        expect(text).not.toMatch(/Seq Scan|Sort/);
      }
      await client.query('RESET enable_seqscan');
      await client.query('RESET enable_bitmapscan');
      // purgeExpired finds expired rows through the partial index on expiry, not through the
      // namespace's key range: with a realistic table (many lasting rows, few expiring ones)
      // and fresh statistics, the planner picks the expiry index by itself.
      const namespace = runId('purgeplan');
      const big = open({ namespace });
      try {
        await big.batch('g', Array.from({ length: 1000 }, (_, i) => ({ op: 'put' as const, member: `m${i}`, value: 'v'.repeat(50) })));
        await big.batch('g2', Array.from({ length: 1000 }, (_, i) => ({ op: 'put' as const, member: `m${i}`, value: 'v'.repeat(50) })));
        for (let i = 0; i < 5; i++) await big.insert('t', `s${i}`, 'x', { ttlMs: 60_000 });
        await client.query(`ANALYZE ${table}`);
        const base = `${encodeURIComponent(namespace)}{`;
        const purge = await plan(
          `DELETE FROM ${table} WHERE key IN (SELECT key FROM ${table} WHERE expires_at < ${Date.now()}::bigint
            AND key COLLATE "C" >= '${base}' AND key COLLATE "C" < '${base.slice(0, -1)}|' LIMIT 500)`,
        );
        expect(purge).toMatch(/Index Scan using keyv_expires_at/);
        expect(purge).not.toMatch(/Seq Scan|keyv_key_c/);
      } finally {
        await big.close();
      }
      // The column follows the record: set by an expiring insert, cleared by a put.
      await store.insert('g1', 'e', 'v', { ttlMs: 60_000 });
      const expiresAt = async (member: string) =>
        (await client.query<{ e: string | null }>(`SELECT expires_at::text AS e FROM ${table} WHERE key = $1`, [`${encodeURIComponent(plansNamespace)}{g1}:${member}`])).rows[0]?.e;
      expect(Number(await expiresAt('e'))).toBeGreaterThan(Date.now());
      await store.put('g1', 'e', 'w');
      expect(await expiresAt('e')).toBeNull();
    } finally {
      await client.end();
      await store.close();
    }
  });
});

suite('postgres store: namespace isolation', () => {
  it('two namespaces in one table never see each other, and removeGroup and scan leave foreign rows alone', async () => {
    const mine = runId('iso');
    const a = open({ namespace: mine });
    const b = open({ namespace: `${mine}y` });
    const client = new pg.Client({ connectionString: POSTGRES_URL });
    await client.connect();
    const base = encodeURIComponent(mine);
    const foreign = [`${base}`, `${base}x{g}:m`, `${base}%7B{g}:m`, `other{g}:m`, `{g}:m`, `${base}|{g}:m`];
    try {
      await a.put('g', 'm', 'a'); // creates the table
      for (const key of foreign) {
        await client.query(`INSERT INTO "${schema}"."keyv"(key, value) VALUES ($1, 'foreign')`, [key]);
      }
      await b.put('g', 'm', 'b');
      await b.put('g', 'n', 'b');
      expect((await a.list('g')).map((item) => item.member)).toEqual(['m']);
      expect((await a.scan(undefined, 100)).items.map((item) => item.entry.value)).toEqual(['a']);
      expect(await a.removeGroup('g')).toBe(1);
      expect((await b.list('g')).map((item) => item.entry.value)).toEqual(['b', 'b']);
      expect(await a.scan(undefined, 100)).toEqual({ items: [], cursor: undefined });
      const survivors = await client.query<{ key: string }>(
        `SELECT key FROM "${schema}"."keyv" WHERE key = ANY($1) AND value = 'foreign'`,
        [foreign],
      );
      expect(survivors.rows.map((row) => row.key).sort()).toEqual([...foreign].sort());
    } finally {
      await client.end();
      await Promise.all([a.close(), b.close()]);
    }
  });
});

suite('postgres store: purge and concurrent writers', () => {
  it('a row made live again by a writer the purge waited for is not deleted', async () => {
    const namespace = runId('purgerace');
    const store = open({ namespace });
    const client = new pg.Client({ connectionString: POSTGRES_URL });
    await client.connect();
    try {
      await store.increment('limit:x', 'count', 20);
      await new Promise((resolve) => setTimeout(resolve, 60));
      const key = `${encodeURIComponent(namespace)}{limit:x}:count`;
      const fresh = JSON.stringify({ value: { v: '1', c: Date.now(), u: Date.now(), w: 'w' }, expires: Date.now() + 60_000 });
      await client.query('BEGIN');
      await client.query(`UPDATE "${schema}"."keyv" SET value = $2 WHERE key = $1`, [key, fresh]);
      const purging = store.purgeExpired(100);
      await new Promise((resolve) => setTimeout(resolve, 200));
      await client.query('COMMIT');
      expect(await purging).toBe(0);
      expect((await store.get('limit:x', 'count'))?.value).toBe('1');
    } finally {
      await client.end();
      await store.close();
    }
  });
});

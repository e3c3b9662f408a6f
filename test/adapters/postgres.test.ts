import { type ChildProcessByStdio, spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pg from 'pg';
import { afterAll, expect, it } from 'vitest';
import { createPostgresStore } from '../../adapters/postgres.js';
import { runStoreConformance } from '../../src/testing/index.js';
import { batchFaultHook, openThenCut } from '../helpers/faults.js';
import { dropSchema } from '../helpers/postgres.js';
import { POSTGRES_URL, runId, serviceSuite } from '../helpers/services.js';
import { mark, settle, waitFor, type Settled } from '../helpers/wait.js';

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

suite('postgres store: index rows', () => {
  it('live beside the records under <namespace>#ix{<index>}, written only by indexed calls, and foreign rows stay out', async () => {
    const namespace = runId('ixrows');
    const base = encodeURIComponent(namespace);
    const store = open({ namespace });
    const client = new pg.Client({ connectionString: POSTGRES_URL });
    await client.connect();
    const table = `"${schema}"."keyv"`;
    const indexRows = async () =>
      (await client.query<{ key: string; value: string }>(`SELECT key, value FROM ${table} WHERE key LIKE $1 ORDER BY key COLLATE "C"`, [`${base}#ix{%`])).rows;
    try {
      await store.batch('acct:a', [{ op: 'put', member: 'profile', value: 'p' }]); // creates the table
      await store.put('acct:a', 'cred:k', 'v');
      await store.removeGroup('acct:z');
      expect(await indexRows()).toEqual([]);
      // Rows another namespace's index could be mistaken for, and a record named like an index.
      const foreign = [`${base}x#ix{accounts}:f`, `${base}x#ix{accounts}`, `${base}#ix{accounts}x:f`, `${base}{accounts}:f`];
      for (const key of foreign) await client.query(`INSERT INTO ${table}(key, value) VALUES ($1, '7')`, [key]);

      expect(await store.batch('acct:a', [], { requires: 'profile', index: { index: 'accounts', entry: 'a' } })).toEqual({ committed: true, results: [] });
      await store.batch('acct:c', [{ op: 'insert', member: 'profile', value: 'p' }], { index: { index: 'accounts', entry: 'c' } });
      expect(await indexRows()).toEqual([
        { key: `${base}#ix{accounts}`, value: '2' },
        { key: `${base}#ix{accounts}:a`, value: '1' },
        { key: `${base}#ix{accounts}:c`, value: '1' },
        { key: `${base}#ix{accounts}x:f`, value: '7' },
      ]);
      expect(await store.readIndex('accounts', 0, 10)).toEqual({ total: 2, entries: ['a', 'c'] });
      expect(await store.readIndex('accountsx', 0, 10)).toEqual({ total: 0, entries: [] });
      expect(await store.purgeExpired(100)).toBe(0);
      expect(await store.removeGroup('acct:a', { index: { index: 'accounts', entry: 'a' } })).toBe(2);
      expect(await store.removeGroup('acct:a', { index: { index: 'accounts', entry: 'a' } })).toBe(0);
      expect(await store.readIndex('accounts', 0, 10)).toEqual({ total: 1, entries: ['c'] });
      const survivors = await client.query<{ key: string }>(`SELECT key FROM ${table} WHERE key = ANY($1) AND value = '7'`, [foreign]);
      expect(survivors.rows.map((row) => row.key).sort()).toEqual([...foreign].sort());
    } finally {
      await client.end();
      await store.close();
    }
  });

  it('an indexed removeGroup that waited for a writer holding the profile also removes what that writer added', async () => {
    const namespace = runId('ixwait');
    const base = encodeURIComponent(namespace);
    const store = open({ namespace });
    const writer = new pg.Client({ connectionString: POSTGRES_URL });
    const observer = new pg.Client({ connectionString: POSTGRES_URL });
    await Promise.all([writer.connect(), observer.connect()]);
    const table = `"${schema}"."keyv"`;
    const link = { index: 'accounts', entry: 'a' };
    try {
      await store.batch('acct:a', [{ op: 'insert', member: 'profile', value: 'p' }], { index: link });
      // What a credential put of an earlier release does: hold the profile FOR SHARE, add a member; not yet committed.
      await writer.query('BEGIN');
      await writer.query(`SELECT 1 FROM ${table} WHERE key = $1 FOR SHARE`, [`${base}{acct:a}:profile`]);
      const record = JSON.stringify({ value: { v: 'c', c: Date.now(), u: Date.now(), w: 'x' } });
      await writer.query(`INSERT INTO ${table}(key, value) VALUES ($1, $2)`, [`${base}{acct:a}:cred:x`, record]);
      const writerPid = (await writer.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
      const removing = store.removeGroup('acct:a', { index: link });
      await waitFor(
        async () => (await observer.query('SELECT 1 FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))', [writerPid])).rowCount === 1,
        'removeGroup to wait for the writer',
      );
      await writer.query('COMMIT');
      expect(await removing).toBe(2);
      expect(await store.list('acct:a')).toEqual([]);
      expect(await store.readIndex('accounts', 0, 10)).toEqual({ total: 0, entries: [] });
    } finally {
      await writer.query('ROLLBACK').catch(() => undefined);
      await Promise.all([writer.end(), observer.end()]);
      await store.close();
    }
  });

  it('readIndex reads the count by primary key and the page through the byte-order index, never a full scan or a sort', async () => {
    const store = open({ namespace: runId('ixplan') });
    const client = new pg.Client({ connectionString: POSTGRES_URL });
    await client.connect();
    try {
      await store.batch('g', [], { index: { index: 'i', entry: 'e' } }); // creates the table
      await client.query('SET enable_seqscan = off');
      await client.query('SET enable_bitmapscan = off');
      const table = `"${schema}"."keyv"`;
      const { rows } = await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN SELECT NULL::text AS entry,
          (SELECT value FROM ${table} WHERE key = 'ns#ix{i}') AS total
        UNION ALL (SELECT key, NULL FROM ${table} WHERE key COLLATE "C" >= 'ns#ix{i}:' AND key COLLATE "C" < 'ns#ix{i};'
          ORDER BY key COLLATE "C" OFFSET 5 LIMIT 10)`);
      const plan = rows.map((row) => row['QUERY PLAN']).join('\n');
      expect(plan).toMatch(/Index (Only )?Scan using keyv_key_c/);
      expect(plan).toMatch(/Index (Only )?Scan using keyv_pkey/);
      expect(plan).not.toMatch(/Seq Scan|Sort/);
    } finally {
      await client.end();
      await store.close();
    }
  });
});

suite('postgres store: conditional writes against removeGroup (group advisory lock)', () => {
  const table = `"${schema}"."keyv"`;
  const blockedBy = async (observer: pg.Client, pid: number | undefined): Promise<boolean> =>
    (await observer.query('SELECT 1 FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))', [pid])).rowCount === 1;

  it('a put with requires that waited for a removal of its group finds the profile gone and writes nothing', async () => {
    // The removal's own function, held open by a client: the put must wait for it, then read
    // the group afresh. A lock taken inside the put's one statement would read from the
    // snapshot it took before waiting, still see the profile, and leave an orphan.
    const namespace = runId('lockwait');
    const base = encodeURIComponent(namespace);
    const store = open({ namespace });
    const remover = new pg.Client({ connectionString: POSTGRES_URL });
    const observer = new pg.Client({ connectionString: POSTGRES_URL });
    await Promise.all([remover.connect(), observer.connect()]);
    try {
      await store.batch('acct:a', [{ op: 'insert', member: 'profile', value: 'p' }]);
      await remover.query('BEGIN');
      const start = `${base}{acct:a}:`;
      const gone = await remover.query(`SELECT live FROM "${schema}"."keyv_cvdel2"($1, $2, $3) AS live`, [start, `${base}{acct:a};`, Date.now()]);
      expect(gone.rowCount).toBe(1);
      const removerPid = (await remover.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
      const putting = store.put('acct:a', 'cred:x', 'v', { requires: 'profile' });
      const inserting = store.insert('acct:a', 'token', 't', { requires: 'profile' });
      const batching = store.batch('acct:a', [{ op: 'put', member: 'cred:y', value: 'v' }], { requires: 'profile' });
      await waitFor(
        async () => (await observer.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))', [removerPid])).rows[0]?.n === 3,
        'the three writers to wait for the removal',
      );
      await remover.query('COMMIT');
      expect(await putting).toBe('missing');
      expect(await inserting).toBe(false);
      expect(await batching).toEqual({ committed: false, failed: -1 });
      expect(await store.list('acct:a')).toEqual([]);
    } finally {
      await remover.query('ROLLBACK').catch(() => undefined);
      await Promise.all([remover.end(), observer.end()]);
      await store.close();
    }
  });

  it('a writer holding its group leaves the profile row unlocked, and a removeGroup waits for it and removes what it wrote', async () => {
    const namespace = runId('lockhold');
    const base = encodeURIComponent(namespace);
    const store = open({ namespace });
    const writer = new pg.Client({ connectionString: POSTGRES_URL });
    const observer = new pg.Client({ connectionString: POSTGRES_URL });
    await Promise.all([writer.connect(), observer.connect()]);
    const link = { index: 'accounts', entry: 'a' };
    try {
      await store.batch('acct:a', [{ op: 'insert', member: 'profile', value: 'p' }], { index: link });
      // What a put with requires runs, held open before its commit.
      await writer.query('BEGIN');
      const record = JSON.stringify({ value: { v: '"c"', c: Date.now(), u: Date.now(), w: 'held' } });
      const wrote = await writer.query(`SELECT w FROM "${schema}"."keyv_cvput2"($1, $2, $3, $4, $5) AS w`, [
        `${base}{acct:a}:cred:x`, record, Date.now(), '"c"', `${base}{acct:a}:profile`,
      ]);
      expect(wrote.rows).toEqual([{ w: 'held' }]);
      // No row lock on the profile (FOR SHARE, whose many holders made MultiXacts): another
      // session can lock it outright without waiting.
      await observer.query('BEGIN');
      expect((await observer.query(`SELECT 1 FROM ${table} WHERE key = $1 FOR UPDATE NOWAIT`, [`${base}{acct:a}:profile`])).rowCount).toBe(1);
      await observer.query('ROLLBACK');
      const writerPid = (await writer.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
      for (const removal of [() => store.removeGroup('acct:a', { index: link }), () => store.removeGroup('acct:a')]) {
        const removing = removal();
        await waitFor(() => blockedBy(observer, writerPid), 'removeGroup to wait for the writer');
        await writer.query('COMMIT');
        expect(await removing).toBe(2);
        expect(await store.list('acct:a')).toEqual([]);
        // Again without an index: the same lock, taken by the one-statement removal.
        await store.batch('acct:a', [{ op: 'insert', member: 'profile', value: 'p' }]);
        await writer.query('BEGIN');
        await writer.query(`SELECT w FROM "${schema}"."keyv_cvput2"($1, $2, $3, $4, $5) AS w`, [
          `${base}{acct:a}:cred:x`, record, Date.now(), '"c"', `${base}{acct:a}:profile`,
        ]);
      }
      await writer.query('ROLLBACK');
      expect(await store.readIndex('accounts', 0, 10)).toEqual({ total: 0, entries: [] });
    } finally {
      await writer.query('ROLLBACK').catch(() => undefined);
      await Promise.all([writer.end(), observer.end()]);
      await store.close();
    }
  });

  it('many writers with requires racing removeGroup and a recreate of one group, round after round, leave no member of a removed account', async () => {
    const namespace = runId('lockrace');
    const stores = Array.from({ length: 4 }, () => createPostgresStore({ url: POSTGRES_URL, schema, namespace, poolSize: 6 }));
    const [first] = stores as [ReturnType<typeof open>];
    const group = 'acct:race';
    const link = { index: 'accounts', entry: 'race' };
    const create = () => first.batch(group, [{ op: 'insert', member: 'profile', value: 'p' }], { index: link });
    interface Write { members: string[]; startedAt: number; outcome: Settled<boolean> }
    const WRITERS = 24;
    try {
      expect((await create()).committed).toBe(true);
      let racedRounds = 0;
      for (let round = 0; round < 12; round += 1) {
        const writes: Write[] = [];
        const calls = new Array<number>(WRITERS).fill(0);
        let stop = false;
        // Puts, inserts and batches (with and without the index, as the vault's updates
        // send them), each on members of their own, through four pools.
        const writer = async (w: number) => {
          const store = stores[w % stores.length] as typeof first;
          for (let i = 0; !stop; i += 1) {
            const member = `cred:r${round}w${w}n${i}`;
            const startedAt = mark();
            const kind = (w + i) % 4;
            const outcome = await settle(async () => {
              if (kind === 0) return (await store.put(group, member, 'v', { requires: 'profile' })) === 'added';
              if (kind === 1) return store.insert(group, member, 'v', { requires: 'profile' });
              const batch = [{ op: 'put' as const, member, value: 'v' }, { op: 'put' as const, member: `${member}b`, value: 'v' }];
              return (await store.batch(group, batch, kind === 2 ? { requires: 'profile' } : { requires: 'profile', index: link })).committed;
            });
            writes.push({ members: kind >= 2 ? [member, `${member}b`] : [member], startedAt, outcome });
            calls[w] = (calls[w] ?? 0) + 1;
          }
        };
        const callsAtLeast = (n: number) => () => calls.every((count) => count >= n);
        const running = Promise.all(Array.from({ length: WRITERS }, (_, w) => writer(w)));
        await waitFor(callsAtLeast(2 + (round % 3)), 'every writer writing');
        // Indexed removal (the vault's) in most rounds, the one-statement removal in some.
        const removal = await settle(() => (round % 3 === 2 ? stores[round % 4]?.removeGroup(group) : stores[round % 4]?.removeGroup(group, { index: link })) as Promise<number>);
        expect(removal.ok).toBe(true);
        const removedAt = removal.seq;
        const beforeGap = [...calls];
        await waitFor(() => calls.every((count, w) => count >= (beforeGap[w] ?? 0) + 2), 'every writer calling twice after the removal');
        const recreating = mark();
        expect((await create()).committed).toBe(true);
        const recreated = mark();
        const afterRecreate = [...calls];
        await waitFor(() => calls.every((count, w) => count >= (afterRecreate[w] ?? 0) + 2), 'every writer calling twice after the recreate');
        stop = true;
        await running;

        const present = new Set((await first.list(group)).map((item) => item.member));
        expect(present.has('profile')).toBe(true);
        const failures = writes.filter((write) => !write.outcome.ok);
        expect(failures.map((write) => (write.outcome.ok ? '' : write.outcome.error))).toEqual([]);
        const wrote = (write: Write) => write.outcome.ok && write.outcome.value;
        for (const write of writes) {
          const shown = `${write.members[0]} (started ${write.startedAt}, settled ${write.outcome.seq}; removal ${removedAt}, recreate ${recreating}..${recreated})`;
          // Settled before the recreate began: written before the removal (so removed with
          // the group) or refused; never left behind.
          if (write.outcome.seq < recreating) for (const member of write.members) expect(present.has(member), `orphan ${shown}`).toBe(false);
          // Started after the removal returned and settled before the recreate: refused.
          if (write.startedAt > removedAt && write.outcome.seq < recreating) expect(wrote(write), `wrote after the removal: ${shown}`).toBe(false);
          // Sent after the recreate returned, with nothing removing the group since: written and kept.
          if (write.startedAt > recreated) {
            expect(wrote(write), `refused with the profile there: ${shown}`).toBe(true);
            for (const member of write.members) expect(present.has(member), `lost ${shown}`).toBe(true);
          }
        }
        // Present members were all written by calls that said so.
        const acknowledged = new Set(writes.filter(wrote).flatMap((write) => write.members));
        for (const member of present) if (member !== 'profile') expect(acknowledged.has(member), member).toBe(true);
        // The removal overlapped writes that committed and writes that were refused.
        const overlapped = writes.filter((write) => write.startedAt < removedAt && write.outcome.seq > removedAt);
        if (overlapped.some(wrote) || overlapped.some((write) => !wrote(write))) racedRounds += 1;
        expect(await first.readIndex('accounts', 0, 10)).toEqual({ total: 1, entries: ['race'] });
      }
      expect(racedRounds).toBeGreaterThan(0);
    } finally {
      await Promise.all(stores.map((store) => store.close()));
    }
  }, 60_000);
});

const root = fileURLToPath(new URL('../../', import.meta.url));
const compiled = join(root, 'dist/adapters/postgres.js');

/**
 * A child that creates indexed groups in three lanes for ever (a batch of two writes with
 * an index entry each) and removes every third one with its entry, printing `+group` or
 * `-group` once the call resolved.
 */
const INDEXED_WRITER = `
import { createPostgresStore } from ${JSON.stringify(pathToFileURL(compiled).href)};
const [url, schema, namespace, name] = process.argv.slice(1);
const store = createPostgresStore({ url, schema, namespace, poolSize: 3 });
const groupOf = (lane, i) => name + '-' + lane + '-' + String(i).padStart(6, '0');
const lane = async (id) => {
  for (let i = 0; ; i += 1) {
    const group = groupOf(id, i);
    const writes = [{ op: 'insert', member: 'profile', value: 'p' }, { op: 'put', member: 'cred:a', value: 'v' }];
    const result = await store.batch(group, writes, { index: { index: 'accounts', entry: group } });
    if (!result.committed) throw new Error('batch of a fresh group did not commit');
    process.stdout.write('+' + group + '\\n');
    if (i % 3 === 2) {
      const old = groupOf(id, i - 1);
      await store.removeGroup(old, { index: { index: 'accounts', entry: old } });
      process.stdout.write('-' + old + '\\n');
    }
  }
};
await Promise.all([0, 1, 2].map(lane));
`;

type Child = ChildProcessByStdio<Writable, Readable, Readable>;

function startIndexedWriter(args: string[]): { child: Child; lines: string[]; exited: Promise<number | null> } {
  const child = spawn(process.execPath, ['--input-type=module', '-e', INDEXED_WRITER, ...args], { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let partial = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    // A line cut short by SIGKILL was never fully printed, so it counts as unacknowledged.
    partial = parts.pop() ?? '';
    lines.push(...parts);
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => {
    child.on('close', (code) => {
      if (code !== 0 && code !== null) process.stderr.write(`writer exited ${code}: ${stderr}\n`);
      resolve(code);
    });
  });
  return { child, lines, exited };
}

suite('postgres store: index and groups after a crash', () => {
  it('writer processes killed with SIGKILL amid indexed batches and removals leave the index holding exactly the groups that exist', async () => {
    // The children run the compiled adapter; a stale build would test old code.
    const sources = ['adapters/sql.ts', 'adapters/postgres.ts'].map((source) => statSync(join(root, source)).mtimeMs);
    if (!existsSync(compiled) || statSync(compiled).mtimeMs < Math.max(...sources)) {
      throw new Error('dist/adapters/postgres.js is missing or stale: run `npx tsc -p tsconfig.build.json` first');
    }
    const namespace = runId('ixcrash');
    const created = new Set<string>();
    const removed = new Set<string>();
    // Each round kills three processes sharing the table wherever they are, mostly mid-transaction.
    for (const round of [1, 2, 3]) {
      const writers = ['a', 'b', 'c'].map((name) => startIndexedWriter([POSTGRES_URL, schema, namespace, `${name}${round}`]));
      await waitFor(() => writers.every((writer) => writer.lines.length >= 60), 'each writer acknowledging 60 calls', 30_000);
      for (const writer of writers) writer.child.kill('SIGKILL');
      expect(await Promise.all(writers.map((writer) => writer.exited))).toEqual([null, null, null]);
      for (const line of writers.flatMap((writer) => writer.lines)) {
        if (line.startsWith('+')) created.add(line.slice(1));
        else if (line.startsWith('-')) removed.add(line.slice(1));
      }
    }
    for (const group of removed) created.delete(group);
    // Every third group (i % 3 === 1) has a removal that may have committed just before a
    // kill, unacknowledged; every other acknowledged group must be there.
    const kept = [...created].filter((group) => Number(group.slice(-6)) % 3 !== 1);
    expect(kept.length).toBeGreaterThan(50);
    expect(removed.size).toBeGreaterThan(30);

    const store = open({ namespace });
    try {
      // The server rolls back a killed client's open transaction; wait until none is left.
      const client = new pg.Client({ connectionString: POSTGRES_URL });
      await client.connect();
      try {
        await waitFor(
          async () => (await client.query("SELECT 1 FROM pg_stat_activity WHERE state LIKE 'idle in transaction%' AND query LIKE '%#ix%'")).rowCount === 0,
          'the killed writers\' transactions to end',
          20_000,
        );
      } finally {
        await client.end();
      }
      const members = new Map<string, string[]>();
      for (let cursor: string | undefined, first = true; first || cursor !== undefined; first = false) {
        const page = await store.scan(cursor, 500);
        for (const item of page.items) members.set(item.group, [...(members.get(item.group) ?? []), item.member]);
        cursor = page.cursor;
      }
      // Each batch committed whole or not at all, so every group holds both of its members.
      for (const [group, names] of members) expect([group, names.sort()]).toEqual([group, ['cred:a', 'profile']]);
      const entries: string[] = [];
      let total = -1;
      for (let offset = 0; ; offset += 100) {
        const page = await store.readIndex('accounts', offset, 100);
        total = page.total;
        entries.push(...page.entries);
        if (page.entries.length < 100) break;
      }
      const groups = [...members.keys()].sort();
      expect(entries).toEqual(groups);
      expect(total).toBe(groups.length);
      for (const group of kept) expect(members.has(group), `acknowledged ${group} is there`).toBe(true);
      for (const group of removed) expect(members.has(group), `acknowledged removal of ${group} held`).toBe(false);
    } finally {
      await store.close();
    }
  }, 90_000);
});

/**
 * The PL/pgSQL functions the PostgreSQL store makes beside its table: they run with a pinned
 * search_path, a function whose definition was changed is refused at start (and made again
 * once dropped), and the store works for a role whose search_path puts another schema first,
 * one holding a same-named table and a function that shadows a catalog one. Real PostgreSQL;
 * every schema and role made here is this run's own and dropped afterwards.
 */
import pg from 'pg';
import { afterAll, expect, it } from 'vitest';
import { createPostgresStore } from '../../adapters/postgres.js';
import { withDeadline } from '../../src/core/deadline.js';
import { isVaultError } from '../../src/errors.js';
import { dropSchema } from '../helpers/postgres.js';
import { POSTGRES_URL, runId, serviceSuite } from '../helpers/services.js';

const service = await serviceSuite('PostgreSQL', POSTGRES_URL);
const suite = service.describe;
const schema = runId('cvfn');
const table = 'fnt';
const SUFFIXES = ['cvput2', 'cvins2', 'cvreq2', 'cvdel2'];

afterAll(async () => {
  if (service.available) await dropSchema(schema);
});

async function settle<T>(promise: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  try {
    return { ok: true, value: await promise };
  } catch (error) {
    return { ok: false, error };
  }
}

/** Runs `body` with a superuser client of its own. */
async function asAdmin<T>(body: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  try {
    return await body(client);
  } finally {
    await client.end();
  }
}

interface Definition {
  proname: string;
  prosrc: string;
  proconfig: string[] | null;
  prosecdef: boolean;
}

const definitions = (client: pg.Client, inSchema: string, ofTable: string): Promise<Definition[]> =>
  client
    .query<Definition>(
      `SELECT p.proname, p.prosrc, p.proconfig, p.prosecdef FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1 AND p.proname LIKE $2 ORDER BY p.proname`,
      [inSchema, `${ofTable}\\_cv%`],
    )
    .then((result) => result.rows);

/** The calls that reach every store function: a conditional put, insert and batch, and removeGroup. */
async function exercise(store: ReturnType<typeof createPostgresStore>, group: string): Promise<void> {
  const link = { index: 'accounts', entry: group };
  expect(await store.batch(group, [{ op: 'insert', member: 'profile', value: 'p' }], { index: link })).toEqual({ committed: true, results: [true] });
  expect(await store.put(group, 'cred:a', 'v', { requires: 'profile' })).toBe('added');
  expect(await store.insert(group, 'token', 't', { requires: 'profile' })).toBe(true);
  expect(await store.batch(group, [{ op: 'put', member: 'cred:b', value: 'v' }], { requires: 'profile' })).toEqual({ committed: true, results: ['added'] });
  expect(await store.put(group, 'cred:c', 'v', { requires: 'absent' })).toBe('missing');
  expect((await store.list(group)).map((item) => item.member)).toEqual(['cred:a', 'cred:b', 'profile', 'token']);
  expect(await store.readIndex('accounts', 0, 10)).toEqual({ total: 1, entries: [group] });
  expect(await store.removeGroup(group, { index: link })).toBe(4);
  expect(await store.readIndex('accounts', 0, 10)).toEqual({ total: 0, entries: [] });
}

suite('postgres store functions', () => {
  it('are made with search_path pinned to pg_catalog, pg_temp, beside the table', async () => {
    const store = createPostgresStore({ url: POSTGRES_URL, schema, table, namespace: runId('made') });
    try {
      await exercise(store, 'acct:a');
    } finally {
      await store.close();
    }
    const made = await asAdmin((client) => definitions(client, schema, table));
    expect(made.map((row) => row.proname)).toEqual(SUFFIXES.map((suffix) => `${table}_${suffix}`).sort());
    for (const row of made) {
      expect(row.proconfig).toEqual(['search_path=pg_catalog, pg_temp']);
      expect(row.prosecdef).toBe(false);
    }
  });

  it('a function whose definition was changed is refused at start and left alone; once dropped, the store makes it again', async () => {
    const namespace = runId('tamper');
    // Made by a first store, so every later store finds them present.
    const first = createPostgresStore({ url: POSTGRES_URL, schema, table, namespace });
    await first.put('acct:seed', 'm', 'v');
    await first.close();
    const fn = (suffix: string) => `"${schema}"."${table}_${suffix}"`;
    const changes = [
      {
        suffix: 'cvput2',
        differs: 'body',
        // Same signature and settings, another body: one that would write without any check.
        change: `CREATE OR REPLACE FUNCTION ${fn('cvput2')}(varchar, text, bigint, text, varchar) RETURNS SETOF text
          LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $body$
          BEGIN RAISE EXCEPTION 'the changed body ran'; END$body$`,
      },
      { suffix: 'cvdel2', differs: 'settings', change: `ALTER FUNCTION ${fn('cvdel2')}(varchar, varchar, bigint) RESET search_path` },
      { suffix: 'cvreq2', differs: 'attributes', change: `ALTER FUNCTION ${fn('cvreq2')}(varchar, bigint) SECURITY DEFINER` },
    ];
    for (const { suffix, differs, change } of changes) {
      const before = await asAdmin(async (client) => {
        await client.query(change);
        return (await definitions(client, schema, table)).find((row) => row.proname === `${table}_${suffix}`);
      });
      const store = createPostgresStore({ url: POSTGRES_URL, schema, table, namespace });
      try {
        // Any call opens the store; none reaches the backend while a function is refused.
        const refused = await settle(store.get('acct:seed', 'm'));
        expect(refused.ok).toBe(false);
        const error = refused.ok ? undefined : (refused.error as Error);
        expect(error?.message).toBe(
          `PostgreSQL: function ${fn(suffix)}(pg_catalog.varchar, ${
            { cvput2: 'pg_catalog.text, pg_catalog.int8, pg_catalog.text, pg_catalog.varchar', cvdel2: 'pg_catalog.varchar, pg_catalog.int8', cvreq2: 'pg_catalog.int8' }[suffix]
          }) is not the one this version of credvault creates (${differs} differ); the store will not call it. Drop it, and the store creates it again.`,
        );
        // Through the vault's deadline it is the one opaque store failure.
        const viaVault = await settle(withDeadline(store, 10_000).put('acct:seed', 'm', 'w'));
        expect(!viaVault.ok && isVaultError(viaVault.error) && viaVault.error.code).toBe('STORE_UNAVAILABLE');
        // Left as it was found, not replaced.
        const after = await asAdmin((client) => definitions(client, schema, table));
        expect(after.find((row) => row.proname === `${table}_${suffix}`)).toEqual(before);

        await asAdmin((client) => client.query(`DROP FUNCTION ${fn(suffix)}`));
        // The next call opens the store afresh: the function is made again and every call works.
        expect((await store.get('acct:seed', 'm'))?.value).toBe('v');
        await exercise(store, `acct:${suffix}`);
        const remade = (await asAdmin((client) => definitions(client, schema, table))).find((row) => row.proname === `${table}_${suffix}`);
        expect(remade?.proconfig).toEqual(['search_path=pg_catalog, pg_temp']);
        expect(remade?.prosecdef).toBe(false);
        expect(remade?.prosrc).not.toMatch(/changed body/);
      } finally {
        await store.close();
      }
    }
  });

  it('works for a role whose search_path puts first a schema with a same-named table and a function shadowing the catalog’s', async () => {
    const role = runId('cvrole');
    const decoy = runId('cvdecoy');
    const own = runId('cvown');
    const quoted = (name: string) => `"${name}"`;
    const url = new URL(POSTGRES_URL);
    url.username = role;
    url.password = '';
    await asAdmin(async (client) => {
      await client.query(`CREATE ROLE ${quoted(role)} LOGIN`);
      // It makes its own schema, table and functions, as an application's role would.
      await client.query(`GRANT CREATE ON DATABASE ${quoted(url.pathname.slice(1))} TO ${quoted(role)}`);
      await client.query(`CREATE SCHEMA ${quoted(decoy)}`);
      await client.query(`CREATE TABLE ${quoted(decoy)}."keyv"(key VARCHAR(2048) PRIMARY KEY, value TEXT)`);
      // Ahead of pg_catalog in the role's path: any unqualified hashtext call would land here.
      await client.query(`CREATE FUNCTION ${quoted(decoy)}.hashtext(text) RETURNS integer LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'the decoy hashtext ran'; END$$`);
      await client.query(`GRANT USAGE ON SCHEMA ${quoted(decoy)} TO ${quoted(role)}`);
      await client.query(`GRANT ALL ON ${quoted(decoy)}."keyv" TO ${quoted(role)}`);
      await client.query(`ALTER ROLE ${quoted(role)} SET search_path = ${quoted(decoy)}, pg_catalog, public, pg_temp`);
    });
    const store = createPostgresStore({ url: url.href, schema: own, table: 'keyv', namespace: runId('path') });
    const session = new pg.Client({ connectionString: url.href });
    try {
      await session.connect();
      // The role's sessions really do resolve names through the decoy first.
      expect((await session.query<{ search_path: string }>('SHOW search_path')).rows[0]?.search_path).toBe(
        `${decoy}, pg_catalog, public, pg_temp`,
      );
      await expect(session.query("SELECT hashtext('x')")).rejects.toThrow(/the decoy hashtext ran/);
      expect((await session.query('SELECT count(*)::int AS n FROM keyv')).rows[0]).toEqual({ n: 0 });

      await exercise(store, 'acct:a');
      await store.batch('acct:b', [{ op: 'put', member: 'profile', value: 'p' }, { op: 'put', member: 'cred', value: 'v1' }]);
      expect(await store.replace('acct:b', 'cred', 'v1', 'v2')).toBe(true);
      expect((await store.increment('acct:b', 'counter', 60_000)).count).toBe(1);
      expect((await store.scan(undefined, 10)).items.map((item) => item.member)).toEqual(['counter', 'cred', 'profile']);
      expect(await store.purgeExpired(10)).toBe(0);
      expect(await store.removeGroup('acct:b')).toBe(3);

      expect(await store.put('acct:c', 'm', 'v')).toBe('added');

      // Everything went to the store's own table; the decoy of the same name stayed empty.
      expect((await session.query(`SELECT count(*)::int AS n FROM ${quoted(decoy)}."keyv"`)).rows[0]).toEqual({ n: 0 });
      const written = await session.query<{ key: string }>(`SELECT key FROM ${quoted(own)}."keyv" WHERE key LIKE '%{acct:%' ORDER BY key`);
      expect(written.rows.map((row) => row.key.slice(row.key.indexOf('{')))).toEqual(['{acct:c}:m']);
    } finally {
      await session.end().catch(() => undefined);
      await store.close();
      await asAdmin(async (client) => {
        await client.query(`DROP SCHEMA IF EXISTS ${quoted(own)} CASCADE`);
        await client.query(`DROP SCHEMA IF EXISTS ${quoted(decoy)} CASCADE`);
        await client.query(`DROP OWNED BY ${quoted(role)}`);
        await client.query(`DROP ROLE ${quoted(role)}`);
      });
    }
  });
});

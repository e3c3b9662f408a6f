/**
 * SQLite hardening: a call that waited for the writer past `queueWaitMs` is refused without
 * being started (so it never writes after the vault gave up on it), a database SQLite does
 * not put in WAL mode reads through the writer, and close() racing reads that are still
 * preparing their statements leaves no unhandled rejection. Runs against real SQLite files.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sqlite3 from 'sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { createSqliteStore } from '../../adapters/sqlite.js';
import { withDeadline } from '../../src/core/deadline.js';
import type { VaultStore } from '../../src/core/store.js';
import { isVaultError } from '../../src/errors.js';
import { createLinkedAccount, createVault, generateKey, getDefaultAppCredential, listDefaultAppCredentials, upsertDefaultAppCredential } from '../../src/index.js';

const ACCOUNT = { org: 'acme', environment: 'test', accountId: 'cust-1' };

const dir = mkdtempSync(join(tmpdir(), 'credvault-hardening-'));
let counter = 0;
const freshPath = (): string => join(dir, `vault-${(counter += 1)}.db`);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A second handle on the file, outside the adapter. */
function openRaw(path: string) {
  const db = new sqlite3.Database(path);
  db.configure('busyTimeout', 5000);
  const exec = (sql: string) => new Promise<void>((resolve, reject) => db.exec(sql, (error) => (error ? reject(error) : resolve())));
  const all = <T>(sql: string, ...params: unknown[]) =>
    new Promise<T[]>((resolve, reject) => db.all(sql, params, (error: Error | null, rows: T[]) => (error ? reject(error) : resolve(rows))));
  const close = () => new Promise<void>((resolve, reject) => db.close((error) => (error ? reject(error) : resolve())));
  return { exec, all, close };
}

async function settle<T>(promise: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  try {
    return { ok: true, value: await promise };
  } catch (error) {
    return { ok: false, error };
  }
}

const message = (outcome: { ok: boolean; error?: unknown }): string => (outcome.ok ? '' : String((outcome.error as Error).message));

/** Blocks the thread, as a slow call would: nothing else of this process runs meanwhile. */
const block = (ms: number): void => void Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

describe('sqlite: queueWaitMs', () => {
  it('refuses a call that waited past it for another connection’s lock; the vault answers STORE_UNAVAILABLE and nothing is written once the lock is released', async () => {
    const path = freshPath();
    const seeder = createSqliteStore({ path, namespace: 'wait' });
    await seeder.put('g', 'seed', 'old');
    await seeder.close();
    // The busy timeout (5000 ms) is far above queueWaitMs: only the new deadline can end the wait.
    const store = createSqliteStore({ path, namespace: 'wait', queueWaitMs: 100 });
    // The vault's wrapping, with a deadline above queueWaitMs so the store answers first.
    const vaultSide = withDeadline(store, 10_000);
    const raw = openRaw(path);
    let holding = false;
    try {
      // The read connection opens after the writer: once it answers, the writer is open and idle.
      expect((await store.get('g', 'seed'))?.value).toBe('old');
      await raw.exec('BEGIN IMMEDIATE');
      holding = true;
      // Still held while both calls are answered: they can only have been refused unstarted.
      const [put, batch] = await Promise.all([
        settle(vaultSide.put('g', 'late', 'v')),
        settle(store.batch('g', [{ op: 'put', member: 'seed', value: 'new' }, { op: 'insert', member: 'late2', value: 'v' }])),
      ]);
      expect(put.ok).toBe(false);
      expect(!put.ok && isVaultError(put.error) && put.error.code).toBe('STORE_UNAVAILABLE');
      expect(batch.ok).toBe(false);
      expect(message(batch)).toMatch(/waited more than 100 ms for the writer and was not started; nothing was written/);

      await raw.exec('COMMIT');
      holding = false;
      // The writer goes on, and neither refused call ever reached the file.
      expect(await store.put('g', 'after', 'v')).toBe('added');
      expect(await store.get('g', 'late')).toBeUndefined();
      expect((await store.list('g')).map((item) => [item.member, item.entry.value])).toEqual([
        ['after', 'v'],
        ['seed', 'old'],
      ]);
      const rows = await raw.all<{ key: string }>("SELECT key FROM keyv WHERE key LIKE 'wait{g}:%' ORDER BY key");
      expect(rows.map((row) => row.key)).toEqual(['wait{g}:after', 'wait{g}:seed']);
    } finally {
      if (holding) await raw.exec('ROLLBACK').catch(() => undefined);
      await store.close();
      await raw.close();
    }
  });

  it('createVault derives it from storeTimeoutMs: a write the vault answered 503 is not made when the lock is released before the adapter default would have run out', async () => {
    const path = freshPath();
    const keys = generateKey('k1').entry;
    const first = await createVault({ store: `sqlite:${path}`, keys });
    await createLinkedAccount(first, ACCOUNT, { credentials: { seed: 'v' } });
    await first.close();
    // 400 ms: the store waits at most 200 ms, not its 1000 ms default.
    const vault = await createVault({ store: `sqlite:${path}`, keys, storeTimeoutMs: 400 });
    const raw = openRaw(path);
    let holding = false;
    try {
      expect(await getDefaultAppCredential(vault, ACCOUNT, 'seed')).toBe('v');
      await raw.exec('BEGIN IMMEDIATE');
      holding = true;
      const write = settle(upsertDefaultAppCredential(vault, ACCOUNT, 'late', 'secret-late'));
      const outcome = await write;
      expect(!outcome.ok && isVaultError(outcome.error) && outcome.error.code).toBe('STORE_UNAVAILABLE');
      // Released after the vault's answer but well within the adapter's default wait.
      await raw.exec('COMMIT');
      holding = false;
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(await getDefaultAppCredential(vault, ACCOUNT, 'late')).toBeUndefined();
      const names = (await listDefaultAppCredentials(vault, ACCOUNT)).map((c) => c.key);
      expect(names).toEqual(['seed']);
    } finally {
      if (holding) await raw.exec('ROLLBACK').catch(() => undefined);
      await vault.close();
      await raw.close();
    }
  });

  it('does not start a call queued behind a slow call of the same group once its deadline has passed', async () => {
    const path = freshPath();
    let slow = false;
    const store = createSqliteStore({
      path,
      namespace: 'behind',
      queueWaitMs: 500,
      // A batch that holds the writer (and this thread) well past the deadline of the calls behind it.
      faults: { beforeWrite: () => (slow ? block(1000) : undefined) },
    });
    try {
      await store.put('g', 'seed', 'v');
      slow = true;
      // One tick: the batch and the put behind it are queued for the same group commit.
      const [first, behind] = await Promise.all([
        settle(store.batch('g', [{ op: 'put', member: 'first', value: 'v' }])),
        settle(store.put('g', 'behind', 'v')),
      ]);
      slow = false;
      expect(first).toEqual({ ok: true, value: { committed: true, results: ['added'] } });
      expect(behind.ok).toBe(false);
      expect(message(behind)).toMatch(/was not started; nothing was written/);
      expect((await store.list('g')).map((item) => item.member)).toEqual(['first', 'seed']);
      // Calls made afterwards have a fresh deadline.
      expect(await store.put('g', 'behind', 'v')).toBe('added');
    } finally {
      await store.close();
    }
  });

  it('takes an integer number of milliseconds from 1 to 2^31 - 1, refused before anything is opened', async () => {
    for (const bad of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 31, '100' as unknown as number]) {
      const path = join(dir, `never-${counter++}`, 'vault.db');
      expect(() => createSqliteStore({ path, queueWaitMs: bad })).toThrow(RangeError);
      expect(() => createSqliteStore({ path, queueWaitMs: bad })).toThrow(/^queueWaitMs must be an integer number of milliseconds from 1 to 2147483647$/);
    }
    for (const good of [1, 2 ** 31 - 1]) {
      const store = createSqliteStore({ path: freshPath(), queueWaitMs: good });
      // A read, on the read connection: a write could be refused while the file opens, with 1 ms.
      expect(await store.get('g', 'm')).toBeUndefined();
      await store.close();
    }
  });
});

describe('sqlite: databases SQLite does not put in WAL mode', () => {
  // A file on disk always takes WAL here (a read-only file, an unwritable directory and a
  // held lock all fail the switch with an error instead), so these are the two databases
  // SQLite answers `PRAGMA journal_mode=WAL` for with another mode: `memory` and, for the
  // temporary database of an empty path, `delete`. Each exists on one connection only, so
  // a separate read connection would find no table at all.
  for (const path of [':memory:', '']) {
    it(`reads through the writer for ${JSON.stringify(path)}: every read sees the writes acknowledged before it`, async () => {
      const store = createSqliteStore({ path, namespace: 'nowal' });
      try {
        expect(await store.put('g', 'a', 'v1')).toBe('added');
        expect((await store.batch('g', [{ op: 'insert', member: 'b', value: 'v2' }], { index: { index: 'ix', entry: 'g' } })).committed).toBe(true);
        const [get, list, index, scan] = await Promise.all([
          store.get('g', 'a'),
          store.list('g'),
          store.readIndex('ix', 0, 10),
          store.scan(undefined, 10),
        ]);
        expect(get?.value).toBe('v1');
        expect(list.map((item) => [item.member, item.entry.value])).toEqual([
          ['a', 'v1'],
          ['b', 'v2'],
        ]);
        expect(index).toEqual({ total: 1, entries: ['g'] });
        expect(scan.items.map((item) => [item.group, item.member])).toEqual([
          ['g', 'a'],
          ['g', 'b'],
        ]);
        expect(await store.removeGroup('g', { index: { index: 'ix', entry: 'g' } })).toBe(2);
        expect(await Promise.all([store.readIndex('ix', 0, 10), store.get('g', 'a')])).toEqual([{ total: 0, entries: [] }, undefined]);
      } finally {
        await store.close();
      }
    });
  }
});

describe('sqlite: close while reads are in flight', () => {
  /** Every kind of read, many at once; each resolves to whether it answered what is stored. */
  function fireReads(store: VaultStore, count: number): Array<Promise<boolean>> {
    const reads: Array<Promise<boolean>> = [];
    for (let i = 0; i < count; i += 1) {
      switch (i % 4) {
        case 0:
          reads.push(store.get('g', 'm').then((entry) => entry?.value === 'v'));
          break;
        case 1:
          reads.push(store.list('g').then((items) => items.length === 1 && items[0]?.entry.value === 'v'));
          break;
        case 2:
          reads.push(store.scan(undefined, 10).then((page) => page.items.length === 1 && page.items[0]?.member === 'm'));
          break;
        default:
          reads.push(store.readIndex(`ix${i}`, 0, 10).then((page) => page.total === 0 && page.entries.length === 0));
      }
    }
    return reads;
  }

  it('answers or rejects every read cleanly, closes, and leaves no unhandled rejection or uncaught error', async () => {
    const escaped: unknown[] = [];
    const heard = (error: unknown): void => void escaped.push(error);
    process.on('unhandledRejection', heard);
    process.on('uncaughtException', heard);
    let answered = 0;
    try {
      // Fresh (read connection still opening), warm (statements prepared), staggered (close
      // lands while some reads are preparing and others just started), and without WAL.
      for (const shape of ['fresh', 'warm', 'staggered', 'no-wal'] as const) {
        for (let round = 0; round < 8; round += 1) {
          const path = shape === 'no-wal' ? ':memory:' : freshPath();
          const seeder = createSqliteStore({ path, namespace: 'close' });
          // On :memory: the database is the store's own, so it seeds itself.
          const store = shape === 'no-wal' ? seeder : createSqliteStore({ path, namespace: 'close' });
          await seeder.put('g', 'm', 'v');
          if (seeder !== store) await seeder.close();
          if (shape === 'warm') await Promise.all(fireReads(store, 4));
          const reads = fireReads(store, 40);
          if (shape === 'staggered') {
            await new Promise((resolve) => setImmediate(resolve));
            reads.push(...fireReads(store, 40));
          }
          const closed = store.close();
          const outcomes = await Promise.all(reads.map(settle));
          expect(await settle(closed)).toEqual({ ok: true, value: undefined });
          // A read either answered what is stored or was refused with an error of its own.
          for (const outcome of outcomes) {
            if (outcome.ok) expect(outcome.value).toBe(true);
            else expect(outcome.error).toBeInstanceOf(Error);
          }
          answered += outcomes.filter((outcome) => outcome.ok).length;
          const after = await settle(store.get('g', 'm'));
          expect(!after.ok && isVaultError(after.error) && after.error.code).toBe('STORE_UNAVAILABLE');
        }
      }
      // Late callbacks of closed handles would surface within a few turns of the loop.
      for (let turn = 0; turn < 5; turn += 1) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(escaped).toEqual([]);
      expect(answered).toBeGreaterThan(0);
    } finally {
      process.off('unhandledRejection', heard);
      process.off('uncaughtException', heard);
    }
  });
});

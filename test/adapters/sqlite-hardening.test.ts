/**
 * SQLite hardening: a database SQLite does not put in WAL mode reads through the writer,
 * and close() racing reads that are still preparing their statements leaves no unhandled
 * rejection. Runs against real SQLite files.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createSqliteStore } from '../../adapters/sqlite.js';
import type { VaultStore } from '../../src/core/store.js';
import { isVaultError } from '../../src/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'credvault-hardening-'));
let counter = 0;
const freshPath = (): string => join(dir, `vault-${(counter += 1)}.db`);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function settle<T>(promise: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  try {
    return { ok: true, value: await promise };
  } catch (error) {
    return { ok: false, error };
  }
}

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

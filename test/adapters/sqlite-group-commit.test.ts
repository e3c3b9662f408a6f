/**
 * SQLite group commit and the read connection: concurrent writers on one file stay exact
 * (one `added` per key, every acknowledged value stored), a call that fails inside a shared
 * transaction fails alone, and reads answer while a write waits for the file's lock yet see
 * every write acknowledged before them. Runs against real SQLite files.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sqlite3 from 'sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { createSqliteStore } from '../../adapters/sqlite.js';
import { storageKey } from '../../adapters/kernel.js';

const dir = mkdtempSync(join(tmpdir(), 'credvault-group-'));
let counter = 0;
const freshPath = (): string => join(dir, `vault-${(counter += 1)}.db`);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A second handle on the file, outside the adapter. */
function openRaw(path: string) {
  const db = new sqlite3.Database(path);
  db.configure('busyTimeout', 5000);
  const exec = (sql: string, ...params: unknown[]) =>
    new Promise<void>((resolve, reject) => db.run(sql, params, (error: Error | null) => (error ? reject(error) : resolve())));
  const all = <T>(sql: string, ...params: unknown[]) =>
    new Promise<T[]>((resolve, reject) => db.all(sql, params, (error: Error | null, rows: T[]) => (error ? reject(error) : resolve(rows))));
  const close = () => new Promise<void>((resolve, reject) => db.close((error) => (error ? reject(error) : resolve())));
  return { exec, all, close };
}

/** Makes SQLite refuse every insert or update of `key`: `ABORT` ends the statement, `ROLLBACK` the whole transaction. */
async function failWritesOf(raw: ReturnType<typeof openRaw>, key: string, how: 'ABORT' | 'ROLLBACK'): Promise<void> {
  const quoted = `'${key.replaceAll("'", "''")}'`;
  for (const event of ['INSERT', 'UPDATE']) {
    await raw.exec(`CREATE TRIGGER refuse_${event.toLowerCase()} BEFORE ${event} ON keyv WHEN NEW.key = ${quoted}
      BEGIN SELECT RAISE(${how}, 'refused by the test'); END`);
  }
}

async function settle<T>(promise: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  try {
    return { ok: true, value: await promise };
  } catch (error) {
    return { ok: false, error };
  }
}

describe('sqlite group commit', () => {
  it('N concurrent writers on one file, same key and different keys: one added per key, every acknowledged value stored', async () => {
    const path = freshPath();
    // Three stores (three writer connections) and many calls each, fired at once.
    const stores = [0, 1, 2].map(() => createSqliteStore({ path, namespace: 'race' }));
    try {
      const shared = Array.from({ length: 20 }, (_, k) => `shared${k}`);
      const calls: Array<Promise<{ member: string; value: string; result: string }>> = [];
      for (const [s, store] of stores.entries()) {
        for (let round = 0; round < 4; round += 1) {
          for (const member of shared) {
            const value = `s${s}-r${round}-${member}`;
            calls.push(store.put('g', member, value).then((result) => ({ member, value, result })));
          }
          for (let k = 0; k < 10; k += 1) {
            const member = `own-s${s}-r${round}-${k}`;
            const value = `v-${member}`;
            calls.push(store.put('g', member, value).then((result) => ({ member, value, result })));
          }
        }
      }
      const results = await Promise.all(calls);
      const added = new Map<string, number>();
      for (const { member, result } of results) if (result === 'added') added.set(member, (added.get(member) ?? 0) + 1);
      const members = new Set(results.map((r) => r.member));
      expect([...members].filter((member) => added.get(member) !== 1)).toEqual([]);

      const stored = new Map((await stores[0]!.list('g')).map((item) => [item.member, item.entry.value]));
      expect(stored.size).toBe(members.size);
      for (const { member, value } of results) {
        // A key written once holds its value; a key written by many holds one of theirs.
        if (member.startsWith('own-')) expect(stored.get(member)).toBe(value);
        else expect(results.some((r) => r.member === member && r.value === stored.get(member))).toBe(true);
      }
      // Calls of one store in one tick share a transaction and see each other in arrival order.
      const [a, b, c] = await Promise.all([
        stores[0]!.put('g', 'ordered', '1'),
        stores[0]!.put('g', 'ordered', '2'),
        stores[0]!.replace('g', 'ordered', '2', '3'),
      ]);
      expect([a, b, c]).toEqual(['added', 'updated', true]);
      expect((await stores[0]!.get('g', 'ordered'))?.value).toBe('3');
    } finally {
      await Promise.all(stores.map((store) => store.close()));
    }
  });

  it('a statement that fails inside a shared transaction fails its own call only; the others commit', async () => {
    const path = freshPath();
    const store = createSqliteStore({ path, namespace: 'fail' });
    const raw = openRaw(path);
    try {
      await store.put('g', 'seed', 'v'); // creates the file and its table
      // A trigger makes every write of one key fail in SQLite itself (the statement aborts).
      await failWritesOf(raw, storageKey('fail', 'g', 'bad'), 'ABORT');

      // Fired in one tick, so they share one transaction.
      const outcomes = await Promise.all([
        settle(store.put('g', 'a', 'va')),
        settle(store.put('g', 'bad', 'vb')),
        settle(store.insert('g', 'b', 'vb')),
        // A batch whose write of 'aa' (first in key order) ran before its write of 'bad' failed: undone whole.
        settle(store.batch('g', [{ op: 'put', member: 'bad', value: 'x' }, { op: 'put', member: 'aa', value: 'x' }])),
        settle(store.batch('g', [{ op: 'insert', member: 'seed', value: 'taken' }])),
        settle(store.increment('g', 'counter', 60_000)),
        settle(store.remove('g', 'seed')),
      ]);
      const [put, badPut, insert, badBatch, refused, increment, remove] = outcomes;
      expect(put).toEqual({ ok: true, value: 'added' });
      expect(badPut.ok).toBe(false);
      expect(badPut.ok ? undefined : badPut.error).not.toBeInstanceOf(RangeError);
      expect(insert).toEqual({ ok: true, value: true });
      expect(badBatch.ok).toBe(false);
      // The batch answered alone (its condition failed) and did not stop the group either.
      expect(refused).toEqual({ ok: true, value: { committed: false, failed: 0 } });
      expect(increment.ok && increment.value.count).toBe(1);
      expect(remove).toEqual({ ok: true, value: true });

      const rows = await raw.all<{ key: string; value: string }>("SELECT key, value FROM keyv WHERE key LIKE 'fail{g}:%' ORDER BY key");
      expect(rows.map((row) => row.key)).toEqual(['fail{g}:a', 'fail{g}:b', 'fail{g}:counter']);
      // And the store goes on.
      expect(await store.put('g', 'after', 'v')).toBe('added');
    } finally {
      await store.close();
      await raw.close();
    }
  });

  it('a statement that rolls the whole transaction back fails every call of its group, none written, and the store goes on', async () => {
    const path = freshPath();
    const store = createSqliteStore({ path, namespace: 'doom' });
    const raw = openRaw(path);
    try {
      await store.put('g', 'seed', 'v');
      await failWritesOf(raw, storageKey('doom', 'g', 'doom'), 'ROLLBACK');
      const outcomes = await Promise.all([
        settle(store.put('g', 'a', 'v')),
        settle(store.batch('g', [{ op: 'put', member: 'b', value: 'v' }])),
        settle(store.put('g', 'doom', 'v')),
      ]);
      expect(outcomes.map((o) => o.ok)).toEqual([false, false, false]);
      expect((await store.list('g')).map((item) => item.member)).toEqual(['seed']);
      expect(await Promise.all([store.put('g', 'a', 'v'), store.remove('g', 'seed')])).toEqual(['added', true]);
      expect((await store.list('g')).map((item) => item.member)).toEqual(['a']);
    } finally {
      await store.close();
      await raw.close();
    }
  });

  it('a batch whose write throws (the fault hook) inside a shared transaction is undone alone', async () => {
    const path = freshPath();
    let armed = true;
    // Only a batch of two writes reaches write 1; the first to do so fails there, once.
    const store = createSqliteStore({
      path,
      namespace: 'hook',
      faults: {
        beforeWrite: (i) => {
          if (i === 1 && armed) {
            armed = false;
            throw new Error('injected fault');
          }
        },
      },
    });
    try {
      await store.put('g', 'seed', 'v');
      const outcomes = await Promise.all([
        settle(store.put('g', 'before', 'v')),
        settle(store.batch('g', [{ op: 'put', member: 'x1', value: 'v' }, { op: 'put', member: 'x2', value: 'v' }])),
        settle(store.batch('g', [{ op: 'put', member: 'y1', value: 'v' }, { op: 'put', member: 'y2', value: 'v' }])),
        settle(store.put('g', 'after', 'v')),
      ]);
      expect(outcomes.map((o) => o.ok)).toEqual([true, false, true, true]);
      expect((await store.list('g')).map((item) => item.member)).toEqual(['after', 'before', 'seed', 'y1', 'y2']);
    } finally {
      await store.close();
    }
  });

  it('reads answer while a write waits for the lock, and see every write acknowledged before them', async () => {
    const path = freshPath();
    const store = createSqliteStore({ path, namespace: 'reads' });
    const raw = openRaw(path);
    let holding = false;
    try {
      await store.batch('g', [{ op: 'put', member: 'm', value: 'old' }], { index: { index: 'i', entry: 'g' } });
      // Another connection holds the write lock: the store's next write waits for it.
      await raw.exec('BEGIN IMMEDIATE');
      holding = true;
      let written = false;
      const write = store.batch('g', [{ op: 'put', member: 'm', value: 'new' }]).then((result) => {
        written = true;
        return result;
      });
      expect((await store.get('g', 'm'))?.value).toBe('old');
      expect((await store.list('g')).map((item) => item.entry.value)).toEqual(['old']);
      expect(await store.readIndex('i', 0, 10)).toEqual({ total: 1, entries: ['g'] });
      expect((await store.scan(undefined, 10)).items.map((item) => item.member)).toEqual(['m']);
      expect(written).toBe(false);
      await raw.exec('COMMIT');
      holding = false;
      expect((await write).committed).toBe(true);
      expect((await store.get('g', 'm'))?.value).toBe('new');

      // Read-your-writes under load: each read follows its own write's acknowledgement.
      const lane = async (id: number) => {
        for (let i = 0; i < 40; i += 1) {
          await store.put('g', `lane${id}`, `v${i}`);
          expect((await store.get('g', `lane${id}`))?.value).toBe(`v${i}`);
          expect((await store.list('g', `lane${id}`)).map((item) => item.entry.value)).toEqual([`v${i}`]);
        }
      };
      await Promise.all([0, 1, 2, 3, 4, 5].map(lane));
    } finally {
      if (holding) await raw.exec('ROLLBACK').catch(() => undefined);
      await store.close();
      await raw.close();
    }
  });
});

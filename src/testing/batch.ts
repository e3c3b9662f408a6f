/**
 * Conformance, batch: conditions are checked first, writes apply in order and all or
 * none, the first failing write is named, and (with the `faults` option) a batch that fails
 * part-way leaves the store as it was.
 */
import { MAX_BATCH_WRITES, type VaultStore } from '../core/store.js';
import { concernRunner, outcome, REFUSED, rejects, sleep, type Harness } from './context.js';

/** Defines the batch tests on a harness; `runStoreConformance` calls it among the others. */
export function defineBatch(h: Harness): void {
  const { t, expect, test, raceTest, options, skipped } = h;
  t.describe('batch', () => {
    test('a batch of every kind of write applies them all and says what each did', async ({ store, group }) => {
      const g = group();
      await store.put(g, 'old', 'o');
      await store.put(g, 'swap', 'before');
      await store.put(g, 'gone', 'x');
      const result = await store.batch(g, [
        { op: 'put', member: 'new', value: 'n' },
        { op: 'put', member: 'old', value: 'o2' },
        { op: 'insert', member: 'ins', value: 'i' },
        { op: 'replace', member: 'swap', expected: 'before', value: 'after' },
        { op: 'remove', member: 'gone' },
        { op: 'remove', member: 'never' },
      ]);
      expect(result).toEqual({ committed: true, results: ['added', 'updated', true, true, true, false] });
      const values = Object.fromEntries((await store.list(g)).map((item) => [item.member, item.entry.value]));
      expect(values).toEqual({ new: 'n', old: 'o2', ins: 'i', swap: 'after' });
    });

    test('a failing condition writes nothing and names the write', async ({ store, group }) => {
      const g = group();
      await store.put(g, 'taken', 't');
      await store.put(g, 'swap', 'current');
      const before = await store.list(g);
      expect(
        await store.batch(g, [
          { op: 'put', member: 'a', value: '1' },
          { op: 'insert', member: 'taken', value: 'x' },
        ]),
      ).toEqual({ committed: false, failed: 1 });
      expect(
        await store.batch(g, [
          { op: 'remove', member: 'taken' },
          { op: 'put', member: 'b', value: '2' },
          { op: 'replace', member: 'swap', expected: 'stale', value: 'y' },
        ]),
      ).toEqual({ committed: false, failed: 2 });
      // The first failing write in the order given, whatever the members' order.
      expect(
        await store.batch(g, [
          { op: 'replace', member: 'swap', expected: 'stale', value: 'y' },
          { op: 'insert', member: 'taken', value: 'x' },
        ]),
      ).toEqual({ committed: false, failed: 0 });
      expect(await store.batch(g, [{ op: 'replace', member: 'absent', expected: '', value: 'y' }])).toEqual({
        committed: false,
        failed: 0,
      });
      expect(await store.list(g)).toEqual(before);
    });

    test('requires: the batch applies only while that member exists', async ({ store, group }) => {
      const g = group();
      expect(await store.batch(g, [{ op: 'put', member: 'a', value: '1' }], { requires: 'profile' })).toEqual({
        committed: false,
        failed: -1,
      });
      expect(await store.list(g)).toEqual([]);
      await store.put(g, 'profile', 'p');
      expect(await store.batch(g, [{ op: 'put', member: 'a', value: '1' }], { requires: 'profile' })).toEqual({
        committed: true,
        results: ['added'],
      });
    });

    test('an insert in a batch treats an expired member as absent and may carry a TTL', async ({ store, group }) => {
      const g = group();
      await store.insert(g, 'm', 'old', { ttlMs: 30 });
      await sleep(80);
      const result = await store.batch(g, [{ op: 'insert', member: 'm', value: 'new', ttlMs: 60_000 }]);
      expect(result).toEqual({ committed: true, results: [true] });
      const entry = await store.get(g, 'm');
      expect(entry?.value).toBe('new');
      expect(typeof entry?.expiresAt === 'number' && entry.expiresAt > Date.now()).toBe(true);
    });

    test('a put in a batch keeps createdAt and clears an expiry, as put does', async ({ store, group }) => {
      const g = group();
      await store.insert(g, 'm', 'v', { ttlMs: 60_000 });
      const first = await store.get(g, 'm');
      await sleep(5);
      await store.batch(g, [{ op: 'put', member: 'm', value: 'w' }]);
      const entry = await store.get(g, 'm');
      expect(entry?.createdAt).toBe(first?.createdAt);
      expect(entry?.expiresAt).toBeUndefined();
    });

    test('bad batches are refused with RangeError before anything is written; a full one commits', async ({ store, group }) => {
      const g = group();
      const twice = [
        { op: 'put', member: 'a', value: '1' },
        { op: 'put', member: 'a', value: '2' },
      ] as const;
      expect(await outcome(() => store.batch(g, twice))).toBe(REFUSED);
      expect(await outcome(() => store.batch(g, [{ op: 'put', member: 'a b', value: '1' }]))).toBe(REFUSED);
      expect(await outcome(() => store.batch(g, [{ op: 'put', member: 'p', value: '1' }], { requires: 'p' }))).toBe(REFUSED);
      expect(await outcome(() => store.batch(g, [{ op: 'insert', member: 'a', value: '1', ttlMs: -1 }]))).toBe(REFUSED);
      const unknownOp = [{ op: 'upsert', member: 'a', value: '1' }] as unknown as Parameters<typeof store.batch>[1];
      expect(await outcome(() => store.batch(g, unknownOp))).toBe(REFUSED);
      const tooMany = Array.from({ length: MAX_BATCH_WRITES + 1 }, (_, i) => ({ op: 'put' as const, member: `m${i}`, value: 'v' }));
      expect(await outcome(() => store.batch(g, tooMany))).toBe(REFUSED);
      expect(await store.batch(g, tooMany.slice(0, MAX_BATCH_WRITES))).toEqual({
        committed: true,
        results: Array.from({ length: MAX_BATCH_WRITES }, () => 'added'),
      });
      expect(await store.list(g)).toHaveLength(MAX_BATCH_WRITES);
    });

    test('an empty batch commits and writes nothing', async ({ store, group }) => {
      const g = group();
      expect(await store.batch(g, [])).toEqual({ committed: true, results: [] });
      expect(await store.list(g)).toEqual([]);
    });

    raceTest('racing batches that insert one member: exactly one commits, and each commits whole', async ({ group }, stores) => {
      const g = group();
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          (stores[i % stores.length] as VaultStore).batch(g, [
            { op: 'insert', member: 'profile', value: `p${i}` },
            { op: 'put', member: 'cred:a', value: `a${i}` },
            { op: 'put', member: 'cred:b', value: `b${i}` },
          ]),
        ),
      );
      const winners = results.flatMap((result, i) => (result.committed ? [i] : []));
      expect(winners).toHaveLength(1);
      const values = Object.fromEntries((await (stores[0] as VaultStore).list(g)).map((item) => [item.member, item.entry.value]));
      const w = winners[0] as number;
      expect(values).toEqual({ profile: `p${w}`, 'cred:a': `a${w}`, 'cred:b': `b${w}` });
    });

    raceTest('readers never see part of a batch', async ({ group }, stores) => {
      const g = group();
      const [writer, reader] = [stores[0] as VaultStore, stores[stores.length - 1] as VaultStore];
      let torn = 0;
      let done = false;
      const reading = (async () => {
        while (!done) {
          const members = (await reader.list(g)).map((item) => item.entry.value);
          if (new Set(members).size > 1) torn += 1;
        }
      })();
      for (let round = 0; round < 30; round += 1) {
        await writer.batch(g, Array.from({ length: 8 }, (_, i) => ({ op: 'put' as const, member: `m${i}`, value: `r${round}` })));
      }
      done = true;
      await reading;
      expect(torn).toBe(0);
    });

    const partWay = 'a batch that fails part-way rejects and leaves the store as it was';
    if (options.faults === undefined) skipped(partWay, 'no faults option');
    else {
      const faults = options.faults;
      test(partWay, async ({ namespace, group }) => {
        const g = group();
        const controls = { failAt: -1 };
        const store = await faults.factory({ namespace: `${namespace}-faults` }, controls);
        try {
          await store.put(g, 'keep', 'k');
          await store.put(g, 'swap', 'before');
          const before = await store.list(g);
          for (const failAt of [0, 1, 3]) {
            controls.failAt = failAt;
            const failed = await rejects(() =>
              store.batch(g, [
                { op: 'put', member: 'a', value: '1' },
                { op: 'put', member: 'keep', value: 'changed' },
                { op: 'replace', member: 'swap', expected: 'before', value: 'after' },
                { op: 'remove', member: 'keep2' },
                { op: 'insert', member: 'b', value: '2' },
              ]),
            );
            expect(failed).toBe(true);
            controls.failAt = -1;
            expect(await store.list(g)).toEqual(before);
          }
          // The store works normally afterwards.
          expect(await store.batch(g, [{ op: 'put', member: 'a', value: '1' }])).toEqual({ committed: true, results: ['added'] });
        } finally {
          await store.close();
        }
      });
    }
  });
}

/**
 * Runs only the batch tests of the conformance suite, with the same arguments as
 * `runStoreConformance`.
 *
 * @example
 * ```ts
 * runBatchConformance({ describe, it, expect }, ({ namespace }) => createMyStore({ namespace }), { name: 'my-store' });
 * ```
 */
export const runBatchConformance = concernRunner('batch', defineBatch);

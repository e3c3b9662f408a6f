/**
 * Conformance, counters: increment counts from 1 in a fixed window, keeps a lasting
 * member lasting, and stays exact under racing increments.
 */
import type { VaultStore } from '../core/store.js';
import { concernRunner, outcome, REFUSED, sleep, type Harness } from './context.js';

/** Defines the counters tests on a harness; `runStoreConformance` calls it among the others. */
export function defineCounters(h: Harness): void {
  const { t, expect, test, raceTest } = h;
  t.describe('increment', () => {
    test('counts from 1 and keeps the first expiry', async ({ store, group }) => {
      const g = group();
      const first = await store.increment(g, 'n', 60_000);
      expect(first.count).toBe(1);
      expect(first.expiresAt > Date.now()).toBe(true);
      const second = await store.increment(g, 'n', 120_000);
      expect(second).toEqual({ count: 2, expiresAt: first.expiresAt });
      expect((await store.get(g, 'n'))?.value).toBe('2');
    });

    test('a member written without expiry counts on and keeps no expiry', async ({ store, group }) => {
      const g = group();
      await store.put(g, 'n', '5');
      expect(await store.increment(g, 'n', 60_000)).toEqual({ count: 6, expiresAt: Number.MAX_SAFE_INTEGER });
      const entry = await store.get(g, 'n');
      expect(entry?.value).toBe('6');
      expect(entry?.expiresAt).toBeUndefined();
      expect((await store.list(g)).map((item) => item.entry.value)).toEqual(['6']);
    });

    test('an expired counter starts again at 1', async ({ store, group }) => {
      const g = group();
      await store.increment(g, 'n', 30);
      await store.increment(g, 'n', 30);
      await sleep(80);
      expect((await store.increment(g, 'n', 60_000)).count).toBe(1);
    });

    test('a TTL that is not positive and finite is refused with RangeError', async ({ store, group }) => {
      for (const ttlMs of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
        expect(await outcome(() => store.increment(group(), 'n', ttlMs))).toBe(REFUSED);
      }
    });

    raceTest('100 racing increments return 100 distinct counts', async ({ group }, stores) => {
      const g = group();
      const counts = await Promise.all(
        Array.from({ length: 100 }, (_, i) => (stores[i % stores.length] as VaultStore).increment(g, 'n', 60_000)),
      );
      expect(counts.map((c) => c.count).sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    });
  });
}

/**
 * Runs only the counters tests of the conformance suite, with the same arguments as
 * `runStoreConformance`.
 *
 * @example
 * ```ts
 * runCountersConformance({ describe, it, expect }, ({ namespace }) => createMyStore({ namespace }), { name: 'my-store' });
 * ```
 */
export const runCountersConformance = concernRunner('counters', defineCounters);

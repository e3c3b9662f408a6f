/**
 * Conformance, concurrency: racing writers through several connections (with the
 * `concurrencyFactory` option) get exact answers: one `added`, one `true`, every write kept.
 */
import { concernRunner, type Harness } from './context.js';

/** Defines the concurrency tests on a harness; `runStoreConformance` calls it among the others. */
export function defineConcurrency(h: Harness): void {
  const { t, expect, raceTest } = h;
  t.describe('concurrency', () => {
    raceTest('100 parallel puts of distinct members are all kept', async ({ group }, stores) => {
      const g = group();
      const results = await Promise.all(
        Array.from({ length: 100 }, (_, i) => stores[i % stores.length]?.put(g, `m${String(i).padStart(3, '0')}`, `v${i}`)),
      );
      expect(results.filter((result) => result === 'added')).toHaveLength(100);
      const items = await stores[0]?.list(g);
      expect(items).toHaveLength(100);
      expect(items?.map((item) => item.entry.value)).toEqual(Array.from({ length: 100 }, (_, i) => `v${i}`));
    });

    raceTest('30 parallel puts of one new member give exactly one added', async ({ group }, stores) => {
      for (let round = 0; round < 3; round += 1) {
        const g = group();
        const values = Array.from({ length: 30 }, (_, i) => `v${i}`);
        const results = await Promise.all(values.map((value, i) => stores[i % stores.length]?.put(g, 'm', value)));
        expect(results.filter((result) => result === 'added')).toHaveLength(1);
        expect(results.filter((result) => result === 'updated')).toHaveLength(29);
        const entry = await stores[0]?.get(g, 'm');
        expect(values.includes(entry?.value ?? '')).toBe(true);
      }
    });

    raceTest('30 parallel puts with requires on one new member give exactly one added', async ({ group }, stores) => {
      const g = group();
      await stores[0]?.put(g, 'profile', 'p');
      const results = await Promise.all(
        Array.from({ length: 30 }, (_, i) => stores[i % stores.length]?.put(g, 'm', `v${i}`, { requires: 'profile' })),
      );
      expect(results.filter((result) => result === 'added')).toHaveLength(1);
      expect(results.filter((result) => result === 'updated')).toHaveLength(29);
    });

    raceTest('30 parallel inserts give exactly one true', async ({ group }, stores) => {
      for (let round = 0; round < 3; round += 1) {
        const g = group();
        const results = await Promise.all(
          Array.from({ length: 30 }, (_, i) => stores[i % stores.length]?.insert(g, 'm', `v${i}`)),
        );
        expect(results.filter((result) => result === true)).toHaveLength(1);
        const winner = results.indexOf(true);
        expect((await stores[0]?.get(g, 'm'))?.value).toBe(`v${winner}`);
      }
    });

    raceTest('30 parallel inserts with requires give exactly one true', async ({ group }, stores) => {
      const g = group();
      await stores[0]?.put(g, 'profile', 'p');
      const results = await Promise.all(
        Array.from({ length: 30 }, (_, i) => stores[i % stores.length]?.insert(g, 'm', `v${i}`, { requires: 'profile' })),
      );
      expect(results.filter((result) => result === true)).toHaveLength(1);
    });

    raceTest('30 parallel replaces of one value give exactly one true', async ({ group }, stores) => {
      const g = group();
      await stores[0]?.put(g, 'm', 'old');
      const results = await Promise.all(
        Array.from({ length: 30 }, (_, i) => stores[i % stores.length]?.replace(g, 'm', 'old', `v${i}`)),
      );
      expect(results.filter((result) => result === true)).toHaveLength(1);
      expect((await stores[0]?.get(g, 'm'))?.value).toBe(`v${results.indexOf(true)}`);
    });

    raceTest('30 parallel removes of one member give exactly one true', async ({ group }, stores) => {
      const g = group();
      await stores[0]?.put(g, 'm', 'v');
      const results = await Promise.all(
        Array.from({ length: 30 }, (_, i) => stores[i % stores.length]?.remove(g, 'm')),
      );
      expect(results.filter((result) => result === true)).toHaveLength(1);
    });

    raceTest('parallel removeGroups count each member once', async ({ group }, stores) => {
      const g = group();
      for (let i = 0; i < 20; i += 1) await stores[0]?.put(g, `m${i}`, 'v');
      const removals = await Promise.all(stores.map((store) => store.removeGroup(g)));
      expect(removals.reduce((sum, n) => sum + n, 0)).toBe(20);
      expect(await stores[0]?.list(g)).toEqual([]);
    });
  });
}

/**
 * Runs only the concurrency tests of the conformance suite, with the same arguments as
 * `runStoreConformance`.
 *
 * @example
 * ```ts
 * runConcurrencyConformance({ describe, it, expect }, ({ namespace }) => createMyStore({ namespace }), { name: 'my-store' });
 * ```
 */
export const runConcurrencyConformance = concernRunner('concurrency', defineConcurrency);

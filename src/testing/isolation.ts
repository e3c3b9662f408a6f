/**
 * Conformance, isolation: stores in different namespaces on one backend never see each
 * other, and neighbouring groups never leak into one another.
 */
import { concernRunner, sleep, unique, type Harness } from './context.js';

/** Defines the isolation tests on a harness; `runStoreConformance` calls it among the others. */
export function defineIsolation(h: Harness): void {
  const { t, expect, test, suitePrefix } = h;
  t.describe('namespaces', () => {
    test('stores in different namespaces never see each other', async ({ open, group }) => {
      const base = `${suitePrefix}-ns-${unique()}`;
      const namespaces = [base, `${base}x`, `${base}:`, `${base}{a}`, `${base}}`, `${base}/x`, `${base} x`];
      const stores = await Promise.all(namespaces.map((namespace) => open(namespace)));
      const g = group();
      for (const [i, store] of stores.entries()) {
        expect(await store.get(g, 'm')).toBeUndefined();
        expect(await store.put(g, 'm', `ns${i}`)).toBe('added');
        expect(await store.insert(g, 'i', `ns${i}`)).toBe(true);
        expect(await store.put(g, 'r', `ns${i}`, { requires: 'm' })).toBe('added');
      }
      for (const [i, store] of stores.entries()) {
        expect((await store.get(g, 'm'))?.value).toBe(`ns${i}`);
        expect((await store.list(g)).map((item) => item.entry.value)).toEqual([`ns${i}`, `ns${i}`, `ns${i}`]);
        const page = await store.scan(undefined, 100);
        expect(page.items.map((item) => item.entry.value)).toEqual([`ns${i}`, `ns${i}`, `ns${i}`]);
      }
      const [first, second] = stores;
      expect(await first?.removeGroup(g)).toBe(3);
      expect(await second?.list(g)).toHaveLength(3);
      expect(await second?.remove(g, 'm')).toBe(true);
      expect(await first?.remove(g, 'm')).toBe(false);
      expect(await first?.put(g, 'r', 'x', { requires: 'i' })).toBe('missing');
    });

    test('purgeExpired purges its own namespace only', async ({ open, group }) => {
      const base = `${suitePrefix}-purge-${unique()}`;
      const [mine, theirs] = [await open(base), await open(`${base}x`)];
      const g = group();
      for (let i = 0; i < 2; i += 1) await mine.insert(g, `e${i}`, 'x', { ttlMs: 20 });
      for (let i = 0; i < 3; i += 1) await theirs.insert(g, `e${i}`, 'x', { ttlMs: 20 });
      await sleep(80);
      let purged = 0;
      for (let n = await mine.purgeExpired(100); n > 0; n = await mine.purgeExpired(100)) purged += n;
      // A backend that expires entries itself may report none; one that purges reports exactly its own two.
      expect(purged === 0 || purged === 2).toBe(true);
      let theirsPurged = 0;
      for (let n = await theirs.purgeExpired(100); n > 0; n = await theirs.purgeExpired(100)) theirsPurged += n;
      expect(theirsPurged === 0 || theirsPurged === 3).toBe(true);
      expect(purged === 0).toBe(theirsPurged === 0);
    });
  });
}

/**
 * Runs only the isolation tests of the conformance suite, with the same arguments as
 * `runStoreConformance`.
 *
 * @example
 * ```ts
 * runIsolationConformance({ describe, it, expect }, ({ namespace }) => createMyStore({ namespace }), { name: 'my-store' });
 * ```
 */
export const runIsolationConformance = concernRunner('isolation', defineIsolation);

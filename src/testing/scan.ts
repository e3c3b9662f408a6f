/**
 * Conformance, scan: pages within the bound, at-least-once visibility of every member
 * live for the whole walk, this namespace only, and an opaque cursor.
 */
import { concernRunner, outcome, REFUSED, unique, type Harness } from './context.js';

/** Defines the scan tests on a harness; `runStoreConformance` calls it among the others. */
export function defineScan(h: Harness): void {
  const { t, expect, test, suitePrefix } = h;
  t.describe('scan', () => {
    test('scan of an empty namespace is one empty page', async ({ store }) => {
      expect(await store.scan(undefined, 10)).toEqual({ items: [], cursor: undefined });
    });

    test('scan walks every live member of the namespace exactly once, in batches', async ({ store, open }) => {
      const bystander = await open(`${suitePrefix}-bystander-${unique()}`);
      await bystander.put('a', 'm', 'not mine');
      const expected = new Map<string, string>();
      const groups = ['a', 'a:b', 'ab', 'a.', 'b', '__proto__', 'z%3A'];
      for (const [i, g] of groups.entries()) {
        for (let m = 0; m <= i; m += 1) {
          const member = `m${m}:${i}`;
          await store.put(g, member, `${g}/${member}`);
          expected.set(`${g}/${member}`, `${g}/${member}`);
        }
      }
      for (const batchSize of [1, 4, 7, 28, 1000]) {
        const seen: string[] = [];
        let cursor: string | undefined;
        let pages = 0;
        do {
          const page = await store.scan(cursor, batchSize);
          expect(page.items.length).toBeLessThanOrEqual(batchSize);
          for (const item of page.items) {
            expect(item.entry.value).toBe(`${item.group}/${item.member}`);
            expect(item.entry).toEqual(await store.get(item.group, item.member));
            seen.push(`${item.group}/${item.member}`);
          }
          cursor = page.cursor;
          pages += 1;
          expect(pages).toBeLessThanOrEqual(expected.size + 1);
        } while (cursor !== undefined);
        expect([...seen].sort()).toEqual([...expected.keys()].sort());
        expect(new Set(seen).size).toBe(seen.length);
      }
    });

    test('scan returns every member live for the whole walk, also when others are written meanwhile', async ({ store }) => {
      await store.put('a', 'm1', '1');
      await store.put('c', 'm1', '3');
      const first = await store.scan(undefined, 1);
      expect(first.items).toHaveLength(1);
      await store.put('b', 'm1', '2');
      await store.put('d', 'm1', '4');
      const seen = first.items.map((item) => item.group);
      let cursor = first.cursor;
      while (cursor !== undefined) {
        const page = await store.scan(cursor, 1);
        seen.push(...page.items.map((item) => item.group));
        cursor = page.cursor;
      }
      expect(seen.includes('a') && seen.includes('c')).toBe(true);
      expect(seen.every((group) => ['a', 'b', 'c', 'd'].includes(group))).toBe(true);
    });

    test('scan still returns every member live for the whole walk when others are removed meanwhile', async ({ store }) => {
      const groups = ['a', 'b', 'c', 'd', 'e', 'f'];
      for (const g of groups) await store.put(g, 'm', g);
      const first = await store.scan(undefined, 1);
      const seen = first.items.map((item) => item.group);
      const removed = groups.filter((g) => !seen.includes(g)).slice(0, 2);
      for (const g of removed) expect(await store.removeGroup(g)).toBe(1);
      let cursor = first.cursor;
      while (cursor !== undefined) {
        const page = await store.scan(cursor, 1);
        seen.push(...page.items.map((item) => item.group));
        cursor = page.cursor;
      }
      const lasting = groups.filter((g) => !removed.includes(g));
      expect(lasting.every((g) => seen.includes(g))).toBe(true);
      expect(seen.every((g) => groups.includes(g))).toBe(true);
    });

    test('scan refuses a cursor it did not make with RangeError', async ({ store }) => {
      await store.put('a', 'm1', '1');
      expect(await outcome(() => store.scan('not a cursor {', 10))).toBe(REFUSED);
    });
  });
}

/**
 * Runs only the scan tests of the conformance suite, with the same arguments as
 * `runStoreConformance`.
 *
 * @example
 * ```ts
 * runScanConformance({ describe, it, expect }, ({ namespace }) => createMyStore({ namespace }), { name: 'my-store' });
 * ```
 */
export const runScanConformance = concernRunner('scan', defineScan);

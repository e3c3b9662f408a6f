/**
 * Conformance, lifecycle: close resolves (twice, too) and every later call rejects with
 * `STORE_UNAVAILABLE`; a second store on the same backend sees the same data.
 */
import { CLOSED, concernRunner, everyCall, outcome, type Harness } from './context.js';

/** Defines the lifecycle tests on a harness; `runStoreConformance` calls it among the others. */
export function defineLifecycle(h: Harness): void {
  const { t, expect, test, factory, options, skipped } = h;
  t.describe('close', () => {
    test('close resolves, twice too, and every later call rejects with STORE_UNAVAILABLE', async ({ namespace, group }) => {
      const store = await factory({ namespace: `${namespace}-close` });
      const g = group();
      await store.put(g, 'm', 'v');
      await store.close();
      for (const [label, call] of [...everyCall(store, g), ['purgeExpired', () => store.purgeExpired(10)] as const]) {
        expect(`${label}: ${await outcome(call)}`).toBe(`${label}: ${CLOSED}`);
      }
      expect(await outcome(() => store.close())).toBe('resolved');
    });

    const second = 'a second store on the same backend sees the same data';
    if (options.concurrencyFactory === undefined) skipped(second, 'no concurrencyFactory option');
    else {
      const reopen = options.concurrencyFactory;
      test(second, async ({ store, namespace, group }) => {
        const g = group();
        await store.put(g, 'm', 'kept');
        const other = await reopen({ namespace });
        try {
          expect((await other.get(g, 'm'))?.value).toBe('kept');
          expect(await other.put(g, 'm', 'again')).toBe('updated');
        } finally {
          await other.close();
        }
        expect((await store.get(g, 'm'))?.value).toBe('again');
      });
    }
  });
}

/**
 * Runs only the lifecycle tests of the conformance suite, with the same arguments as
 * `runStoreConformance`.
 *
 * @example
 * ```ts
 * runLifecycleConformance({ describe, it, expect }, ({ namespace }) => createMyStore({ namespace }), { name: 'my-store' });
 * ```
 */
export const runLifecycleConformance = concernRunner('lifecycle', defineLifecycle);

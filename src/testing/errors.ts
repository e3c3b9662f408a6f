/**
 * Conformance, errors: bad input rejects with `RangeError` before anything is written,
 * and a backend that cannot be reached, or fails after connecting, rejects every call,
 * never reading as absent, empty, `false` or `0`.
 */
import { MAX_NAME_LENGTH } from '../core/store.js';
import { concernRunner, everyCall, outcome, REFUSED, type Harness, type Outcome } from './context.js';

/** A backend failure: a rejection with any error but the `RangeError` of bad input. */
const failed = (label: string, result: Outcome): string =>
  `${label}: ${result.startsWith('rejected ') && result !== REFUSED ? 'rejected' : result}`;

/** Defines the errors tests on a harness; `runStoreConformance` calls it among the others. */
export function defineErrors(h: Harness): void {
  const { t, expect, test, options, skipped } = h;

  t.describe('bad input', () => {
    test('names outside the contract are refused with RangeError, and nothing is written', async ({ store, group }) => {
      const g = group();
      const long = 'n'.repeat(MAX_NAME_LENGTH + 1);
      await store.put(g, 'profile', 'p');
      for (const bad of ['a b', 'a{b}', 'a}', 'a/b', 'é', 'a\nb', long]) {
        const calls: Array<readonly [string, () => Promise<unknown>]> = [
          ['get group', () => store.get(bad, 'm')],
          ['get member', () => store.get(g, bad)],
          ['put member', () => store.put(g, bad, 'v')],
          ['put requires', () => store.put(g, 'm', 'v', { requires: bad })],
          ['insert member', () => store.insert(g, bad, 'v')],
          ['insert requires', () => store.insert(g, 'm', 'v', { requires: bad })],
          ['replace member', () => store.replace(g, bad, 'p', 'v')],
          ['remove member', () => store.remove(g, bad)],
          ['list group', () => store.list(bad)],
          ['list prefix', () => store.list(g, bad)],
          ['removeGroup group', () => store.removeGroup(bad)],
          ['batch group', () => store.batch(bad, [{ op: 'put', member: 'm', value: 'v' }])],
          ['batch member', () => store.batch(g, [{ op: 'put', member: bad, value: 'v' }])],
          ['batch requires', () => store.batch(g, [{ op: 'put', member: 'm', value: 'v' }], { requires: bad })],
          ['increment member', () => store.increment(g, bad, 60_000)],
        ];
        const shown = bad.length > 16 ? `(${bad.length} characters)` : JSON.stringify(bad);
        for (const [label, call] of calls) expect(`${label} ${shown}: ${await outcome(call)}`).toBe(`${label} ${shown}: ${REFUSED}`);
      }
      expect((await store.list(g)).map((item) => item.member)).toEqual(['profile']);
    });

    test(`names of ${MAX_NAME_LENGTH} characters are ordinary names`, async ({ store, group }) => {
      const longGroup = `${group()}${'g'.repeat(MAX_NAME_LENGTH)}`.slice(0, MAX_NAME_LENGTH);
      const longMember = `m:${'%3A'.repeat(MAX_NAME_LENGTH)}`.slice(0, MAX_NAME_LENGTH);
      const g = group();
      expect(await store.put(longGroup, 'm', 'in a long group')).toBe('added');
      expect(await store.put(g, longMember, 'a long member')).toBe('added');
      expect((await store.get(longGroup, 'm'))?.value).toBe('in a long group');
      expect((await store.list(g)).map((item) => item.member === longMember)).toEqual([true]);
      expect(await store.insert(g, longMember, 'again')).toBe(false);
      expect(await store.replace(g, longMember, 'a long member', 'replaced')).toBe(true);
      expect(await store.batch(g, [{ op: 'remove', member: longMember }])).toEqual({ committed: true, results: [true] });
      expect(await store.removeGroup(longGroup)).toBe(1);
    });

    test('TTLs, limits and batch sizes that are not positive are refused with RangeError', async ({ store, group }) => {
      const g = group();
      for (const ttlMs of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
        expect(`insert ttl ${ttlMs}: ${await outcome(() => store.insert(g, 'm', 'v', { ttlMs }))}`).toBe(`insert ttl ${ttlMs}: ${REFUSED}`);
      }
      for (const size of [0, -1, 1.5, Number.NaN]) {
        expect(`scan batchSize ${size}: ${await outcome(() => store.scan(undefined, size))}`).toBe(`scan batchSize ${size}: ${REFUSED}`);
      }
      expect(await store.list(g)).toEqual([]);
    });
  });

  t.describe('errors surface', () => {
    const surface = 'every call on an unreachable backend rejects, never reads as absent';
    if (options.unreachableFactory === undefined) skipped(surface, 'no unreachableFactory option');
    else {
      const unreachable = options.unreachableFactory;
      test(surface, async ({ namespace, group }) => {
        const store = await unreachable({ namespace: `${namespace}-down` });
        try {
          for (const [label, call] of everyCall(store, group())) expect(failed(label, await outcome(call))).toBe(`${label}: rejected`);
        } finally {
          await store.close().catch(() => undefined);
        }
      });
    }

    const cut = 'a backend that fails after connecting rejects every call, and its data is still there afterwards';
    if (options.failingFactory === undefined) skipped(cut, 'no failingFactory option');
    else {
      const failing = options.failingFactory;
      test(cut, async ({ open, namespace, group }) => {
        const g = group();
        // Written through a healthy store, so an answer of "absent" or "empty" would be a lie.
        const seeded = await open(`${namespace}-cut`);
        await seeded.put(g, 'profile', 'p');
        await seeded.put(g, 'm', 'v');
        await seeded.increment(g, 'n', 60_000);
        const before = await seeded.list(g);
        const store = await failing({ namespace: `${namespace}-cut` });
        try {
          for (const [label, call] of everyCall(store, g)) expect(failed(label, await outcome(call))).toBe(`${label}: rejected`);
        } finally {
          await store.close().catch(() => undefined);
        }
        expect(await seeded.list(g)).toEqual(before);
      });
    }
  });
}

/**
 * Runs only the errors tests of the conformance suite, with the same arguments as
 * `runStoreConformance`.
 *
 * @example
 * ```ts
 * runErrorsConformance({ describe, it, expect }, ({ namespace }) => createMyStore({ namespace }), {
 *   unreachableFactory: ({ namespace }) => createMyStore({ namespace, url: 'my://127.0.0.1:1' }),
 * });
 * ```
 */
export const runErrorsConformance = concernRunner('errors', defineErrors);

/**
 * Conformance, expiry: an expired entry is absent for every method, a put clears an
 * expiry and a replace keeps it, and purgeExpired deletes expired entries only, within its bound.
 */
import { concernRunner, REFUSED, outcome, sleep, type Harness } from './context.js';

/** Defines the expiry tests on a harness; `runStoreConformance` calls it among the others. */
export function defineExpiry(h: Harness): void {
  const { t, expect, test } = h;
  t.describe('expiry', () => {
    test('an expired entry is absent everywhere', async ({ store, group }) => {
      const g = group();
      await store.put(g, 'profile', 'p');
      for (const member of ['a', 'b', 'c', 'd', 'e', 'f', 'profile-copy']) {
        expect(await store.insert(g, member, `old-${member}`, { ttlMs: 50 })).toBe(true);
      }
      await sleep(120);

      expect(await store.get(g, 'a')).toBeUndefined();
      expect((await store.list(g)).map((item) => item.member)).toEqual(['profile']);
      expect(await store.remove(g, 'b')).toBe(false);
      expect(await store.replace(g, 'c', 'old-c', 'new')).toBe(false);
      expect(await store.get(g, 'c')).toBeUndefined();
      expect(await store.put(g, 'x', 'v', { requires: 'd' })).toBe('missing');

      const before = Date.now();
      expect(await store.insert(g, 'e', 'fresh')).toBe(true);
      const fresh = await store.get(g, 'e');
      expect(fresh?.value).toBe('fresh');
      expect(fresh?.expiresAt).toBeUndefined();
      expect((fresh?.createdAt ?? 0) >= before).toBe(true);

      expect(await store.put(g, 'f', 'put')).toBe('added');
      const put = await store.get(g, 'f');
      expect((put?.createdAt ?? 0) >= before).toBe(true);
      expect(put?.expiresAt).toBeUndefined();

      expect(await store.removeGroup(g)).toBe(3);
      expect(await store.list(g)).toEqual([]);
    });

    test('an expired entry is absent from scan', async ({ store, group }) => {
      const g = group();
      await store.insert(g, 'gone', 'x', { ttlMs: 50 });
      await store.put(g, 'kept', 'y');
      await sleep(120);
      const page = await store.scan(undefined, 100);
      expect(page.items.map((item) => `${item.group}/${item.member}`)).toEqual([`${g}/kept`]);
    });

    test('put over a live entry with a ttl updates it and leaves no expiry', async ({ store, group }) => {
      const g = group();
      await store.insert(g, 'm', 'a', { ttlMs: 60_000 });
      const first = await store.get(g, 'm');
      expect(await store.put(g, 'm', 'b')).toBe('updated');
      const second = await store.get(g, 'm');
      expect(second?.value).toBe('b');
      expect(second?.createdAt).toBe(first?.createdAt);
      expect(second?.expiresAt).toBeUndefined();
    });
    test('a batch sees an expired member as absent: requires and replace fail, remove finds nothing', async ({ store, group }) => {
      const g = group();
      await store.put(g, 'kept', 'k');
      for (const member of ['profile', 'swap', 'gone']) await store.insert(g, member, 'old', { ttlMs: 50 });
      await sleep(120);
      expect(await store.batch(g, [{ op: 'put', member: 'a', value: '1' }], { requires: 'profile' })).toEqual({ committed: false, failed: -1 });
      expect(
        await store.batch(g, [
          { op: 'put', member: 'a', value: '1' },
          { op: 'replace', member: 'swap', expected: 'old', value: 'new' },
        ]),
      ).toEqual({ committed: false, failed: 1 });
      expect((await store.list(g)).map((item) => item.member)).toEqual(['kept']);
      expect(await store.batch(g, [{ op: 'remove', member: 'gone' }, { op: 'put', member: 'swap', value: 'fresh' }])).toEqual({
        committed: true,
        results: [false, 'added'],
      });
      const fresh = await store.get(g, 'swap');
      expect(fresh?.value).toBe('fresh');
      expect(fresh?.expiresAt).toBeUndefined();
    });

    test('increment sees an expired member as absent, and list, get and scan agree on a live counter', async ({ store, group }) => {
      const g = group();
      await store.insert(g, 'n', '41', { ttlMs: 50 });
      await sleep(120);
      const counter = await store.increment(g, 'n', 60_000);
      expect(counter.count).toBe(1);
      const entry = await store.get(g, 'n');
      expect(entry?.value).toBe('1');
      expect(entry?.expiresAt).toBe(counter.expiresAt);
      expect(await store.list(g)).toEqual([{ member: 'n', entry }]);
    });
  });

  t.describe('purgeExpired', () => {
    test('removes expired entries only, at most the limit per call', async ({ store, group }) => {
      const g = group();
      await store.put(g, 'forever', 'f');
      await store.insert(g, 'later', 'l', { ttlMs: 60_000 });
      for (let i = 0; i < 5; i += 1) await store.insert(group(), 'soon', 's', { ttlMs: 20 });
      await store.increment(g, 'counter', 20);
      await sleep(80);
      let purged = 0;
      for (let round = 0; round < 10; round += 1) {
        const n = await store.purgeExpired(2);
        expect(n).toBeLessThanOrEqual(2);
        purged += n;
        if (n === 0) break;
      }
      // A backend that expires entries itself may report none.
      expect(purged === 0 || purged === 6).toBe(true);
      expect((await store.list(g)).map((item) => item.member)).toEqual(['forever', 'later']);
      for (const limit of [0, -1, 1.5, Number.NaN]) expect(await outcome(() => store.purgeExpired(limit))).toBe(REFUSED);
    });
  });
}

/**
 * Runs only the expiry tests of the conformance suite, with the same arguments as
 * `runStoreConformance`.
 *
 * @example
 * ```ts
 * runExpiryConformance({ describe, it, expect }, ({ namespace }) => createMyStore({ namespace }), { name: 'my-store' });
 * ```
 */
export const runExpiryConformance = concernRunner('expiry', defineExpiry);

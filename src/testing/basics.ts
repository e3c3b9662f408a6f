/**
 * Conformance, basics: get, put, insert, replace, remove, removeGroup and list, one
 * member at a time, with their timestamps and `requires` conditions.
 */
import { byCodeUnit, concernRunner, sleep, type Harness } from './context.js';

/** Defines the basics tests on a harness; `runStoreConformance` calls it among the others. */
export function defineBasics(h: Harness): void {
  const { t, expect, test, expectTimestamps } = h;
  t.describe('get and put', () => {
    test('get of an absent member is undefined', async ({ store, group }) => {
      const g = group();
      expect(await store.get(g, 'nothing')).toBeUndefined();
      expect(await store.get(g, '__proto__')).toBeUndefined();
      expect(await store.get(g, 'constructor')).toBeUndefined();
      expect(await store.get(g, 'toString')).toBeUndefined();
    });

    test('put adds a member and get returns it with its timestamps', async ({ store, group }) => {
      const g = group();
      const before = Date.now();
      expect(await store.put(g, 'api_key', 'v1')).toBe('added');
      const after = Date.now();
      const entry = await store.get(g, 'api_key');
      expect(entry?.value).toBe('v1');
      expectTimestamps(entry, before, after);
      expect(entry?.updatedAt).toBe(entry?.createdAt);
      expect(entry?.expiresAt).toBeUndefined();
    });

    test('put over a live member updates it, keeps createdAt and advances updatedAt', async ({ store, group }) => {
      const g = group();
      await store.put(g, 'm', 'first');
      const first = await store.get(g, 'm');
      await sleep(15);
      expect(await store.put(g, 'm', 'second')).toBe('updated');
      const second = await store.get(g, 'm');
      expect(second?.value).toBe('second');
      expect(second?.createdAt).toBe(first?.createdAt);
      expect((second?.updatedAt ?? 0) - (first?.updatedAt ?? 0)).toBeGreaterThan(0);
      expect(await store.put(g, 'm', 'second')).toBe('updated');
    });

    test('put with requires writes only when the required member exists', async ({ store, group }) => {
      const g = group();
      const other = group();
      await store.put(other, 'profile', 'p');
      expect(await store.put(g, 'cred', 'v', { requires: 'profile' })).toBe('missing');
      expect(await store.get(g, 'cred')).toBeUndefined();
      expect(await store.list(g)).toEqual([]);

      await store.put(g, 'profile', 'p');
      expect(await store.put(g, 'cred', 'v1', { requires: 'profile' })).toBe('added');
      expect(await store.put(g, 'cred', 'v2', { requires: 'profile' })).toBe('updated');
      expect((await store.get(g, 'cred'))?.value).toBe('v2');

      await store.remove(g, 'profile');
      expect(await store.put(g, 'cred', 'v3', { requires: 'profile' })).toBe('missing');
      expect((await store.get(g, 'cred'))?.value).toBe('v2');
      expect(await store.put(g, 'cred', 'v4', { requires: 'cred' })).toBe('updated');
      expect(await store.put(g, 'new', 'v', { requires: 'new' })).toBe('missing');
      expect(await store.get(g, 'new')).toBeUndefined();
    });
  });

  t.describe('insert', () => {
    test('insert writes only when absent', async ({ store, group }) => {
      const g = group();
      const before = Date.now();
      expect(await store.insert(g, 'token', 'a')).toBe(true);
      const after = Date.now();
      expect(await store.insert(g, 'token', 'b')).toBe(false);
      const entry = await store.get(g, 'token');
      expect(entry?.value).toBe('a');
      expectTimestamps(entry, before, after);
      expect(entry?.expiresAt).toBeUndefined();
      expect(await store.put(g, 'other', 'x')).toBe('added');
      expect(await store.insert(g, 'other', 'y')).toBe(false);
      expect((await store.get(g, 'other'))?.value).toBe('x');
    });

    test('insert with requires writes only when the required member exists', async ({ store, group }) => {
      const g = group();
      const other = group();
      await store.put(other, 'profile', 'p');
      expect(await store.insert(g, 'token', 't', { requires: 'profile' })).toBe(false);
      expect(await store.list(g)).toEqual([]);

      await store.put(g, 'profile', 'p');
      expect(await store.insert(g, 'token', 't1', { requires: 'profile', ttlMs: 60_000 })).toBe(true);
      expect(await store.insert(g, 'token', 't2', { requires: 'profile' })).toBe(false);
      expect((await store.get(g, 'token'))?.value).toBe('t1');

      await store.insert(g, 'short', 's', { ttlMs: 50 });
      await sleep(120);
      expect(await store.insert(g, 'other', 'o', { requires: 'short' })).toBe(false);
      expect(await store.get(g, 'other')).toBeUndefined();
      await store.remove(g, 'profile');
      expect(await store.insert(g, 'next', 'n', { requires: 'profile' })).toBe(false);
      expect((await store.list(g)).map((item) => item.member)).toEqual(['token']);
    });

    test('insert with ttlMs sets expiresAt', async ({ store, group }) => {
      const g = group();
      const before = Date.now();
      expect(await store.insert(g, 'session', 's', { ttlMs: 60_000 })).toBe(true);
      const after = Date.now();
      const entry = await store.get(g, 'session');
      expect(entry?.value).toBe('s');
      const expiresAt = entry?.expiresAt ?? 0;
      expect(expiresAt >= before + 60_000 && expiresAt <= after + 60_000).toBe(true);
      const [listed] = await store.list(g);
      expect(listed?.entry.expiresAt).toBe(expiresAt);
    });
  });

  t.describe('replace', () => {
    test('replace swaps the value only when it matches and keeps both timestamps', async ({ store, group }) => {
      const g = group();
      expect(await store.replace(g, 'm', 'a', 'b')).toBe(false);
      expect(await store.get(g, 'm')).toBeUndefined();

      await store.put(g, 'm', 'a');
      const before = await store.get(g, 'm');
      await sleep(15);
      expect(await store.replace(g, 'm', 'not-a', 'b')).toBe(false);
      expect((await store.get(g, 'm'))?.value).toBe('a');
      expect(await store.replace(g, 'm', 'a', 'b')).toBe(true);
      const after = await store.get(g, 'm');
      expect(after).toEqual({ ...before, value: 'b' });
      expect(await store.replace(g, 'm', 'a', 'c')).toBe(false);
      expect((await store.get(g, 'm'))?.value).toBe('b');
    });

    test('replace compares the whole value exactly', async ({ store, group }) => {
      const g = group();
      await store.put(g, 'm', 'abc');
      expect(await store.replace(g, 'm', 'ab', 'x')).toBe(false);
      expect(await store.replace(g, 'm', 'abc ', 'x')).toBe(false);
      expect(await store.replace(g, 'm', 'ABC', 'x')).toBe(false);
      expect(await store.replace(g, 'm', '"abc"', 'x')).toBe(false);
      expect((await store.get(g, 'm'))?.value).toBe('abc');
    });

    test('replace keeps the expiry of an entry with a ttl', async ({ store, group }) => {
      const g = group();
      await store.insert(g, 'm', 'a', { ttlMs: 60_000 });
      const before = await store.get(g, 'm');
      expect(await store.replace(g, 'm', 'a', 'b')).toBe(true);
      expect(await store.get(g, 'm')).toEqual({ ...before, value: 'b' });
    });
  });

  t.describe('remove and removeGroup', () => {
    test('remove deletes one member and says whether it existed', async ({ store, group }) => {
      const g = group();
      await store.put(g, 'a', '1');
      await store.put(g, 'b', '2');
      expect(await store.remove(g, 'a')).toBe(true);
      expect(await store.remove(g, 'a')).toBe(false);
      expect(await store.remove(g, 'never')).toBe(false);
      expect(await store.get(g, 'a')).toBeUndefined();
      expect((await store.get(g, 'b'))?.value).toBe('2');
      expect(await store.put(g, 'a', '3')).toBe('added');
    });

    test('removeGroup removes every member and returns the count', async ({ store, group }) => {
      const g = group();
      for (const member of ['a', 'b', 'c', 'd']) await store.put(g, member, member);
      expect(await store.removeGroup(g)).toBe(4);
      expect(await store.list(g)).toEqual([]);
      expect(await store.get(g, 'a')).toBeUndefined();
      expect(await store.removeGroup(g)).toBe(0);
      expect(await store.insert(g, 'a', 'again')).toBe(true);
    });

    test('removeGroup on an empty group returns 0', async ({ store, group }) => {
      expect(await store.removeGroup(group())).toBe(0);
    });

    test('list and removeGroup never touch neighbouring groups', async ({ store, group }) => {
      const g = group();
      const neighbours = [`${g}x`, `${g}:x`, `${g}.`, `${g}-`, `${g}%`, `${g}_`, `${g}:`, g.slice(0, -1)];
      for (const n of neighbours) await store.put(n, 'm', n);
      await store.put(g, 'm', 'mine');
      await store.put(g, 'n', 'mine too');

      expect((await store.list(g)).map((item) => item.member)).toEqual(['m', 'n']);
      expect(await store.removeGroup(g)).toBe(2);
      for (const n of neighbours) {
        const items = await store.list(n);
        expect(items.map((item) => [item.member, item.entry.value])).toEqual([['m', n]]);
      }
    });
  });

  t.describe('list', () => {
    test('list returns every live member sorted by name', async ({ store, group }) => {
      const g = group();
      const members = ['b', 'a', 'A', 'a.b', 'a-b', 'a:b', 'a_b', 'a%3A', 'ab', '0', 'Z', 'z', 'a:'];
      for (const member of members) await store.put(g, member, `v:${member}`);
      const items = await store.list(g);
      expect(items.map((item) => item.member)).toEqual([...members].sort(byCodeUnit));
      for (const item of items) expect(item.entry.value).toBe(`v:${item.member}`);
      expect(await store.list(group())).toEqual([]);
    });

    test('list filters by member prefix', async ({ store, group }) => {
      const g = group();
      for (const member of ['cred:a', 'cred:b', 'cred', 'credx', 'token:1', 'Cred:c', 'cre']) {
        await store.put(g, member, member);
      }
      const names = async (prefix?: string): Promise<string[]> =>
        (await store.list(g, prefix)).map((item) => item.member);
      expect(await names('cred:')).toEqual(['cred:a', 'cred:b']);
      expect(await names('cred')).toEqual(['cred', 'cred:a', 'cred:b', 'credx']);
      expect(await names('token:')).toEqual(['token:1']);
      expect(await names('cred:a')).toEqual(['cred:a']);
      expect(await names('nothing')).toEqual([]);
      expect(await names('')).toHaveLength(7);
      expect(await names()).toHaveLength(7);
    });

    test('list entries carry values and timestamps', async ({ store, group }) => {
      const g = group();
      await store.put(g, 'a', 'va');
      await store.insert(g, 'b', 'vb');
      const items = await store.list(g);
      expect(items).toEqual([
        { member: 'a', entry: await store.get(g, 'a') },
        { member: 'b', entry: await store.get(g, 'b') },
      ]);
    });
  });
}

/**
 * Runs only the basics tests of the conformance suite, with the same arguments as
 * `runStoreConformance`.
 *
 * @example
 * ```ts
 * runBasicsConformance({ describe, it, expect }, ({ namespace }) => createMyStore({ namespace }), { name: 'my-store' });
 * ```
 */
export const runBasicsConformance = concernRunner('basics', defineBasics);

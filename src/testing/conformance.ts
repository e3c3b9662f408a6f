import { randomUUID } from 'node:crypto';
import type { StoreEntry, VaultStore } from '../core/store.js';

/** The assertions the suite uses; vitest's and jest's `expect` both provide them. */
export interface ConformanceExpectation {
  toBe(expected: unknown): void;
  toEqual(expected: unknown): void;
  toBeUndefined(): void;
  toHaveLength(length: number): void;
  toBeGreaterThan(expected: number): void;
  toBeLessThanOrEqual(expected: number): void;
}

/** The test-runner functions the suite needs: pass vitest's or jest's globals. */
export interface ConformanceTestApi {
  describe(name: string, body: () => void): void;
  it(name: string, body: () => Promise<void>): void;
  expect(actual: unknown): ConformanceExpectation;
}

/** Opens a store on the backend under test, in the given namespace. */
export type StoreFactory = (options: { namespace: string }) => Promise<VaultStore> | VaultStore;

export interface ConformanceOptions {
  /** Shown in the suite's title, e.g. `sqlite`. */
  name?: string;
  /**
   * Opens extra stores on the same backend as `factory` (a separate connection or client
   * each) that race the first one in the concurrency tests. Without it, all racing calls
   * go through one store, which suits backends that cannot be shared, such as memory.
   */
  concurrencyFactory?: StoreFactory;
  /**
   * Opens a store whose batches fail on purpose: while `controls.failAt` is `i >= 0`, the
   * store must fail the next batch at write `i` (or, where the backend cannot stop
   * part-way, anywhere inside it) through a test hook of your adapter. The suite then
   * checks that the batch rejected and that nothing of it was written.
   */
  faults?: { factory: (options: { namespace: string }, controls: { failAt: number }) => Promise<VaultStore> | VaultStore };
  /**
   * Opens a store on a backend that cannot be reached (a closed port, a dead host). The
   * suite checks that every call rejects rather than reading as absent or empty.
   */
  unreachableFactory?: StoreFactory;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const unique = (): string => randomUUID().replaceAll('-', '').slice(0, 16);
const byCodeUnit = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Values that must come back byte for byte. */
const TRICKY_VALUES: ReadonlyArray<readonly [string, string]> = [
  ['plain', 'sk_live_1234567890abcdef'],
  ['one char', 'x'],
  ['unicode', 'héllo wörld ✓ 日本語 👩🏽‍💻 \u0301e ﬁ'],
  ['control characters', 'line1\nline2\r\n\ttab \u0001\u001f\u007f'],
  ['quotes and backslashes', `"quoted" 'single' \\ \\" \\\\n`],
  ['leading colon', ':starts:with:colon'],
  ['braces', '{group}:member'],
  ['looks like JSON', '{"value":{"v":"x"},"expires":1}'],
  ['JSON string literal', '"just a string"'],
  ['JSON number', '12345'],
  ['JSON null', 'null'],
  ['whitespace', '  padded  '],
  ['64 KiB', 'abcdefghijklmnop'.repeat(4096)],
  ['64 KiB unicode', 'é✓'.repeat(16384)],
];

/**
 * Runs the {@link VaultStore} conformance suite: every rule written on the contract,
 * against a real backend. Runner-agnostic: pass your runner's `describe`, `it` and `expect`.
 *
 * Each test opens its own stores in fresh random namespaces and uses fresh random groups,
 * so the suite can share one backend with other data; each test closes what it opened.
 *
 * @example
 * ```ts
 * import { describe, it, expect } from 'vitest';
 * import { runStoreConformance } from 'credvault/testing';
 * import { createMyStore } from '../src/my-store.js';
 *
 * runStoreConformance({ describe, it, expect }, ({ namespace }) => createMyStore({ namespace }), {
 *   name: 'my-store',
 *   concurrencyFactory: ({ namespace }) => createMyStore({ namespace }),
 * });
 * ```
 */
export function runStoreConformance(
  t: ConformanceTestApi,
  factory: StoreFactory,
  options: ConformanceOptions = {},
): void {
  const { expect } = t;
  const suitePrefix = `cvtest-${unique()}`;

  interface Context {
    /** The store this test runs against, in its own namespace. */
    store: VaultStore;
    namespace: string;
    /** Opens another store; closed with the test. */
    open(namespace: string): Promise<VaultStore>;
    /** Fresh group name, unique to this test. */
    group(suffix?: string): string;
  }

  function test(name: string, body: (context: Context) => Promise<void>): void {
    t.it(name, async () => {
      const opened: VaultStore[] = [];
      const open = async (namespace: string): Promise<VaultStore> => {
        const store = await factory({ namespace });
        opened.push(store);
        return store;
      };
      try {
        const namespace = `${suitePrefix}-${unique()}`;
        const store = await open(namespace);
        await body({ store, namespace, open, group: (suffix = '') => `g${unique()}${suffix}` });
      } finally {
        await Promise.all(opened.map((store) => store.close()));
      }
    });
  }

  /** Runs `body` with racing stores: the test's own plus, when given, three more connections. */
  function raceTest(name: string, body: (context: Context, stores: VaultStore[]) => Promise<void>): void {
    test(name, async (context) => {
      const extra: VaultStore[] = [];
      try {
        const connect = options.concurrencyFactory;
        if (connect !== undefined) {
          for (let i = 0; i < 3; i += 1) extra.push(await connect({ namespace: context.namespace }));
        }
        await body(context, [context.store, ...extra]);
      } finally {
        await Promise.all(extra.map((store) => store.close()));
      }
    });
  }

  function expectTimestamps(entry: StoreEntry | undefined, before: number, after: number): void {
    expect(entry === undefined).toBe(false);
    if (entry === undefined) return;
    expect(entry.createdAt >= before && entry.createdAt <= after).toBe(true);
    expect(entry.updatedAt >= before && entry.updatedAt <= after).toBe(true);
  }

  async function rejects(call: () => Promise<unknown>): Promise<boolean> {
    try {
      await call();
      return false;
    } catch {
      return true;
    }
  }

  t.describe(`VaultStore conformance${options.name === undefined ? '' : `: ${options.name}`}`, () => {
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

    t.describe('keys', () => {
      test('distinct (group, member) pairs never collide', async ({ store, group }) => {
        const g = group();
        const pairs: Array<[string, string]> = [
          [`${g}a:b`, 'c'],
          [`${g}a`, 'b:c'],
          [`${g}a:b:c`, 'd'],
          [`${g}a`, 'b'],
          [`${g}a%3Ab`, 'c'],
          [`${g}a:`, 'b:c'],
          [`${g}a::b`, 'c'],
          [`${g}a`, ':b:c'],
        ];
        for (const [grp, member] of pairs) {
          expect(await store.put(grp, member, `${grp}|${member}`)).toBe('added');
        }
        for (const [grp, member] of pairs) {
          expect((await store.get(grp, member))?.value).toBe(`${grp}|${member}`);
        }
        expect((await store.list(`${g}a`)).map((item) => item.member)).toEqual([':b:c', 'b', 'b:c']);
        expect((await store.list(`${g}a:b`)).map((item) => item.member)).toEqual(['c']);
      });

      test('member names that shadow object properties are ordinary members', async ({ store, group }) => {
        const g = group();
        const members = ['__proto__', 'constructor', 'hasOwnProperty', 'toString', 'prototype', 'valueOf'];
        for (const member of members) {
          expect(await store.get(g, member)).toBeUndefined();
          expect(await store.put(g, member, `v-${member}`)).toBe('added');
        }
        for (const member of members) expect((await store.get(g, member))?.value).toBe(`v-${member}`);
        expect((await store.list(g)).map((item) => item.member)).toEqual([...members].sort(byCodeUnit));
        expect(await store.list(group('__proto__'))).toEqual([]);
        expect(await store.removeGroup(g)).toBe(members.length);
      });

      test('groups named like object properties are ordinary groups', async ({ store }) => {
        for (const g of ['__proto__', 'constructor', 'hasOwnProperty']) {
          expect(await store.list(g)).toEqual([]);
          expect(await store.put(g, 'm', g)).toBe('added');
          expect((await store.list(g)).map((item) => item.entry.value)).toEqual([g]);
          expect(await store.removeGroup(g)).toBe(1);
        }
      });
    });

    t.describe('values', () => {
      for (const [label, value] of TRICKY_VALUES) {
        test(`a ${label} value round-trips byte for byte`, async ({ store, group }) => {
          const g = group();
          expect(await store.put(g, 'put', value)).toBe('added');
          expect(await store.insert(g, 'insert', value)).toBe(true);
          await store.put(g, 'replace', 'before');
          expect(await store.replace(g, 'replace', 'before', value)).toBe(true);
          for (const member of ['put', 'insert', 'replace']) {
            const entry = await store.get(g, member);
            expect(entry?.value.length).toBe(value.length);
            expect(entry?.value === value).toBe(true);
          }
          for (const item of await store.list(g)) expect(item.entry.value === value).toBe(true);
          expect(await store.replace(g, 'replace', value, 'after')).toBe(true);
          expect((await store.get(g, 'replace'))?.value).toBe('after');
        });
      }
    });

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
    });

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

      test('scan rejects a cursor it did not make', async ({ store }) => {
        await store.put('a', 'm1', '1');
        expect(await rejects(() => store.scan('not a cursor {', 10))).toBe(true);
      });
    });

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

      test('bad batches are refused before anything is written', async ({ store, group }) => {
        const g = group();
        const twice = [
          { op: 'put', member: 'a', value: '1' },
          { op: 'put', member: 'a', value: '2' },
        ] as const;
        expect(await rejects(() => store.batch(g, twice))).toBe(true);
        expect(await rejects(() => store.batch(g, [{ op: 'put', member: 'a b', value: '1' }]))).toBe(true);
        expect(await rejects(() => store.batch(g, [{ op: 'put', member: 'p', value: '1' }], { requires: 'p' }))).toBe(true);
        expect(await rejects(() => store.batch(g, [{ op: 'insert', member: 'a', value: '1', ttlMs: -1 }]))).toBe(true);
        const tooMany = Array.from({ length: 1001 }, (_, i) => ({ op: 'put' as const, member: `m${i}`, value: 'v' }));
        expect(await rejects(() => store.batch(g, tooMany))).toBe(true);
        expect(await store.list(g)).toEqual([]);
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

      if (options.faults !== undefined) {
        const faults = options.faults;
        test('a batch that fails part-way rejects and leaves the store as it was', async ({ namespace, group }) => {
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

      test('a bad TTL is refused', async ({ store, group }) => {
        expect(await rejects(() => store.increment(group(), 'n', 0))).toBe(true);
        expect(await rejects(() => store.increment(group(), 'n', Number.NaN))).toBe(true);
      });

      raceTest('100 racing increments return 100 distinct counts', async ({ group }, stores) => {
        const g = group();
        const counts = await Promise.all(
          Array.from({ length: 100 }, (_, i) => (stores[i % stores.length] as VaultStore).increment(g, 'n', 60_000)),
        );
        expect(counts.map((c) => c.count).sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
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
        expect(await rejects(() => store.purgeExpired(0))).toBe(true);
      });
    });

    if (options.unreachableFactory !== undefined) {
      const unreachable = options.unreachableFactory;
      t.describe('errors surface', () => {
        test('every call on an unreachable backend rejects, never reads as absent', async ({ namespace }) => {
          const store = await unreachable({ namespace: `${namespace}-down` });
          try {
            const calls: Array<() => Promise<unknown>> = [
              () => store.get('g', 'm'),
              () => store.put('g', 'm', 'v'),
              () => store.insert('g', 'm', 'v'),
              () => store.replace('g', 'm', 'v', 'w'),
              () => store.remove('g', 'm'),
              () => store.list('g'),
              () => store.removeGroup('g'),
              () => store.batch('g', [{ op: 'put', member: 'm', value: 'v' }]),
              () => store.increment('g', 'n', 1000),
              () => store.scan(undefined, 10),
            ];
            for (const call of calls) expect(await rejects(call)).toBe(true);
          } finally {
            await store.close().catch(() => undefined);
          }
        });
      });
    }

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

    t.describe('close', () => {
      test('close resolves and the closed store rejects further calls', async ({ namespace, group }) => {
        const store = await factory({ namespace: `${namespace}-close` });
        const g = group();
        await store.put(g, 'm', 'v');
        await store.close();
        expect(await rejects(() => store.get(g, 'm'))).toBe(true);
        expect(await rejects(() => store.put(g, 'm', 'w'))).toBe(true);
        expect(await rejects(() => store.list(g))).toBe(true);
      });

      if (options.concurrencyFactory !== undefined) {
        const reopen = options.concurrencyFactory;
        test('a second store on the same backend sees the same data', async ({ store, namespace, group }) => {
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
  });
}

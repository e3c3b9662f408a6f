/**
 * Conformance, values and keys: values round-trip byte for byte through every write, and
 * distinct (group, member) pairs never collide, whatever their names look like.
 */
import { byCodeUnit, concernRunner, type Harness } from './context.js';

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

/** Defines the values tests on a harness; `runStoreConformance` calls it among the others. */
export function defineValues(h: Harness): void {
  const { t, expect, test } = h;
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
}

/**
 * Runs only the values tests of the conformance suite, with the same arguments as
 * `runStoreConformance`.
 *
 * @example
 * ```ts
 * runValuesConformance({ describe, it, expect }, ({ namespace }) => createMyStore({ namespace }), { name: 'my-store' });
 * ```
 */
export const runValuesConformance = concernRunner('values', defineValues);

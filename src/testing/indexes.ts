/**
 * Conformance, indexes (rule 10): a batch that commits adds its index entry and one that
 * does not leaves the index alone, removeGroup with an index drops the entry with the group,
 * readIndex pages in code-unit order with an exact total read at one instant, indexes stay
 * apart from groups, from each other and from other namespaces, bad input is refused, and
 * races, faults, outages and a closed store never leave the index and the groups disagreeing.
 */
import { MAX_INDEX_PAGE, MAX_NAME_LENGTH, type IndexEntry, type VaultStore } from '../core/store.js';
import { byCodeUnit, CLOSED, concernRunner, outcome, REFUSED, rejects, sleep, unique, type Harness, type Outcome } from './context.js';

/** A fresh index name, unique to the call. */
const freshIndex = (): string => `i${unique()}`;

/** Every entry of an index, read page by page. */
async function readAll(store: VaultStore, index: string, pageSize = MAX_INDEX_PAGE): Promise<string[]> {
  const entries: string[] = [];
  for (let offset = 0; ; offset += pageSize) {
    const page = await store.readIndex(index, offset, pageSize);
    entries.push(...page.entries);
    if (page.entries.length < pageSize) return entries;
  }
}

/** Every item a whole scan returns, as `group/member=value`, once each and sorted (a scan may repeat one, or return empty pages). */
async function scanAll(store: VaultStore, batchSize = 100): Promise<string[]> {
  const seen = new Set<string>();
  let cursor: string | undefined;
  do {
    const page = await store.scan(cursor, batchSize);
    for (const item of page.items) seen.add(`${item.group}/${item.member}=${item.entry.value}`);
    cursor = page.cursor;
  } while (cursor !== undefined);
  return [...seen].sort(byCodeUnit);
}

/** A backend failure: a rejection with any error but the `RangeError` of bad input. */
const failed = (label: string, result: Outcome): string =>
  `${label}: ${result.startsWith('rejected ') && result !== REFUSED ? 'rejected' : result}`;

/** The calls that reach an index, labelled, for the tests that expect each to fail one way. */
function indexCalls(store: VaultStore, group: string): Array<readonly [string, () => Promise<unknown>]> {
  const index = { index: 'i', entry: group };
  return [
    ['readIndex', () => store.readIndex('i', 0, 10)],
    ['batch with index', () => store.batch(group, [{ op: 'put', member: 'm', value: 'v' }], { index })],
    ['empty batch with requires and index', () => store.batch(group, [], { requires: 'profile', index })],
    ['removeGroup with index', () => store.removeGroup(group, { index })],
  ];
}

/** Defines the index tests on a harness; `runStoreConformance` calls it among the others. */
export function defineIndexes(h: Harness): void {
  const { t, expect, test, raceTest, options, skipped, suitePrefix } = h;

  /** Adds each entry to `index` through a batch that creates a group of that entry. */
  async function link(store: VaultStore, index: string, entries: readonly string[], group: () => string): Promise<void> {
    for (const entry of entries) {
      const result = await store.batch(group(), [{ op: 'put', member: 'profile', value: entry }], { index: { index, entry } });
      expect(result.committed).toBe(true);
    }
  }

  t.describe('indexes: batch and removeGroup', () => {
    test('a committed batch with index adds the entry; the group is written as without it', async ({ store, group }) => {
      const g = group();
      const index = freshIndex();
      expect(await store.readIndex(index, 0, 10)).toEqual({ total: 0, entries: [] });
      const result = await store.batch(
        g,
        [
          { op: 'put', member: 'profile', value: 'p' },
          { op: 'insert', member: 'app', value: 'a' },
        ],
        { index: { index, entry: g } },
      );
      expect(result).toEqual({ committed: true, results: ['added', true] });
      expect(await store.readIndex(index, 0, 10)).toEqual({ total: 1, entries: [g] });
      expect((await store.list(g)).map((item) => [item.member, item.entry.value])).toEqual([
        ['app', 'a'],
        ['profile', 'p'],
      ]);
    });

    test('an empty batch with index commits and adds the entry, with requires only while that member is live', async ({ store, group }) => {
      const index = freshIndex();
      const plain = group();
      expect(await store.batch(plain, [], { index: { index, entry: 'plain' } })).toEqual({ committed: true, results: [] });
      expect(await store.list(plain)).toEqual([]);
      const g = group();
      expect(await store.batch(g, [], { requires: 'profile', index: { index, entry: 'required' } })).toEqual({ committed: false, failed: -1 });
      expect(await store.readIndex(index, 0, 10)).toEqual({ total: 1, entries: ['plain'] });
      await store.put(g, 'profile', 'p');
      expect(await store.batch(g, [], { requires: 'profile', index: { index, entry: 'required' } })).toEqual({ committed: true, results: [] });
      expect(await store.readIndex(index, 0, 10)).toEqual({ total: 2, entries: ['plain', 'required'] });
      // Indexing after the fact writes nothing to the group.
      expect((await store.list(g)).map((item) => item.member)).toEqual(['profile']);
    });

    test('an expired required member adds no entry', async ({ store, group }) => {
      const g = group();
      const index = freshIndex();
      await store.insert(g, 'profile', 'p', { ttlMs: 30 });
      await sleep(80);
      expect(await store.batch(g, [{ op: 'put', member: 'a', value: '1' }], { requires: 'profile', index: { index, entry: g } })).toEqual({
        committed: false,
        failed: -1,
      });
      expect(await store.batch(g, [], { requires: 'profile', index: { index, entry: g } })).toEqual({ committed: false, failed: -1 });
      expect(await store.readIndex(index, 0, 10)).toEqual({ total: 0, entries: [] });
    });

    test('a batch that does not commit leaves the index as it was', async ({ store, group }) => {
      const g = group();
      const index = freshIndex();
      await link(store, index, ['kept'], group);
      await store.put(g, 'taken', 't');
      await store.put(g, 'swap', 'current');
      const before = await store.list(g);
      const entry: IndexEntry = { index, entry: g };
      expect(await store.batch(g, [{ op: 'put', member: 'a', value: '1' }], { requires: 'profile', index: entry })).toEqual({
        committed: false,
        failed: -1,
      });
      expect(
        await store.batch(
          g,
          [
            { op: 'put', member: 'a', value: '1' },
            { op: 'insert', member: 'taken', value: 'x' },
          ],
          { index: entry },
        ),
      ).toEqual({ committed: false, failed: 1 });
      expect(await store.batch(g, [{ op: 'replace', member: 'swap', expected: 'stale', value: 'y' }], { index: entry })).toEqual({
        committed: false,
        failed: 0,
      });
      expect(await store.batch(g, [{ op: 'replace', member: 'absent', expected: '', value: 'y' }], { index: entry })).toEqual({
        committed: false,
        failed: 0,
      });
      expect(await store.readIndex(index, 0, 10)).toEqual({ total: 1, entries: ['kept'] });
      expect(await store.list(g)).toEqual(before);
    });

    test('an entry added twice, by two groups or two batches, is one entry; total counts entries', async ({ store, group }) => {
      const index = freshIndex();
      const [g1, g2] = [group(), group()];
      const entry = { index, entry: 'shared' };
      expect((await store.batch(g1, [{ op: 'put', member: 'm', value: '1' }], { index: entry })).committed).toBe(true);
      expect((await store.batch(g2, [{ op: 'put', member: 'm', value: '2' }], { index: entry })).committed).toBe(true);
      expect((await store.batch(g1, [{ op: 'put', member: 'm', value: '3' }], { index: entry })).committed).toBe(true);
      expect((await store.batch(g1, [], { index: entry })).committed).toBe(true);
      expect(await store.readIndex(index, 0, 10)).toEqual({ total: 1, entries: ['shared'] });
      await link(store, index, ['other', 'zeta'], group);
      expect(await store.readIndex(index, 0, 10)).toEqual({ total: 3, entries: ['other', 'shared', 'zeta'] });
    });

    test('removeGroup with index removes the entry with the group, and leaves the other entries', async ({ store, group }) => {
      const index = freshIndex();
      const [g1, g2, g3] = [group('1'), group('2'), group('3')];
      for (const g of [g1, g2, g3]) {
        await store.batch(
          g,
          [
            { op: 'put', member: 'profile', value: 'p' },
            { op: 'put', member: 'cred:a', value: 'a' },
          ],
          { index: { index, entry: g } },
        );
      }
      expect(await store.removeGroup(g2, { index: { index, entry: g2 } })).toBe(2);
      expect(await store.readIndex(index, 0, 10)).toEqual({ total: 2, entries: [g1, g3].sort(byCodeUnit) });
      expect(await store.list(g2)).toEqual([]);
      expect(await store.list(g1)).toHaveLength(2);
      expect(await store.list(g3)).toHaveLength(2);
    });

    test('removeGroup with index removes the entry also when the group is empty or absent', async ({ store, group }) => {
      const index = freshIndex();
      const emptied = group();
      await store.batch(emptied, [{ op: 'put', member: 'profile', value: 'p' }], { index: { index, entry: 'emptied' } });
      await store.remove(emptied, 'profile');
      // An entry whose group never existed: only an empty batch wrote it.
      await store.batch(group(), [], { index: { index, entry: 'never' } });
      await link(store, index, ['stays'], group);
      expect(await store.removeGroup(emptied, { index: { index, entry: 'emptied' } })).toBe(0);
      expect(await store.removeGroup(group(), { index: { index, entry: 'never' } })).toBe(0);
      expect(await store.readIndex(index, 0, 10)).toEqual({ total: 1, entries: ['stays'] });
      // Removing an entry that is not there is no error and changes nothing.
      expect(await store.removeGroup(group(), { index: { index, entry: 'unknown' } })).toBe(0);
      expect(await store.removeGroup(group(), { index: { index: freshIndex(), entry: 'stays' } })).toBe(0);
      expect(await store.readIndex(index, 0, 10)).toEqual({ total: 1, entries: ['stays'] });
    });

    test('removeGroup without index, and remove or a batch without index, never touch an index', async ({ store, group }) => {
      const index = freshIndex();
      const g = group();
      await store.batch(
        g,
        [
          { op: 'put', member: 'profile', value: 'p' },
          { op: 'put', member: 'm', value: 'v' },
        ],
        { index: { index, entry: g } },
      );
      expect(await store.batch(g, [{ op: 'remove', member: 'm' }])).toEqual({ committed: true, results: [true] });
      expect(await store.remove(g, 'profile')).toBe(true);
      expect(await store.readIndex(index, 0, 10)).toEqual({ total: 1, entries: [g] });
      await store.put(g, 'profile', 'p');
      expect(await store.removeGroup(g)).toBe(1);
      expect(await store.readIndex(index, 0, 10)).toEqual({ total: 1, entries: [g] });
      // Another index's entry of the same name is another entry.
      expect(await store.removeGroup(g, { index: { index: `${index}x`, entry: g } })).toBe(0);
      expect(await store.readIndex(index, 0, 10)).toEqual({ total: 1, entries: [g] });
    });
  });

  t.describe('indexes: readIndex', () => {
    test('an index nobody wrote reads as empty, at any offset', async ({ store }) => {
      const index = freshIndex();
      expect(await store.readIndex(index, 0, 1)).toEqual({ total: 0, entries: [] });
      expect(await store.readIndex(index, 5, MAX_INDEX_PAGE)).toEqual({ total: 0, entries: [] });
      expect(await store.readIndex('__proto__', 0, 10)).toEqual({ total: 0, entries: [] });
      expect(await store.readIndex('constructor', 0, 10)).toEqual({ total: 0, entries: [] });
    });

    test('entries come in UTF-16 code-unit order, whatever order they were added in', async ({ store, group }) => {
      const index = freshIndex();
      const names = [
        'b', 'B', 'a', 'A', 'aa', 'a-', 'a.b', 'a-b', 'a_b', 'a%3Ab', 'a:b', 'a0', 'Z', 'z', '_', '-', '.', '%', ':',
        '0', '9', '10', '2', '%3A', '__proto__', 'constructor', 'acct:acme:test:u1', 'acct%3Aacme', 'Acct',
      ];
      await link(store, index, names, group);
      const expected = [...names].sort(byCodeUnit);
      expect(await store.readIndex(index, 0, MAX_INDEX_PAGE)).toEqual({ total: names.length, entries: expected });
      // And the same order page by page.
      expect(await readAll(store, index, 4)).toEqual(expected);
    });

    test('offset and limit page through the index, and total is exact on every page', async ({ store, group }) => {
      const limit = 5;
      for (const size of [0, 1, limit - 1, limit, limit + 1, 2 * limit + 3]) {
        const index = freshIndex();
        const names = Array.from({ length: size }, (_, i) => `e${String(i).padStart(2, '0')}`);
        await link(store, index, [...names].reverse(), group);
        const pages: string[][] = [];
        for (let offset = 0; offset < size + limit; offset += limit) {
          const page = await store.readIndex(index, offset, limit);
          expect(`size ${size} offset ${offset} total ${page.total}`).toBe(`size ${size} offset ${offset} total ${size}`);
          expect(page.entries).toEqual(names.slice(offset, offset + limit));
          pages.push(page.entries);
        }
        expect(pages.flat()).toEqual(names);
        // One entry at a time, from every position.
        for (let offset = 0; offset <= size; offset += 1) {
          expect(await store.readIndex(index, offset, 1)).toEqual({ total: size, entries: names.slice(offset, offset + 1) });
        }
        // Past the end: no entries, and still the exact total.
        expect(await store.readIndex(index, size + 100, limit)).toEqual({ total: size, entries: [] });
        expect(await store.readIndex(index, Number.MAX_SAFE_INTEGER, MAX_INDEX_PAGE)).toEqual({ total: size, entries: [] });
        expect(await store.readIndex(index, 0, MAX_INDEX_PAGE)).toEqual({ total: size, entries: names });
      }
    });

    test(`names of ${MAX_NAME_LENGTH} characters are ordinary index and entry names`, async ({ store, group }) => {
      const longIndex = `i${unique()}${'x'.repeat(MAX_NAME_LENGTH)}`.slice(0, MAX_NAME_LENGTH);
      const longEntry = `e:${'%3A'.repeat(MAX_NAME_LENGTH)}`.slice(0, MAX_NAME_LENGTH);
      const g = group();
      expect((await store.batch(g, [{ op: 'put', member: 'profile', value: 'p' }], { index: { index: longIndex, entry: longEntry } })).committed).toBe(true);
      expect((await store.batch(group(), [], { index: { index: longIndex, entry: 'short' } })).committed).toBe(true);
      const page = await store.readIndex(longIndex, 0, 10);
      expect(page.total).toBe(2);
      expect(page.entries.map((entry) => (entry === longEntry ? 'long' : entry))).toEqual(['long', 'short']);
      expect(await store.removeGroup(g, { index: { index: longIndex, entry: longEntry } })).toBe(1);
      expect(await store.readIndex(longIndex, 0, 10)).toEqual({ total: 1, entries: ['short'] });
    });
  });

  t.describe('indexes: separation', () => {
    test('an index named like a group is unrelated to it: list, removeGroup and scan never show its entries', async ({ store, group }) => {
      const g = group();
      // The index shares the group's name, and its entries the group's member names.
      await store.batch(
        g,
        [
          { op: 'put', member: 'profile', value: 'p' },
          { op: 'put', member: 'm', value: 'v' },
        ],
        { index: { index: g, entry: 'm' } },
      );
      await store.batch(group(), [], { index: { index: g, entry: 'profile' } });
      await store.batch(group(), [], { index: { index: g, entry: 'x' } });
      await store.batch(group(), [], { index: { index: 'profile', entry: g } });
      expect((await store.list(g)).map((item) => [item.member, item.entry.value])).toEqual([
        ['m', 'v'],
        ['profile', 'p'],
      ]);
      expect(await store.list(g, 'x')).toEqual([]);
      expect(await store.get(g, 'x')).toBeUndefined();
      // A group with members but no entries reads as an empty index.
      const other = group();
      await store.put(other, 'm', 'v');
      expect(await store.readIndex(other, 0, 10)).toEqual({ total: 0, entries: [] });
      // Scan sees the groups' members and nothing of any index.
      expect(await scanAll(store, 2)).toEqual([`${g}/m=v`, `${g}/profile=p`, `${other}/m=v`].sort(byCodeUnit));
      // removeGroup counts and removes the group's members only.
      expect(await store.removeGroup(g)).toBe(2);
      expect(await store.readIndex(g, 0, 10)).toEqual({ total: 3, entries: ['m', 'profile', 'x'] });
      expect(await store.readIndex('profile', 0, 10)).toEqual({ total: 1, entries: [g] });
      expect(await store.removeGroup(g, { index: { index: g, entry: 'x' } })).toBe(0);
      expect(await store.readIndex(g, 0, 10)).toEqual({ total: 2, entries: ['m', 'profile'] });
    });

    test('indexes with related names stay apart', async ({ store, group }) => {
      const base = freshIndex();
      // `${base}` + ':e' and `${base}:` + 'e' would collide in a layout that only joins the two with ':'.
      const layout: Array<[string, string[]]> = [
        [base, [':e', 'e', 'x']],
        [`${base}:`, ['e']],
        [`${base}x`, ['e', 'y']],
        [`${base}.`, ['z']],
        [`${base}%3A`, ['e']],
      ];
      for (const [index, entries] of layout) await link(store, index, entries, group);
      for (const [index, entries] of layout) {
        expect(await store.readIndex(index, 0, 10)).toEqual({ total: entries.length, entries });
      }
      expect(await store.readIndex(base.slice(0, -1), 0, 10)).toEqual({ total: 0, entries: [] });
      await store.removeGroup(group(), { index: { index: base, entry: 'e' } });
      expect(await store.readIndex(base, 0, 10)).toEqual({ total: 2, entries: [':e', 'x'] });
      for (const [index, entries] of layout.slice(1)) {
        expect(await store.readIndex(index, 0, 10)).toEqual({ total: entries.length, entries });
      }
    });

    test('two namespaces on one backend never see each other\'s indexes', async ({ open, group }) => {
      const base = `${suitePrefix}-idx-${unique()}`;
      const namespaces = [base, `${base}x`, `${base}:`, `${base}}`];
      const stores = await Promise.all(namespaces.map((namespace) => open(namespace)));
      const index = 'accounts';
      for (const [i, store] of stores.entries()) {
        await link(store, index, Array.from({ length: i + 1 }, (_, n) => `ns${i}-${n}`), group);
        // The same entry name in every namespace.
        await store.batch(group(), [], { index: { index, entry: 'common' } });
      }
      for (const [i, store] of stores.entries()) {
        const own = Array.from({ length: i + 1 }, (_, n) => `ns${i}-${n}`);
        expect(await store.readIndex(index, 0, 100)).toEqual({ total: i + 2, entries: ['common', ...own] });
        expect(await store.readIndex(`${index}x`, 0, 100)).toEqual({ total: 0, entries: [] });
      }
      const [first, second] = stores as [VaultStore, VaultStore];
      await first.removeGroup(group(), { index: { index, entry: 'common' } });
      await first.removeGroup(group(), { index: { index, entry: 'ns1-0' } });
      expect(await first.readIndex(index, 0, 100)).toEqual({ total: 1, entries: ['ns0-0'] });
      expect(await second.readIndex(index, 0, 100)).toEqual({ total: 3, entries: ['common', 'ns1-0', 'ns1-1'] });
      // A namespace that wrote no index sees none, and scans none.
      const bystander = await open(`${base}-bystander`);
      expect(await bystander.readIndex(index, 0, 100)).toEqual({ total: 0, entries: [] });
      expect(await scanAll(bystander)).toEqual([]);
    });
  });

  t.describe('indexes: bad input', () => {
    test('bad index names, entries, offsets and limits are refused with RangeError, and nothing is written', async ({ store, group }) => {
      const index = freshIndex();
      const [g, doomed] = [group(), group()];
      await store.put(g, 'profile', 'p');
      await store.batch(doomed, [{ op: 'put', member: 'profile', value: 'p' }], { index: { index, entry: doomed } });
      const long = 'n'.repeat(MAX_NAME_LENGTH + 1);
      const put = [{ op: 'put', member: 'm', value: 'v' }] as const;
      const results: string[] = [];
      const check = async (label: string, call: () => Promise<unknown>): Promise<void> => {
        results.push(`${label}: ${await outcome(call)}`);
      };
      for (const bad of ['', 'a b', ' ', '{', 'a{b}', 'a}', 'a/b', 'é', 'a\nb', long]) {
        const shown = bad.length > 16 ? `(${bad.length} characters)` : JSON.stringify(bad);
        await check(`readIndex ${shown}`, () => store.readIndex(bad, 0, 10));
        await check(`batch index ${shown}`, () => store.batch(g, put, { index: { index: bad, entry: 'e' } }));
        await check(`batch entry ${shown}`, () => store.batch(g, put, { index: { index, entry: bad } }));
        await check(`empty batch entry ${shown}`, () => store.batch(g, [], { requires: 'profile', index: { index, entry: bad } }));
        await check(`removeGroup index ${shown}`, () => store.removeGroup(doomed, { index: { index: bad, entry: doomed } }));
        await check(`removeGroup entry ${shown}`, () => store.removeGroup(doomed, { index: { index, entry: bad } }));
      }
      const malformed: unknown[] = ['i', 5, null, true, [], {}, { index }, { entry: 'e' }, { index: 5, entry: 'e' }, { index, entry: ['e'] }];
      for (const bad of malformed) {
        const option = bad as IndexEntry;
        await check(`batch option ${JSON.stringify(bad)}`, () => store.batch(g, put, { index: option }));
        await check(`removeGroup option ${JSON.stringify(bad)}`, () => store.removeGroup(doomed, { index: option }));
      }
      for (const offset of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, Number.MAX_SAFE_INTEGER + 1, '0' as unknown as number]) {
        await check(`readIndex offset ${String(offset)}`, () => store.readIndex(index, offset, 10));
      }
      for (const limit of [0, -1, 1.5, Number.NaN, MAX_INDEX_PAGE + 1, '10' as unknown as number]) {
        await check(`readIndex limit ${String(limit)}`, () => store.readIndex(index, 0, limit));
      }
      expect(results).toEqual(results.map((line) => `${line.slice(0, line.lastIndexOf(': '))}: ${REFUSED}`));
      // Nothing was written, nothing removed.
      expect((await store.list(g)).map((item) => item.member)).toEqual(['profile']);
      expect((await store.list(doomed)).map((item) => item.member)).toEqual(['profile']);
      expect(await store.readIndex(index, 0, 10)).toEqual({ total: 1, entries: [doomed] });
    });

    test(`a limit of ${MAX_INDEX_PAGE} is accepted`, async ({ store, group }) => {
      const index = freshIndex();
      await link(store, index, ['a', 'b'], group);
      expect(await store.readIndex(index, 0, MAX_INDEX_PAGE)).toEqual({ total: 2, entries: ['a', 'b'] });
      expect(await store.readIndex(index, 1, MAX_INDEX_PAGE)).toEqual({ total: 2, entries: ['b'] });
    });
  });

  t.describe('indexes: concurrency', () => {
    raceTest('racing creators and removers leave the index holding exactly the groups that exist', async ({ group }, stores) => {
      const index = freshIndex();
      const at = (i: number): VaultStore => stores[i % stores.length] as VaultStore;
      const contested = group('c');
      const distinct = Array.from({ length: 12 }, (_, i) => group(`d${i}`));
      const create = (g: string, i: number) =>
        at(i).batch(
          g,
          [
            { op: 'insert', member: 'profile', value: `p${i}` },
            { op: 'put', member: 'app', value: `a${i}` },
          ],
          { index: { index, entry: g } },
        );
      const removed = (g: string, i: number) => at(i).removeGroup(g, { index: { index, entry: g } });
      const calls: Array<Promise<unknown>> = [];
      const contestedResults: Array<Promise<{ committed: boolean }>> = [];
      for (let i = 0; i < 12; i += 1) {
        const creating = create(contested, i);
        contestedResults.push(creating);
        calls.push(creating, create(distinct[i] as string, i + 1));
        // Some groups are removed while they are being created; so is the contested one, once.
        if (i % 3 === 0) calls.push(removed(distinct[i] as string, i + 2));
        if (i === 5) calls.push(removed(contested, i + 3));
      }
      await Promise.all(calls);
      const commits = (await Promise.all(contestedResults)).filter((result) => result.committed).length;
      // One creator wins; a second may win only after the removal.
      expect(commits >= 1 && commits <= 2).toBe(true);
      const existing: string[] = [];
      for (const g of [contested, ...distinct]) {
        const members = (await at(0).list(g)).map((item) => item.member);
        expect(members.length === 0 || members.join() === 'app,profile').toBe(true);
        if (members.length > 0) existing.push(g);
      }
      existing.sort(byCodeUnit);
      for (const store of stores) {
        expect(await store.readIndex(index, 0, MAX_INDEX_PAGE)).toEqual({ total: existing.length, entries: existing });
      }
      // Every distinct group nobody removed exists.
      const kept = distinct.filter((_, i) => i % 3 !== 0);
      expect(kept.filter((g) => !existing.includes(g))).toEqual([]);
    });

    raceTest('readIndex racing batches and removals never returns a total that disagrees with its entries', async ({ group }, stores) => {
      const index = freshIndex();
      const writers = stores.slice(0, Math.max(1, stores.length - 1));
      const reader = stores[stores.length - 1] as VaultStore;
      const added = new Set<string>();
      const problems: string[] = [];
      let reads = 0;
      let done = false;
      const reading = (async () => {
        while (!done) {
          const [whole, firstTwo] = [await reader.readIndex(index, 0, MAX_INDEX_PAGE), await reader.readIndex(index, 0, 2)];
          reads += 1;
          if (whole.total !== whole.entries.length) problems.push(`total ${whole.total} with ${whole.entries.length} entries`);
          if (firstTwo.entries.length !== Math.min(2, firstTwo.total)) problems.push(`a page of 2 held ${firstTwo.entries.length} of ${firstTwo.total}`);
          if (whole.entries.join() !== [...new Set(whole.entries)].sort(byCodeUnit).join()) problems.push('entries out of order or repeated');
          if (whole.entries.some((entry) => !added.has(entry))) problems.push('an entry nobody added');
        }
      })();
      await Promise.all(
        writers.map(async (writer, w) => {
          const groups: string[] = [];
          const entryOf = (round: number): string => `w${w}-r${String(round).padStart(2, '0')}`;
          for (let round = 0; round < 12; round += 1) {
            const entry = entryOf(round);
            groups.push(group(entry));
            added.add(entry);
            await writer.batch(groups[round] as string, [{ op: 'put', member: 'profile', value: 'p' }], { index: { index, entry } });
            // Every third round removes the group of the round before, with its entry.
            if (round % 3 === 2) await writer.removeGroup(groups[round - 1] as string, { index: { index, entry: entryOf(round - 1) } });
          }
        }),
      );
      done = true;
      await reading;
      expect(problems).toEqual([]);
      expect(reads).toBeGreaterThan(0);
      const final = await reader.readIndex(index, 0, MAX_INDEX_PAGE);
      expect(final.total).toBe(writers.length * 8);
      expect(final.entries).toHaveLength(writers.length * 8);
    });
  });

  t.describe('indexes: failures', () => {
    test('after close, readIndex and indexed writes reject with STORE_UNAVAILABLE', async ({ namespace, group }) => {
      const store = await h.factory({ namespace: `${namespace}-close` });
      const g = group();
      await store.batch(g, [{ op: 'put', member: 'profile', value: 'p' }], { index: { index: 'i', entry: g } });
      await store.close();
      for (const [label, call] of indexCalls(store, g)) expect(`${label}: ${await outcome(call)}`).toBe(`${label}: ${CLOSED}`);
    });

    const unreachable = 'on an unreachable backend, readIndex and indexed writes reject, never read as empty';
    if (options.unreachableFactory === undefined) skipped(unreachable, 'no unreachableFactory option');
    else {
      const factory = options.unreachableFactory;
      test(unreachable, async ({ namespace, group }) => {
        const store = await factory({ namespace: `${namespace}-down` });
        try {
          for (const [label, call] of indexCalls(store, group())) expect(failed(label, await outcome(call))).toBe(`${label}: rejected`);
        } finally {
          await store.close().catch(() => undefined);
        }
      });
    }

    const cut = 'on a backend that fails after connecting, readIndex and indexed writes reject, and the index is kept';
    if (options.failingFactory === undefined) skipped(cut, 'no failingFactory option');
    else {
      const factory = options.failingFactory;
      test(cut, async ({ open, namespace, group }) => {
        const g = group();
        const seeded = await open(`${namespace}-cut`);
        await seeded.batch(g, [{ op: 'put', member: 'profile', value: 'p' }], { index: { index: 'i', entry: g } });
        const store = await factory({ namespace: `${namespace}-cut` });
        try {
          for (const [label, call] of indexCalls(store, g)) expect(failed(label, await outcome(call))).toBe(`${label}: rejected`);
        } finally {
          await store.close().catch(() => undefined);
        }
        expect(await seeded.readIndex('i', 0, 10)).toEqual({ total: 1, entries: [g] });
        expect((await seeded.list(g)).map((item) => item.member)).toEqual(['profile']);
      });
    }

    const partWay = 'an indexed batch that fails part-way adds no entry and writes nothing';
    if (options.faults === undefined) skipped(partWay, 'no faults option');
    else {
      const faults = options.faults;
      test(partWay, async ({ namespace, group }) => {
        const g = group();
        const index = freshIndex();
        const controls = { failAt: -1 };
        const store = await faults.factory({ namespace: `${namespace}-faults` }, controls);
        try {
          await store.batch(group(), [], { index: { index, entry: 'kept' } });
          await store.put(g, 'keep', 'k');
          const before = await store.list(g);
          for (const failAt of [0, 1, 2]) {
            controls.failAt = failAt;
            const rejected = await rejects(() =>
              store.batch(
                g,
                [
                  { op: 'insert', member: 'profile', value: 'p' },
                  { op: 'put', member: 'keep', value: 'changed' },
                  { op: 'put', member: 'app', value: 'a' },
                ],
                { index: { index, entry: g } },
              ),
            );
            expect(`failAt ${failAt}: ${rejected}`).toBe(`failAt ${failAt}: true`);
            controls.failAt = -1;
            expect(await store.readIndex(index, 0, 10)).toEqual({ total: 1, entries: ['kept'] });
            expect(await store.list(g)).toEqual(before);
          }
          // The store works normally afterwards, index included.
          expect((await store.batch(g, [{ op: 'insert', member: 'profile', value: 'p' }], { index: { index, entry: g } })).committed).toBe(true);
          expect(await store.readIndex(index, 0, 10)).toEqual({ total: 2, entries: [g, 'kept'].sort(byCodeUnit) });
        } finally {
          await store.close();
        }
      });
    }
  });
}

/**
 * Runs only the index tests (rule 10) of the conformance suite, with the same arguments as
 * `runStoreConformance`.
 *
 * @example
 * ```ts
 * runIndexConformance({ describe, it, expect }, ({ namespace }) => createMyStore({ namespace }), { name: 'my-store' });
 * ```
 */
export const runIndexConformance = concernRunner('indexes', defineIndexes);

import { afterEach, describe, expect, it, vi } from 'vitest';
import { createMemoryStore } from '../../adapters/memory.js';
import type { VaultStore } from '../../src/core/store.js';
import { CONCERNS, runBatchConformance, runIndexConformance, runStoreConformance, type Concern, type ConformanceTestApi, type StoreFactory } from '../../src/testing/index.js';

interface Registered {
  name: string;
  body: () => Promise<void>;
  skipped: boolean;
}

/** A runner that records what the suite registers instead of running it, so one test can be run on its own. */
function recorder(withSkip = true): { t: ConformanceTestApi; tests: Registered[] } {
  const tests: Registered[] = [];
  const path: string[] = [];
  const register = (skipped: boolean) => (name: string, body: () => Promise<void>) =>
    tests.push({ name: [...path, name].join(' > '), body, skipped });
  const itFn = Object.assign(register(false), withSkip ? { skip: register(true) } : {});
  return {
    tests,
    t: {
      describe: (name, body) => {
        path.push(name);
        body();
        path.pop();
      },
      it: itFn,
      expect: (actual) => expect(actual),
    },
  };
}

const memory: StoreFactory = ({ namespace }) => createMemoryStore({ namespace });
const find = (tests: Registered[], part: string): Registered => {
  const found = tests.find((test) => test.name.includes(part));
  if (found === undefined) throw new Error(`no test named like ${part}`);
  return found;
};

/** `store`, except that the listed methods answer `answer` instead of failing: an adapter that swallows errors. */
function lying(store: VaultStore, answers: Partial<Record<keyof VaultStore, unknown>>, when: () => boolean): VaultStore {
  return new Proxy(store, {
    get(target, property, receiver) {
      const original = Reflect.get(target, property, receiver) as unknown;
      if (typeof original !== 'function' || !(property in answers)) return original;
      return (...args: unknown[]) => (when() ? Promise.resolve(answers[property as keyof VaultStore]) : (original as (...a: unknown[]) => unknown).apply(target, args));
    },
  });
}

afterEach(() => vi.restoreAllMocks());

describe('the conformance suite itself', () => {
  it('a concern named in skip registers none of its tests and is reported as skipped, with a warning', () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const { t, tests } = recorder();
    runStoreConformance(t, memory, { name: 'probe', skip: ['concurrency'] });
    expect(tests.some((test) => !test.skipped && test.name.includes('parallel puts'))).toBe(false);
    expect(find(tests, 'concurrency (every test of this concern)').skipped).toBe(true);
    expect(warn.mock.calls.map((call) => String(call[0]))).toContain(
      '[credvault conformance] probe: skipped "concurrency (every test of this concern)": named in options.skip',
    );
  });

  it('without it.skip in the runner, a skipped test is still announced', () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const { t, tests } = recorder(false);
    runStoreConformance(t, memory, { name: 'bare' });
    expect(tests.every((test) => !test.skipped)).toBe(true);
    expect(warn.mock.calls.some((call) => String(call[0]).includes('no unreachableFactory option'))).toBe(true);
  });

  it('a concern runner registers only that concern', () => {
    const { t, tests } = recorder();
    runBatchConformance(t, memory, { name: 'only-batch' });
    expect(tests.length).toBeGreaterThan(5);
    expect(tests.every((test) => test.name.startsWith('VaultStore conformance (batch): only-batch > batch >'))).toBe(true);
  });

  it('the close test fails a store that answers after close instead of rejecting with STORE_UNAVAILABLE', async () => {
    vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const { t, tests } = recorder();
    let closed = false;
    const factory: StoreFactory = ({ namespace }) => {
      const store = createMemoryStore({ namespace });
      const close = store.close.bind(store);
      return Object.assign(lying(store, { get: undefined }, () => closed), { close: async () => { closed = true; await close(); } });
    };
    runStoreConformance(t, factory, { skip: allBut('lifecycle') });
    await expect(find(tests, 'every later call rejects with STORE_UNAVAILABLE').body()).rejects.toThrow(/get: resolved/);
    // The same test passes the honest store.
    const honest = recorder();
    runStoreConformance(honest.t, memory, { skip: allBut('lifecycle') });
    await expect(find(honest.tests, 'every later call rejects with STORE_UNAVAILABLE').body()).resolves.toBeUndefined();
  });

  it('the failing-backend test fails a store that answers "absent" instead of rejecting', async () => {
    vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const { t, tests } = recorder();
    // A fresh memory store never sees the data the suite seeded: it answers as a store that swallows errors would.
    runStoreConformance(t, memory, { skip: allBut('errors'), failingFactory: memory });
    await expect(find(tests, 'fails after connecting').body()).rejects.toThrow(/get: resolved/);
  });
});

/** A memory store with some methods replaced: an adapter with one bug of rule 10. */
function withBug(build: (store: VaultStore) => Partial<VaultStore>): StoreFactory {
  return ({ namespace }) => {
    const store = createMemoryStore({ namespace });
    return Object.assign(Object.create(store) as VaultStore, store, build(store));
  };
}

describe('the indexes concern catches what rule 10 forbids', () => {
  const run = async (factory: StoreFactory, part: string): Promise<void> => {
    vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const { t, tests } = recorder();
    runIndexConformance(t, factory, { name: 'buggy' });
    await find(tests, part).body();
  };

  it('passes the honest memory store', async () => {
    await expect(run(memory, 'a committed batch with index adds the entry')).resolves.toBeUndefined();
    await expect(run(memory, 'offset and limit page through the index')).resolves.toBeUndefined();
  });

  it('fails a batch that forgets the index', async () => {
    const factory = withBug((store) => ({ batch: (group, writes, options) => store.batch(group, writes, { ...options, index: undefined }) }));
    await expect(run(factory, 'a committed batch with index adds the entry')).rejects.toThrow();
  });

  it('fails a batch that indexes even when it does not commit', async () => {
    const factory = withBug((store) => ({
      batch: async (group, writes, options) => {
        const result = await store.batch(group, writes, { ...options, index: undefined });
        if (options?.index !== undefined) await store.batch(group, [], { index: options.index });
        return result;
      },
    }));
    await expect(run(factory, 'a batch that does not commit leaves the index as it was')).rejects.toThrow();
  });

  it('fails a removeGroup that leaves the entry, and one that ignores the index when the group is empty', async () => {
    const forgets = withBug((store) => ({ removeGroup: (group) => store.removeGroup(group) }));
    await expect(run(forgets, 'removeGroup with index removes the entry with the group')).rejects.toThrow();
    const onlyWhenFull = withBug((store) => ({
      removeGroup: async (group, options) => ((await store.list(group)).length > 0 ? store.removeGroup(group, options) : 0),
    }));
    await expect(run(onlyWhenFull, 'also when the group is empty or absent')).rejects.toThrow();
  });

  it('fails a readIndex whose total counts the page, or that sorts by locale', async () => {
    const pageTotal = withBug((store) => ({
      readIndex: async (index, offset, limit) => {
        const page = await store.readIndex(index, offset, limit);
        return { total: page.entries.length, entries: page.entries };
      },
    }));
    await expect(run(pageTotal, 'offset and limit page through the index')).rejects.toThrow();
    const byLocale = withBug((store) => ({
      readIndex: async (index, offset, limit) => {
        const all = await store.readIndex(index, 0, 1000);
        const entries = [...all.entries].sort((a, b) => a.localeCompare(b)).slice(offset, offset + limit);
        return { total: all.total, entries };
      },
    }));
    await expect(run(byLocale, 'UTF-16 code-unit order')).rejects.toThrow();
  });

  it('fails a readIndex that lets a RangeError case through', async () => {
    const lenient = withBug((store) => ({
      readIndex: (index, offset, limit) => store.readIndex(index, Math.max(0, Math.floor(Number(offset) || 0)), Math.min(1000, Math.max(1, Math.floor(Number(limit) || 1)))),
    }));
    await expect(run(lenient, 'bad index names, entries, offsets and limits are refused')).rejects.toThrow();
  });

  it('fails stores whose indexes of one backend are shared across namespaces', async () => {
    const shared = createMemoryStore();
    // Every namespace's index calls go to one store: indexes leak between namespaces.
    const factory = withBug(() => ({
      readIndex: (index, offset, limit) => shared.readIndex(index, offset, limit),
      batch: async (group, writes, options) => {
        if (options?.index !== undefined) await shared.batch(group, [], { index: options.index });
        return { committed: true, results: [] };
      },
      removeGroup: (group, options) => shared.removeGroup(group, options),
    }));
    await expect(run(factory, "two namespaces on one backend never see each other's indexes")).rejects.toThrow();
  });
});

function allBut(keep: Concern): Concern[] {
  return CONCERNS.filter((concern) => concern !== keep);
}

import { afterEach, describe, expect, it, vi } from 'vitest';
import { createMemoryStore } from '../../adapters/memory.js';
import type { VaultStore } from '../../src/core/store.js';
import { CONCERNS, runBatchConformance, runStoreConformance, type Concern, type ConformanceTestApi, type StoreFactory } from '../../src/testing/index.js';

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

function allBut(keep: Concern): Concern[] {
  return CONCERNS.filter((concern) => concern !== keep);
}

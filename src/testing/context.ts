/**
 * The conformance suite's harness: the runner-agnostic test API it receives, its options,
 * and the per-test context (fresh namespace, fresh groups, every store closed afterwards)
 * that each concern module builds its tests on.
 */
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

/** Registers one test; `skip`, when the runner has it (vitest, jest, node:test), marks a skipped one. */
export interface ConformanceIt {
  (name: string, body: () => Promise<void>): void;
  skip?: (name: string, body: () => Promise<void>) => void;
}

/** The test-runner functions the suite needs: pass vitest's or jest's globals. */
export interface ConformanceTestApi {
  describe(name: string, body: () => void): void;
  it: ConformanceIt;
  expect(actual: unknown): ConformanceExpectation;
}

/** Opens a store on the backend under test, in the given namespace. */
export type StoreFactory = (options: { namespace: string }) => Promise<VaultStore> | VaultStore;

/** The suite's concerns, one module each; name them in {@link ConformanceOptions.skip}. */
export const CONCERNS = [
  'basics',
  'values',
  'expiry',
  'batch',
  'indexes',
  'counters',
  'scan',
  'isolation',
  'errors',
  'concurrency',
  'lifecycle',
] as const;

/** One concern of the suite, e.g. `'batch'`. */
export type Concern = (typeof CONCERNS)[number];

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
   * "All or nothing": opens a store whose batches fail on purpose. While `controls.failAt`
   * is `i >= 0`, the store must fail the next batch at write `i` (or, where the backend
   * cannot stop part-way, anywhere inside it) through a test hook of your adapter. The
   * suite then checks that the batch rejected and that nothing of it was written.
   */
  faults?: { factory: (options: { namespace: string }, controls: { failAt: number }) => Promise<VaultStore> | VaultStore };
  /**
   * "Errors surface", before connecting: opens a store on a backend that cannot be reached
   * (a closed port, a dead host). The suite checks that every call rejects rather than
   * reading as absent or empty.
   */
  unreachableFactory?: StoreFactory;
  /**
   * "Errors surface", after connecting: opens a store in `namespace` that reached its
   * backend, which then fails every call (a cut connection, a proxy stopped, a hook of your
   * adapter). The suite first writes data into that namespace through `factory`, then
   * checks that every call of the failing store rejects, never reading as absent, empty,
   * `false` or `0`, and that the data is still there afterwards.
   */
  failingFactory?: StoreFactory;
  /**
   * Concerns not to run, e.g. `['concurrency']` while porting an adapter. Each one skipped
   * is reported: a console warning, and a skipped test where the runner has `it.skip`.
   */
  skip?: readonly Concern[];
}

/** What one test receives. */
export interface TestContext {
  /** The store this test runs against, in its own namespace. */
  store: VaultStore;
  namespace: string;
  /** Opens another store through the factory; closed with the test. */
  open(namespace: string): Promise<VaultStore>;
  /** A fresh group name, unique to this test. */
  group(suffix?: string): string;
}

/** How a call ended, as one short string for assertions: `resolved`, `rejected RangeError`, `threw TypeError`, `rejected VaultError STORE_UNAVAILABLE`. */
export type Outcome = string;

/** What each concern module builds its tests with. */
export interface Harness {
  readonly t: ConformanceTestApi;
  readonly expect: ConformanceTestApi['expect'];
  readonly factory: StoreFactory;
  readonly options: ConformanceOptions;
  /** Starts every namespace this suite run opens, so it never meets another run's data. */
  readonly suitePrefix: string;
  /** A test with its own store in a fresh namespace. */
  test(name: string, body: (context: TestContext) => Promise<void>): void;
  /** A test with racing stores: its own plus, with `concurrencyFactory`, three more connections. */
  raceTest(name: string, body: (context: TestContext, stores: VaultStore[]) => Promise<void>): void;
  /** Reports a test that cannot run (a missing option), visibly: a warning and, if the runner has it, `it.skip`. */
  skipped(name: string, reason: string): void;
  /** Checks both timestamps lie within `[before, after]`. */
  expectTimestamps(entry: StoreEntry | undefined, before: number, after: number): void;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
export const unique = (): string => randomUUID().replaceAll('-', '').slice(0, 16);
/** The order `list` promises: UTF-16 code units, as `Array#sort` without a comparator. */
export const byCodeUnit = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Whether the call rejected (or threw). */
export async function rejects(call: () => Promise<unknown>): Promise<boolean> {
  return (await outcome(call)) !== 'resolved';
}

/** How `call` ended; a synchronous throw is told apart from a rejection, since the contract allows only the latter. */
export async function outcome(call: () => Promise<unknown>): Promise<Outcome> {
  let promise: Promise<unknown>;
  try {
    promise = call();
  } catch (error) {
    return `threw ${describeError(error)}`;
  }
  try {
    await promise;
    return 'resolved';
  } catch (error) {
    return `rejected ${describeError(error)}`;
  }
}

// Name and code only: a message could carry what the store was given.
function describeError(error: unknown): string {
  if (!(error instanceof Error)) return `non-Error ${typeof error}`;
  const code = (error as { code?: unknown }).code;
  // By name, not instanceof: an adapter built against another copy of credvault still passes.
  return error.name === 'VaultError' && typeof code === 'string' ? `VaultError ${code}` : error.name;
}

/** The outcome the contract requires of a call on a closed store. */
export const CLOSED = 'rejected VaultError STORE_UNAVAILABLE';
/** The outcome the contract requires of bad input. */
export const REFUSED = 'rejected RangeError';

export function createHarness(t: ConformanceTestApi, factory: StoreFactory, options: ConformanceOptions): Harness {
  const { expect } = t;
  const suitePrefix = `cvtest-${unique()}`;
  const label = options.name ?? 'store';

  function test(name: string, body: (context: TestContext) => Promise<void>): void {
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

  function raceTest(name: string, body: (context: TestContext, stores: VaultStore[]) => Promise<void>): void {
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

  function skipped(name: string, reason: string): void {
    console.warn(`[credvault conformance] ${label}: skipped "${name}": ${reason}`);
    t.it.skip?.(`${name} (skipped: ${reason})`, async () => undefined);
  }

  function expectTimestamps(entry: StoreEntry | undefined, before: number, after: number): void {
    expect(entry === undefined).toBe(false);
    if (entry === undefined) return;
    expect(entry.createdAt >= before && entry.createdAt <= after).toBe(true);
    expect(entry.updatedAt >= before && entry.updatedAt <= after).toBe(true);
  }

  return { t, expect, factory, options, suitePrefix, test, raceTest, skipped, expectTimestamps };
}

/** Builds one concern's exported runner from the function that defines its tests. */
export function concernRunner(concern: Concern, define: (h: Harness) => void) {
  return (t: ConformanceTestApi, factory: StoreFactory, options: ConformanceOptions = {}): void => {
    t.describe(`VaultStore conformance (${concern})${options.name === undefined ? '' : `: ${options.name}`}`, () => {
      define(createHarness(t, factory, options));
    });
  };
}

/**
 * One call of every method that reads or writes, labelled, for the tests that expect each
 * to fail the same way. `purgeExpired` is left out: a backend that expires entries itself
 * may answer it without a round trip.
 */
export function everyCall(store: VaultStore, group: string): Array<readonly [string, () => Promise<unknown>]> {
  return [
    ['get', () => store.get(group, 'm')],
    ['put', () => store.put(group, 'm', 'v')],
    ['put with requires', () => store.put(group, 'm', 'v', { requires: 'profile' })],
    ['insert', () => store.insert(group, 'm', 'v')],
    ['replace', () => store.replace(group, 'm', 'v', 'w')],
    ['remove', () => store.remove(group, 'm')],
    ['list', () => store.list(group)],
    ['list with prefix', () => store.list(group, 'm')],
    ['removeGroup', () => store.removeGroup(group)],
    ['batch', () => store.batch(group, [{ op: 'put', member: 'm', value: 'v' }])],
    ['increment', () => store.increment(group, 'n', 60_000)],
    ['scan', () => store.scan(undefined, 10)],
    ['readIndex', () => store.readIndex(group, 0, 10)],
  ];
}

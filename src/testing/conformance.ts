/**
 * The whole conformance suite: every concern module under one title. Each concern is also
 * exported on its own (`runBatchConformance` and friends) for authors who want only some.
 */
import { defineBasics } from './basics.js';
import { defineBatch } from './batch.js';
import { defineConcurrency } from './concurrency.js';
import {
  CONCERNS,
  createHarness,
  type Concern,
  type ConformanceOptions,
  type ConformanceTestApi,
  type Harness,
  type StoreFactory,
} from './context.js';
import { defineCounters } from './counters.js';
import { defineErrors } from './errors.js';
import { defineExpiry } from './expiry.js';
import { defineIndexes } from './indexes.js';
import { defineIsolation } from './isolation.js';
import { defineLifecycle } from './lifecycle.js';
import { defineScan } from './scan.js';
import { defineValues } from './values.js';

const DEFINITIONS: Record<Concern, (h: Harness) => void> = {
  basics: defineBasics,
  values: defineValues,
  expiry: defineExpiry,
  batch: defineBatch,
  indexes: defineIndexes,
  counters: defineCounters,
  scan: defineScan,
  isolation: defineIsolation,
  errors: defineErrors,
  concurrency: defineConcurrency,
  lifecycle: defineLifecycle,
};

/**
 * Runs the {@link VaultStore} conformance suite: every rule written on the contract,
 * against a real backend. Runner-agnostic: pass your runner's `describe`, `it` and `expect`.
 *
 * Each test opens its own stores in fresh random namespaces and uses fresh random groups,
 * so the suite can share one backend with other data; each test closes what it opened.
 * A concern named in `options.skip`, or a test whose option is missing (`faults`,
 * `unreachableFactory`, `failingFactory`), is reported as skipped, never passed silently.
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
 *   unreachableFactory: ({ namespace }) => createMyStore({ namespace, url: 'my://127.0.0.1:1' }),
 * });
 * ```
 */
export function runStoreConformance(
  t: ConformanceTestApi,
  factory: StoreFactory,
  options: ConformanceOptions = {},
): void {
  const skip = new Set<Concern>(options.skip ?? []);
  t.describe(`VaultStore conformance${options.name === undefined ? '' : `: ${options.name}`}`, () => {
    const h = createHarness(t, factory, options);
    for (const concern of CONCERNS) {
      if (skip.has(concern)) h.skipped(`${concern} (every test of this concern)`, 'named in options.skip');
      else DEFINITIONS[concern](h);
    }
  });
}

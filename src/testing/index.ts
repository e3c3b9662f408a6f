/**
 * `credvault/testing`: the conformance suite every {@link VaultStore} adapter passes.
 * Run it from your own adapter's tests to check the contract against a real backend;
 * run one concern alone with its runner (`runBatchConformance`, `runScanConformance`, ...).
 *
 * @example
 * ```ts
 * import { describe, it, expect } from 'vitest';
 * import { runStoreConformance } from 'credvault/testing';
 *
 * runStoreConformance({ describe, it, expect }, ({ namespace }) => createMyStore({ namespace }));
 * ```
 */
export { runStoreConformance } from './conformance.js';
export { runBasicsConformance } from './basics.js';
export { runValuesConformance } from './values.js';
export { runExpiryConformance } from './expiry.js';
export { runBatchConformance } from './batch.js';
export { runIndexConformance } from './indexes.js';
export { runCountersConformance } from './counters.js';
export { runScanConformance } from './scan.js';
export { runIsolationConformance } from './isolation.js';
export { runErrorsConformance } from './errors.js';
export { runConcurrencyConformance } from './concurrency.js';
export { runLifecycleConformance } from './lifecycle.js';
export { CONCERNS } from './context.js';
export type {
  Concern,
  ConformanceExpectation,
  ConformanceIt,
  ConformanceOptions,
  ConformanceTestApi,
  StoreFactory,
} from './context.js';
export type { VaultStore } from '../core/store.js';

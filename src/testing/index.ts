/**
 * `credvault/testing`: the conformance suite every {@link VaultStore} adapter passes.
 * Run it from your own adapter's tests to check the contract against a real backend.
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
export type {
  ConformanceExpectation,
  ConformanceOptions,
  ConformanceTestApi,
  StoreFactory,
} from './conformance.js';
export type { VaultStore } from '../core/store.js';

import { describe, expect, it } from 'vitest';
import { createMemoryStore } from '../../adapters/memory.js';
import { runStoreConformance } from '../../src/testing/index.js';
import { batchFaultHook } from '../helpers/faults.js';

runStoreConformance({ describe, it, expect }, ({ namespace }) => createMemoryStore({ namespace }), {
  name: 'memory',
  faults: { factory: ({ namespace }, controls) => createMemoryStore({ namespace, faults: batchFaultHook(controls) }) },
});

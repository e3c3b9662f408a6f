import { describe, expect, it } from 'vitest';
import { createMemoryStore } from '../../adapters/memory.js';
import { runStoreConformance } from '../../src/testing/index.js';

runStoreConformance({ describe, it, expect }, ({ namespace }) => createMemoryStore({ namespace }), {
  name: 'memory',
});

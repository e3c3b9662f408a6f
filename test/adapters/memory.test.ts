import { describe, expect, it } from 'vitest';
import { createMemoryStore } from '../../adapters/memory.js';
import { runStoreConformance } from '../../src/testing/index.js';

const faultHook = (controls: { failAt: number }) => ({ beforeWrite: (i: number) => { if (i === controls.failAt) throw new Error('injected fault'); } });

runStoreConformance({ describe, it, expect }, ({ namespace }) => createMemoryStore({ namespace }), {
  name: 'memory',
  faults: { factory: ({ namespace }, controls) => createMemoryStore({ namespace, faults: faultHook(controls) }) },
});

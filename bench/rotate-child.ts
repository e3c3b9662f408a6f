/**
 * Rotates one seeded SQLite store in a process of its own, so its memory is measured alone.
 * Argument: JSON {file, namespace, keys}. Sends {rotated, seconds, baselineRss, peakRss,
 * baselineHeap, peakHeap}; the heap figures are live data after a full GC (run with
 * --expose-gc), which is what grows if rotation holds on to what it has walked.
 */
import { createVault, rotateKeys } from '../src/index.js';

const { file, namespace, keys } = JSON.parse(process.argv[2] as string) as { file: string; namespace: string; keys: string };
const vault = await createVault({ store: `sqlite:${file}`, namespace, keys });
const liveHeap = () => {
  global.gc?.();
  return process.memoryUsage().heapUsed;
};
const baselineHeap = liveHeap();
const baselineRss = process.memoryUsage().rss;
let peakRss = baselineRss;
let peakHeap = baselineHeap;
let batches = 0;
const started = process.hrtime.bigint();
const result = await rotateKeys(vault, {
  batchSize: 500,
  onProgress: () => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
    if (++batches % 20 === 0) peakHeap = Math.max(peakHeap, liveHeap());
  },
});
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
await vault.close();
process.send?.({ rotated: result.resealed, seconds, baselineRss, peakRss, baselineHeap, peakHeap });

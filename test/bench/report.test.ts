/**
 * The benchmark's report writer: given results render into the very table rows, generated
 * BENCHMARKS.md section and chart bars that earlier runs published, so figures stay
 * comparable from one run to the next.
 */
import { describe, expect, it } from 'vitest';
import { renderChart, renderTables, replaceGeneratedSection, type BenchResults } from '../../bench/report.js';
import type { HttpRow, Load } from '../../bench/http.js';

const load = (rps: number, p50: number, p99: number): Load => ({ rps, p50, p99, total: rps * 4, non2xx: 0, errors: 0 });

const http: HttpRow[] = [
  {
    store: 'sqlite',
    binding: 'koa',
    results: {
      bare: [load(1000, 1, 3), load(3000, 1, 3), load(2000, 1, 3)],
      // An even count of rounds: the median is the mean of the middle two.
      naive: [load(800, 4, 10), load(1200, 6, 14)],
      credvault: [load(500, 9, 20), load(700, 8, 30), load(600, 10, 25)],
    },
    storeCallsPerPut: 2.004,
  },
  {
    store: 'redis',
    binding: 'fetch',
    results: { bare: [load(1500, 1, 2)], naive: [load(1200, 1, 3)], credvault: [load(900, 2, 5)] },
    storeCallsPerPut: 2,
    backendOpsPerPut: 7.006,
  },
];

const results: BenchResults = {
  date: '2026-11-26T10:00:00.000Z',
  machine: '2 cores, Test CPU',
  duration: 4,
  connections: 32,
  rounds: 3,
  http,
  core: { vaultUpsertsPerSecond: 79769.4, rawSealPerSecond: 145697.2 },
  scale: [{ store: 'sqlite', stored: 1000, p50: 0.3584, p99: 1.0101, bytesPerCredential: 307.4 }],
  rotation: [{ credentials: 10000, seconds: 2.96, baselineMiB: 62.4, peakMiB: 79.2, heapBaselineMiB: 7.71, heapPeakMiB: 8.24 }],
};

const CORE_TABLE = [
  '| core (memory store, in process) | operations/s |',
  '|---|---:|',
  '| `upsertDefaultAppCredential` | 79769 |',
  '| raw AES-256-GCM seal + `Map.set` | 145697 |',
  '| ratio | 0.55 |',
];

describe('renderTables', () => {
  it('renders medians, ratios and per-PUT counts into the published columns', () => {
    expect(renderTables(results).split('\n')).toEqual([
      '| store | binding | bare req/s | naive req/s | credvault req/s | credvault/bare | credvault/naive | credvault p50 / p99 ms | naive p50 / p99 ms | store calls per PUT | backend ops per PUT |',
      '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
      '| sqlite | koa | 2000 | 1000 | 600 | 0.30 | 0.60 | 9 / 25 | 5 / 12 | 2.00 |  |',
      '| redis | fetch | 1500 | 1200 | 900 | 0.60 | 0.75 | 2 / 5 | 1 / 3 | 2.00 | 7.01 |',
      '',
      ...CORE_TABLE,
      '',
      '| store | credentials stored | upsert p50 ms | upsert p99 ms | bytes per credential |',
      '|---|---:|---:|---:|---:|',
      '| sqlite | 1000 | 0.358 | 1.010 | 307 |',
      '',
      '| key rotation (SQLite) | seconds | records/s | live heap before / peak MiB | RSS before / peak MiB |',
      '|---:|---:|---:|---:|---:|',
      '| 10000 credentials | 3.0 | 3378 | 7.7 / 8.2 | 62 / 79 |',
    ]);
  });

  it('leaves out the tables of skipped measurements', () => {
    expect(renderTables({ http: [], core: results.core, scale: [], rotation: [] }).split('\n')).toEqual(['', ...CORE_TABLE]);
    expect(renderTables({ http: [], core: undefined, scale: [], rotation: [] })).toBe('');
  });
});

describe('replaceGeneratedSection', () => {
  const doc = '# Benchmarks\n\nintro\n\n<!-- bench:start -->\nold figures\n<!-- bench:end -->\n\n![chart](bench/chart.svg)\n';

  it('replaces only what lies between the markers, with the run header and the tables', () => {
    expect(replaceGeneratedSection(doc, results, '| t | $& |')).toBe(
      '# Benchmarks\n\nintro\n\n<!-- bench:start -->\n' +
        'Measured 2026-11-26 on 2 cores, Test CPU; 4 s per run, 3 rounds, 32 connections; medians.\n\n| t | $& |\n' +
        '<!-- bench:end -->\n\n![chart](bench/chart.svg)\n',
    );
  });

  it('returns a text without markers unchanged', () => {
    expect(replaceGeneratedSection('# no markers\n', results, '| t |')).toBe('# no markers\n');
  });
});

describe('renderChart', () => {
  it('draws one group of three bars per row, scaled to the largest median', () => {
    const svg = renderChart(http, results);
    expect(svg).toContain('(median of 3 rounds, 32 connections)');
    const bars = [...svg.matchAll(/<rect x="[\d.]+" y="[\d.]+" width="11" height="([\d.]+)" fill="(#[0-9a-f]+)"\/>/g)].map((m) => [Number(m[1]), m[2]]);
    // Plot height 220 for the largest median (sqlite/koa bare, 2000 req/s).
    expect(bars).toEqual([
      [220, '#9aa5b1'],
      [110, '#f0b429'],
      [66, '#2f80ed'],
      [165, '#9aa5b1'],
      [132, '#f0b429'],
      [99, '#2f80ed'],
    ]);
    expect(svg).toContain('>sqlite/koa</text>');
    expect(svg).toContain('>redis/fetch</text>');
  });
});

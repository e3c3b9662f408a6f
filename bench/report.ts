/**
 * The benchmark's outputs, as pure functions from results to text: the Markdown tables
 * (printed, and placed in BENCHMARKS.md between its `bench:start`/`bench:end` markers) and
 * the SVG bar chart of PUT requests/s. Measures nothing; HTTP figures are the median over
 * rounds of each mode, and each credvault figure is quoted against the bare and naive
 * baselines of the same store and binding.
 */
import { MODES, type Mode } from './matrix.js';
import type { CoreResult } from './core.js';
import type { HttpRow, Load } from './http.js';
import type { RotationRow } from './rotation.js';
import type { ScaleRow } from './scale.js';

/** Everything one run measured, as bench/results.json holds it. */
export interface BenchResults {
  /** ISO 8601: when the run started. */
  date: string;
  machine: string;
  duration: number;
  connections: number;
  rounds: number;
  http: HttpRow[];
  /** Absent when the core measurement was skipped. */
  core?: CoreResult | undefined;
  scale: ScaleRow[];
  rotation: RotationRow[];
}

/** The middle value (the mean of the two middle ones for an even count). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

const fmt = (n: number, digits = 0) => n.toFixed(digits);

function httpTable(rows: readonly HttpRow[]): string[] {
  const lines = [
    '| store | binding | bare req/s | naive req/s | credvault req/s | credvault/bare | credvault/naive | credvault p50 / p99 ms | naive p50 / p99 ms | store calls per PUT | backend ops per PUT |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const row of rows) {
    const m = (mode: Mode, field: keyof Load) => median(row.results[mode].map((r) => r[field]));
    const cv = m('credvault', 'rps');
    const optional = (n: number | undefined) => (n === undefined ? '' : fmt(n, 2));
    lines.push(
      `| ${row.store} | ${row.binding} | ${fmt(m('bare', 'rps'))} | ${fmt(m('naive', 'rps'))} | ${fmt(cv)} | ${fmt(cv / m('bare', 'rps'), 2)} | ${fmt(cv / m('naive', 'rps'), 2)} | ${fmt(m('credvault', 'p50'))} / ${fmt(m('credvault', 'p99'))} | ${fmt(m('naive', 'p50'))} / ${fmt(m('naive', 'p99'))} | ${optional(row.storeCallsPerPut)} | ${optional(row.backendOpsPerPut)} |`,
    );
  }
  return lines;
}

function coreTable(core: CoreResult): string[] {
  return [
    '| core (memory store, in process) | operations/s |',
    '|---|---:|',
    `| \`upsertDefaultAppCredential\` | ${fmt(core.vaultUpsertsPerSecond)} |`,
    `| raw AES-256-GCM seal + \`Map.set\` | ${fmt(core.rawSealPerSecond)} |`,
    `| ratio | ${fmt(core.vaultUpsertsPerSecond / core.rawSealPerSecond, 2)} |`,
  ];
}

function scaleTable(rows: readonly ScaleRow[]): string[] {
  return [
    '| store | credentials stored | upsert p50 ms | upsert p99 ms | bytes per credential |',
    '|---|---:|---:|---:|---:|',
    ...rows.map((row) => `| ${row.store} | ${row.stored} | ${fmt(row.p50, 3)} | ${fmt(row.p99, 3)} | ${fmt(row.bytesPerCredential)} |`),
  ];
}

function rotationTable(rows: readonly RotationRow[]): string[] {
  return [
    '| key rotation (SQLite) | seconds | records/s | live heap before / peak MiB | RSS before / peak MiB |',
    '|---:|---:|---:|---:|---:|',
    ...rows.map(
      (row) =>
        `| ${row.credentials} credentials | ${fmt(row.seconds, 1)} | ${fmt(row.credentials / row.seconds)} | ${fmt(row.heapBaselineMiB, 1)} / ${fmt(row.heapPeakMiB, 1)} | ${fmt(row.baselineMiB)} / ${fmt(row.peakMiB)} |`,
    ),
  ];
}

/**
 * The Markdown tables of a run, one per measurement that ran, in the order http, core,
 * scale, rotation. Every table after the HTTP one is preceded by a blank line, even when
 * the HTTP table is absent (the output earlier runs published).
 */
export function renderTables(results: Pick<BenchResults, 'http' | 'core' | 'scale' | 'rotation'>): string {
  const lines: string[] = [];
  if (results.http.length > 0) lines.push(...httpTable(results.http));
  if (results.core !== undefined) lines.push('', ...coreTable(results.core));
  if (results.scale.length > 0) lines.push('', ...scaleTable(results.scale));
  if (results.rotation.length > 0) lines.push('', ...rotationTable(results.rotation));
  return lines.join('\n');
}

const COLORS: Record<Mode, string> = { bare: '#9aa5b1', naive: '#f0b429', credvault: '#2f80ed' };

/** A grouped bar chart: for each store/binding, the median req/s of bare, naive and credvault. */
export function renderChart(rows: readonly HttpRow[], run: Pick<BenchResults, 'rounds' | 'connections'>): string {
  const groups = rows.map((row) => ({ label: `${row.store}/${row.binding}`, values: MODES.map((mode) => median(row.results[mode].map((r) => r.rps))) }));
  const max = Math.max(1, ...groups.flatMap((g) => g.values));
  const barWidth = 12;
  const groupWidth = barWidth * 3 + 14;
  const height = 350;
  const top = 40;
  const plot = 220;
  const width = 70 + groups.length * groupWidth + 20;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="10">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="18" text-anchor="middle" font-size="13">PUT requests/s by store and binding (median of ${run.rounds} rounds, ${run.connections} connections)</text>`,
  ];
  for (let t = 0; t <= 4; t++) {
    const value = (max * t) / 4;
    const y = top + plot - (plot * t) / 4;
    parts.push(`<line x1="60" x2="${width - 10}" y1="${y}" y2="${y}" stroke="#e4e7eb"/>`, `<text x="55" y="${y + 3}" text-anchor="end">${Math.round(value)}</text>`);
  }
  groups.forEach((group, gi) => {
    const x0 = 70 + gi * groupWidth;
    group.values.forEach((value, mi) => {
      const h = (plot * value) / max;
      parts.push(`<rect x="${x0 + mi * barWidth}" y="${top + plot - h}" width="${barWidth - 1}" height="${h}" fill="${COLORS[MODES[mi] as Mode]}"/>`);
    });
    parts.push(`<text transform="translate(${x0 + barWidth * 1.5},${top + plot + 8}) rotate(45)" font-size="9">${group.label}</text>`);
  });
  MODES.forEach((mode, i) => {
    parts.push(`<rect x="${70 + i * 90}" y="26" width="10" height="10" fill="${COLORS[mode]}"/>`, `<text x="${84 + i * 90}" y="35">${mode}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/**
 * `doc` (BENCHMARKS.md's text) with its generated section, from `<!-- bench:start -->` to
 * `<!-- bench:end -->`, replaced by the run's header line and `tables`. A text without the
 * markers comes back unchanged.
 */
export function replaceGeneratedSection(doc: string, run: Pick<BenchResults, 'date' | 'machine' | 'duration' | 'rounds' | 'connections'>, tables: string): string {
  const generated = `<!-- bench:start -->\nMeasured ${run.date.slice(0, 10)} on ${run.machine}; ${run.duration} s per run, ${run.rounds} rounds, ${run.connections} connections; medians.\n\n${tables}\n<!-- bench:end -->`;
  // A function replacement, so a `$` in the tables is never read as a pattern.
  return doc.replace(/<!-- bench:start -->[^]*<!-- bench:end -->/, () => generated);
}

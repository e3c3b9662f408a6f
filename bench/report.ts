/**
 * The benchmark's outputs, as pure functions from results to text: the Markdown tables
 * (printed, and placed in BENCHMARKS.md between its `bench:start`/`bench:end` markers), the
 * issue's targets judged met or not met, and the SVG bar chart of PUT requests/s; and the
 * merge of a narrowed run's results into the published ones. Measures nothing; every figure
 * is the median over rounds (or runs) of one side, and each credvault figure is quoted
 * against the baseline measured beside it in the same run.
 */
import { MODES, type Mode } from './matrix.js';
import { CLI_COMMANDS, type CliResult } from './cli.js';
import type { CoreResult } from './core.js';
import type { HandlerResult } from './handler.js';
import type { HttpRow, Load } from './http.js';
import type { KekFigures, KekResult } from './kek.js';
import type { ReadRow } from './reads.js';
import type { RotationRow } from './rotation.js';
import type { ScaleRow } from './scale.js';

/** The measurements of a run, in the order they run; any of them can be left out with BENCH_SKIP. */
export const BENCH_STEPS = ['http', 'core', 'scale', 'rotation', 'handler', 'reads', 'cli', 'kek'] as const;
export type BenchStep = (typeof BENCH_STEPS)[number];

/** Everything one run measured, as bench/results.json holds it. */
export interface BenchResults {
  /**
   * ISO 8601: when the run started; after a narrowed run, when the run started that measured
   * the figures `narrowed` does not name (the header facts below are that run's too).
   */
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
  /** Absent in runs from before reads were measured, and empty when skipped. */
  reads?: ReadRow[] | undefined;
  /** Absent when the handler measurement was skipped. */
  handler?: HandlerResult | undefined;
  /** Absent when the CLI measurement was skipped. */
  cli?: CliResult | undefined;
  /** Absent when the KEK measurement was skipped (and in runs from before it existed). */
  kek?: KekResult | undefined;
  /**
   * The steps whose figures a narrowed run (one with BENCH_SKIP) measured after `date`, each
   * with that run's start (ISO 8601); absent after a run of every step.
   */
  narrowed?: Partial<Record<BenchStep, string>> | undefined;
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

/** The goals of issue 12, in one place for the tables and the targets summary. */
export const TARGETS = {
  /** credvault/naive req/s of the PUT, by store, on every binding. */
  putVsNaive: { sqlite: 1.0, redis: 0.8, postgres: 0.8 } as Readonly<Record<string, number>>,
  /** credvault/bare req/s of the PUT, by store, on every binding. */
  putVsBare: { memory: 0.7 } as Readonly<Record<string, number>>,
  /** At most this many µs per PUT through the handler in process. */
  handlerMicros: 8,
  /** credvault/naive reads/s, by store, one caller and many alike. */
  readsVsNaive: { memory: 0.7, sqlite: 1.0, redis: 1.0, postgres: 1.0 } as Readonly<Record<string, number>>,
  /** At most this multiple of `node -e 0`'s wall time. */
  cliVsNode: 2,
} as const;

/** One target of the issue: what is compared, the goal, the figure measured and the verdict. */
export interface TargetRow {
  target: string;
  goal: string;
  measured: string;
  met: boolean;
}

// Judged on the figure as printed, so a row never shows a figure that contradicts its verdict.
const atLeast = (value: number, goal: number, digits = 2): Pick<TargetRow, 'goal' | 'measured' | 'met'> => ({
  goal: `>= ${fmt(goal, 1)}`,
  measured: fmt(value, digits),
  met: Number(fmt(value, digits)) >= goal,
});
const atMost = (value: number, goal: number, digits: number, unit = ''): Pick<TargetRow, 'goal' | 'measured' | 'met'> => ({
  goal: `<= ${goal}${unit}`,
  measured: `${fmt(value, digits)}${unit}`,
  met: Number(fmt(value, digits)) <= goal,
});
const verdict = (met: boolean) => (met ? 'met' : 'not met');

/** The sides' medians of one read figure, and their ratio. */
function readRatio(figures: ReadRow['sequential']): { credvault: number; naive: number; ratio: number } {
  const credvault = median(figures.credvault);
  const naive = median(figures.naive);
  return { credvault, naive, ratio: credvault / naive };
}

/** The CLI commands' medians, and each one's ratio to `node -e 0`. */
function cliFigures(cli: CliResult): { command: string; ms: number; ratio: number }[] {
  const floor = median(cli.ms['node -e 0']);
  return CLI_COMMANDS.map((command) => ({ command, ms: median(cli.ms[command]), ratio: median(cli.ms[command]) / floor }));
}

/** What a run measured, without its header facts. */
export type Measured = Pick<BenchResults, 'http' | 'core' | 'scale' | 'rotation' | 'reads' | 'handler' | 'cli' | 'kek'>;

/**
 * Every target of issue 12 the run has figures for, in the order PUT against naive, PUT
 * against bare, handler, reads, CLI; a target whose measurement was skipped is left out.
 */
export function targetRows(results: Measured): TargetRow[] {
  const rows: TargetRow[] = [];
  const httpRatio = (row: HttpRow, mode: 'bare' | 'naive') => median(row.results.credvault.map((r) => r.rps)) / median(row.results[mode].map((r) => r.rps));
  for (const row of results.http) {
    const goal = TARGETS.putVsNaive[row.store];
    if (goal !== undefined) rows.push({ target: `PUT credvault/naive, ${row.store}/${row.binding}`, ...atLeast(httpRatio(row, 'naive'), goal) });
  }
  for (const row of results.http) {
    const goal = TARGETS.putVsBare[row.store];
    if (goal !== undefined) rows.push({ target: `PUT credvault/bare, ${row.store}/${row.binding}`, ...atLeast(httpRatio(row, 'bare'), goal) });
  }
  if (results.handler !== undefined) {
    rows.push({ target: 'handler in process, µs per PUT (memory)', ...atMost(median(results.handler.handlerMicros), TARGETS.handlerMicros, 1, ' µs') });
  }
  for (const row of results.reads ?? []) {
    const goal = TARGETS.readsVsNaive[row.store];
    if (goal === undefined) continue;
    rows.push({ target: `reads credvault/naive, ${row.store}, 1 caller`, ...atLeast(readRatio(row.sequential).ratio, goal) });
    rows.push({ target: `reads credvault/naive, ${row.store}, ${row.concurrency} callers`, ...atLeast(readRatio(row.concurrent).ratio, goal) });
  }
  if (results.cli !== undefined) {
    for (const { command, ratio } of cliFigures(results.cli).slice(1)) {
      rows.push({ target: `\`${command}\` / \`node -e 0\` wall time`, ...atMost(ratio, TARGETS.cliVsNode, 2, 'x') });
    }
  }
  return rows;
}

function targetsTable(rows: readonly TargetRow[]): string[] {
  return ['| target (issue 12) | goal | measured | result |', '|---|---:|---:|---|', ...rows.map((row) => `| ${row.target} | ${row.goal} | ${row.measured} | ${verdict(row.met)} |`)];
}

function handlerTable(handler: HandlerResult): string[] {
  const handle = median(handler.handlerMicros);
  const core = median(handler.coreMicros);
  const target = atMost(handle, TARGETS.handlerMicros, 1, ' µs');
  return [
    `| handler in process (memory store, ${handler.puts} PUTs per round) | µs per PUT |`,
    '|---|---:|',
    `| \`createHandler(vault).handle\` | ${fmt(handle, 1)} |`,
    `| \`upsertDefaultAppCredential\` alone | ${fmt(core, 1)} |`,
    `| the handler's own share | ${fmt(handle - core, 1)} |`,
    `| target ${target.goal} per PUT | ${verdict(target.met)} |`,
  ];
}

function readsTable(rows: readonly ReadRow[]): string[] {
  const callers = rows[0]?.concurrency ?? 0;
  const lines = [
    `| reads in process | credvault reads/s, 1 caller | naive reads/s, 1 caller | credvault/naive | credvault reads/s, ${callers} callers | naive reads/s, ${callers} callers | credvault/naive | target | result (1 / ${callers} callers) |`,
    '|---|---:|---:|---:|---:|---:|---:|---:|---|',
  ];
  for (const row of rows) {
    const one = readRatio(row.sequential);
    const many = readRatio(row.concurrent);
    const goal = TARGETS.readsVsNaive[row.store];
    const result = goal === undefined ? '' : `${verdict(atLeast(one.ratio, goal).met)} / ${verdict(atLeast(many.ratio, goal).met)}`;
    lines.push(
      `| ${row.store} | ${fmt(one.credvault)} | ${fmt(one.naive)} | ${fmt(one.ratio, 2)} | ${fmt(many.credvault)} | ${fmt(many.naive)} | ${fmt(many.ratio, 2)} | ${goal === undefined ? '' : `>= ${fmt(goal, 1)}`} | ${result} |`,
    );
  }
  return lines;
}

function cliTable(cli: CliResult): string[] {
  const runs = cli.ms['node -e 0'].length;
  return [
    `| CLI start-up (wall time, median of ${runs} runs) | ms | / \`node -e 0\` | target <= ${TARGETS.cliVsNode}x |`,
    '|---|---:|---:|---|',
    ...cliFigures(cli).map(
      ({ command, ms, ratio }, i) => `| \`${command}\` | ${fmt(ms)} | ${fmt(ratio, 2)} | ${i === 0 ? '' : verdict(atMost(ratio, TARGETS.cliVsNode, 2).met)} |`,
    ),
  ];
}

/** The columns of the KEK table: the two providers' medians and their ratio (blank where a side is missing). */
function kekCells(local: number, pkcs11: number | undefined, digits: number): string {
  if (pkcs11 === undefined) return `${fmt(local, digits)} |  | `;
  // A ratio of a figure with no sign to it (a saving measured at or below zero) would mean nothing.
  const ratio = local > 0 && pkcs11 > 0 ? fmt(pkcs11 / local, 2) : '';
  return `${fmt(local, digits)} | ${fmt(pkcs11, digits)} | ${ratio}`;
}

/** µs per call the cache saves: the cache-off call's µs less the cached one's (from the medians of calls/s). */
const savedMicros = (off: readonly number[], on: readonly number[]) => 1e6 / median(off) - 1e6 / median(on);

function kekTable(kek: KekResult): string[] {
  const c = kek.concurrency;
  const pkcs11 = kek.pkcs11Skipped === undefined ? `PKCS#11${kek.token === undefined ? '' : ` (${kek.token})`}` : `PKCS#11 (skipped: ${kek.pkcs11Skipped})`;
  const lines = [
    `| KEK provider in process (${kek.accounts} accounts, 1 credential each, cycled; median of ${kek.rounds} rounds of ${kek.duration} s) | measured | local keyring | ${pkcs11} | PKCS#11/local |`,
    '|---|---|---:|---:|---:|',
  ];
  type Rate = { [K in keyof KekFigures]: K extends `${string}Micros${string}` ? never : K }[keyof KekFigures];
  const rates: [Rate, string][] = [
    ['putCached', 'PUTs/s, default cache, 1 caller'],
    ['putCachedConcurrent', `PUTs/s, default cache, ${c} callers`],
    ['putUncached', 'PUTs/s, cache off, 1 caller'],
    ['putUncachedConcurrent', `PUTs/s, cache off, ${c} callers`],
    ['readCached', 'reads/s, default cache, 1 caller'],
    ['readCachedConcurrent', `reads/s, default cache, ${c} callers`],
    ['readUncached', 'reads/s, cache off, 1 caller'],
    ['readUncachedConcurrent', `reads/s, cache off, ${c} callers`],
  ];
  for (const row of kek.rows) {
    const side = (figures: KekFigures | undefined, pick: (f: KekFigures) => number) => (figures === undefined ? undefined : pick(figures));
    const both = (pick: (f: KekFigures) => number, digits: number) => kekCells(pick(row.local), side(row.pkcs11, pick), digits);
    for (const [field, label] of rates) lines.push(`| ${row.store} | ${label} | ${both((f) => median(f[field]), 0)} |`);
    lines.push(
      `| ${row.store} | µs per PUT the cache saves, 1 caller | ${both((f) => savedMicros(f.putUncached, f.putCached), 1)} |`,
      `| ${row.store} | µs per read the cache saves, 1 caller | ${both((f) => savedMicros(f.readUncached, f.readCached), 1)} |`,
      `| ${row.store} | cold first read, µs per account, 1 caller | ${both((f) => median(f.coldMicros), 1)} |`,
      `| ${row.store} | cold first read, µs per account, ${c} callers | ${both((f) => median(f.coldMicrosConcurrent), 1)} |`,
      `| ${row.store} | \`createLinkedAccount\` (a data key wrapped), µs per account | ${both((f) => median(f.createMicros), 1)} |`,
      `| ${row.store} | the provider's \`unwrap\` alone, µs per call | ${both((f) => median(f.unwrapMicros), 1)} |`,
      `| ${row.store} | the provider's \`wrap\` alone, µs per call | ${both((f) => median(f.wrapMicros), 1)} |`,
    );
  }
  return lines;
}

/**
 * The Markdown tables of a run, one per measurement that ran, in the order http, core,
 * scale, rotation, handler, reads, CLI, KEK, then the targets summary. Every table after the HTTP
 * one is preceded by a blank line, even when the HTTP table is absent (the output earlier
 * runs published; the tables added since come after theirs).
 */
export function renderTables(results: Measured): string {
  const lines: string[] = [];
  if (results.http.length > 0) lines.push(...httpTable(results.http));
  if (results.core !== undefined) lines.push('', ...coreTable(results.core));
  if (results.scale.length > 0) lines.push('', ...scaleTable(results.scale));
  if (results.rotation.length > 0) lines.push('', ...rotationTable(results.rotation));
  if (results.handler !== undefined) lines.push('', ...handlerTable(results.handler));
  if (results.reads !== undefined && results.reads.length > 0) lines.push('', ...readsTable(results.reads));
  if (results.cli !== undefined) lines.push('', ...cliTable(results.cli));
  if (results.kek !== undefined && results.kek.rows.length > 0) lines.push('', ...kekTable(results.kek));
  const targets = targetRows(results);
  if (targets.length > 0) lines.push('', ...targetsTable(targets));
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
 * What a run publishes: `current` (what it measured, `ran` naming the steps it ran), with
 * the figures of every other step kept from `previous` (the results published before), so
 * a run narrowed with BENCH_SKIP replaces only its own tables. The header facts (date,
 * machine, duration, rounds, connections) stay those of the run that measured the kept
 * figures, and `narrowed` records when each step of a narrowed run was measured. A run of
 * every step, or one with nothing published before, is published as it is.
 */
export function mergeResults(previous: BenchResults | undefined, current: BenchResults, ran: ReadonlySet<BenchStep>): BenchResults {
  if (previous === undefined || BENCH_STEPS.every((step) => ran.has(step))) {
    const { narrowed: _ignored, ...rest } = current;
    return rest;
  }
  const pick = <S extends BenchStep>(step: S): BenchResults[S] => (ran.has(step) ? current[step] : previous[step]);
  const narrowed: Partial<Record<BenchStep, string>> = { ...previous.narrowed };
  for (const step of ran) narrowed[step] = current.date;
  return {
    date: previous.date,
    machine: previous.machine,
    duration: previous.duration,
    connections: previous.connections,
    rounds: previous.rounds,
    http: pick('http') ?? [],
    core: pick('core'),
    scale: pick('scale') ?? [],
    rotation: pick('rotation') ?? [],
    reads: pick('reads'),
    handler: pick('handler'),
    cli: pick('cli'),
    kek: pick('kek'),
    ...(Object.keys(narrowed).length === 0 ? {} : { narrowed }),
  };
}

/** The header's note on narrowed runs: `kek on 2026-12-07; reads, cli on 2026-12-05` (latest first), or ''. */
function narrowedNote(narrowed: BenchResults['narrowed']): string {
  const byDay = new Map<string, BenchStep[]>();
  for (const step of BENCH_STEPS) {
    const day = narrowed?.[step]?.slice(0, 10);
    if (day !== undefined) byDay.set(day, [...(byDay.get(day) ?? []), step]);
  }
  if (byDay.size === 0) return '';
  const days = [...byDay.keys()].sort().reverse();
  return ` Tables measured since by narrowed runs (BENCH_SKIP): ${days.map((day) => `${(byDay.get(day) as BenchStep[]).join(', ')} on ${day}`).join('; ')}.`;
}

/**
 * `doc` (BENCHMARKS.md's text) with its generated section, from `<!-- bench:start -->` to
 * `<!-- bench:end -->`, replaced by the run's header line and `tables`. A text without the
 * markers comes back unchanged.
 */
export function replaceGeneratedSection(
  doc: string,
  run: Pick<BenchResults, 'date' | 'machine' | 'duration' | 'rounds' | 'connections'> & { narrowed?: BenchResults['narrowed'] },
  tables: string,
): string {
  const generated = `<!-- bench:start -->\nMeasured ${run.date.slice(0, 10)} on ${run.machine}; ${run.duration} s per run, ${run.rounds} rounds, ${run.connections} connections; medians.${narrowedNote(run.narrowed)}\n\n${tables}\n<!-- bench:end -->`;
  // A function replacement, so a `$` in the tables is never read as a pattern.
  return doc.replace(/<!-- bench:start -->[^]*<!-- bench:end -->/, () => generated);
}

/**
 * `npm run bench`: what credvault costs, measured side by side with baselines in one run.
 * This entry reads the settings from the environment, runs the chosen measurements in
 * order, and writes bench/results.json, bench/chart.svg and the tables in BENCHMARKS.md.
 *
 * 1. HTTP (http.ts): for each binding and store, the PUT endpoint against `bare` and `naive`
 *    servers (see apps.ts), alternating, BENCH_ROUNDS rounds, medians quoted; round trips:
 *    store calls per PUT, Redis commands and PostgreSQL transactions per PUT.
 * 2. Core (core.ts): upserts/s through the library on the memory store, against raw
 *    AES-256-GCM sealing plus a Map.set.
 * 3. Scale (scale.ts): upsert latency with 10^3, 10^5 and 10^6 stored credentials (SQLite,
 *    Redis), and bytes per stored credential.
 * 4. Key rotation (rotation.ts): time and peak memory of rotating 10^4 and 10^5 credentials.
 * 5. Handler (handler.ts): µs per PUT through `createHandler` in process on the memory store,
 *    against `upsertDefaultAppCredential` alone.
 * 6. Reads (reads.ts): `getDefaultAppCredential` reads/s in process per store, one caller and
 *    BENCH_READ_CALLERS at once, against a Map or Keyv `get` plus an AES-256-GCM open.
 * 7. CLI start-up (cli.ts): wall time of `credvault --help` and `api-key create` on
 *    `memory:` against `node -e 0`.
 * The report ends with the targets, each judged met or not met.
 *
 * Environment: BENCH_DURATION (s, 4), BENCH_CONNECTIONS (32), BENCH_ROUNDS (3),
 * BENCH_STORES (memory,sqlite,redis,postgres), BENCH_BINDINGS (express,koa,fastify,fetch),
 * BENCH_SCALE (1000,100000,1000000), BENCH_ROTATION (10000,100000), BENCH_READ_CALLERS (32),
 * BENCH_CLI_RUNS (21, at least 15 for published figures),
 * BENCH_SKIP (any of http,core,scale,rotation,handler,reads,cli), BENCH_REDIS_URL (redis://127.0.0.1:6379/14),
 * BENCH_POSTGRES_URL (postgres://postgres@127.0.0.1:5432/test), BENCH_REPLOT=1 (redraw the
 * chart from bench/results.json without measuring).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BINDINGS, type Binding } from './matrix.js';
import { measureCli } from './cli.js';
import { measureCore } from './core.js';
import { measureHandler } from './handler.js';
import { measureHttp } from './http.js';
import { renderChart, renderTables, replaceGeneratedSection, type BenchResults } from './report.js';
import { measureReads } from './reads.js';
import { measureRotation } from './rotation.js';
import { measureScale } from './scale.js';
import { clearBackends } from './services.js';

/** The run's settings, each from its BENCH_* variable or its default. */
function settingsFromEnv(env: NodeJS.ProcessEnv) {
  const read = (name: string, fallback: string) => env[name] ?? fallback;
  const list = (name: string, fallback: string) => read(name, fallback).split(',');
  return {
    duration: Number(read('BENCH_DURATION', '4')),
    connections: Number(read('BENCH_CONNECTIONS', '32')),
    rounds: Number(read('BENCH_ROUNDS', '3')),
    stores: list('BENCH_STORES', 'memory,sqlite,redis,postgres'),
    bindings: list('BENCH_BINDINGS', BINDINGS.join(',')) as Binding[],
    scale: list('BENCH_SCALE', '1000,100000,1000000').map(Number),
    rotation: list('BENCH_ROTATION', '10000,100000').map(Number),
    readCallers: Number(read('BENCH_READ_CALLERS', '32')),
    cliRuns: Number(read('BENCH_CLI_RUNS', '21')),
    skip: new Set(read('BENCH_SKIP', '').split(',').filter(Boolean)),
    redisUrl: read('BENCH_REDIS_URL', 'redis://127.0.0.1:6379/14'),
    postgresUrl: read('BENCH_POSTGRES_URL', 'postgres://postgres@127.0.0.1:5432/test'),
    replot: env['BENCH_REPLOT'] === '1',
  };
}

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const output = {
  results: path.join(root, 'bench', 'results.json'),
  chart: path.join(root, 'bench', 'chart.svg'),
  doc: path.join(root, 'BENCHMARKS.md'),
};
const log = (line: string) => process.stderr.write(`${line}\n`);

async function main(): Promise<void> {
  const settings = settingsFromEnv(process.env);
  if (settings.replot) {
    const last = JSON.parse(readFileSync(output.results, 'utf8')) as BenchResults;
    writeFileSync(output.chart, renderChart(last.http, last));
    return;
  }
  const { duration, connections, rounds, stores, skip } = settings;
  const started = new Date();
  // A fresh keyring per run; clearBackends removes records of earlier runs' keys.
  const keys = `bench:${randomBytes(32).toString('base64')}`;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'credvault-bench-'));
  try {
    await clearBackends(settings);
    const cpu = os.cpus()[0]?.model;
    log(`credvault bench: ${os.cpus().length} cores (${cpu ?? 'unknown'}), node ${process.version}, ${duration}s x ${rounds} rounds at ${connections} connections`);
    const http = skip.has('http') ? [] : await measureHttp({ stores, bindings: settings.bindings, rounds, duration, connections, keys, redisUrl: settings.redisUrl, postgresUrl: settings.postgresUrl, dir, log });
    const core = skip.has('core') ? undefined : await measureCore({ keys });
    if (core !== undefined) log(`core: vault ${Math.round(core.vaultUpsertsPerSecond)} upserts/s, raw ${Math.round(core.rawSealPerSecond)} seals/s`);
    const scale = skip.has('scale') ? [] : await measureScale({ stores, sizes: settings.scale, keys, redisUrl: settings.redisUrl, dir, log });
    const rotation = skip.has('rotation') ? [] : await measureRotation({ sizes: settings.rotation, dir, log });
    const handler = skip.has('handler') ? undefined : await measureHandler({ rounds, keys, log });
    const reads = skip.has('reads')
      ? []
      : await measureReads({ stores, rounds, duration, concurrency: settings.readCallers, keys, redisUrl: settings.redisUrl, postgresUrl: settings.postgresUrl, dir, log });
    const cli = skip.has('cli') ? undefined : await measureCli({ runs: settings.cliRuns, log });

    const machine = `${os.cpus().length} cores, ${cpu ?? 'unknown CPU'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}, Node.js ${process.version}`;
    const results: BenchResults = { date: started.toISOString(), machine, duration, connections, rounds, http, core, scale, rotation, reads, handler, cli };
    const tables = renderTables(results);
    process.stdout.write(`${tables}\n`);
    writeFileSync(output.results, `${JSON.stringify(results, null, 2)}\n`);
    if (http.length > 0) writeFileSync(output.chart, renderChart(http, results));
    if (existsSync(output.doc)) writeFileSync(output.doc, replaceGeneratedSection(readFileSync(output.doc, 'utf8'), results, tables));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();

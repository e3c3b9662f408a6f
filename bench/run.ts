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
 * 8. KEK (kek.ts): PUTs/s and reads/s in process on memory and SQLite with the KEK in the
 *    local keyring and on a PKCS#11 token (SoftHSM2, provisioned in the run's temp dir;
 *    skipped with a notice when SoftHSM2 is missing), with the default data key cache and with
 *    it off, one caller and BENCH_KEK_CALLERS at once; µs per account of the cold first read
 *    (the unwrap) and of account creation (the wrap); µs per call of the provider's own wrap
 *    and unwrap. Each figure is measured on both providers back to back, the first alternating.
 * The report ends with the targets, each judged met or not met.
 *
 * A run narrowed with BENCH_SKIP replaces only the figures of the steps it ran: the others
 * are kept from bench/results.json (and so stay in BENCHMARKS.md), under the header of the
 * run that measured them, and `narrowed` in results.json says which steps were measured when.
 *
 * Environment: BENCH_DURATION (s, 4), BENCH_CONNECTIONS (32), BENCH_ROUNDS (3),
 * BENCH_STORES (memory,sqlite,redis,postgres; the KEK step takes memory and sqlite of them),
 * BENCH_BINDINGS (express,koa,fastify,fetch), BENCH_SCALE (1000,100000,1000000),
 * BENCH_ROTATION (10000,100000), BENCH_READ_CALLERS (32), BENCH_CLI_RUNS (21, at least 15 for
 * published figures), BENCH_KEK_ACCOUNTS (1000), BENCH_KEK_CALLERS (32), BENCH_KEK_DURATION
 * (s per KEK figure, 2), BENCH_SOFTHSM_MODULE (/usr/lib/softhsm/libsofthsm2.so),
 * BENCH_SKIP (any of http,core,scale,rotation,handler,reads,cli,kek), BENCH_REDIS_URL (redis://127.0.0.1:6379/14),
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
import { KEK_STORES, measureKek } from './kek.js';
import { BENCH_STEPS, mergeResults, renderChart, renderTables, replaceGeneratedSection, type BenchResults, type BenchStep } from './report.js';
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
    kekAccounts: Number(read('BENCH_KEK_ACCOUNTS', '1000')),
    kekCallers: Number(read('BENCH_KEK_CALLERS', '32')),
    kekDuration: Number(read('BENCH_KEK_DURATION', '2')),
    softhsmModule: read('BENCH_SOFTHSM_MODULE', '/usr/lib/softhsm/libsofthsm2.so'),
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

/** The results published so far, or undefined when there are none (or they cannot be read: then the run publishes only its own). */
function publishedResults(): BenchResults | undefined {
  if (!existsSync(output.results)) return undefined;
  try {
    return JSON.parse(readFileSync(output.results, 'utf8')) as BenchResults;
  } catch (error) {
    log(`bench: ${output.results} could not be read (${error instanceof Error ? error.message : String(error)}); publishing this run's figures alone`);
    return undefined;
  }
}

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
    // Only steps that write to Redis or PostgreSQL need them emptied (or reachable at all).
    if (['http', 'scale', 'reads'].some((step) => !skip.has(step))) await clearBackends(settings);
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
    const kekStores = KEK_STORES.filter((store) => stores.includes(store));
    if (!skip.has('kek') && kekStores.length === 0) log(`kek: skipped, BENCH_STORES names none of ${KEK_STORES.join(', ')}`);
    const kek =
      skip.has('kek') || kekStores.length === 0
        ? undefined
        : await measureKek({
            stores: kekStores,
            rounds,
            duration: settings.kekDuration,
            accounts: settings.kekAccounts,
            concurrency: settings.kekCallers,
            keys,
            dir,
            softhsmModule: settings.softhsmModule,
            log,
          });

    const machine = `${os.cpus().length} cores, ${cpu ?? 'unknown CPU'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}, Node.js ${process.version}`;
    const measured: BenchResults = { date: started.toISOString(), machine, duration, connections, rounds, http, core, scale, rotation, reads, handler, cli, kek };
    // What this run measured is printed; what is published keeps every step it did not run.
    process.stdout.write(`${renderTables(measured)}\n`);
    const ran = new Set<BenchStep>(BENCH_STEPS.filter((step) => !skip.has(step) && !(step === 'kek' && kek === undefined)));
    const results = mergeResults(publishedResults(), measured, ran);
    writeFileSync(output.results, `${JSON.stringify(results, null, 2)}\n`);
    if (http.length > 0) writeFileSync(output.chart, renderChart(http, measured));
    if (existsSync(output.doc)) writeFileSync(output.doc, replaceGeneratedSection(readFileSync(output.doc, 'utf8'), results, renderTables(results)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();

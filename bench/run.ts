/**
 * `npm run bench`: what credvault costs, measured side by side with baselines in one run.
 *
 * 1. HTTP: for each binding and store, the PUT endpoint against `bare` and `naive` servers
 *    (see apps.ts), alternating, BENCH_ROUNDS rounds, medians quoted.
 * 2. Core: upserts/s through the library on the memory store, against raw AES-256-GCM
 *    sealing plus a Map.set.
 * 3. Scale: upsert latency with 10^3, 10^5 and 10^6 stored credentials (SQLite, Redis),
 *    and bytes per stored credential.
 * 4. Round trips: store calls per PUT (counted at the store interface), Redis commands per
 *    PUT (INFO commandstats), PostgreSQL transactions per PUT (pg_stat_database).
 * 5. Key rotation: time and peak memory of rotating 10^4 and 10^5 credentials.
 *
 * Writes bench/results.json, bench/chart.svg and the tables in BENCHMARKS.md.
 * Environment: BENCH_DURATION (s, 4), BENCH_CONNECTIONS (32), BENCH_ROUNDS (3),
 * BENCH_STORES (memory,sqlite,redis,postgres), BENCH_BINDINGS (express,koa,fastify,fetch),
 * BENCH_SCALE (1000,100000,1000000), BENCH_ROTATION (10000,100000),
 * BENCH_SKIP (http,core,scale,rotation).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createCipheriv, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import sqlite3 from 'sqlite3';
import pg from 'pg';
import { createClient, type RedisClientType } from '@keyv/redis';
import { createVault, upsertDefaultAppCredential, createLinkedAccount, openStore } from '../src/index.js';
import { createMemoryStore } from '../adapters/memory.js';
import { accountGroup, credentialMember } from '../src/core/layout.js';
import { sealCredential } from '../src/crypto/cipher.js';
import { parseKeyring } from '../src/crypto/keyring.js';
import { ACCOUNTS, BENCH_ACCOUNT, BINDINGS, MODES, type Binding, type Mode } from './apps.js';
import type { ServerSpec } from './server.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const env = (name: string, fallback: string) => process.env[name] ?? fallback;
const DURATION = Number(env('BENCH_DURATION', '4'));
const CONNECTIONS = Number(env('BENCH_CONNECTIONS', '32'));
const ROUNDS = Number(env('BENCH_ROUNDS', '3'));
const STORES = env('BENCH_STORES', 'memory,sqlite,redis,postgres').split(',');
const BINDING_LIST = env('BENCH_BINDINGS', BINDINGS.join(',')).split(',') as Binding[];
const SCALE = env('BENCH_SCALE', '1000,100000,1000000').split(',').map(Number);
const SKIP = new Set(env('BENCH_SKIP', '').split(',').filter(Boolean));
const ROTATION_SIZES = env('BENCH_ROTATION', '10000,100000').split(',').map(Number);
const REDIS_URL = env('BENCH_REDIS_URL', 'redis://127.0.0.1:6379/14');
const POSTGRES_URL = env('BENCH_POSTGRES_URL', 'postgres://postgres@127.0.0.1:5432/test');
const KEYS = `bench:${randomBytes(32).toString('base64')}`;
const tmp = mkdtempSync(path.join(os.tmpdir(), 'credvault-bench-'));
const log = (line: string) => process.stderr.write(`${line}\n`);

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};

function storeUrl(store: string): string {
  switch (store) {
    case 'memory':
      return 'memory:';
    case 'sqlite':
      return `sqlite:${path.join(tmp, 'http.db')}`;
    case 'redis':
      return REDIS_URL;
    default:
      return POSTGRES_URL;
  }
}

interface Running {
  child: ChildProcess;
  port: number;
  apiKey: string;
}

function startServer(spec: ServerSpec): Promise<Running> {
  const child = fork(path.join(here, 'server.js'), [JSON.stringify(spec)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server ${spec.binding}/${spec.mode} did not start`)), 30_000);
    child.once('exit', (code) => reject(new Error(`server ${spec.binding}/${spec.mode} exited ${code}`)));
    child.on('message', (message: { ready?: boolean; port: number; apiKey: string }) => {
      if (message.ready !== true) return;
      clearTimeout(timer);
      resolve({ child, port: message.port, apiKey: message.apiKey });
    });
  });
}

function ask<T>(child: ChildProcess, question: string, field: string): Promise<T> {
  return new Promise((resolve) => {
    const listener = (message: Record<string, unknown>) => {
      if (!(field in message)) return;
      child.off('message', listener);
      resolve(message[field] as T);
    };
    child.on('message', listener);
    child.send(question);
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

interface Load {
  rps: number;
  p50: number;
  p99: number;
  total: number;
  non2xx: number;
  errors: number;
}

let written = 0;

/**
 * PUTs spread over BENCH_ACCOUNTS accounts and 20 key names, each with a value never sent
 * before: a store may skip a write that changes nothing, and real updates change the value.
 */
async function load(port: number, apiKey: string, seconds: number): Promise<Load> {
  const requests = Array.from({ length: 20 }, (_, i) => ({
    method: 'PUT' as const,
    path: `/api/v2/public/linked-account/default-app/auth-credentials/bench_key_${i}`,
    headers: { 'content-type': 'application/json', 'x-api-key': apiKey, linked_account_id: `${BENCH_ACCOUNT}-${i % ACCOUNTS}` },
    setupRequest: (request: autocannon.Request) => ({ ...request, body: JSON.stringify({ value: `sk_live_${'x'.repeat(40)}_${written++}` }) }),
  }));
  const result = await autocannon({ url: `http://127.0.0.1:${port}`, connections: CONNECTIONS, duration: seconds, requests });
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    total: result.requests.total,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
  };
}

async function redisCommandCount(): Promise<number> {
  const client = createClient({ url: REDIS_URL }) as RedisClientType;
  await client.connect();
  const info = await client.info('commandstats');
  await client.quit();
  return [...info.matchAll(/calls=(\d+)/g)].reduce((sum, m) => sum + Number(m[1]), 0);
}

async function postgresTransactions(): Promise<number> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  await client.query('SELECT pg_stat_clear_snapshot()');
  const { rows } = await client.query<{ n: string }>('SELECT xact_commit + xact_rollback AS n FROM pg_stat_database WHERE datname = current_database()');
  await client.end();
  return Number(rows[0]?.n ?? 0);
}

interface HttpRow {
  store: string;
  binding: Binding;
  results: Record<Mode, Load[]>;
  storeCallsPerPut?: number;
  backendOpsPerPut?: number;
}

async function httpBench(): Promise<HttpRow[]> {
  const rows: HttpRow[] = [];
  for (const store of STORES) {
    for (const binding of BINDING_LIST) {
      const row: HttpRow = { store, binding, results: { bare: [], naive: [], credvault: [] } };
      for (let round = 0; round < ROUNDS; round++) {
        // Rotate the order each round, so no mode always runs first or last.
        const order = MODES.map((_, i) => MODES[(i + round) % MODES.length] as Mode);
        for (const mode of order) {
          const server = await startServer({ binding, mode, store: storeUrl(store), namespace: `bench-${store}`, keys: KEYS });
          try {
            await load(server.port, server.apiKey, 1); // warm-up: JIT, connections, store
            if (mode === 'credvault') server.child.send('reset');
            const before = store === 'redis' ? await redisCommandCount() : store === 'postgres' ? await postgresTransactions() : 0;
            const result = await load(server.port, server.apiKey, DURATION);
            if (result.non2xx > 0 || result.errors > 0) throw new Error(`${store}/${binding}/${mode}: ${result.non2xx} non-2xx, ${result.errors} errors`);
            row.results[mode].push(result);
            if (mode === 'credvault' && round === 0) {
              const ops = await ask<Record<string, number>>(server.child, 'ops', 'ops');
              row.storeCallsPerPut = Object.values(ops).reduce((a, b) => a + b, 0) / result.total;
              if (store === 'redis') row.backendOpsPerPut = ((await redisCommandCount()) - before - 1) / result.total;
              if (store === 'postgres') row.backendOpsPerPut = ((await postgresTransactions()) - before) / result.total;
            }
            log(`${store.padEnd(8)} ${binding.padEnd(8)} ${mode.padEnd(9)} round ${round + 1}: ${Math.round(result.rps)} req/s, p50 ${result.p50} ms, p99 ${result.p99} ms`);
          } finally {
            await stop(server.child);
          }
        }
      }
      rows.push(row);
    }
  }
  return rows;
}

interface CoreResult {
  vaultUpsertsPerSecond: number;
  rawSealPerSecond: number;
}

async function coreBench(): Promise<CoreResult> {
  const n = 30_000;
  const vault = await createVault({ store: createMemoryStore(), keys: KEYS });
  const account = { org: 'bench', environment: 'test', accountId: 'core' };
  await createLinkedAccount(vault, account, { credentials: {} });
  const value = `sk_live_${'x'.repeat(40)}`;
  for (let i = 0; i < 2000; i++) await upsertDefaultAppCredential(vault, account, `k${i % 100}`, value);
  let started = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await upsertDefaultAppCredential(vault, account, `k${i % 100}`, value);
  const vaultSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  await vault.close();

  const key = randomBytes(32);
  const map = new Map<string, string>();
  const seal = (i: number) => {
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key, nonce);
    const ct = Buffer.concat([cipher.update(value, 'utf8'), cipher.final()]);
    map.set(`k${i % 100}`, `${nonce.toString('base64url')}.${ct.toString('base64url')}.${cipher.getAuthTag().toString('base64url')}`);
  };
  for (let i = 0; i < 2000; i++) seal(i);
  started = process.hrtime.bigint();
  for (let i = 0; i < n; i++) seal(i);
  const rawSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { vaultUpsertsPerSecond: n / vaultSeconds, rawSealPerSecond: n / rawSeconds };
}

interface ScaleRow {
  store: string;
  stored: number;
  p50: number;
  p99: number;
  bytesPerCredential: number;
}

const PER_ACCOUNT = 100;

/** Fills a SQLite file with `count` credentials in the adapter's row format, in big transactions. */
async function seedSqlite(file: string, namespace: string, count: number, sealed: (account: string, key: string) => string): Promise<void> {
  const db = new sqlite3.Database(file);
  const run = (sql: string, ...params: unknown[]) =>
    new Promise<void>((resolve, reject) => db.run(sql, params, (error: Error | null) => (error ? reject(error) : resolve())));
  await run('PRAGMA journal_mode=WAL');
  await run('CREATE TABLE IF NOT EXISTS keyv(key VARCHAR(2048) PRIMARY KEY, value TEXT )');
  const now = Date.now();
  const prefix = encodeURIComponent(namespace);
  for (let start = 0; start < count; start += 20_000) {
    await run('BEGIN');
    for (let i = start; i < Math.min(count, start + 20_000); i++) {
      const accountId = `a${Math.floor(i / PER_ACCOUNT)}`;
      const key = `k${i % PER_ACCOUNT}`;
      const group = accountGroup({ org: 'scale', environment: 'test', accountId });
      const row = { value: { v: sealed(accountId, key), c: now, u: now, w: randomBytes(8).toString('hex') } };
      await run('INSERT OR REPLACE INTO keyv(key, value) VALUES (?, ?)', `${prefix}{${group}}:${credentialMember(key)}`, JSON.stringify(row));
    }
    await run('COMMIT');
  }
  await run('PRAGMA wal_checkpoint(TRUNCATE)');
  await new Promise<void>((resolve) => db.close(() => resolve()));
}

async function scaleBench(): Promise<ScaleRow[]> {
  const rows: ScaleRow[] = [];
  const sealedSample = sealCredential((await import('../src/crypto/keyring.js')).parseKeyring(KEYS), `sk_live_${'x'.repeat(40)}`, {
    org: 'scale',
    environment: 'test',
    accountId: 'a0',
    name: 'k0',
  });
  for (const store of ['sqlite', 'redis'].filter((s) => STORES.includes(s))) {
    for (const stored of SCALE) {
      const namespace = `scale-${stored}`;
      let url: string;
      let bytes = 0;
      if (store === 'sqlite') {
        const file = path.join(tmp, `scale-${stored}.db`);
        log(`scale: seeding ${stored} credentials into SQLite`);
        await seedSqlite(file, namespace, stored, () => sealedSample);
        bytes = statSync(file).size;
        url = `sqlite:${file}`;
      } else {
        url = REDIS_URL;
        const client = createClient({ url: REDIS_URL }) as RedisClientType;
        await client.connect();
        await client.flushDb();
        const before = Number(/used_memory:(\d+)/.exec(await client.info('memory'))?.[1]);
        await client.quit();
        log(`scale: seeding ${stored} credentials into Redis`);
        // Through the adapter itself, so every index it keeps is counted in the bytes.
        const seeding = await openStore(url, { namespace });
        for (let start = 0; start < stored; start += 2000) {
          await Promise.all(
            Array.from({ length: Math.min(2000, stored - start) }, (_, j) => {
              const i = start + j;
              const group = accountGroup({ org: 'scale', environment: 'test', accountId: `a${Math.floor(i / PER_ACCOUNT)}` });
              return seeding.put(group, credentialMember(`k${i % PER_ACCOUNT}`), sealedSample);
            }),
          );
        }
        await seeding.close();
        const after = createClient({ url: REDIS_URL }) as RedisClientType;
        await after.connect();
        bytes = Number(/used_memory:(\d+)/.exec(await after.info('memory'))?.[1]) - before;
        await after.quit();
      }
      const vault = await createVault({ store: url, namespace, keys: KEYS });
      const accounts = Math.max(1, Math.floor(stored / PER_ACCOUNT));
      for (let a = 0; a < Math.min(accounts, 50); a++) {
        await createLinkedAccount(vault, { org: 'scale', environment: 'test', accountId: `a${a}` }, { credentials: {} }).catch(() => undefined);
      }
      const latencies: number[] = [];
      for (let i = 0; i < 2000; i++) {
        const account = { org: 'scale', environment: 'test', accountId: `a${i % Math.min(accounts, 50)}` };
        const started = process.hrtime.bigint();
        await upsertDefaultAppCredential(vault, account, `k${i % PER_ACCOUNT}`, `value-${i}`);
        if (i >= 200) latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
      }
      await vault.close();
      latencies.sort((a, b) => a - b);
      rows.push({
        store,
        stored,
        p50: latencies[Math.floor(latencies.length * 0.5)] as number,
        p99: latencies[Math.floor(latencies.length * 0.99)] as number,
        bytesPerCredential: bytes / stored,
      });
      log(`scale: ${store} with ${stored}: p50 ${rows.at(-1)?.p50.toFixed(3)} ms, p99 ${rows.at(-1)?.p99.toFixed(3)} ms, ${Math.round(bytes / stored)} B/credential`);
      if (store === 'redis') {
        const client = createClient({ url: REDIS_URL }) as RedisClientType;
        await client.connect();
        await client.flushDb();
        await client.quit();
      }
    }
  }
  return rows;
}

interface RotationRow {
  credentials: number;
  seconds: number;
  baselineMiB: number;
  peakMiB: number;
  heapBaselineMiB: number;
  heapPeakMiB: number;
}

/** Key rotation of seeded SQLite stores of two sizes: time, and the rotating process's memory. */
async function rotationBench(): Promise<RotationRow[]> {
  const rows: RotationRow[] = [];
  const old = parseKeyring(`old:${randomBytes(32).toString('base64')}`);
  const oldEntry = `old:${old.primary.key.toString('base64')}`;
  const keys = `new:${randomBytes(32).toString('base64')},${oldEntry}`;
  for (const count of ROTATION_SIZES) {
    const file = path.join(tmp, `rotate-${count}.db`);
    log(`rotation: seeding ${count} credentials sealed under the old key`);
    await seedSqlite(file, 'rotate', count, (accountId, name) =>
      sealCredential(old, `sk_live_${accountId}_${name}`, { org: 'scale', environment: 'test', accountId, name }),
    );
    const child = fork(path.join(here, 'rotate-child.js'), [JSON.stringify({ file, namespace: 'rotate', keys })], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      execArgv: ['--expose-gc'],
    });
    const result = await new Promise<{ rotated: number; seconds: number; baselineRss: number; peakRss: number; baselineHeap: number; peakHeap: number }>((resolve, reject) => {
      child.once('message', (message) => resolve(message as never));
      child.once('exit', (code) => (code === 0 ? undefined : reject(new Error(`rotation child exited ${code}`))));
    });
    if (result.rotated !== count) throw new Error(`rotation re-sealed ${result.rotated} of ${count}`);
    const mib = (bytes: number) => bytes / 2 ** 20;
    const row = {
      credentials: count,
      seconds: result.seconds,
      baselineMiB: mib(result.baselineRss),
      peakMiB: mib(result.peakRss),
      heapBaselineMiB: mib(result.baselineHeap),
      heapPeakMiB: mib(result.peakHeap),
    };
    rows.push(row);
    log(`rotation: ${count} in ${row.seconds.toFixed(1)} s, RSS ${row.baselineMiB.toFixed(0)} -> ${row.peakMiB.toFixed(0)} MiB, live heap ${row.heapBaselineMiB.toFixed(1)} -> ${row.heapPeakMiB.toFixed(1)} MiB`);
  }
  return rows;
}

function chart(rows: HttpRow[]): string {
  const colors: Record<Mode, string> = { bare: '#9aa5b1', naive: '#f0b429', credvault: '#2f80ed' };
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
    `<text x="${width / 2}" y="18" text-anchor="middle" font-size="13">PUT requests/s by store and binding (median of ${ROUNDS} rounds, ${CONNECTIONS} connections)</text>`,
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
      parts.push(`<rect x="${x0 + mi * barWidth}" y="${top + plot - h}" width="${barWidth - 1}" height="${h}" fill="${colors[MODES[mi] as Mode]}"/>`);
    });
    parts.push(`<text transform="translate(${x0 + barWidth * 1.5},${top + plot + 8}) rotate(45)" font-size="9">${group.label}</text>`);
  });
  MODES.forEach((mode, i) => {
    parts.push(`<rect x="${70 + i * 90}" y="26" width="10" height="10" fill="${colors[mode]}"/>`, `<text x="${84 + i * 90}" y="35">${mode}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

function tables(rows: HttpRow[], core: CoreResult | undefined, scale: ScaleRow[], rotation: RotationRow[]): string {
  const fmt = (n: number, digits = 0) => n.toFixed(digits);
  const lines: string[] = [];
  if (rows.length > 0) {
    lines.push(
      '| store | binding | bare req/s | naive req/s | credvault req/s | credvault/bare | credvault/naive | credvault p50 / p99 ms | naive p50 / p99 ms | store calls per PUT | backend ops per PUT |',
      '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    );
    for (const row of rows) {
      const m = (mode: Mode, field: keyof Load) => median(row.results[mode].map((r) => r[field]));
      const cv = m('credvault', 'rps');
      lines.push(
        `| ${row.store} | ${row.binding} | ${fmt(m('bare', 'rps'))} | ${fmt(m('naive', 'rps'))} | ${fmt(cv)} | ${fmt(cv / m('bare', 'rps'), 2)} | ${fmt(cv / m('naive', 'rps'), 2)} | ${fmt(m('credvault', 'p50'))} / ${fmt(m('credvault', 'p99'))} | ${fmt(m('naive', 'p50'))} / ${fmt(m('naive', 'p99'))} | ${row.storeCallsPerPut === undefined ? '' : fmt(row.storeCallsPerPut, 2)} | ${row.backendOpsPerPut === undefined ? '' : fmt(row.backendOpsPerPut, 2)} |`,
      );
    }
  }
  if (core !== undefined) {
    lines.push(
      '',
      '| core (memory store, in process) | operations/s |',
      '|---|---:|',
      `| \`upsertDefaultAppCredential\` | ${fmt(core.vaultUpsertsPerSecond)} |`,
      `| raw AES-256-GCM seal + \`Map.set\` | ${fmt(core.rawSealPerSecond)} |`,
      `| ratio | ${fmt(core.vaultUpsertsPerSecond / core.rawSealPerSecond, 2)} |`,
    );
  }
  if (scale.length > 0) {
    lines.push('', '| store | credentials stored | upsert p50 ms | upsert p99 ms | bytes per credential |', '|---|---:|---:|---:|---:|');
    for (const row of scale) lines.push(`| ${row.store} | ${row.stored} | ${fmt(row.p50, 3)} | ${fmt(row.p99, 3)} | ${fmt(row.bytesPerCredential)} |`);
  }
  if (rotation.length > 0) {
    lines.push(
      '',
      '| key rotation (SQLite) | seconds | records/s | live heap before / peak MiB | RSS before / peak MiB |',
      '|---:|---:|---:|---:|---:|',
    );
    for (const row of rotation) {
      lines.push(
        `| ${row.credentials} credentials | ${fmt(row.seconds, 1)} | ${fmt(row.credentials / row.seconds)} | ${fmt(row.heapBaselineMiB, 1)} / ${fmt(row.heapPeakMiB, 1)} | ${fmt(row.baselineMiB)} / ${fmt(row.peakMiB)} |`,
      );
    }
  }
  return lines.join('\n');
}

/** Earlier runs' records, under other keys, would make the vault refuse to start. */
async function clearBackends(): Promise<void> {
  if (STORES.includes('redis')) {
    const client = createClient({ url: REDIS_URL }) as RedisClientType;
    await client.connect();
    await client.flushDb(); // the benchmark's own database number
    await client.quit();
  }
  if (STORES.includes('postgres')) {
    const client = new pg.Client({ connectionString: POSTGRES_URL });
    await client.connect();
    await client.query(`DELETE FROM keyv WHERE starts_with(key, 'bench-') OR starts_with(key, 'scale-')`).catch(() => undefined);
    await client.query('DROP TABLE IF EXISTS bench_naive');
    await client.end();
  }
}

async function main(): Promise<void> {
  if (process.env['BENCH_REPLOT'] === '1') {
    // Redraw the chart from the last results, without measuring again.
    const last = JSON.parse(readFileSync(path.join(root, 'bench', 'results.json'), 'utf8')) as { http: HttpRow[] };
    writeFileSync(path.join(root, 'bench', 'chart.svg'), chart(last.http));
    return;
  }
  const started = new Date();
  await clearBackends();
  log(`credvault bench: ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown'}), node ${process.version}, ${DURATION}s x ${ROUNDS} rounds at ${CONNECTIONS} connections`);
  const rows = SKIP.has('http') ? [] : await httpBench();
  const core = SKIP.has('core') ? undefined : await coreBench();
  if (core !== undefined) log(`core: vault ${Math.round(core.vaultUpsertsPerSecond)} upserts/s, raw ${Math.round(core.rawSealPerSecond)} seals/s`);
  const scale = SKIP.has('scale') ? [] : await scaleBench();
  const rotation = SKIP.has('rotation') ? [] : await rotationBench();
  const table = tables(rows, core, scale, rotation);
  process.stdout.write(`${table}\n`);
  const machine = `${os.cpus().length} cores, ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}, Node.js ${process.version}`;
  writeFileSync(path.join(root, 'bench', 'results.json'), `${JSON.stringify({ date: started.toISOString(), machine, duration: DURATION, connections: CONNECTIONS, rounds: ROUNDS, http: rows, core, scale, rotation }, null, 2)}\n`);
  if (rows.length > 0) writeFileSync(path.join(root, 'bench', 'chart.svg'), chart(rows));
  const doc = path.join(root, 'BENCHMARKS.md');
  if (existsSync(doc)) {
    const text = readFileSync(doc, 'utf8');
    const generated = `<!-- bench:start -->\nMeasured ${started.toISOString().slice(0, 10)} on ${machine}; ${DURATION} s per run, ${ROUNDS} rounds, ${CONNECTIONS} connections; medians.\n\n${table}\n<!-- bench:end -->`;
    writeFileSync(doc, text.replace(/<!-- bench:start -->[^]*<!-- bench:end -->/, generated));
  }
  rmSync(tmp, { recursive: true, force: true });
}

await main();

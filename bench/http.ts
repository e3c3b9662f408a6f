/**
 * The HTTP measurement: PUT requests/s and latency of the credential endpoint, for each
 * store and binding, against two baselines on the same framework and store (see apps.ts):
 * `bare` (parse the body, answer a constant 200) and `naive` (write the plaintext value to a
 * plain Keyv). The three modes alternate over the rounds, each server in its own process
 * (server.ts) and the load generator (autocannon) in this one. The credvault server also
 * reports its store calls per PUT; on Redis and PostgreSQL the backend's own counters give
 * the round trips per PUT.
 */
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { ACCOUNTS, BENCH_ACCOUNT, MODES, type Binding, type Mode } from './matrix.js';
import type { ServerSpec } from './server.js';
import { postgresTransactions, redisCommandCount } from './services.js';

/** One autocannon run against one server. */
export interface Load {
  rps: number;
  /** Milliseconds. */
  p50: number;
  /** Milliseconds. */
  p99: number;
  total: number;
  non2xx: number;
  errors: number;
}

/** All rounds of one store and binding. */
export interface HttpRow {
  store: string;
  binding: Binding;
  results: Record<Mode, Load[]>;
  /** Calls on the vault's store per PUT, counted at the store interface (first round). */
  storeCallsPerPut?: number;
  /** Redis commands or PostgreSQL transactions per PUT (first round). */
  backendOpsPerPut?: number;
}

export interface HttpSettings {
  /** Any of `memory`, `sqlite`, `redis`, `postgres`. */
  stores: readonly string[];
  bindings: readonly Binding[];
  rounds: number;
  /** Seconds of load per run, after a one-second warm-up. */
  duration: number;
  connections: number;
  /** The vault's keyring, `id:base64`. */
  keys: string;
  redisUrl: string;
  postgresUrl: string;
  /** A directory for the SQLite files. */
  dir: string;
  log: (line: string) => void;
}

const here = path.dirname(fileURLToPath(import.meta.url));

function storeUrl(store: string, settings: HttpSettings): string {
  switch (store) {
    case 'memory':
      return 'memory:';
    case 'sqlite':
      return `sqlite:${path.join(settings.dir, 'http.db')}`;
    case 'redis':
      return settings.redisUrl;
    default:
      return settings.postgresUrl;
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

/**
 * PUTs spread over ACCOUNTS accounts and 20 key names, each with a value never sent
 * before: a store may skip a write that changes nothing, and real updates change the value.
 * `counter` numbers the values across every load of one measurement.
 */
async function load(port: number, apiKey: string, seconds: number, connections: number, counter: { next: number }): Promise<Load> {
  const requests = Array.from({ length: 20 }, (_, i) => ({
    method: 'PUT' as const,
    path: `/api/v2/public/linked-account/default-app/auth-credentials/bench_key_${i}`,
    headers: { 'content-type': 'application/json', 'x-api-key': apiKey, linked_account_id: `${BENCH_ACCOUNT}-${i % ACCOUNTS}` },
    setupRequest: (request: autocannon.Request) => ({ ...request, body: JSON.stringify({ value: `sk_live_${'x'.repeat(40)}_${counter.next++}` }) }),
  }));
  const result = await autocannon({ url: `http://127.0.0.1:${port}`, connections, duration: seconds, requests });
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    total: result.requests.total,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
  };
}

/** The backend's own operation counter for `store`, or 0 where it has none. */
function backendCount(store: string, settings: HttpSettings): Promise<number> {
  if (store === 'redis') return redisCommandCount(settings.redisUrl);
  if (store === 'postgres') return postgresTransactions(settings.postgresUrl);
  return Promise.resolve(0);
}

/** Runs every store x binding x mode for `settings.rounds` rounds; one row per store and binding. */
export async function measureHttp(settings: HttpSettings): Promise<HttpRow[]> {
  const { rounds, duration, connections, keys, log } = settings;
  const counter = { next: 0 };
  const rows: HttpRow[] = [];
  for (const store of settings.stores) {
    for (const binding of settings.bindings) {
      const row: HttpRow = { store, binding, results: { bare: [], naive: [], credvault: [] } };
      for (let round = 0; round < rounds; round++) {
        // Rotate the order each round, so no mode always runs first or last.
        const order = MODES.map((_, i) => MODES[(i + round) % MODES.length] as Mode);
        for (const mode of order) {
          const server = await startServer({ binding, mode, store: storeUrl(store, settings), namespace: `bench-${store}`, keys });
          try {
            await load(server.port, server.apiKey, 1, connections, counter); // warm-up: JIT, connections, store
            if (mode === 'credvault') server.child.send('reset');
            const before = await backendCount(store, settings);
            const result = await load(server.port, server.apiKey, duration, connections, counter);
            if (result.non2xx > 0 || result.errors > 0) throw new Error(`${store}/${binding}/${mode}: ${result.non2xx} non-2xx, ${result.errors} errors`);
            row.results[mode].push(result);
            if (mode === 'credvault' && round === 0) {
              const ops = await ask<Record<string, number>>(server.child, 'ops', 'ops');
              row.storeCallsPerPut = Object.values(ops).reduce((a, b) => a + b, 0) / result.total;
              // On Redis, the INFO call that read `before` counts too.
              if (store === 'redis') row.backendOpsPerPut = ((await backendCount(store, settings)) - before - 1) / result.total;
              if (store === 'postgres') row.backendOpsPerPut = ((await backendCount(store, settings)) - before) / result.total;
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

import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe } from 'vitest';
import { freePort, waitFor } from './services.js';

const run = promisify(execFile);

/** Whether `redis-server` and `redis-cli` are on PATH. */
export const hasRedisServer =
  spawnSync('redis-server', ['--version']).status === 0 && spawnSync('redis-cli', ['--version']).status === 0;

/**
 * A `describe` that runs only when `redis-server` is installed. Without it, the suites skip
 * after a visible notice; with `CREDVAULT_REQUIRE_SERVICES=1` the file fails instead.
 */
export function topologySuite(name: string): { available: boolean; describe(title: string, body: () => void): void } {
  if (!hasRedisServer) {
    if (process.env.CREDVAULT_REQUIRE_SERVICES === '1') {
      throw new Error(`redis-server or redis-cli is not installed, and CREDVAULT_REQUIRE_SERVICES=1 requires them for the ${name} suite`);
    }
    console.warn(`[credvault tests] redis-server or redis-cli is not installed: skipping the ${name} suite`);
  }
  return {
    available: hasRedisServer,
    describe: (title, body) => (hasRedisServer ? describe(title, body) : describe.skip(title, body)),
  };
}

/** Every process this module spawned and has not reaped yet. */
const children = new Set<ChildProcess>();
// Last resort if a worker exits without running afterAll: never leave a redis-server behind.
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}

/** Spawns `redis-server args` and waits (bounded) until its log shows `ready`. */
async function startServer(args: string[], what: string, ready = 'Ready to accept connections'): Promise<ChildProcess> {
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.on('exit', () => children.delete(child));
  let output = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  try {
    await waitFor(() => output.includes(ready) || child.exitCode !== null, `${what} to start`, 10_000);
  } catch (error) {
    await kill(child);
    throw error;
  }
  if (child.exitCode !== null) throw new Error(`${what} exited: ${output}`);
  return child;
}

/** `redis-cli -p port ...args`, bounded. */
export async function cli(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 5000 });
  return stdout;
}

export interface Topology {
  /** The scratch directory holding configs; removed by `stop()`. */
  dir: string;
  /** Kills every process of the topology and removes `dir`. Safe to call twice. */
  stop(): Promise<void>;
}

export interface ClusterTopology extends Topology {
  /** The masters' client ports. */
  ports: number[];
}

export interface SentinelTopology extends Topology {
  /** The master group name the sentinel monitors. */
  name: string;
  masterPort: number;
  sentinelPort: number;
  /** Client ports of the master's replicas, if any were asked for. */
  replicaPorts: number[];
}

/** Wraps start-up so that a failure part way kills what was started and removes the directory. */
async function topology<T extends object>(
  prefix: string,
  build: (dir: string, started: ChildProcess[]) => Promise<T>,
): Promise<T & Topology> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const started: ChildProcess[] = [];
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await Promise.all(started.map((child) => kill(child)));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    return { ...(await build(dir, started)), dir, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * A private Redis Cluster of `masters` masters and no replicas, from the installed
 * `redis-server`: nothing persisted, all files in a temp directory, ready (`cluster_state:ok`
 * on every node) when this resolves.
 */
export async function startCluster(masters = 3): Promise<ClusterTopology> {
  return topology('credvault-cluster-', async (dir, started) => {
    const ports: number[] = [];
    for (let i = 0; i < masters; i += 1) {
      const port = await freePort();
      const busPort = await freePort();
      // An explicit bus port: the default (port + 10000) can exceed 65535 for an ephemeral port.
      started.push(
        await startServer(
          [
            '--port', String(port),
            '--bind', '127.0.0.1',
            '--cluster-enabled', 'yes',
            '--cluster-port', String(busPort),
            '--cluster-config-file', join(dir, `nodes-${port}.conf`),
            '--cluster-node-timeout', '2000',
            '--save', '',
            '--appendonly', 'no',
            '--dir', dir,
            '--daemonize', 'no',
          ],
          `cluster node ${port}`,
        ),
      );
      ports.push(port);
    }
    await run(
      'redis-cli',
      ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', '0', '--cluster-yes'],
      { timeout: 15_000 },
    );
    await waitFor(
      async () => {
        const infos = await Promise.all(ports.map((port) => cli(port, 'cluster', 'info').catch(() => '')));
        return infos.every((info) => info.includes('cluster_state:ok'));
      },
      'cluster_state:ok on every node',
      15_000,
    );
    return { ports };
  });
}

/**
 * A private master (plus `replicas` replicas of it) and one Sentinel monitoring it as `name`
 * (quorum 1), from the installed `redis-server`; resolves once the sentinel reports the
 * master's address and knows every replica.
 */
export async function startSentinel(name = 'mymaster', replicas = 0): Promise<SentinelTopology> {
  return topology('credvault-sentinel-', async (dir, started) => {
    const masterPort = await freePort();
    started.push(
      await startServer(
        ['--port', String(masterPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no'],
        'sentinel master',
      ),
    );
    const replicaPorts: number[] = [];
    for (let i = 0; i < replicas; i += 1) {
      const port = await freePort();
      started.push(
        await startServer(
          ['--port', String(port), '--bind', '127.0.0.1', '--replicaof', '127.0.0.1', String(masterPort),
            '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no'],
          'sentinel replica',
        ),
      );
      replicaPorts.push(port);
    }
    // Started before the sentinel, so its first look at the master already lists them.
    await waitFor(
      async () => (await cli(masterPort, 'info', 'replication').catch(() => '')).includes(`connected_slaves:${replicas}`),
      'the replicas to attach',
      10_000,
    );
    const sentinelPort = await freePort();
    const config = join(dir, 'sentinel.conf');
    // Sentinel rewrites its config file, so it has to be a writable file of its own.
    await writeFile(
      config,
      [
        `port ${sentinelPort}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        'daemonize no',
        `sentinel monitor ${name} 127.0.0.1 ${masterPort} 1`,
        `sentinel down-after-milliseconds ${name} 1000`,
        '',
      ].join('\n'),
    );
    // Sentinel never logs 'Ready to accept connections'; it listens before it logs this.
    started.push(await startServer([config, '--sentinel'], 'sentinel', '+monitor master'));
    await waitFor(
      async () => (await cli(sentinelPort, 'sentinel', 'get-master-addr-by-name', name).catch(() => '')).includes(String(masterPort)),
      'the sentinel to know its master',
      10_000,
    );
    await waitFor(
      async () => (await cli(sentinelPort, 'sentinel', 'master', name).catch(() => '')).includes(`num-slaves\n${replicas}\n`),
      'the sentinel to know the replicas',
      15_000,
    );
    return { name, masterPort, sentinelPort, replicaPorts };
  });
}

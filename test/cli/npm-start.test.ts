/**
 * `npm start` passes stop signals to the server: SIGTERM to npm's process, or SIGINT to the
 * whole process group (what Ctrl-C in a terminal does), drains the server and npm exits 0,
 * leaving no server behind (issue 9). Real `npm` and `node` processes.
 *
 * The package run is a temporary one holding this checkout's `start` script verbatim, with
 * `dist` linked to this checkout's build and a `build` script that does nothing: the test
 * exercises the start script's process handling without rebuilding a `dist` other tests use.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CREDENTIAL_PATH, assertBuilt, makeTempDir, rawConnection, removeDir, request, runJson, sleep, waitFor, withTimeout } from './helpers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const START_SCRIPT = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts['start'] as string;

/** The environment without CREDVAULT_* settings nor the npm_* variables of whatever runs the tests. */
function npmEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('CREDVAULT_') && !/^npm_/i.test(name)) env[name] = value;
  }
  return { ...env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' };
}

interface NpmStart {
  npm: ChildProcess;
  /** The server: npm's child, the script's shell replaced by node. */
  serverPid: number;
  port: number;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const started: NpmStart[] = [];

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether anything accepts connections on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function npmStart(cwd: string, store: string): Promise<NpmStart> {
  // detached: npm leads a process group of its own, as a shell's foreground job does.
  const npm = spawn('npm', ['start', '--', '--port', '0', '--store', store], { cwd, env: npmEnv(), detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  npm.stdout?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  npm.stderr?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => npm.once('exit', (code, signal) => resolve({ code, signal })));
  const entry: NpmStart = { npm, serverPid: 0, port: 0, output: () => output, exited };
  started.push(entry);
  const pattern = /^credvault listening on http:\/\/127\.0\.0\.1:(\d+)$/m;
  await waitFor(() => pattern.test(output) || npm.exitCode !== null, () => `npm start to report listening: ${output}`, 30_000);
  const match = pattern.exec(output);
  if (match === null) throw new Error(`npm start exited before listening: ${output}`);
  entry.port = Number(match[1]);
  const children = execFileSync('pgrep', ['-P', String(npm.pid)], { encoding: 'utf8' }).trim().split('\n').map(Number);
  expect(children, 'npm runs exactly one child: the server').toHaveLength(1);
  entry.serverPid = children[0] as number;
  const command = execFileSync('ps', ['-o', 'args=', '-p', String(entry.serverPid)], { encoding: 'utf8' }).trim();
  // The script's shell has been replaced by the server itself.
  expect(command).toMatch(/node .*dist\/src\/cli\/main\.js serve --port 0 --store /);
  return entry;
}

function cleanUp(): void {
  for (const entry of started.splice(0)) {
    if (entry.npm.exitCode === null && entry.npm.signalCode === null && entry.npm.pid !== undefined) {
      try {
        process.kill(-entry.npm.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (entry.serverPid > 0 && alive(entry.serverPid)) process.kill(entry.serverPid, 'SIGKILL');
  }
}

describe.skipIf(process.platform === 'win32')('npm start', () => {
  let dir: string;
  let pkg: string;
  beforeAll(async () => {
    assertBuilt();
    dir = await makeTempDir();
    pkg = path.join(dir, 'pkg');
    execFileSync('mkdir', ['-p', pkg]);
    writeFileSync(
      path.join(pkg, 'package.json'),
      JSON.stringify({ name: 'credvault-npm-start-test', version: '0.0.0', private: true, type: 'module', scripts: { build: 'exit 0', start: START_SCRIPT } }),
    );
    symlinkSync(path.join(ROOT, 'dist'), path.join(pkg, 'dist'));
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(pkg, 'node_modules'));
  });
  afterEach(cleanUp);
  afterAll(async () => {
    cleanUp();
    await removeDir(dir);
  });

  it('the start script builds, then runs the server in place of its shell', () => {
    expect(START_SCRIPT).toMatch(/^npm run build && exec node dist\/src\/cli\/main\.js serve$/);
  });

  it.each([
    ['SIGTERM to npm', 'SIGTERM', false],
    ['SIGINT to the process group (Ctrl-C)', 'SIGINT', true],
  ] as const)('%s: the server drains and stops, npm exits 0', async (_name, signal, group) => {
    const run = await npmStart(pkg, `sqlite:${path.join(dir, `${signal}.db`)}`);
    const served = await request(`http://127.0.0.1:${run.port}/openapi.json`);
    expect(served.status).toBe(200);

    const npmPid = run.npm.pid as number;
    process.kill(group ? -npmPid : npmPid, signal);
    expect(await withTimeout(run.exited, 20_000, () => `npm start did not exit after ${signal}: ${run.output()}`)).toEqual({ code: 0, signal: null });
    expect(alive(run.serverPid), 'the server process is gone').toBe(false);
    expect(await listening(run.port), 'nothing listens on the port any more').toBe(false);
    expect(run.output()).not.toMatch(/npm error|ERR!|Lifecycle script/);
  });

  it('Ctrl-C while a request is in flight: the request completes, then npm exits 0', async () => {
    const store = ['--store', `sqlite:${path.join(dir, 'inflight.db')}`];
    const apiKey = (await runJson<{ api_key: string }>(['api-key', 'create', '--org', 'acme', ...store])).api_key;
    await runJson(['linked-account', 'create', '--org', 'acme', '--id', 'cust-1', '--credential', 'seed=1', ...store]);
    const run = await npmStart(pkg, store[1] as string);

    const connection = await rawConnection(run.port);
    const body = JSON.stringify({ value: 'sent-after-ctrl-c' });
    connection.write(
      `PUT ${CREDENTIAL_PATH}/inflight HTTP/1.1\r\nHost: localhost\r\nx-api-key: ${apiKey}\r\n` +
        `linked_account_id: cust-1\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n`,
    );
    await sleep(300);
    // The terminal signals npm and the server; npm forwards its SIGINT to the server too. The
    // two are one request to stop, not a second Ctrl-C forcing the exit.
    process.kill(-(run.npm.pid as number), 'SIGINT');
    await sleep(300);
    expect(alive(run.serverPid), 'the server waits for the request in flight').toBe(true);
    connection.write(body);
    const received = await connection.response();
    expect(received).toMatch(/^HTTP\/1\.1 200 /);
    expect(received.endsWith(`{"success":true,"message":"Auth credential 'inflight' added successfully","action":"added"}`)).toBe(true);
    expect(await withTimeout(run.exited, 20_000, () => `npm start did not exit: ${run.output()}`)).toEqual({ code: 0, signal: null });
    expect(alive(run.serverPid)).toBe(false);
    expect(await listening(run.port)).toBe(false);
    expect(run.output()).not.toContain(apiKey.slice(20));
  });
});

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { waitFor } from '../helpers/wait.js';

/** The built CLI: `npm test` builds before vitest; alone, run `npx tsc -p tsconfig.build.json` first. */
export const CLI = fileURLToPath(new URL('../../dist/src/cli/main.js', import.meta.url));

export function assertBuilt(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npx tsc -p tsconfig.build.json\` first`);
}

/** Every child still running, so that afterEach/afterAll can kill whatever a failed test left behind. */
const live = new Set<ChildProcess>();

export function killAll(): void {
  for (const child of live) child.kill('SIGKILL');
  live.clear();
}

/** The environment without the caller's CREDVAULT_* settings, plus `extra`. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('CREDVAULT_')) env[name] = value;
  }
  return { ...env, ...extra };
}

export interface RunOptions {
  env?: Record<string, string>;
  cwd?: string;
  timeoutMs?: number;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function spawnCli(args: readonly string[], options: RunOptions): ChildProcess {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: options.cwd ?? os.tmpdir(),
    env: cleanEnv(options.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

/** Runs one CLI command to completion (killed after `timeoutMs`). */
export function run(args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const child = spawnCli(args, options);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const timeoutMs = options.timeoutMs ?? 15_000;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`credvault ${args.join(' ')} did not finish within ${timeoutMs} ms\nstderr: ${stderr}`));
    }, timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Runs a command that must succeed and print exactly one JSON object on stdout. */
export async function runJson<T = Record<string, unknown>>(args: readonly string[], options: RunOptions = {}): Promise<T> {
  const result = await run(args, options);
  if (result.code !== 0) {
    throw new Error(`credvault ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
  }
  return parseOneJsonLine(result.stdout) as T;
}

/** stdout must be exactly one line holding one JSON object. */
export function parseOneJsonLine(stdout: string): unknown {
  const lines = stdout.split('\n');
  if (lines.length !== 2 || lines[1] !== '') throw new Error(`expected one line of JSON on stdout, got ${JSON.stringify(stdout)}`);
  const value = JSON.parse(lines[0] as string) as unknown;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`expected a JSON object, got ${lines[0]}`);
  return value;
}

/** The lines of a stream's text, without the final newline. */
export const linesOf = (text: string): string[] => (text === '' ? [] : text.replace(/\n$/, '').split('\n'));

/** A running `credvault serve`. */
export interface Server {
  child: ChildProcess;
  url: string;
  port: number;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit; rejects after `timeoutMs`. */
  exited(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `credvault serve --port 0 ...` and waits (bounded) for its "listening" line. */
export function startServer(args: readonly string[], options: RunOptions = {}): Promise<Server> {
  const child = spawnCli(['serve', '--port', '0', ...args], options);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const exited = (timeoutMs = 15_000) =>
    withTimeout(exit, timeoutMs, () => `credvault serve did not exit within ${timeoutMs} ms`);
  const timeoutMs = options.timeoutMs ?? 15_000;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`credvault serve did not start within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    const onData = () => {
      const match = /^credvault listening on (http:\/\/127\.0\.0\.1:(\d+))\n/m.exec(stdout);
      if (match === null) return;
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      resolve({
        child,
        url: match[1] as string,
        port: Number(match[2]),
        stdout: () => stdout,
        stderr: () => stderr,
        exited,
      });
    };
    child.stdout?.on('data', onData);
    void exit.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`credvault serve exited (${code ?? signal}) before listening\nstderr: ${stderr}`));
    });
  });
}

export async function withTimeout<T>(promise: Promise<T>, ms: number, message: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(message())), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export async function makeTempDir(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), 'credvault-cli-'));
}

export async function removeDir(dir: string | undefined): Promise<void> {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
}

export const CREDENTIAL_PATH = '/api/v2/public/linked-account/default-app/auth-credentials';

export interface HttpResult {
  status: number;
  headers: Headers;
  body: unknown;
  text: string;
}

/** One HTTP request with a bounded wait; the body is parsed as JSON when it is JSON. */
export async function request(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string; timeoutMs?: number } = {},
): Promise<HttpResult> {
  const response = await fetch(url, {
    method: init.method ?? 'GET',
    headers: init.headers ?? {},
    ...(init.body !== undefined ? { body: init.body } : {}),
    signal: AbortSignal.timeout(init.timeoutMs ?? 10_000),
  });
  const text = await response.text();
  let body: unknown;
  try {
    body = JSON.parse(text) as unknown;
  } catch {
    body = undefined;
  }
  return { status: response.status, headers: response.headers, body, text };
}

export function putCredential(
  baseUrl: string,
  key: string,
  value: unknown,
  auth: { apiKey: string; accountId: string } | { token: string },
): Promise<HttpResult> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if ('apiKey' in auth) {
    headers['x-api-key'] = auth.apiKey;
    headers['linked_account_id'] = auth.accountId;
  } else {
    headers['authorization'] = `Bearer ${auth.token}`;
  }
  return request(`${baseUrl}${CREDENTIAL_PATH}/${encodeURIComponent(key)}`, {
    method: 'PUT',
    headers,
    body: JSON.stringify({ value }),
  });
}

/**
 * A raw HTTP/1.1 connection, for requests that must stay in flight: write the head now,
 * the body later. `response()` resolves with everything received once the server closes.
 */
export async function rawConnection(port: number): Promise<{
  write(text: string): void;
  /** Waits (bounded) until what was received so far matches. */
  until(pattern: RegExp, timeoutMs?: number): Promise<string>;
  response(timeoutMs?: number): Promise<string>;
  destroy(): void;
}> {
  const socket = net.connect(port, '127.0.0.1');
  await withTimeout(
    new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    }),
    5_000,
    () => 'could not connect',
  );
  let received = '';
  socket.setEncoding('utf8').on('data', (chunk: string) => (received += chunk));
  const closed = new Promise<string>((resolve) => socket.once('close', () => resolve(received)));
  socket.on('error', () => undefined);
  return {
    write: (text) => socket.write(text),
    until: async (pattern, timeoutMs = 10_000) => {
      await waitFor(() => pattern.test(received), () => `${pattern}; got ${JSON.stringify(received)}`, timeoutMs);
      return received;
    },
    response: (timeoutMs = 10_000) => withTimeout(closed, timeoutMs, () => `connection not closed; got ${JSON.stringify(received)}`),
    destroy: () => socket.destroy(),
  };
}

// The CLI tests import these from here; one definition lives in test/helpers/wait.ts.
export { sleep, waitFor } from '../helpers/wait.js';

/**
 * For one describe block: a temp dir holding a SQLite store that usage errors must never
 * create. `store` is its `--store` flag; after each test neither the database nor a key
 * file exists.
 */
export function untouchedStore(): { readonly store: string[] } {
  let dir = '';
  const state = { store: [] as string[] };
  beforeAll(async () => {
    dir = await makeTempDir();
    state.store = ['--store', `sqlite:${path.join(dir, 'usage.db')}`];
  });
  afterEach(() => {
    expect(existsSync(path.join(dir, 'usage.db'))).toBe(false);
    expect(existsSync(path.join(dir, 'usage.keys'))).toBe(false);
  });
  afterAll(() => removeDir(dir));
  return state;
}

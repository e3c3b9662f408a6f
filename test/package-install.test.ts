/**
 * The package as npm ships it: built clean into a staging folder, packed, and installed
 * into a new app beside Express (5, and 4 for apps that have not moved), where the README's
 * Express example must run and the optional peers (Koa, Fastify, pg, the Redis client) must
 * not be installed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = fileURLToPath(new URL('..', import.meta.url));
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const work = mkdtempSync(path.join(os.tmpdir(), 'credvault-pack-'));
let tarball = '';
let packed: string[] = [];

/** The fenced `ts` block of the README that follows `heading`, so the test runs what the README shows. */
function readmeBlock(heading: string): string {
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  const at = readme.indexOf(`\n${heading}\n`);
  if (at < 0) throw new Error(`README has no heading ${heading}`);
  const match = /```ts\n([\s\S]*?)```/.exec(readme.slice(at));
  if (match === null) throw new Error(`README has no ts block after ${heading}`);
  return match[1] as string;
}

beforeAll(async () => {
  // A node_modules in a folder above the apps would let them resolve packages they did not install.
  for (let dir = path.dirname(work); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'node_modules'))) throw new Error(`${path.join(dir, 'node_modules')} would leak packages into the test apps; remove it`);
  }
  const staging = path.join(work, 'staging');
  // A clean build of its own, so files left in the shared dist/ by earlier builds cannot ship.
  await run(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', path.join(root, 'tsconfig.build.json'), '--outDir', path.join(staging, 'dist')]);
  for (const file of ['package.json', 'README.md', 'SECURITY.md', 'LICENSE']) cpSync(path.join(root, file), path.join(staging, file));
  const { stdout } = await run(npm, ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: staging });
  const [info] = JSON.parse(stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
  tarball = path.join(work, info!.filename);
  packed = info!.files.map((file) => file.path);
}, 120_000);

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('the packed tarball', () => {
  it('holds the license, no source maps, and every file its exports name', () => {
    expect(packed).toContain('LICENSE');
    expect(packed.filter((file) => file.endsWith('.map'))).toEqual([]);
    const manifest = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as {
      exports: Record<string, string | Record<string, string>>;
      bin: Record<string, string>;
    };
    const named = Object.values(manifest.exports).flatMap((target) => (typeof target === 'string' ? [target] : Object.values(target)));
    for (const file of [...named, ...Object.values(manifest.bin)]) {
      const inPackage = file.replace(/^\.\//, '');
      expect(packed, file).toContain(inPackage);
    }
  });
});

/** A new app in its own folder with `extra` installed beside the tarball. */
async function newApp(name: string, extra: readonly string[]): Promise<string> {
  const app = path.join(work, name);
  mkdirSync(app, { recursive: true });
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'an-app', version: '1.0.0', private: true, type: 'module' }));
  // Install scripts are skipped and sqlite3's native addon is taken from this checkout
  // (same version), so the test does not compile SQLite from source for each app.
  await run(npm, ['install', tarball, ...extra, '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline'], { cwd: app });
  const ours = JSON.parse(readFileSync(path.join(root, 'node_modules/sqlite3/package.json'), 'utf8')) as { version: string };
  const theirs = JSON.parse(readFileSync(path.join(app, 'node_modules/sqlite3/package.json'), 'utf8')) as { version: string };
  expect(theirs.version).toBe(ours.version);
  cpSync(path.join(root, 'node_modules/sqlite3/build'), path.join(app, 'node_modules/sqlite3/build'), { recursive: true });
  return app;
}

/** The installed CLI, run in `app` on its SQLite default. */
function cliIn(app: string, env: Record<string, string> = {}) {
  return (...args: string[]) =>
    run(process.execPath, [path.join(app, 'node_modules/credvault/dist/src/cli/main.js'), ...args], { cwd: app, env: { ...process.env, ...env } });
}

/** Starts `args` in `app` and resolves with the port once `pattern` (capturing it) shows on stdout. */
async function startIn(app: string, args: readonly string[], pattern: RegExp): Promise<{ port: number; stderr: () => string; stop(): void }> {
  const child = spawn(process.execPath, args, { cwd: app, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const found = pattern.exec(out);
      if (found) resolve(Number(found[1]));
    });
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}: ${err}`)));
  });
  return { port, stderr: () => err, stop: () => child.kill('SIGTERM') };
}

/** Creates an API key and an account seeded with api_key in `app`'s default store; returns the API key. */
async function provision(app: string): Promise<string> {
  const cli = cliIn(app);
  const created = JSON.parse((await cli('api-key', 'create', '--org', 'acme')).stdout) as { api_key: string };
  await cli('linked-account', 'create', '--org', 'acme', '--id', 'cust-1', '--credential', 'api_key=sk_test_123');
  return created.api_key;
}

async function putClientSecret(port: number, apiKey: string): Promise<{ status: number; body: unknown }> {
  const response = await fetch(`http://127.0.0.1:${port}/api/v2/public/linked-account/default-app/auth-credentials/client_secret`, {
    method: 'PUT',
    headers: { 'x-api-key': apiKey, linked_account_id: 'cust-1', 'content-type': 'application/json' },
    body: JSON.stringify({ value: 'cs_live_1' }),
  });
  return { status: response.status, body: await response.json() };
}

const ADDED = { success: true, message: "Auth credential 'client_secret' added successfully", action: 'added' };

describe.each(['express@5', 'express@4'])('installed into a new app with %s', (express) => {
  let app = '';
  beforeAll(async () => {
    app = await newApp(express.replace('@', '-'), [express]);
  }, 240_000);

  it('installs no Koa, Fastify, PostgreSQL or Redis client', () => {
    const installed = new Set<string>();
    const modules = path.join(app, 'node_modules');
    for (const entry of readdirSync(modules)) {
      if (entry.startsWith('@')) for (const scoped of readdirSync(path.join(modules, entry))) installed.add(`${entry}/${scoped}`);
      else installed.add(entry);
    }
    expect(installed.has('credvault')).toBe(true);
    expect(installed.has('express')).toBe(true);
    for (const absent of ['koa', 'fastify', 'pg', '@keyv/postgres', '@keyv/redis', '@redis/client', 'redis', 'ioredis', 'hono']) {
      expect(installed.has(absent), absent).toBe(false);
    }
    // Exactly one Express: the app's own.
    const expressCopies = readdirSync(modules, { recursive: true }).filter((file) => String(file).endsWith(`${path.sep}express${path.sep}package.json`) || String(file) === `express${path.sep}package.json`);
    expect(expressCopies).toEqual([`express${path.sep}package.json`]);
  });

  it("runs the README's Express example and stores a credential through it", async () => {
    const apiKey = await provision(app);
    const example = `${readmeBlock('## Embedding')}\n${readmeBlock('### Express')}`.replace(
      'app.listen(3000);',
      'const server = app.listen(0, () => console.log(`port ${server.address().port}`));',
    );
    expect(example).toContain('credvaultExpress(vault)');
    writeFileSync(path.join(app, 'server.mjs'), example);
    const server = await startIn(app, ['server.mjs'], /port (\d+)/);
    try {
      expect(await putClientSecret(server.port, apiKey)).toEqual({ status: 200, body: ADDED });
      const health = await fetch(`http://127.0.0.1:${server.port}/healthz`);
      expect(await health.json()).toEqual({ ok: true });
    } finally {
      server.stop();
    }
    const listed = JSON.parse((await cliIn(app)('credentials', 'list', '--org', 'acme', '--id', 'cust-1')).stdout) as { credentials: Array<{ key: string }> };
    expect(listed.credentials.map((entry) => entry.key).sort()).toEqual(['api_key', 'client_secret']);
    expect(existsSync(path.join(app, 'data', 'credvault.keys'))).toBe(true);
  }, 60_000);
});

describe('installed alone (npm install credvault)', () => {
  let app = '';
  beforeAll(async () => {
    app = await newApp('alone', []);
  }, 240_000);

  it('prints its version', async () => {
    const manifest = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };
    expect((await cliIn(app)('--version')).stdout.trim()).toBe(manifest.version);
  });

  it("serves the embedded SQLite default on Node's own HTTP server, and says so", async () => {
    const apiKey = await provision(app);
    const server = await startIn(app, ['node_modules/credvault/dist/src/cli/main.js', 'serve', '--port', '0'], /listening on http:\/\/127\.0\.0\.1:(\d+)/);
    try {
      expect(await putClientSecret(server.port, apiKey)).toEqual({ status: 200, body: ADDED });
      expect(server.stderr()).toContain("express is not installed; serving with Node's own HTTP server (--framework fetch)");
    } finally {
      server.stop();
    }
  }, 60_000);

  it('loads credvault/pkcs11 without pkcs11js, which is asked for only when a provider opens', async () => {
    const script = [
      "const { openPkcs11KeyProvider, parsePkcs11Uri } = await import('credvault/pkcs11');",
      "const uri = 'pkcs11:token=t;object=kek-1?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234';",
      'console.log(JSON.stringify(parsePkcs11Uri(uri).object));',
      'await openPkcs11KeyProvider(uri).then(() => console.log("opened"), (error) => console.log(error.code, error.message));',
    ].join('\n');
    writeFileSync(path.join(app, 'pkcs11.mjs'), script);
    const { stdout } = await run(process.execPath, ['pkcs11.mjs'], { cwd: app });
    const lines = stdout.trim().split('\n');
    expect(lines[0]).toBe('"kek-1"');
    expect(lines[1]).toMatch(/^INVALID_CONFIGURATION .*needs the package 'pkcs11js': npm install pkcs11js/);
  });

  it.each([
    [['serve', '--framework', 'koa', '--store', 'memory:'], 'koa'],
    [['serve', '--framework', 'express', '--store', 'memory:'], 'express'],
    [['api-key', 'create', '--org', 'acme', '--store', 'redis://127.0.0.1:6379'], '@keyv/redis'],
    [['api-key', 'create', '--org', 'acme', '--store', 'postgres://postgres@127.0.0.1:5432/test'], '@keyv/postgres'],
  ])('%j without its package: exit 2, one line naming %s', async (args, name) => {
    const keys = `k1:${Buffer.alloc(32, 7).toString('base64')}`;
    const failure = await cliIn(app, { CREDVAULT_KEYS: keys })(...args).then(
      () => undefined,
      (error: { code: number; stderr: string; stdout: string }) => error,
    );
    expect(failure?.code).toBe(2);
    expect(failure?.stdout).toBe('');
    const lines = failure!.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`needs the package '${name}': npm install ${name}`);
  });
});

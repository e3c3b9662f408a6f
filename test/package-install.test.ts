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

describe.each(['express@5', 'express@4'])('installed into a new app with %s', (express) => {
  const app = path.join(work, express.replace('@', '-'));

  beforeAll(async () => {
    mkdirSync(app, { recursive: true });
    writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'an-express-app', version: '1.0.0', private: true, type: 'module' }));
    // Install scripts are skipped and sqlite3's native addon is taken from this checkout
    // (same version), so the test does not compile SQLite from source for each app.
    await run(npm, ['install', tarball, express, '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline'], { cwd: app });
    const ours = JSON.parse(readFileSync(path.join(root, 'node_modules/sqlite3/package.json'), 'utf8')) as { version: string };
    const theirs = JSON.parse(readFileSync(path.join(app, 'node_modules/sqlite3/package.json'), 'utf8')) as { version: string };
    expect(theirs.version).toBe(ours.version);
    cpSync(path.join(root, 'node_modules/sqlite3/build'), path.join(app, 'node_modules/sqlite3/build'), { recursive: true });
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
    const cli = (...args: string[]) => run(process.execPath, [path.join(app, 'node_modules/credvault/dist/src/cli/main.js'), ...args, '--store', 'sqlite:./data/credvault.db'], { cwd: app });
    const created = JSON.parse((await cli('api-key', 'create', '--org', 'acme')).stdout) as { api_key: string };
    await cli('linked-account', 'create', '--org', 'acme', '--id', 'cust-1', '--credential', 'api_key=sk_test_123');

    const example = `${readmeBlock('## Embedding')}\n${readmeBlock('### Express')}`.replace(
      'app.listen(3000);',
      'const server = app.listen(0, () => console.log(`port ${server.address().port}`));',
    );
    expect(example).toContain('credvaultExpress(vault)');
    writeFileSync(path.join(app, 'server.mjs'), example);
    const child = spawn(process.execPath, ['server.mjs'], { cwd: app, stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      const port = await new Promise<number>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (chunk: Buffer) => {
          out += chunk.toString();
          const found = /port (\d+)/.exec(out);
          if (found) resolve(Number(found[1]));
        });
        child.once('exit', (code) => reject(new Error(`the example exited with ${code}`)));
      });
      const base = `http://127.0.0.1:${port}`;
      const put = await fetch(`${base}/api/v2/public/linked-account/default-app/auth-credentials/client_secret`, {
        method: 'PUT',
        headers: { 'x-api-key': created.api_key, linked_account_id: 'cust-1', 'content-type': 'application/json' },
        body: JSON.stringify({ value: 'cs_live_1' }),
      });
      expect(put.status).toBe(200);
      expect(await put.json()).toEqual({ success: true, message: "Auth credential 'client_secret' added successfully", action: 'added' });
      const health = await fetch(`${base}/healthz`);
      expect(await health.json()).toEqual({ ok: true });
    } finally {
      child.kill('SIGTERM');
    }
    const listed = JSON.parse((await cli('credentials', 'list', '--org', 'acme', '--id', 'cust-1')).stdout) as { credentials: Array<{ key: string }> };
    expect(listed.credentials.map((entry) => entry.key).sort()).toEqual(['api_key', 'client_secret']);
    expect(existsSync(path.join(app, 'data', 'credvault.keys'))).toBe(true);
  }, 60_000);
});

/**
 * Optional peers and what the CLI loads: a framework or store client that is not installed
 * is one clear line naming the package (exit 2), any other failure passes through, and
 * `--help` / `--version` load no framework, no store client and not even commander.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { VaultError } from '../../src/errors.js';
import { loadOptionalPeer } from '../../src/optional-peers.js';
import { assertBuilt, linesOf, run, type RunResult } from './helpers.js';

const HIDE = fileURLToPath(new URL('./fixtures/hide-packages.mjs', import.meta.url));
const PEERS_AND_CLIENTS = ['express', 'koa', 'fastify', '@keyv/redis', '@keyv/postgres', 'pg', '@keyv/sqlite', 'sqlite3', 'keyv', 'zod', 'cli-progress'];
const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
const keys = () => `k1:${randomBytes(32).toString('base64')}`;

/** Runs the built CLI with `packages` unresolvable, as if they were not installed. */
function runWithout(packages: readonly string[], args: readonly string[], env: Record<string, string> = {}): Promise<RunResult> {
  return run(args, { env: { ...env, CREDVAULT_TEST_HIDE: packages.join(','), NODE_OPTIONS: `--import=${HIDE}` } });
}

function expectOneLine(result: RunResult, code: number, line: string): void {
  expect(result.stdout).toBe('');
  expect(linesOf(result.stderr)).toEqual([line]);
  expect(result.code).toBe(code);
}

describe('--version', () => {
  it("prints package.json's version and exits 0", async () => {
    assertBuilt();
    for (const flag of ['--version', '-V']) {
      const result = await run([flag]);
      expect(result).toMatchObject({ code: 0, stdout: `${VERSION}\n`, stderr: '' });
    }
  });
});

describe('what the CLI loads', () => {
  it('--help and --version run with no framework, store client, zod, cli-progress or even commander installed', async () => {
    const hidden = [...PEERS_AND_CLIENTS, 'commander'];
    const help = await runWithout(hidden, ['--help']);
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/^Usage: credvault /);
    expect((await runWithout(hidden, ['--version'])).stdout).toBe(`${VERSION}\n`);
  });

  it('the hiding itself bites: without commander, every other command line fails', async () => {
    for (const args of [['keys', 'generate'], ['api-key', '--help'], ['--help', 'serve']]) {
      expect((await runWithout(['commander'], args)).code, args.join(' ')).not.toBe(0);
    }
  });

  it('keys generate needs no store client either', async () => {
    const result = await runWithout(PEERS_AND_CLIENTS, ['keys', 'generate']);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ id: expect.any(String), key: expect.any(String) });
  });
});

describe('the library root', () => {
  it("`credvault` alone, with a memory: vault, loads no framework, store client, commander or cli-progress", async () => {
    const hidden = PEERS_AND_CLIENTS.filter((name) => name !== 'keyv' && name !== 'zod').concat('commander');
    const script = `const m = await import(${JSON.stringify(new URL('../../dist/src/index.js', import.meta.url).href)});
      const vault = await m.createVault({ store: 'memory:' });
      await vault.close();
      process.stdout.write('ok');`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', HIDE, '--input-type=module', '-e', script], {
      env: { ...process.env, CREDVAULT_TEST_HIDE: hidden.join(',') },
    });
    expect(stdout).toBe('ok');
  });
});

describe('a missing optional peer', () => {
  it('serve --framework koa without koa: one line naming the package, exit 2', async () => {
    expectOneLine(
      await runWithout(['koa'], ['serve', '--framework', 'koa', '--store', 'memory:', '--port', '0']),
      2,
      "credvault: The koa framework needs the package 'koa': npm install koa",
    );
  });

  it('serve --framework fastify without fastify, likewise', async () => {
    expectOneLine(
      await runWithout(['fastify'], ['serve', '--framework', 'fastify', '--store', 'memory:', '--port', '0']),
      2,
      "credvault: The fastify framework needs the package 'fastify': npm install fastify",
    );
  });

  it('a redis:// store without @keyv/redis, and a postgres:// store without pg or @keyv/postgres', async () => {
    const env = { CREDVAULT_KEYS: keys() };
    expectOneLine(
      await runWithout(['@keyv/redis'], ['api-key', 'create', '--org', 'acme', '--store', 'redis://127.0.0.1:6379/15'], env),
      2,
      "credvault: The redis:// store needs the package '@keyv/redis': npm install @keyv/redis",
    );
    expectOneLine(
      await runWithout(['pg'], ['api-key', 'create', '--org', 'acme', '--store', 'postgres://postgres@127.0.0.1:5432/test'], env),
      2,
      "credvault: The postgres:// store needs the package 'pg': npm install pg",
    );
    expectOneLine(
      await runWithout(['@keyv/postgres'], ['api-key', 'create', '--org', 'acme', '--store', 'postgres://postgres@127.0.0.1:5432/test'], env),
      2,
      "credvault: The postgres:// store needs the package '@keyv/postgres': npm install @keyv/postgres",
    );
  });

  it('a package missing deeper down (a dependency of @keyv/redis) is not reported as @keyv/redis', async () => {
    const result = await runWithout(['@redis/client'], ['api-key', 'create', '--org', 'acme', '--store', 'redis://127.0.0.1:6379/15'], {
      CREDVAULT_KEYS: keys(),
    });
    expect(result.code).toBe(1);
    expect(result.stderr).not.toContain('npm install');
  });
});

describe('loadOptionalPeer', () => {
  // A variable specifier: the type checker must not look for these packages.
  const absent = 'credvault-test-absent-package';
  const load = () => import(absent) as Promise<unknown>;

  it("turns Node's error for a named package into INVALID_CONFIGURATION naming it", async () => {
    const error = await loadOptionalPeer([absent], 'The thing', load).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(VaultError);
    expect(error).toMatchObject({
      code: 'INVALID_CONFIGURATION',
      message: `The thing needs the package '${absent}': npm install ${absent}`,
    });
  });

  it('passes every other failure through unchanged', async () => {
    const other = await loadOptionalPeer(['some-other-package'], 'The thing', load).catch((caught: unknown) => caught);
    expect(other).toMatchObject({ code: 'ERR_MODULE_NOT_FOUND' });
    expect(other).not.toBeInstanceOf(VaultError);
    const broken = new Error('boom');
    await expect(loadOptionalPeer([absent], 'The thing', () => Promise.reject(broken))).rejects.toBe(broken);
  });
});

/**
 * What the provisioning commands load: the built CLI, as a real process, records every module
 * it loads (ES modules through a loader hook, CommonJS ones from require's cache at exit), and
 * `api-key create`, `linked-account create`, `session-token create` and `credentials list`
 * on a memory: store load no zod, no framework and no store client. `openapi`, which needs
 * zod, shows that the record would catch it.
 */
import { writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, makeTempDir, removeDir, run, type RunResult } from './helpers.js';

/** Packages none of these commands may load. */
const HEAVY = ['zod', 'express', 'koa', 'fastify', 'ioredis', '@redis/client', '@keyv/redis', 'pg', '@keyv/postgres', 'sqlite3', '@keyv/sqlite'];

// Runs in the hooks thread: each ES module (and each CommonJS one imported from one) as it loads.
const HOOKS = `import { appendFileSync } from 'node:fs';
let out;
export function initialize(data) { out = data.out; }
export async function load(url, context, nextLoad) {
  appendFileSync(out, url + '\\n');
  return nextLoad(url, context);
}
`;

// Loaded with --import: installs the hooks, and at exit adds every module require() loaded.
const PRELOAD = `import { register, createRequire } from 'node:module';
import { appendFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
const out = process.env.CREDVAULT_TEST_LOADED;
register(new URL('./hooks.mjs', import.meta.url), { data: { out } });
const { cache } = createRequire(import.meta.url);
process.on('exit', () => {
  const files = Object.keys(cache).map((file) => pathToFileURL(file).href);
  appendFileSync(out, files.map((url) => url + '\\n').join(''));
});
`;

const DIST = new URL('../../dist/', import.meta.url).href;

let dir: string | undefined;
let runs = 0;

beforeAll(async () => {
  assertBuilt();
  dir = await makeTempDir();
  await writeFile(path.join(dir, 'hooks.mjs'), HOOKS);
  await writeFile(path.join(dir, 'preload.mjs'), PRELOAD);
});
afterAll(() => removeDir(dir));

/** Runs the CLI with the recorder; the modules it loaded, as file: URLs, in the order they loaded. */
async function loadedBy(args: readonly string[]): Promise<{ result: RunResult; modules: string[] }> {
  const base = dir as string;
  const out = path.join(base, `loaded-${runs++}.txt`);
  await writeFile(out, '');
  const result = await run(args, {
    env: { CREDVAULT_TEST_LOADED: out, NODE_OPTIONS: `--import=${path.join(base, 'preload.mjs')}` },
  });
  const modules = readFileSync(out, 'utf8').split('\n').filter(Boolean);
  return { result, modules };
}

/** The packages among `modules`, by name (scoped names whole), each once. */
function packagesIn(modules: readonly string[]): string[] {
  const names = new Set<string>();
  for (const url of modules) {
    const match = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url.startsWith('file:') ? fileURLToPath(url).split(path.sep).join('/') : url);
    if (match !== null) names.add(match[1] as string);
  }
  return [...names];
}

const heavyIn = (modules: readonly string[]) => packagesIn(modules).filter((name) => HEAVY.includes(name));

const ACCOUNT = ['--store', 'memory:', '--org', 'acme', '--id', 'cust-1'];

describe('what the provisioning commands load', () => {
  it('api-key create --store memory: loads the core and commander, and no zod, framework or store client', async () => {
    const { result, modules } = await loadedBy(['api-key', 'create', '--store', 'memory:', '--org', 'acme']);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ api_key: expect.any(String) });
    // The record saw the command run: its own modules, and a CommonJS package.
    expect(modules).toContain(`${DIST}src/core/api-keys.js`);
    expect(modules).toContain(`${DIST}src/core/validation.js`);
    expect(modules).toContain(`${DIST}adapters/memory.js`);
    expect(packagesIn(modules)).toContain('commander');
    expect(heavyIn(modules)).toEqual([]);
  });

  it('linked-account create with a seeded credential, likewise', async () => {
    const { result, modules } = await loadedBy(['linked-account', 'create', ...ACCOUNT, '--credential', 'api_key=sk_test_1']);
    expect(result.code, result.stderr).toBe(0);
    expect(modules).toContain(`${DIST}src/core/accounts.js`);
    expect(heavyIn(modules)).toEqual([]);
  });

  it('session-token create and credentials list, likewise (on an empty store, the account is not found)', async () => {
    for (const [command, module] of [
      [['session-token', 'create'], 'session-tokens'],
      [['credentials', 'list'], 'credentials'],
    ] as const) {
      const { result, modules } = await loadedBy([...command, ...ACCOUNT]);
      expect(result.code, command.join(' ')).toBe(1);
      expect(result.stderr).toMatch(/^credvault: [^\n]*linked account [^\n]*found[^\n]*\n$/i);
      expect(modules).toContain(`${DIST}src/core/${module}.js`);
      expect(heavyIn(modules), command.join(' ')).toEqual([]);
    }
  });

  it('the record catches zod where a command needs it: openapi loads it', async () => {
    const { result, modules } = await loadedBy(['openapi']);
    expect(result.code, result.stderr).toBe(0);
    expect(heavyIn(modules)).toEqual(['zod']);
    expect(modules.some((url) => url.includes('/node_modules/zod/'))).toBe(true);
  });
});

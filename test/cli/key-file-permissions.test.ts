/**
 * A key file that group or others may access is refused by every command that opens the
 * store (exit 2, one line naming the file and its mode, never its content), unless
 * --allow-insecure-key-file or CREDVAULT_ALLOW_INSECURE_KEY_FILE=1, which use it with one
 * warning line. A 0600 key file stays silent. Real processes (issue 9).
 */
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, killAll, linesOf, makeTempDir, parseOneJsonLine, removeDir, run, runJson, startServer, type RunResult } from './helpers.js';

interface GeneratedKey {
  id: string;
  key: string;
  entry: string;
}

beforeAll(assertBuilt);
afterEach(killAll);
afterAll(killAll);

const REFUSED = (file: string, mode: string) =>
  new RegExp(
    `^credvault: key file ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is accessible by group or others \\(mode ${mode}\\): refusing to use it; run chmod 600 on it, or pass --allow-insecure-key-file$`,
  );
const WARNED = /^credvault: WARNING: key file .* is accessible by group or others; using it only because (--allow-insecure-key-file was given|CREDVAULT_ALLOW_INSECURE_KEY_FILE=1 is set); run chmod 600 on it$/;

/** Refused: exit 2, nothing on stdout, one line on stderr, and no key text anywhere. */
function expectRefused(result: RunResult, file: string, mode: string, key: string): void {
  expect(result.stdout).toBe('');
  const lines = linesOf(result.stderr);
  expect(lines, result.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(REFUSED(file, mode));
  expect(result.code).toBe(2);
  expect(result.stderr).not.toContain(key.slice(0, 12));
}

describe.skipIf(process.platform === 'win32')('key file permissions', () => {
  let dir: string;
  let generated: GeneratedKey;
  let keyFile: string;
  beforeAll(async () => {
    dir = await makeTempDir();
    generated = await runJson<GeneratedKey>(['keys', 'generate', '--id', 'perm']);
    keyFile = path.join(dir, 'given.keys');
    writeFileSync(keyFile, `${generated.entry}\n`, { mode: 0o600 });
  });
  afterAll(() => removeDir(dir));

  const storeIn = (name: string) => ['--store', `sqlite:${path.join(dir, `${name}.db`)}`];

  it('--keys-file with mode 0644 is refused by every store command, touching nothing', async () => {
    chmodSync(keyFile, 0o644);
    const store = storeIn('refused');
    const commands = [
      ['api-key', 'create', '--org', 'acme'],
      ['api-key', 'revoke', '--key-id', '0123456789abcdef'],
      ['linked-account', 'create', '--org', 'acme', '--id', 'c1'],
      ['session-token', 'create', '--org', 'acme', '--id', 'c1'],
      ['credentials', 'list', '--org', 'acme', '--id', 'c1', '--reveal'],
      ['keys', 'rotate'],
      ['serve', '--port', '0'],
    ];
    for (const command of commands) {
      expectRefused(await run([...command, ...store, '--keys-file', keyFile]), keyFile, '0644', generated.key);
    }
    expect(existsSync(path.join(dir, 'refused.db'))).toBe(false);
    expect(readFileSync(keyFile, 'utf8')).toBe(`${generated.entry}\n`);
    expect(statSync(keyFile).mode & 0o777).toBe(0o644);
  });

  it('CREDVAULT_KEYS_FILE with mode 0640 (group only) is refused the same way', async () => {
    chmodSync(keyFile, 0o640);
    const result = await run(['api-key', 'create', '--org', 'acme', ...storeIn('env')], { env: { CREDVAULT_KEYS_FILE: keyFile } });
    expectRefused(result, keyFile, '0640', generated.key);
  });

  it('--allow-insecure-key-file or CREDVAULT_ALLOW_INSECURE_KEY_FILE=1 uses it, with one warning line and no key text', async () => {
    chmodSync(keyFile, 0o644);
    const store = storeIn('allowed');
    const flagged = await run(['api-key', 'create', '--org', 'acme', ...store, '--keys-file', keyFile, '--allow-insecure-key-file']);
    expect(flagged.code, flagged.stderr).toBe(0);
    parseOneJsonLine(flagged.stdout);
    expect(linesOf(flagged.stderr)).toEqual([expect.stringMatching(WARNED)]);
    expect(flagged.stderr).toContain('--allow-insecure-key-file was given');
    expect(flagged.stderr + flagged.stdout).not.toContain(generated.key.slice(0, 12));

    const byEnv = await run(['api-key', 'create', '--org', 'acme', ...store, '--keys-file', keyFile], { env: { CREDVAULT_ALLOW_INSECURE_KEY_FILE: '1' } });
    expect(byEnv.code, byEnv.stderr).toBe(0);
    expect(linesOf(byEnv.stderr)).toEqual([expect.stringMatching(WARNED)]);
    expect(byEnv.stderr).toContain('CREDVAULT_ALLOW_INSECURE_KEY_FILE=1 is set');

    // Any other value of the variable is not consent.
    expectRefused(
      await run(['api-key', 'create', '--org', 'acme', ...store, '--keys-file', keyFile], { env: { CREDVAULT_ALLOW_INSECURE_KEY_FILE: 'yes' } }),
      keyFile,
      '0644',
      generated.key,
    );

    const server = await startServer([...store, '--keys-file', keyFile, '--allow-insecure-key-file']);
    expect(linesOf(server.stderr()).filter((line) => WARNED.test(line))).toHaveLength(1);
    server.child.kill('SIGTERM');
    expect(await server.exited()).toEqual({ code: 0, signal: null });
    expect(server.stderr() + server.stdout()).not.toContain(generated.key.slice(0, 12));
  });

  it('a 0600 (or 0400) key file is used silently', async () => {
    const store = storeIn('tight');
    for (const mode of [0o600, 0o400]) {
      chmodSync(keyFile, mode);
      const result = await run(['api-key', 'create', '--org', 'acme', ...store, '--keys-file', keyFile]);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).toBe('');
      parseOneJsonLine(result.stdout);
    }
    chmodSync(keyFile, 0o600);
  });

  it('CREDVAULT_KEYS wins over an exposed key file, which is then not read', async () => {
    chmodSync(keyFile, 0o644);
    const result = await run(['api-key', 'create', '--org', 'acme', ...storeIn('envkeys'), '--keys-file', keyFile], {
      env: { CREDVAULT_KEYS: generated.entry },
    });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toBe('');
    chmodSync(keyFile, 0o600);
  });

  it('the key file created beside a SQLite database is refused once it becomes readable by others', async () => {
    const store = storeIn('beside');
    const beside = path.join(dir, 'beside.keys');
    const first = await run(['api-key', 'create', '--org', 'acme', ...store]);
    expect(first.code, first.stderr).toBe(0);
    expect(linesOf(first.stderr)).toEqual([expect.stringMatching(/^credvault: created a new encryption key file at .*beside\.keys/)]);
    expect(statSync(beside).mode & 0o777).toBe(0o600);
    const key = (readFileSync(beside, 'utf8').split(':')[1] as string).trim();

    const quiet = await run(['api-key', 'create', '--org', 'acme', ...store]);
    expect(quiet.code).toBe(0);
    expect(quiet.stderr).toBe('');

    chmodSync(beside, 0o604);
    expectRefused(await run(['api-key', 'create', '--org', 'acme', ...store]), beside, '0604', key);
    expectRefused(await run(['serve', '--port', '0', ...store]), beside, '0604', key);
    const allowed = await run(['api-key', 'create', '--org', 'acme', ...store, '--allow-insecure-key-file']);
    expect(allowed.code, allowed.stderr).toBe(0);
    expect(linesOf(allowed.stderr)).toEqual([expect.stringMatching(WARNED)]);
    expect(allowed.stderr).not.toContain(key.slice(0, 12));
    // The file was neither replaced nor re-moded.
    expect(readFileSync(beside, 'utf8').includes(key)).toBe(true);
    expect(statSync(beside).mode & 0o777).toBe(0o604);
  });
});

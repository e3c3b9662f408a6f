import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VaultError } from '../../src/errors.js';
import {
  createKeyring,
  ensureKeyFile,
  generateKey,
  isKeyFileExposed,
  loadKeyring,
  openCredential,
  parseKeyring,
  readKeyFile,
  sealCredential,
} from '../../src/crypto/index.js';

const b64 = (bytes = 32): string => randomBytes(bytes).toString('base64');
const b64url = (bytes = 32): string => randomBytes(bytes).toString('base64url');

/** Parsing `text` throws INVALID_CONFIGURATION whose message holds no 8-character run of any key text. */
function expectRejected(text: string, mentions?: string): VaultError {
  let caught: unknown;
  try {
    parseKeyring(text);
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(VaultError);
  const error = caught as VaultError;
  expect(error.code).toBe('INVALID_CONFIGURATION');
  expect(error.message).not.toContain('\n');
  if (mentions !== undefined) expect(error.message).toContain(mentions);
  const keyTexts = text.split(/[,\s]+/).map((entry) => entry.slice(entry.indexOf(':') + 1));
  for (const keyText of keyTexts) {
    for (let start = 0; start + 8 <= keyText.length; start += 1) {
      expect(error.message).not.toContain(keyText.slice(start, start + 8));
    }
  }
  return error;
}

describe('parseKeyring', () => {
  it('parses id:base64 entries, first one primary', () => {
    const [a, b] = [randomBytes(32), randomBytes(32)];
    const keyring = parseKeyring(`new:${a.toString('base64')},old:${b.toString('base64')}`);
    expect(keyring.primary.id).toBe('new');
    expect(keyring.primary.key.equals(a)).toBe(true);
    expect([...keyring.keys.keys()]).toEqual(['new', 'old']);
    expect(keyring.keys.get('old')?.key.equals(b)).toBe(true);
    expect(keyring.keys.get('new')).toBe(keyring.primary);
  });

  it('accepts standard and url-safe base64, with or without padding', () => {
    const bytes = Buffer.from(Array.from({ length: 32 }, (_, i) => 0xf8 + (i % 8)));
    const standard = bytes.toString('base64');
    expect(standard).toMatch(/[+/]/);
    for (const text of [standard, standard.replace(/=+$/, ''), bytes.toString('base64url'), `${bytes.toString('base64url')}=`]) {
      expect(parseKeyring(`k:${text}`).primary.key.equals(bytes)).toBe(true);
    }
  });

  it('tolerates whitespace, one entry per line, CRLF and a trailing newline', () => {
    const [a, b, c] = [b64(), b64url(), b64()];
    for (const text of [
      `  k1:${a} , k2:${b}  ,k3:${c}\n`,
      `k1:${a}\nk2:${b}\nk3:${c}\n`,
      `k1:${a},\r\nk2:${b},\r\nk3:${c}\r\n`,
      `\n\tk1 : ${a}\n\nk2:${b}\n k3:${c}`,
    ]) {
      const keyring = parseKeyring(text);
      expect([...keyring.keys.keys()]).toEqual(['k1', 'k2', 'k3']);
    }
  });

  it('accepts ids of 1 to 32 of A-Z a-z 0-9 _ -', () => {
    for (const id of ['a', 'Z', '0', '_', '-', 'key_2025-01', 'x'.repeat(32)]) {
      expect(parseKeyring(`${id}:${b64()}`).primary.id).toBe(id);
    }
  });

  it('rejects empty text', () => {
    expectRejected('', 'no keys');
    expectRejected('   \n\n ', 'no keys');
    expectRejected(',,', 'no keys');
  });

  it.each([
    ['empty id', `:${b64()}`],
    ['too long', `${'x'.repeat(33)}:${b64()}`],
    ['dot', `k.1:${b64()}`],
    ['space inside', `k 1:${b64()}`],
    ['plus', `k+1:${b64()}`],
    ['slash', `k/1:${b64()}`],
    ['non-ascii', `clé:${b64()}`],
  ])('rejects a bad id (%s) naming the entry', (_label, entry) => {
    const error = expectRejected(`ok:${b64()},${entry}`, 'entry 2');
    expect(error.message).toContain('key id');
  });

  it('rejects an entry without an id (e.g. a bare key) without echoing it', () => {
    expectRejected(b64(), 'entry 1');
    expectRejected(`k1:${b64()}\n${b64url()}`, 'entry 2');
  });

  it.each([
    ['16 bytes', b64(16)],
    ['31 bytes', b64(31)],
    ['33 bytes', b64(33)],
    ['64 bytes', b64(64)],
    ['empty', ''],
  ])('rejects a key of %s', (_label, key) => {
    const error = expectRejected(`k1:${b64()},k2:${key}`, 'entry 2 (id "k2")');
    expect(error.message).toMatch(/32 bytes|base64/);
  });

  it.each([
    ['bad characters', `${b64().slice(0, 40)}!@#$`],
    ['mixed alphabets', `${'+'.repeat(20)}${'_'.repeat(23)}`],
    ['wrong padding', `${b64().replace(/=$/, '')}==`],
    ['inner whitespace', `${b64().slice(0, 20)} ${b64().slice(20)}`],
    ['non-canonical trailing bits', `${b64url().slice(0, 42)}B`],
    ['hex', randomBytes(32).toString('hex')],
  ])('rejects a key with %s', (_label, key) => {
    expectRejected(`k1:${key}`, 'entry 1');
  });

  it('rejects duplicate ids', () => {
    expectRejected(`k1:${b64()},k2:${b64()},k1:${b64()}`, 'entry 3: key id "k1" appears more than once');
  });

  it('prefixes messages with the source label', () => {
    expect(() => parseKeyring('', 'CREDVAULT_KEYS')).toThrow(/^CREDVAULT_KEYS: /);
  });
});

describe('createKeyring', () => {
  it('validates like parseKeyring and copies the key bytes', () => {
    const key = randomBytes(32);
    const keyring = createKeyring([{ id: 'k1', key }]);
    key.fill(0);
    expect(keyring.primary.key.equals(Buffer.alloc(32))).toBe(false);
    expect(() => createKeyring([])).toThrow(expect.objectContaining({ code: 'INVALID_CONFIGURATION' }));
    expect(() => createKeyring([{ id: 'k1', key: randomBytes(16) }])).toThrow(/32 bytes, got 16/);
    expect(() => createKeyring([{ id: 'bad id', key: randomBytes(32) }])).toThrow(/key id/);
  });
});

describe('generateKey', () => {
  it('produces an entry that parses to the same key', () => {
    const generated = generateKey();
    expect(generated.id).toMatch(/^k\d{8}-[0-9a-f]{4}$/);
    expect(generated.entry).toBe(`${generated.id}:${generated.key}`);
    const keyring = parseKeyring(generated.entry);
    expect(keyring.primary.id).toBe(generated.id);
    expect(keyring.primary.key.toString('base64')).toBe(generated.key);
  });

  it('uses a given id, rejects an invalid one, and never repeats keys', () => {
    expect(generateKey('primary-2').id).toBe('primary-2');
    expect(() => generateKey('no spaces')).toThrow(expect.objectContaining({ code: 'INVALID_CONFIGURATION' }));
    expect(generateKey().key).not.toBe(generateKey().key);
    const many = [generateKey(), generateKey(), generateKey()];
    expect(parseKeyring(many.map((k) => k.entry).join(',')).keys.size).toBe(3);
  });
});

describe('key files', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'credvault-keyring-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('ensureKeyFile creates the file (and its directory) with mode 0600, then reads the same key', async () => {
    const path = join(dir, 'nested', 'deeper', 'credvault.keys');
    const first = await ensureKeyFile(path);
    expect(first.created).toBe(true);
    expect(first.insecurePermissions).toBe(false);
    if (process.platform !== 'win32') expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(await readFile(path, 'utf8')).toMatch(/^k\d{8}-[0-9a-f]{4}:[A-Za-z0-9+/]{43}=\n$/);

    const second = await ensureKeyFile(path);
    expect(second.created).toBe(false);
    expect(second.keyring.primary.id).toBe(first.keyring.primary.id);
    expect(second.keyring.primary.key.equals(first.keyring.primary.key)).toBe(true);
    expect((await readKeyFile(path)).primary.key.equals(first.keyring.primary.key)).toBe(true);

    const sealed = sealCredential(first.keyring, 'v', { org: 'o', environment: 'e', accountId: 'a', name: 'n' });
    expect(openCredential(second.keyring, sealed, { org: 'o', environment: 'e', accountId: 'a', name: 'n' })).toBe('v');
  });

  it('ensureKeyFile racing with itself creates exactly one key and leaves no temp files', async () => {
    const raceDir = join(dir, 'race');
    const path = join(raceDir, 'credvault.keys');
    const results = await Promise.all(Array.from({ length: 12 }, () => ensureKeyFile(path)));
    expect(results.filter((result) => result.created)).toHaveLength(1);
    const ids = new Set(results.map((result) => result.keyring.primary.key.toString('base64')));
    expect(ids.size).toBe(1);
    expect(await readdir(raceDir)).toEqual(['credvault.keys']);
  });

  it('ensureKeyFile reads an existing file rather than replacing it', async () => {
    const path = join(dir, 'existing.keys');
    const entry = `mine:${b64()}`;
    await writeFile(path, `${entry}\n`, { mode: 0o600 });
    const result = await ensureKeyFile(path);
    expect(result.created).toBe(false);
    expect(result.keyring.primary.id).toBe('mine');
    expect(await readFile(path, 'utf8')).toBe(`${entry}\n`);
  });

  it.skipIf(process.platform === 'win32')('refuses a key file group or others may access, naming its mode and never its content', async () => {
    const key = b64();
    const path = join(dir, 'loose.keys');
    await writeFile(path, `k1:${key}\n`, { mode: 0o600 });
    expect(await isKeyFileExposed(path)).toBe(false);
    for (const mode of [0o644, 0o640, 0o604, 0o660, 0o601, 0o610]) {
      await chmod(path, mode);
      expect(await isKeyFileExposed(path)).toBe(true);
      const expected = { code: 'INVALID_CONFIGURATION', message: `Key file ${path} is accessible by group or others (mode 0${mode.toString(8)}); run chmod 600 on it` };
      const attempts = [() => readKeyFile(path), () => ensureKeyFile(path), () => loadKeyring({ keyFile: path }), () => loadKeyring({ keyFile: path, create: true })];
      for (const attempt of attempts) {
        const error: unknown = await attempt().catch((caught: unknown) => caught);
        expect(error).toBeInstanceOf(VaultError);
        expect(error).toMatchObject(expected);
        expect((error as Error).message).not.toContain(key.slice(0, 8));
      }
    }
    // The file is left as it was: refusing never rewrites or replaces it.
    expect(await readFile(path, 'utf8')).toBe(`k1:${key}\n`);
  });

  it.skipIf(process.platform === 'win32')('accepts an exposed key file only when allowInsecurePermissions is set, and says so', async () => {
    const path = join(dir, 'allowed.keys');
    await writeFile(path, `k1:${b64()}\n`, { mode: 0o600 });
    await chmod(path, 0o644);
    const allow = { allowInsecurePermissions: true };
    expect((await readKeyFile(path, allow)).primary.id).toBe('k1');
    expect(await ensureKeyFile(path, allow)).toMatchObject({ created: false, insecurePermissions: true });
    expect(await loadKeyring({ keyFile: path, ...allow })).toMatchObject({ source: 'keyFile', insecurePermissions: true });
    expect(await loadKeyring({ keyFile: path, create: true, ...allow })).toMatchObject({ created: false, insecurePermissions: true });
  });

  it.skipIf(process.platform === 'win32')('accepts owner-only modes (0600, 0400, 0700) as secure', async () => {
    const path = join(dir, 'tight.keys');
    await writeFile(path, `k1:${b64()}\n`, { mode: 0o600 });
    for (const mode of [0o600, 0o400, 0o700]) {
      await chmod(path, mode);
      expect(await isKeyFileExposed(path)).toBe(false);
      expect((await readKeyFile(path)).primary.id).toBe('k1');
      expect((await ensureKeyFile(path)).insecurePermissions).toBe(false);
      expect((await loadKeyring({ keyFile: path })).insecurePermissions).toBe(false);
    }
  });

  it('readKeyFile reports a missing or invalid file as INVALID_CONFIGURATION without key text', async () => {
    await expect(readKeyFile(join(dir, 'absent.keys'))).rejects.toMatchObject({
      code: 'INVALID_CONFIGURATION',
      message: expect.stringContaining('ENOENT'),
    });
    const path = join(dir, 'bad.keys');
    const shortKey = b64(16);
    await writeFile(path, `k1:${shortKey}\n`, { mode: 0o600 });
    const error: unknown = await readKeyFile(path).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: 'INVALID_CONFIGURATION' });
    expect((error as Error).message).toContain(`Key file ${path}: entry 1 (id "k1")`);
    expect((error as Error).message).not.toContain(shortKey.slice(0, 12));
  });

  it('loadKeyring prefers CREDVAULT_KEYS, falls back to the key file, creates it only when asked', async () => {
    const path = join(dir, 'load', 'credvault.keys');
    const env = `envkey:${b64()}`;

    const fromEnv = await loadKeyring({ env, keyFile: path, create: true });
    expect(fromEnv).toMatchObject({ source: 'env', created: false });
    expect(fromEnv.keyring.primary.id).toBe('envkey');

    await expect(loadKeyring({ env: '  ', keyFile: path })).rejects.toMatchObject({ code: 'INVALID_CONFIGURATION' });
    const created = await loadKeyring({ env: '', keyFile: path, create: true });
    expect(created).toMatchObject({ source: 'keyFile', keyFile: path, created: true, insecurePermissions: false });
    const read = await loadKeyring({ keyFile: path });
    expect(read.created).toBe(false);
    expect(read.keyring.primary.key.equals(created.keyring.primary.key)).toBe(true);

    await expect(loadKeyring({})).rejects.toMatchObject({ code: 'INVALID_CONFIGURATION' });
    await expect(loadKeyring({ env: 'k1:short' })).rejects.toThrow(/^CREDVAULT_KEYS: entry 1/);
  });
});

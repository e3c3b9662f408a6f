import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { VaultError } from '../../src/errors.js';
import { formatPkcs11Uri, parsePkcs11Uri, resolvePkcs11Pin, type Pkcs11Uri } from '../../src/crypto/pkcs11-uri.js';

const MODULE = '/usr/lib/softhsm/libsofthsm2.so';
const PIN = 'S3cr3tPin-9731';
const base = `pkcs11:token=credvault;object=kek-1?module-path=${MODULE}`;

/** Parsing throws INVALID_CONFIGURATION, one line mentioning `mentions`, without PIN. */
function refused(text: string, mentions: string): VaultError {
  let caught: unknown;
  try {
    parsePkcs11Uri(text);
  } catch (error) {
    caught = error;
  }
  expect(caught, text).toBeInstanceOf(VaultError);
  const error = caught as VaultError;
  expect(error.code).toBe('INVALID_CONFIGURATION');
  expect(error.message).not.toContain('\n');
  expect(error.message).toContain(mentions);
  expect(error.message).not.toContain(PIN);
  expect(error.message).not.toContain(encodeURIComponent(PIN));
  return error;
}

describe('parsePkcs11Uri', () => {
  it('reads the token, object, module and PIN source of the documented form', () => {
    const uri = parsePkcs11Uri(`${base}&pin-source=env:CREDVAULT_PKCS11_PIN`);
    expect(uri).toEqual({ token: 'credvault', object: 'kek-1', modulePath: MODULE, pin: { kind: 'env', name: 'CREDVAULT_PKCS11_PIN' }, vendor: [] });
  });

  it('takes the scheme in any case, and the optional token filters, type and id', () => {
    const uri = parsePkcs11Uri(
      `PKCS11:token=credvault;manufacturer=SoftHSM%20project;serial=97622ed12dfe878e;model=SoftHSM%20v2;object=kek-1;type=secret-key;id=%01%02%ff?module-path=${MODULE}`,
    );
    expect(uri.manufacturer).toBe('SoftHSM project');
    expect(uri.serial).toBe('97622ed12dfe878e');
    expect(uri.model).toBe('SoftHSM v2');
    expect(uri.type).toBe('secret-key');
    expect(uri.id).toEqual(Buffer.from([1, 2, 0xff]));
    expect(uri.pin).toBeUndefined();
  });

  it('percent-decodes values as UTF-8, reserved characters included, "+" staying a plus', () => {
    const uri = parsePkcs11Uri(`pkcs11:token=cr%C3%A9d%20vault;object=a%3Bb%3Fc%26d+e?module-path=/opt/my%20hsm/lib.so`);
    expect(uri.token).toBe('créd vault');
    expect(uri.object).toBe('a;b?c&d+e');
    expect(uri.modulePath).toBe('/opt/my hsm/lib.so');
  });

  it('keeps x- vendor attributes as written and ignores them', () => {
    const uri = parsePkcs11Uri(`pkcs11:token=credvault;x-vendor=a%20b;object=kek-1?module-path=${MODULE}&x-flag=1`);
    expect(uri.vendor).toEqual([
      { name: 'x-vendor', encodedValue: 'a%20b', part: 'path' },
      { name: 'x-flag', encodedValue: '1', part: 'query' },
    ]);
  });

  it('reads pin-source file: in its three spellings', () => {
    for (const source of ['file:/run/secrets/pin', 'file:///run/secrets/pin', 'file://localhost/run/secrets/pin']) {
      expect(parsePkcs11Uri(`${base}&pin-source=${source}`).pin).toEqual({ kind: 'file', path: '/run/secrets/pin' });
    }
  });

  it('keeps a pin-value out of JSON and inspect output', () => {
    const uri = parsePkcs11Uri(`${base}&pin-value=${encodeURIComponent(PIN)}`);
    expect(uri.pin?.kind).toBe('value');
    expect(resolvePkcs11Pin(uri)).toBe(PIN);
    expect(JSON.stringify(uri)).not.toContain(PIN);
    expect(inspect(uri, { depth: 10 })).not.toContain(PIN);
  });

  it('refuses what is not a PKCS#11 URI', () => {
    refused('https://example.com/', "must start with 'pkcs11:'");
    refused(`${base}#frag`, 'fragment');
    refused(`pkcs11:${'a'.repeat(5000)}`, 'longer than');
  });

  it('refuses duplicates, in the path and in the query', () => {
    refused(`pkcs11:token=a;token=b;object=k?module-path=${MODULE}`, "'token' appears more than once");
    refused(`${base}&module-path=${MODULE}`, "'module-path' appears more than once");
    refused(`pkcs11:token=a;x-v=1;x-v=2;object=k?module-path=${MODULE}`, "'x-v' appears more than once");
  });

  it('refuses unknown attributes, attributes in the wrong part, and ones credvault does not honour', () => {
    refused(`pkcs11:tokn=a;object=k?module-path=${MODULE}`, "unknown attribute 'tokn'");
    refused(`${base}&pin=1234`, "unknown attribute 'pin'");
    refused(`pkcs11:token=a;object=k;module-path=${MODULE}`, "'module-path' belongs in the query");
    refused(`pkcs11:token=a?module-path=${MODULE}&object=k2`, "'object' belongs in the path");
    refused(`pkcs11:token=a;object=k;slot-id=3?module-path=${MODULE}`, "'slot-id' is not supported");
    refused(`pkcs11:token=a;object=k;library-version=1?module-path=${MODULE}`, "'library-version' is not supported");
    refused(`${base}&module-name=softhsm2`, "'module-name' is not supported");
    refused(`pkcs11:Token=a;object=k?module-path=${MODULE}`, 'malformed name');
  });

  it('refuses a type other than secret-key', () => {
    refused(`pkcs11:token=a;object=k;type=private?module-path=${MODULE}`, 'type must be secret-key');
  });

  it('refuses a URI without token, object or an absolute module-path', () => {
    refused(`pkcs11:object=k?module-path=${MODULE}`, 'no token=');
    refused(`pkcs11:token=a?module-path=${MODULE}`, 'no object=');
    refused('pkcs11:token=a;object=k', 'no module-path=');
    refused('pkcs11:token=a;object=k?module-path=libsofthsm2.so', 'module-path must be an absolute path');
  });

  it('refuses malformed attributes and percent-encoding', () => {
    refused(`pkcs11:token=a;;object=k?module-path=${MODULE}`, 'path attribute 2 is not name=value');
    refused(`pkcs11:token=;object=k?module-path=${MODULE}`, "'token' is empty");
    refused(`pkcs11:token=a%zz;object=k?module-path=${MODULE}`, "'token' has a '%' not followed by two hex digits");
    refused(`pkcs11:token=a%C3;object=k?module-path=${MODULE}`, "'token' is not UTF-8");
    refused(`pkcs11:token=a b;object=k?module-path=${MODULE}`, "'token' holds a character that must be percent-encoded");
    refused(`pkcs11:token=a/b;object=k?module-path=${MODULE}`, "'token' holds a character that must be percent-encoded");
    refused(`pkcs11:token=clé;object=k?module-path=${MODULE}`, "'token' holds a character that must be percent-encoded");
  });

  it('refuses pin-source and pin-value together, and pin-sources it does not know, without echoing them', () => {
    refused(`${base}&pin-source=env:X&pin-value=${PIN}`, 'not both');
    refused(`${base}&pin-source=${PIN}`, 'pin-source must be env:NAME or file:/absolute/path');
    refused(`${base}&pin-source=env:${PIN}`, 'pin-source env: must name an environment variable');
    refused(`${base}&pin-source=file:relative/${PIN}`, 'pin-source file: must give an absolute path');
    refused(`${base}&pin-source=file://otherhost/${PIN}`, 'must be a local file');
  });

  it('never echoes a PIN in a malformed URI', () => {
    refused(`${base}&pin-value${PIN}`, 'query attribute 2 is not name=value');
    refused(`${base}&pin-value=${PIN}%2`, "'pin-value' has a '%'");
    refused(`${base}&pin-value=${PIN}%FF`, "'pin-value' is not UTF-8");
    refused(`${base}&pin-value=${PIN};x`, "'pin-value' holds a character");
    refused(`pkcs11:token=a;object=k;pin-value=${PIN}?module-path=${MODULE}`, "'pin-value' belongs in the query");
    refused(`pkcs11:token=a;object=k?module-path=x&pin-value=${PIN}`, 'module-path must be an absolute path');
  });
});

describe('formatPkcs11Uri', () => {
  it('names another object on the same token, dropping the id and never writing a PIN', () => {
    const uri = parsePkcs11Uri(`pkcs11:token=cr%C3%A9d%20vault;serial=42;object=kek-1;id=%01;type=secret-key;x-v=a%20b?module-path=/opt/my%20hsm/lib.so&pin-source=env:PIN_VAR`);
    const text = formatPkcs11Uri(uri, { object: 'kek-2;é' });
    const again = parsePkcs11Uri(text);
    const { id: _id, ...rest } = uri;
    expect(again).toEqual({ ...rest, object: 'kek-2;é' });
    expect(again.id).toBeUndefined();
  });

  it('keeps a file pin-source and drops a pin-value', () => {
    const file = parsePkcs11Uri(`${base}&pin-source=file:/run/secrets/pin`);
    expect(formatPkcs11Uri(file, { object: 'kek-2' })).toBe(`pkcs11:token=credvault;object=kek-2?module-path=${MODULE}&pin-source=file:/run/secrets/pin`);
    const value = parsePkcs11Uri(`${base}&pin-value=${PIN}`);
    const text = formatPkcs11Uri(value, { object: 'kek-2' });
    expect(text).not.toContain(PIN);
    expect(parsePkcs11Uri(text).pin).toBeUndefined();
  });

  it('refuses an empty object', () => {
    expect(() => formatPkcs11Uri(parsePkcs11Uri(base), { object: '' })).toThrow(VaultError);
  });
});

describe('resolvePkcs11Pin', () => {
  const dir = mkdtempSync(join(tmpdir(), 'credvault-pin-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const withSource = (source: string): Pkcs11Uri => parsePkcs11Uri(`${base}&pin-source=${source}`);
  const resolveRefused = (uri: Pkcs11Uri, mentions: string, env: NodeJS.ProcessEnv = {}) => {
    let caught: unknown;
    try {
      resolvePkcs11Pin(uri, env);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(VaultError);
    expect((caught as VaultError).code).toBe('INVALID_CONFIGURATION');
    expect((caught as VaultError).message).toContain(mentions);
    expect((caught as VaultError).message).not.toContain(PIN);
  };

  it('reads env: from the given environment', () => {
    expect(resolvePkcs11Pin(withSource('env:MY_PIN'), { MY_PIN: PIN })).toBe(PIN);
    resolveRefused(withSource('env:MY_PIN'), 'MY_PIN is not set');
    resolveRefused(withSource('env:MY_PIN'), 'MY_PIN is not set', { MY_PIN: '' });
  });

  it('reads file: dropping one trailing newline', () => {
    const path = join(dir, 'pin');
    writeFileSync(path, `${PIN}\r\n`);
    expect(resolvePkcs11Pin(withSource(`file:${path}`))).toBe(PIN);
    writeFileSync(path, `${PIN}\n\n`);
    expect(resolvePkcs11Pin(withSource(`file:${path}`))).toBe(`${PIN}\n`);
  });

  it('refuses a missing, empty or oversized PIN file without its content', () => {
    resolveRefused(withSource(`file:${join(dir, 'absent')}`), 'could not be read (ENOENT)');
    const empty = join(dir, 'empty');
    writeFileSync(empty, '\n');
    resolveRefused(withSource(`file:${empty}`), 'is empty');
    const big = join(dir, 'big');
    writeFileSync(big, PIN.repeat(100));
    resolveRefused(withSource(`file:${big}`), 'longer than 256 bytes');
  });

  it('refuses a URI with no PIN', () => {
    resolveRefused(parsePkcs11Uri(base), 'gives no PIN');
  });
});

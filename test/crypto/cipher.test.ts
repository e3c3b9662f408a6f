import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { VaultError } from '../../src/errors.js';
import {
  assertKeyringOpens,
  createKeyring,
  openCredential,
  parseKeyring,
  sealCredential,
  sealedKeyId,
  type Keyring,
  type SealContext,
} from '../../src/crypto/index.js';

const context: SealContext = { org: 'acme', environment: 'production', accountId: 'user-1', name: 'api_key' };

function keyringOf(...ids: string[]): Keyring {
  return createKeyring(ids.map((id) => ({ id, key: randomBytes(32) })));
}

/** Asserts the one opaque failure, and that no part of `secret` leaked into it. */
function expectOpaqueFailure(open: () => unknown, secret?: string): void {
  let caught: unknown;
  try {
    open();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(VaultError);
  const error = caught as VaultError;
  expect(error.code).toBe('DECRYPTION_FAILED');
  expect(error.message).toBe('Stored credential could not be decrypted');
  expect(error.details).toBeUndefined();
  expect(error.cause).toBeUndefined();
  if (secret !== undefined && secret !== '') {
    expect(error.message).not.toContain(secret);
    expect(error.stack ?? '').not.toContain(secret);
  }
}

function replacePart(sealed: string, index: number, replace: (bytes: Buffer) => Buffer): string {
  const parts = sealed.split('.');
  parts[index] = replace(Buffer.from(parts[index] ?? '', 'base64url')).toString('base64url');
  return parts.join('.');
}

describe('sealCredential / openCredential', () => {
  const keyring = keyringOf('k1');

  it.each([
    ['empty string', ''],
    ['ascii', 'sk_live_123'],
    ['unicode', 'pässwörd 🔑 日本語 \u0000 \n.:,'],
    ['64 KiB', 'x'.repeat(64 * 1024)],
    ['64 KiB random', randomBytes(48 * 1024).toString('base64')],
  ])('round-trips %s', (_label, plaintext) => {
    const sealed = sealCredential(keyring, plaintext, context);
    expect(openCredential(keyring, sealed, context)).toBe(plaintext);
    if (plaintext !== '') expect(sealed).not.toContain(plaintext);
  });

  it('writes cv1.<keyId>.<nonce>.<ciphertext>.<tag> with a 96-bit nonce and 128-bit tag', () => {
    const sealed = sealCredential(keyring, 'hello', context);
    const [version, keyId, nonce, ciphertext, tag, ...rest] = sealed.split('.');
    expect(rest).toEqual([]);
    expect(version).toBe('cv1');
    expect(keyId).toBe('k1');
    expect(Buffer.from(nonce ?? '', 'base64url')).toHaveLength(12);
    expect(Buffer.from(ciphertext ?? '', 'base64url')).toHaveLength(5);
    expect(Buffer.from(tag ?? '', 'base64url')).toHaveLength(16);
    expect(sealed).toMatch(/^cv1\.k1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{7}\.[A-Za-z0-9_-]{22}$/);
  });

  it('gives two different sealed strings (and nonces) for the same plaintext', () => {
    const a = sealCredential(keyring, 'same', context);
    const b = sealCredential(keyring, 'same', context);
    expect(a).not.toBe(b);
    expect(a.split('.')[2]).not.toBe(b.split('.')[2]);
    expect(openCredential(keyring, a, context)).toBe('same');
    expect(openCredential(keyring, b, context)).toBe('same');
  });

  it('fails opaquely when any byte of nonce, ciphertext or tag is flipped', () => {
    const plaintext = 'secret-value-0123456789';
    const sealed = sealCredential(keyring, plaintext, context);
    for (const partIndex of [2, 3, 4]) {
      const length = Buffer.from(sealed.split('.')[partIndex] ?? '', 'base64url').length;
      for (let byte = 0; byte < length; byte += 1) {
        const tampered = replacePart(sealed, partIndex, (bytes) => {
          const copy = Buffer.from(bytes);
          copy[byte] = (copy[byte] ?? 0) ^ 0x01;
          return copy;
        });
        expectOpaqueFailure(() => openCredential(keyring, tampered, context), plaintext);
      }
    }
  });

  it('fails opaquely when any character of the sealed string changes (no malleable encodings)', () => {
    const plaintext = 'abc';
    const sealed = sealCredential(keyring, plaintext, context);
    for (let index = 0; index < sealed.length; index += 1) {
      for (const replacement of ['A', 'B', 'g', 'h', '-', '_', '.', '=', '+']) {
        if (sealed[index] === replacement) continue;
        const tampered = sealed.slice(0, index) + replacement + sealed.slice(index + 1);
        expectOpaqueFailure(() => openCredential(keyring, tampered, context), plaintext);
      }
    }
  });

  it('opens values of every length around the decoding paths, and refuses each one whose last character carries stray bits or non-ASCII', () => {
    // Ciphertexts from 0 to past 256 base64url characters, so both ways of decoding are crossed.
    for (const length of [1, 2, 3, 4, 5, 100, 187, 188, 189, 190, 191, 192, 193, 250, 1000]) {
      const plaintext = 'z'.repeat(length);
      const sealed = sealCredential(keyring, plaintext, context);
      expect(openCredential(keyring, sealed, context)).toBe(plaintext);
      const [v, id, n, c, t] = sealed.split('.') as [string, string, string, string, string];
      const last = c.at(-1) as string;
      // The same bytes named by another last character: only a changed bit past the data.
      const strayBits = c.length % 4 === 0 ? [] : ['ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.indexOf(last) + 1];
      for (const bad of [
        ...strayBits.map((i) => `${v}.${id}.${n}.${c.slice(0, -1)}${'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'[i % 64]}.${t}`),
        `${v}.${id}.${n}.${c.slice(0, -1)}\u00e9.${t}`,
        `${v}.${id}.${n}.${c.slice(0, -1)}\u0141.${t}`,
        `${v}.${id}.${n}.${c}A.${t}`,
      ]) {
        expectOpaqueFailure(() => openCredential(keyring, bad, context), plaintext);
      }
    }
  });

  it('fails opaquely on truncated, extended or re-shaped ciphertext', () => {
    const sealed = sealCredential(keyring, 'value', context);
    const [v, id, n, c, t] = sealed.split('.') as [string, string, string, string, string];
    const shortTag = Buffer.from(t, 'base64url').subarray(0, 12).toString('base64url');
    for (const bad of [
      sealed.slice(0, -1),
      `${sealed}A`,
      `${sealed}.`,
      `${v}.${id}.${n}.${c}.${shortTag}`,
      `${v}.${id}.${n}${c}.${t}`,
      `${v}.${id}.${Buffer.from(n, 'base64url').subarray(0, 8).toString('base64url')}.${c}.${t}`,
      `${v}.${id}.${n}.${c}==.${t}`,
      `${v}.${id}.${n}.${Buffer.from(c, 'base64url').toString('base64')}.${t}`,
    ]) {
      expectOpaqueFailure(() => openCredential(keyring, bad, context));
    }
  });

  it('fails opaquely on malformed input and unknown versions', () => {
    const sealed = sealCredential(keyring, 'value', context);
    for (const bad of ['', 'cv1', 'garbage', '....', 'cv1.k1....', sealed.replace(/^cv1/, 'cv2'), sealed.replace(/^cv1/, 'v1')]) {
      expectOpaqueFailure(() => openCredential(keyring, bad, context));
    }
    expectOpaqueFailure(() => openCredential(keyring, undefined as unknown as string, context));
  });

  it('fails opaquely for a key id not in the keyring, and for a same-named but different key', () => {
    const plaintext = 'rotated-away';
    const sealed = sealCredential(keyringOf('old'), plaintext, context);
    expectOpaqueFailure(() => openCredential(keyringOf('new'), sealed, context), plaintext);
    expectOpaqueFailure(() => openCredential(keyringOf('old'), sealed, context), plaintext);
  });

  it('fails opaquely when the key id in the header is swapped for another key in the keyring', () => {
    const both = keyringOf('k1', 'k2');
    const sealed = sealCredential(both, 'value', context);
    expectOpaqueFailure(() => openCredential(both, sealed.replace(/^cv1\.k1\./, 'cv1.k2.'), context));
  });

  describe('context binding', () => {
    const sealed = sealCredential(keyring, 'bound', context);

    it.each([
      ['org', { ...context, org: 'other' }],
      ['environment', { ...context, environment: 'sandbox' }],
      ['accountId', { ...context, accountId: 'user-2' }],
      ['name', { ...context, name: 'api_secret' }],
      ['name (case)', { ...context, name: 'API_KEY' }],
      ['org (empty)', { ...context, org: '' }],
    ])('fails when %s differs', (_field, other) => {
      expectOpaqueFailure(() => openCredential(keyring, sealed, other), 'bound');
    });

    it.each([
      ['org "a:b" env "c" vs org "a" env "b:c"', { org: 'a:b', environment: 'c' }, { org: 'a', environment: 'b:c' }],
      ['org "a|b" env "c" vs org "a" env "b|c"', { org: 'a|b', environment: 'c' }, { org: 'a', environment: 'b|c' }],
      ['org "ab" env "" vs org "a" env "b"', { org: 'ab', environment: '' }, { org: 'a', environment: 'b' }],
      ['NUL separators', { org: 'a\u0000b', environment: 'c' }, { org: 'a', environment: 'b\u0000c' }],
      ['JSON-like', { org: 'a","b', environment: 'c' }, { org: 'a', environment: 'b","c' }],
    ])('does not collide: %s', (_label, first, second) => {
      const a: SealContext = { accountId: 'x', name: 'y', ...first };
      const b: SealContext = { accountId: 'x', name: 'y', ...second };
      const sealedA = sealCredential(keyring, 'v', a);
      expect(openCredential(keyring, sealedA, a)).toBe('v');
      expectOpaqueFailure(() => openCredential(keyring, sealedA, b));
    });

    it('does not collide across accountId / name either', () => {
      const a: SealContext = { org: 'o', environment: 'e', accountId: 'u:session-token', name: '1' };
      const b: SealContext = { org: 'o', environment: 'e', accountId: 'u', name: 'session-token:1' };
      expectOpaqueFailure(() => openCredential(keyring, sealCredential(keyring, 'v', a), b));
    });

    it('ignores extra properties on the context object', () => {
      const withExtra = { ...context, label: 'ignored' };
      expect(openCredential(keyring, sealCredential(keyring, 'v', withExtra), context)).toBe('v');
    });
  });

  it('rejects lone surrogates at seal time without echoing the value', () => {
    const plaintext = 'secret\uD800value';
    expect(() => sealCredential(keyring, plaintext, context)).toThrow(
      expect.objectContaining({ code: 'VALIDATION_ERROR' }),
    );
    try {
      sealCredential(keyring, plaintext, context);
    } catch (error) {
      expect((error as Error).message).not.toContain('secret');
    }
    expect(() => sealCredential(keyring, 'v', { ...context, name: 'a\uDC00' })).toThrow(
      expect.objectContaining({ code: 'VALIDATION_ERROR' }),
    );
    expect(openCredential(keyring, sealCredential(keyring, '🔑', context), context)).toBe('🔑');
  });
});

describe('rotation', () => {
  const oldEntry = `old:${randomBytes(32).toString('base64')}`;
  const newEntry = `new:${randomBytes(32).toString('base64')}`;
  const before = parseKeyring(oldEntry);
  const after = parseKeyring(`${newEntry},${oldEntry}`);

  it('opens old ciphertext with the old key second and seals new values under the new primary', () => {
    const oldSealed = sealCredential(before, 'legacy', context);
    expect(sealedKeyId(oldSealed)).toBe('old');
    expect(openCredential(after, oldSealed, context)).toBe('legacy');

    const newSealed = sealCredential(after, 'fresh', context);
    expect(sealedKeyId(newSealed)).toBe('new');
    expect(openCredential(after, newSealed, context)).toBe('fresh');
    expectOpaqueFailure(() => openCredential(before, newSealed, context), 'fresh');
  });

  it('re-seals under the new primary', () => {
    const oldSealed = sealCredential(before, 'legacy', context);
    const resealed = sealCredential(after, openCredential(after, oldSealed, context), context);
    expect(sealedKeyId(resealed)).toBe('new');
    expect(openCredential(parseKeyring(newEntry), resealed, context)).toBe('legacy');
  });

  it('sealedKeyId returns undefined for anything not sealed', () => {
    for (const bad of ['', 'plain text', 'cv2.k1.a.b.c', 'cv1.bad id.AAAAAAAAAAAAAAAA..AAAAAAAAAAAAAAAAAAAAAA']) {
      expect(sealedKeyId(bad)).toBeUndefined();
    }
  });
});

describe('assertKeyringOpens', () => {
  const oldKeys = keyringOf('k1');
  const sealed = sealCredential(oldKeys, 'value', context);

  it('passes when the keyring opens every sample', () => {
    expect(() => assertKeyringOpens(oldKeys, [{ sealed, context }])).not.toThrow();
    expect(() => assertKeyringOpens(oldKeys, [])).not.toThrow();
  });

  it('throws KEYRING_MISMATCH naming a missing key id', () => {
    expect(() => assertKeyringOpens(keyringOf('k2'), [{ sealed, context }])).toThrow(
      expect.objectContaining({ code: 'KEYRING_MISMATCH', message: expect.stringContaining('not in the keyring: k1') }),
    );
  });

  it('throws KEYRING_MISMATCH for a same-id key with different bytes, without leaking the value', () => {
    try {
      assertKeyringOpens(keyringOf('k1'), [{ sealed, context }]);
      expect.unreachable();
    } catch (error) {
      expect(error).toMatchObject({ code: 'KEYRING_MISMATCH', details: { wrongKeyIds: ['k1'] } });
      expect((error as Error).message).not.toContain('value');
    }
  });
});

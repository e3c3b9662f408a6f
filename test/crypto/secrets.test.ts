import { describe, expect, it } from 'vitest';
import { hashSecret, randomToken, secretsEqual } from '../../src/crypto/index.js';

describe('hashSecret', () => {
  it('is SHA-256 hex and deterministic', () => {
    expect(hashSecret('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(hashSecret('x')).toBe(hashSecret('x'));
    expect(hashSecret('x')).not.toBe(hashSecret('y'));
  });
});

describe('secretsEqual', () => {
  it('compares hashes', () => {
    expect(secretsEqual(hashSecret('a'), hashSecret('a'))).toBe(true);
    expect(secretsEqual(hashSecret('a'), hashSecret('b'))).toBe(false);
  });

  it('returns false for different lengths without throwing', () => {
    expect(secretsEqual(hashSecret('a'), hashSecret('a').slice(1))).toBe(false);
    expect(secretsEqual('', hashSecret('a'))).toBe(false);
    expect(secretsEqual('', '')).toBe(true);
    expect(secretsEqual('é', 'ee')).toBe(false);
  });
});

describe('randomToken', () => {
  it('returns unpadded base64url of the requested entropy', () => {
    const token = randomToken(32);
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(token, 'base64url')).toHaveLength(32);
    expect(randomToken(16)).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(randomToken(32)).not.toBe(token);
  });

  it.each([0, 8, 15, 1.5, Number.NaN, 4096])('refuses %s bytes', (bytes) => {
    expect(() => randomToken(bytes)).toThrow(expect.objectContaining({ code: 'INTERNAL' }));
  });
});

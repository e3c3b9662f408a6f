/** Envelope encryption's building blocks: cv2 values sealed under a data key, and the local key provider that wraps data keys. */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  DATA_KEY_FORMAT_VERSION,
  openCredential,
  openWithDataKey,
  sealCredential,
  sealWithDataKey,
  sealedHeader,
  sealedKeyId,
  type DataKey,
  type SealContext,
} from '../../src/crypto/cipher.js';
import { DATA_KEY_BYTES, isValidKekId, localKeyProvider, wrapAdditionalData, type WrapContext } from '../../src/crypto/key-provider.js';
import { createKeyring, generateKey, parseKeyring } from '../../src/crypto/keyring.js';
import { VaultError } from '../../src/errors.js';
import { rejection } from '../helpers/rejection.js';

const context: SealContext = { org: 'acme', environment: 'test', accountId: 'cust-1', name: 'api_key' };
const dataKey = (id = randomBytes(8).toString('hex')): DataKey => ({ id, key: randomBytes(32) });

/** The error `call` throws; fails the test if it returns. */
function thrown(call: () => unknown): VaultError {
  try {
    call();
  } catch (error) {
    expect(error).toBeInstanceOf(VaultError);
    return error as VaultError;
  }
  throw new Error('expected a throw');
}

describe('cv2: values sealed under a data key', () => {
  it('writes cv2.<data key id>.<nonce>.<ciphertext>.<tag> and opens with that data key', () => {
    const key = dataKey();
    const sealed = sealWithDataKey(key, 'sk_live_secret', context);
    const [version, id, nonce, ciphertext, tag, ...rest] = sealed.split('.');
    expect([version, id, rest.length]).toEqual([DATA_KEY_FORMAT_VERSION, key.id, 0]);
    expect(Buffer.from(nonce as string, 'base64url')).toHaveLength(12);
    expect(Buffer.from(tag as string, 'base64url')).toHaveLength(16);
    expect(Buffer.from(ciphertext as string, 'base64url').toString('utf8')).not.toContain('secret');
    expect(sealed).not.toContain('sk_live_secret');
    expect(openWithDataKey(key, sealed, context)).toBe('sk_live_secret');
    expect(sealedHeader(sealed)).toEqual({ version: 'cv2', keyId: key.id });
  });

  it('a value copied onto another account, key name or environment does not open', () => {
    const key = dataKey();
    const sealed = sealWithDataKey(key, 'v', context);
    for (const other of [{ ...context, accountId: 'cust-2' }, { ...context, name: 'other' }, { ...context, environment: 'production' }, { ...context, org: 'globex' }]) {
      expect(thrown(() => openWithDataKey(key, sealed, other)).code).toBe('DECRYPTION_FAILED');
    }
  });

  it('another data key does not open it, not even one given the same id (a recreated account gets new bytes)', () => {
    const key = dataKey();
    const sealed = sealWithDataKey(key, 'v', context);
    expect(thrown(() => openWithDataKey(dataKey(), sealed, context)).message).toBe('Stored credential could not be decrypted');
    expect(thrown(() => openWithDataKey({ id: key.id, key: randomBytes(32) }, sealed, context)).code).toBe('DECRYPTION_FAILED');
  });

  it('the data key id in the header is bound: renaming it fails even with a key of that id and the same bytes', () => {
    const key = dataKey('aaaaaaaaaaaaaaaa');
    const sealed = sealWithDataKey(key, 'v', context);
    const renamed = sealed.replace('.aaaaaaaaaaaaaaaa.', '.bbbbbbbbbbbbbbbb.');
    expect(thrown(() => openWithDataKey({ id: 'bbbbbbbbbbbbbbbb', key: key.key }, renamed, context)).code).toBe('DECRYPTION_FAILED');
  });

  it('cv1 and cv2 do not open as each other, even under the same key bytes and id', () => {
    const bytes = randomBytes(32);
    const keyring = createKeyring([{ id: 'k1', key: bytes }]);
    const asKeyring = sealCredential(keyring, 'v', context);
    const asDataKey = sealWithDataKey({ id: 'k1', key: bytes }, 'v', context);
    expect(thrown(() => openWithDataKey({ id: 'k1', key: bytes }, asKeyring, context)).code).toBe('DECRYPTION_FAILED');
    expect(thrown(() => openCredential(keyring, asDataKey, context)).code).toBe('DECRYPTION_FAILED');
    // Swapping the version tag alone does not help either: it is in the AAD.
    expect(thrown(() => openCredential(keyring, asDataKey.replace(/^cv2\./, 'cv1.'), context)).code).toBe('DECRYPTION_FAILED');
    expect(sealedKeyId(asDataKey)).toBeUndefined();
    expect(sealedKeyId(asKeyring)).toBe('k1');
  });

  it('every flipped character fails opaquely', () => {
    const key = dataKey();
    const sealed = sealWithDataKey(key, 'value', context);
    for (let i = 0; i < sealed.length; i++) {
      const c = sealed[i] === 'A' ? 'B' : 'A';
      const changed = sealed.slice(0, i) + c + sealed.slice(i + 1);
      if (changed === sealed) continue;
      expect(thrown(() => openWithDataKey(key, changed, context)).code).toBe('DECRYPTION_FAILED');
    }
  });
});

describe('the local key provider', () => {
  const wrapContext: WrapContext = { org: 'acme', environment: 'test', accountId: 'cust-1', dekId: '0123456789abcdef' };

  it('wraps under the primary as local:<key id> and unwraps the same 32 bytes; the wrap holds no key bytes', async () => {
    const keyring = parseKeyring([generateKey('k2').entry, generateKey('k1').entry].join(','));
    const provider = localKeyProvider(keyring);
    expect(provider.primaryKekId).toBe('local:k2');
    expect(isValidKekId(provider.primaryKekId)).toBe(true);
    const dek = randomBytes(DATA_KEY_BYTES);
    const wrapped = await provider.wrap(dek, wrapContext);
    expect(wrapped.kekId).toBe('local:k2');
    expect(Buffer.from(wrapped.wrapped, 'base64url').includes(dek)).toBe(false);
    expect(wrapped.wrapped).not.toContain(dek.toString('base64url'));
    expect((await provider.unwrap(wrapped, wrapContext)).equals(dek)).toBe(true);
    // Two wraps of one key differ (fresh nonce).
    expect((await provider.wrap(dek, wrapContext)).wrapped).not.toBe(wrapped.wrapped);
  });

  it('an older key of the keyring still unwraps what it wrapped; a keyring without it cannot', async () => {
    const old = generateKey('k1');
    const before = localKeyProvider(parseKeyring(old.entry));
    const dek = randomBytes(DATA_KEY_BYTES);
    const wrapped = await before.wrap(dek, wrapContext);
    const after = localKeyProvider(parseKeyring([generateKey('k2').entry, old.entry].join(',')));
    expect(after.hasKek('local:k1')).toBe(true);
    expect((await after.unwrap(wrapped, wrapContext)).equals(dek)).toBe(true);
    const without = localKeyProvider(parseKeyring(generateKey('k2').entry));
    expect(without.hasKek('local:k1')).toBe(false);
    expect((await rejection(without.unwrap(wrapped, wrapContext))).code).toBe('DECRYPTION_FAILED');
  });

  it('a wrap copied onto another account or data key id, or tampered with, does not unwrap, with one opaque message', async () => {
    const provider = localKeyProvider(parseKeyring(generateKey('k1').entry));
    const wrapped = await provider.wrap(randomBytes(DATA_KEY_BYTES), wrapContext);
    const failures = await Promise.all([
      rejection(provider.unwrap(wrapped, { ...wrapContext, accountId: 'cust-2' })),
      rejection(provider.unwrap(wrapped, { ...wrapContext, dekId: 'fedcba9876543210' })),
      rejection(provider.unwrap(wrapped, { ...wrapContext, org: 'globex' })),
      rejection(provider.unwrap(wrapped, { ...wrapContext, environment: 'production' })),
      rejection(provider.unwrap({ ...wrapped, wrapped: `${wrapped.wrapped.slice(0, -2)}AA` }, wrapContext)),
      rejection(provider.unwrap({ ...wrapped, wrapped: `${wrapped.wrapped}A` }, wrapContext)),
      rejection(provider.unwrap({ ...wrapped, wrapped: '' }, wrapContext)),
      rejection(provider.unwrap({ ...wrapped, kekId: 'pkcs11:k1' }, wrapContext)),
    ]);
    for (const failure of failures) {
      expect(failure.code).toBe('DECRYPTION_FAILED');
      expect(failure.message).toBe('Stored data key could not be unwrapped');
    }
  });

  it('refuses to wrap anything but a 32-byte key', async () => {
    const provider = localKeyProvider(parseKeyring(generateKey('k1').entry));
    expect((await rejection(provider.wrap(randomBytes(16), wrapContext))).code).toBe('INTERNAL');
  });

  it('the wrap AAD is injective: moving bytes between fields changes it', () => {
    const a = wrapAdditionalData('local:k1', { org: 'ab', environment: 'c', accountId: 'd', dekId: 'e' });
    const b = wrapAdditionalData('local:k1', { org: 'a', environment: 'bc', accountId: 'd', dekId: 'e' });
    expect(a.equals(b)).toBe(false);
  });

  it('KEK ids: 1 to 64 of A-Z a-z 0-9 _ . : -', () => {
    expect(isValidKekId('pkcs11:kek-1')).toBe(true);
    expect(isValidKekId('x'.repeat(64))).toBe(true);
    expect(isValidKekId('x'.repeat(65))).toBe(false);
    expect(isValidKekId('')).toBe(false);
    expect(isValidKekId('a b')).toBe(false);
  });
});

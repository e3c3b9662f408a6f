import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pkcs11js from 'pkcs11js';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { VaultError } from '../../src/errors.js';
import type { KeyProvider, WrapContext, WrappedKey } from '../../src/crypto/key-provider.js';
import { formatPkcs11Uri, parsePkcs11Uri } from '../../src/crypto/pkcs11-uri.js';
import { generatePkcs11Kek, openPkcs11KeyProvider, type Pkcs11KeyProviderOptions } from '../../src/crypto/pkcs11.js';
import { createSoftHsmToken, SOFTHSM_MODULE, softhsmSuite, type SoftHsmToken } from '../helpers/softhsm.js';
import { settle, sleep, waitFor } from '../helpers/wait.js';

const softhsm = softhsmSuite();

const LABEL = 'credvault';
const PIN = 'pin-7319-q';
const WRONG_PIN = 'pin-0000-z';
const PIN_VAR = 'CREDVAULT_TEST_PKCS11_PIN';
const env = { [PIN_VAR]: PIN };
const context: WrapContext = { org: 'acme', environment: 'production', accountId: 'acct-1', dekId: 'dek-1' };

softhsm.describe('PKCS#11 key provider on SoftHSM2', () => {
  let token: SoftHsmToken;
  const opened: KeyProvider[] = [];
  /** Every error message and log line seen: none may hold the PIN or a data key. */
  const said: string[] = [];
  const deks: Buffer[] = [];

  const newDek = (): Buffer => {
    const dek = randomBytes(32);
    deks.push(dek);
    return dek;
  };

  const open = async (object: string, options: Pkcs11KeyProviderOptions = {}): Promise<KeyProvider> => {
    const log = options.log;
    const provider = await openPkcs11KeyProvider(token.uri(object, `env:${PIN_VAR}`), {
      env,
      log: (line) => {
        said.push(line);
        log?.(line);
      },
    });
    opened.push(provider);
    return provider;
  };

  /** The VaultError `promise` rejects with (its message recorded for the secrecy check). */
  const rejection = async (promise: Promise<unknown>): Promise<VaultError> => {
    const error = await promise.then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(VaultError);
    said.push((error as VaultError).message);
    return error as VaultError;
  };
  const thrown = (call: () => unknown): VaultError => {
    let caught: unknown;
    try {
      call();
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(VaultError);
    said.push((caught as VaultError).message);
    return caught as VaultError;
  };

  /** Reads attributes of a key through pkcs11js directly, beside the open providers (so no C_Finalize here). */
  const rawKey = <T>(label: string, read: (p11: pkcs11js.PKCS11, session: pkcs11js.Handle, key: pkcs11js.Handle) => T): T => {
    const p11 = new pkcs11js.PKCS11();
    p11.load(SOFTHSM_MODULE);
    try {
      p11.C_Initialize();
    } catch (error) {
      if (!(error instanceof pkcs11js.Pkcs11Error && error.code === pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED)) throw error;
    }
    const slot = p11.C_GetSlotList(true).find((candidate) => p11.C_GetTokenInfo(candidate).label.trim() === LABEL);
    if (slot === undefined) throw new Error('test token not found');
    const session = p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    try {
      try {
        p11.C_Login(session, pkcs11js.CKU_USER, PIN);
      } catch (error) {
        if (!(error instanceof pkcs11js.Pkcs11Error && error.code === pkcs11js.CKR_USER_ALREADY_LOGGED_IN)) throw error;
      }
      p11.C_FindObjectsInit(session, [{ type: pkcs11js.CKA_LABEL, value: label }]);
      const [key] = p11.C_FindObjects(session, 2);
      p11.C_FindObjectsFinal(session);
      if (key === undefined) throw new Error(`no key ${label}`);
      return read(p11, session, key);
    } finally {
      p11.C_CloseSession(session);
      p11.close();
    }
  };

  const tamper = (wrapped: WrappedKey, at: number): WrappedKey => {
    const bytes = Buffer.from(wrapped.wrapped, 'base64url');
    bytes[at] = (bytes[at] ?? 0) ^ 0x01;
    return { kekId: wrapped.kekId, wrapped: bytes.toString('base64url') };
  };

  beforeAll(async () => {
    token = createSoftHsmToken({ label: LABEL, pin: PIN });
    expect(await generatePkcs11Kek(token.uri('kek-1', `env:${PIN_VAR}`), { env })).toEqual({ kekId: 'pkcs11:kek-1' });
    expect(await generatePkcs11Kek(token.uri('kek-2'))).toEqual({ kekId: 'pkcs11:kek-2' });
  });

  afterEach(async () => {
    for (const provider of opened.splice(0)) await provider.close?.();
  });

  afterAll(() => {
    token?.restore();
    token?.cleanup();
    expect(said.length).toBeGreaterThan(10);
    for (const line of said) {
      expect(line).not.toContain(PIN);
      expect(line).not.toContain(WRONG_PIN);
      for (const dek of deks) {
        for (const text of [dek.toString('hex'), dek.toString('base64'), dek.toString('base64url')]) expect(line).not.toContain(text.slice(0, 12));
      }
    }
  });

  it('provisions a KEK once and opens a provider through a URI whose PIN comes from the environment', async () => {
    const again = await rejection(generatePkcs11Kek(token.uri('kek-1', `env:${PIN_VAR}`), { env }));
    expect(again.code).toBe('INVALID_CONFIGURATION');
    expect(again.message).toContain("already has an object labelled 'kek-1'");
    const provider = await open('kek-1');
    expect(provider.kind).toBe('pkcs11');
    expect(provider.primaryKekId).toBe('pkcs11:kek-1');
    expect(provider.hasKek('pkcs11:kek-1')).toBe(true);
    expect(provider.hasKek('pkcs11:kek-2')).toBe(true);
    expect(provider.hasKek('pkcs11:absent')).toBe(false);
    expect(provider.hasKek('local:kek-1')).toBe(false);
    expect(provider.hasKek('pkcs11:bad label')).toBe(false);
  });

  it('wraps and unwraps a data key on the token', async () => {
    const provider = await open('kek-1');
    const dek = newDek();
    const wrapped = await provider.wrap(dek, context);
    expect(wrapped.kekId).toBe('pkcs11:kek-1');
    expect(wrapped.wrapped).toMatch(/^[A-Za-z0-9_-]{80}$/);
    expect(await provider.unwrap(wrapped, context)).toEqual(dek);
    const again = await provider.wrap(dek, context);
    expect(again.wrapped).not.toBe(wrapped.wrapped);
    expect(await provider.unwrap(again, context)).toEqual(dek);
    expect((await rejection(provider.wrap(dek.subarray(1), context))).code).toBe('INTERNAL');
  });

  it('keeps the KEK on the token: sensitive, never extractable, its value unreadable', async () => {
    await open('kek-1');
    const flags = rawKey('kek-1', (p11, session, key) =>
      p11
        .C_GetAttributeValue(session, key, [
          { type: pkcs11js.CKA_TOKEN },
          { type: pkcs11js.CKA_PRIVATE },
          { type: pkcs11js.CKA_SENSITIVE },
          { type: pkcs11js.CKA_EXTRACTABLE },
          { type: pkcs11js.CKA_NEVER_EXTRACTABLE },
          { type: pkcs11js.CKA_WRAP },
        ])
        .map((attribute) => attribute.value[0]),
    );
    expect(flags).toEqual([1, 1, 1, 0, 1, 0]);
    const refused = rawKey('kek-1', (p11, session, key) => {
      try {
        p11.C_GetAttributeValue(session, key, [{ type: pkcs11js.CKA_VALUE }]);
        return 'readable';
      } catch (error) {
        return error instanceof pkcs11js.Pkcs11Error ? error.message : String(error);
      }
    });
    expect(refused).toBe('CKR_ATTRIBUTE_SENSITIVE');
  });

  it('fails an unwrap under another context, of tampered bytes or under another key with one opaque DECRYPTION_FAILED', async () => {
    const provider = await open('kek-1');
    const dek = newDek();
    const wrapped = await provider.wrap(dek, context);
    const failures: WrappedKey[] = [];
    const contexts: WrapContext[] = [
      { ...context, org: 'other' },
      { ...context, environment: 'test' },
      { ...context, accountId: 'acct-2' },
      { ...context, dekId: 'dek-2' },
    ];
    const errors: VaultError[] = [];
    for (const other of contexts) errors.push(await rejection(provider.unwrap(wrapped, other)));
    // IV, ciphertext and tag bytes.
    for (const at of [0, 11, 12, 30, 43, 44, 59]) failures.push(tamper(wrapped, at));
    failures.push({ kekId: wrapped.kekId, wrapped: wrapped.wrapped.slice(0, -4) });
    failures.push({ kekId: wrapped.kekId, wrapped: `${wrapped.wrapped}AAAA` });
    failures.push({ kekId: wrapped.kekId, wrapped: `${wrapped.wrapped.slice(0, 40)}+${wrapped.wrapped.slice(41)}` });
    // The last character's low bits are padding: a variant decoding to the same bytes is still refused.
    const last = wrapped.wrapped.at(-1) ?? 'A';
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    failures.push({ kekId: wrapped.kekId, wrapped: wrapped.wrapped.slice(0, -1) + alphabet[alphabet.indexOf(last) ^ 1] });
    failures.push({ kekId: 'pkcs11:kek-2', wrapped: wrapped.wrapped });
    failures.push({ kekId: 'pkcs11:absent', wrapped: wrapped.wrapped });
    failures.push({ kekId: 'local:kek-1', wrapped: wrapped.wrapped });
    for (const failure of failures) errors.push(await rejection(provider.unwrap(failure, context)));
    for (const error of errors) {
      expect(error.code).toBe('DECRYPTION_FAILED');
      expect(error.message).toBe(errors[0]?.message);
    }
    // None of those left the session with an operation active.
    expect(await provider.unwrap(wrapped, context)).toEqual(dek);
    expect(await provider.unwrap(await provider.wrap(dek, context), context)).toEqual(dek);
  });

  it('rotates between two token objects: the kek-2 provider unwraps what kek-1 wrapped and wraps under kek-2', async () => {
    const first = await open('kek-1');
    const dek = newDek();
    const old = await first.wrap(dek, context);
    const nextUri = formatPkcs11Uri(parsePkcs11Uri(token.uri('kek-1', `env:${PIN_VAR}`)), { object: 'kek-2' });
    const second = await openPkcs11KeyProvider(nextUri, { env, log: (line) => said.push(line) });
    expect(second.primaryKekId).toBe('pkcs11:kek-2');
    expect(second.hasKek('pkcs11:kek-1')).toBe(true);
    expect(second.hasKek('pkcs11:kek-2')).toBe(true);
    expect(await second.unwrap(old, context)).toEqual(dek);
    const rewrapped = await second.wrap(dek, context);
    expect(rewrapped.kekId).toBe('pkcs11:kek-2');
    expect(await second.unwrap(rewrapped, context)).toEqual(dek);
    // Closing one provider on the module leaves the other's session working.
    await second.close?.();
    expect(await first.unwrap(rewrapped, context)).toEqual(dek);
    expect(await first.unwrap(old, context)).toEqual(dek);
  });

  it('refuses a wrong PIN at open without naming it', async () => {
    const error = await rejection(openPkcs11KeyProvider(token.uri('kek-1', `env:${PIN_VAR}`), { env: { [PIN_VAR]: WRONG_PIN } }));
    expect(error.code).toBe('INVALID_CONFIGURATION');
    expect(error.message).toBe("PKCS#11 login to token 'credvault' refused: wrong PIN");
    const unset = await rejection(openPkcs11KeyProvider(token.uri('kek-1', `env:${PIN_VAR}`), { env: {} }));
    expect(unset.code).toBe('INVALID_CONFIGURATION');
    expect(unset.message).toContain(PIN_VAR);
  });

  it('refuses a missing key, token or module, and never creates the key', async () => {
    const missing = await rejection(openPkcs11KeyProvider(token.uri('kek-missing'), {}));
    expect(missing.code).toBe('INVALID_CONFIGURATION');
    expect(missing.message).toContain("has no secret key labelled 'kek-missing'");
    const noToken = await rejection(openPkcs11KeyProvider(token.uri('kek-1').replace('token=credvault', 'token=other'), {}));
    expect(noToken.code).toBe('INVALID_CONFIGURATION');
    expect(noToken.message).toContain("No PKCS#11 token labelled 'other'");
    const noModule = await rejection(openPkcs11KeyProvider(token.uri('kek-1').replace(SOFTHSM_MODULE, '/nonexistent/libpkcs11.so'), {}));
    expect(noModule.code).toBe('INVALID_CONFIGURATION');
    expect(noModule.message).toContain('/nonexistent/libpkcs11.so');
    const dir = mkdtempSync(join(tmpdir(), 'credvault-notamodule-'));
    try {
      const bogus = join(dir, 'bogus.so');
      writeFileSync(bogus, 'not a shared object');
      const notModule = await rejection(openPkcs11KeyProvider(token.uri('kek-1').replace(SOFTHSM_MODULE, bogus), {}));
      expect(notModule.code).toBe('INVALID_CONFIGURATION');
      expect(notModule.message).toContain(`PKCS#11 module ${bogus} could not be loaded`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const badLabel = await rejection(openPkcs11KeyProvider(token.uri('kek 1'), {}));
    expect(badLabel.code).toBe('INVALID_CONFIGURATION');
    const provider = await open('kek-1');
    expect(provider.hasKek('pkcs11:kek-missing')).toBe(false);
  });

  it('refuses a key that is not AES-256', async () => {
    const anchor = await open('kek-1');
    rawKey('kek-1', (p11, session) =>
      p11.C_GenerateKey(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
        { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
        { type: pkcs11js.CKA_VALUE_LEN, value: 16 },
        { type: pkcs11js.CKA_LABEL, value: 'kek-aes128' },
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_ENCRYPT, value: true },
        { type: pkcs11js.CKA_DECRYPT, value: true },
      ]),
    );
    const error = await rejection(openPkcs11KeyProvider(token.uri('kek-aes128'), {}));
    expect(error.code).toBe('INVALID_CONFIGURATION');
    expect(error.message).toContain('is not an AES-256 key');
    expect(anchor.hasKek('pkcs11:kek-aes128')).toBe(true);
  });

  it('answers STORE_UNAVAILABLE while the token is gone, says so once, and recovers by itself', async () => {
    const logs = new Map<string, string[]>();
    const logged = (name: string) => ({ log: (line: string) => logs.set(name, [...(logs.get(name) ?? []), line]) });
    const writer = await open('kek-1', logged('writer'));
    const tamperer = await open('kek-1', logged('tamperer'));
    const seeker = await open('kek-1', logged('seeker'));
    const asker = await open('kek-1', logged('asker'));
    const second = await open('kek-2');
    const dek = newDek();
    const old = await writer.wrap(dek, context);
    const oldUnderSecond = await second.wrap(dek, context);
    await second.close?.();

    token.hide();
    try {
      // Each provider's first call after the loss meets it in another way.
      expect((await rejection(writer.wrap(dek, context))).code).toBe('STORE_UNAVAILABLE');
      expect((await rejection(writer.unwrap(old, context))).code).toBe('STORE_UNAVAILABLE');
      const tampered = await rejection(tamperer.unwrap(tamper(old, 30), context));
      expect(tampered.code).toBe('STORE_UNAVAILABLE');
      expect(tampered.message).toMatch(/^The key-encryption key is unavailable \(PKCS#11: CKR_[A-Z_]+\)$/);
      // A key not looked up yet: the search finds nothing on the vanished token, which is not "absent".
      expect((await rejection(seeker.unwrap(oldUnderSecond, context))).code).toBe('STORE_UNAVAILABLE');
      expect(thrown(() => asker.hasKek('pkcs11:kek-2')).code).toBe('STORE_UNAVAILABLE');
      // Past the retry interval, a reconnect is tried, fails, and is not logged again.
      await sleep(300);
      expect((await rejection(writer.wrap(dek, context))).code).toBe('STORE_UNAVAILABLE');
      expect((await rejection(tamperer.unwrap(old, context))).code).toBe('STORE_UNAVAILABLE');
      for (const name of ['writer', 'tamperer', 'seeker', 'asker']) {
        const lines = logs.get(name) ?? [];
        expect(lines, name).toHaveLength(1);
        expect(lines[0]).toMatch(/^credvault: PKCS#11 token 'credvault' is unavailable \((CKR_[A-Z_]+)\)/);
      }
    } finally {
      token.restore();
    }

    await waitFor(async () => (await settle(() => writer.unwrap(old, context))).ok, 'the writer to reconnect');
    expect(await writer.unwrap(old, context)).toEqual(dek);
    const fresh = await writer.wrap(dek, context);
    expect(await writer.unwrap(fresh, context)).toEqual(dek);
    await waitFor(async () => (await settle(() => tamperer.unwrap(fresh, context))).ok, 'the tamperer to reconnect');
    expect((await rejection(tamperer.unwrap(tamper(old, 30), context))).code).toBe('DECRYPTION_FAILED');
    await waitFor(async () => (await settle(() => seeker.unwrap(oldUnderSecond, context))).ok, 'the seeker to reconnect');
    await waitFor(() => {
      try {
        return asker.hasKek('pkcs11:kek-2');
      } catch {
        return false;
      }
    }, 'the asker to reconnect');
    for (const name of ['writer', 'tamperer', 'seeker', 'asker']) {
      const lines = logs.get(name) ?? [];
      expect(lines, name).toHaveLength(2);
      expect(lines[1]).toBe("credvault: PKCS#11 token 'credvault' is available again");
    }
  });

  it('closes idempotently, and refuses calls afterwards', async () => {
    const provider = await open('kek-1');
    const dek = newDek();
    const wrapped = await provider.wrap(dek, context);
    await provider.close?.();
    await provider.close?.();
    expect((await rejection(provider.unwrap(wrapped, context))).code).toBe('STORE_UNAVAILABLE');
    expect((await rejection(provider.wrap(dek, context))).code).toBe('STORE_UNAVAILABLE');
    // The module is finalised and loads again for the next provider.
    const next = await open('kek-1');
    expect(await next.unwrap(wrapped, context)).toEqual(dek);
  });
});

import { createHook } from 'node:async_hooks';
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
import { settle, sleep, waitFor, type Settled } from '../helpers/wait.js';

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
      ...options,
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

  /**
   * Sessions open on the token in this process, counted through pkcs11js beside the providers
   * (one of them must be open). SoftHSM numbers sessions and objects from one counter and
   * never reuses a number, so a new probe session's handle, `probe`, bounds every handle given
   * out so far: the sessions opened between two counts are the difference of their probes less one.
   */
  const tokenSessions = (): { open: number; probe: bigint } => {
    const p11 = new pkcs11js.PKCS11();
    p11.load(SOFTHSM_MODULE);
    try {
      const slot = p11.C_GetSlotList(true).find((candidate) => p11.C_GetTokenInfo(candidate).label.trim() === LABEL);
      if (slot === undefined) throw new Error('test token not found');
      const probeSession = p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
      p11.C_CloseSession(probeSession);
      const probe = probeSession.readBigUInt64LE(0);
      const handle = Buffer.alloc(probeSession.length);
      let open = 0;
      for (let number = 1n; number < probe; number++) {
        handle.writeBigUInt64LE(number);
        try {
          p11.C_GetSessionInfo(handle);
          open += 1;
        } catch {
          // An object's number, or a session closed since.
        }
      }
      return { open, probe };
    } finally {
      p11.close();
    }
  };

  /**
   * Watches pkcs11js's thread-pool calls (async resources of type 'Worker': queued by the
   * binding, their callback run on the event loop once the token call is done): how many
   * there were, and the most queued or running at once.
   */
  const watchPoolCalls = () => {
    const pending = new Set<number>();
    let total = 0;
    let most = 0;
    const hook = createHook({
      init(id, type) {
        if (type !== 'Worker') return;
        pending.add(id);
        total += 1;
        most = Math.max(most, pending.size);
      },
      before(id) {
        pending.delete(id);
      },
    }).enable();
    return () => {
      hook.disable();
      return { total, most };
    };
  };

  /** Counts event-loop turns (a setImmediate chain) until the returned function is called. */
  const countTurns = () => {
    let turns = 0;
    let ticking = true;
    const tick = () => {
      if (!ticking) return;
      turns += 1;
      setImmediate(tick);
    };
    setImmediate(tick);
    return () => {
      ticking = false;
      return turns;
    };
  };

  /** `count` accounts, each with its context, a data key, and that key wrapped by `provider`. */
  const accounts = async (provider: KeyProvider, count: number) =>
    Promise.all(
      Array.from({ length: count }, async (_, n) => {
        const own: WrapContext = { ...context, accountId: `acct-burst-${n}`, dekId: `dek-burst-${n}` };
        const dek = newDek();
        return { context: own, dek, wrapped: await provider.wrap(dek, own) };
      }),
    );

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

  it('runs 200 wraps and unwraps at once on sessions of its own, on the thread pool: each gives its own answer', async () => {
    const provider = await open('kek-1', { sessions: 3 });
    const before = tokenSessions();
    const owned = await accounts(provider, 8);
    const rewrapped: Array<{ account: (typeof owned)[number]; wrapped: WrappedKey }> = [];
    const call = async (i: number): Promise<string> => {
      const account = owned[i % owned.length]!;
      if (i % 4 === 0) {
        rewrapped.push({ account, wrapped: await provider.wrap(account.dek, account.context) });
        return 'wrap';
      }
      if (i % 10 === 5) {
        // Another account's context: refused, while the calls around it succeed.
        const other = owned[(i + 1) % owned.length]!;
        expect((await rejection(provider.unwrap(account.wrapped, other.context))).code).toBe('DECRYPTION_FAILED');
        return 'wrong context';
      }
      expect(await provider.unwrap(account.wrapped, account.context)).toEqual(account.dek);
      return 'unwrap';
    };
    const poolCalls = watchPoolCalls();
    const turns = countTurns();
    const done = await Promise.all(Array.from({ length: 200 }, (_, i) => call(i)));
    const turnsDuring = turns();
    const pool = poolCalls();
    expect(done.filter((kind) => kind === 'wrap')).toHaveLength(50);
    expect(done.filter((kind) => kind === 'wrong context')).toHaveLength(20);
    expect(done.filter((kind) => kind === 'unwrap')).toHaveLength(130);
    // Every token call went to libuv's thread pool (synchronous calls would make none), and
    // three were out at once: the second and third began before the first was back.
    expect(pool).toEqual({ total: 200, most: 3 });
    // The event loop kept turning while the burst ran (synchronous calls would finish it in one turn).
    expect(turnsDuring).toBeGreaterThanOrEqual(20);
    // Three sessions opened for its calls (lazily: for the 8 first wraps), and no more: the same ones reused since.
    const after = tokenSessions();
    expect(after.open - before.open).toBe(3);
    expect(after.probe - before.probe - 1n).toBe(3n);

    // What the burst wrapped opens, all at once again, on the same sessions.
    const opened = await Promise.all(rewrapped.map(({ account, wrapped }) => provider.unwrap(wrapped, account.context)));
    opened.forEach((dek, n) => expect(dek).toEqual(rewrapped[n]?.account.dek));
    const later = tokenSessions();
    expect(later.open).toBe(after.open);
    expect(later.probe - after.probe - 1n).toBe(0n);
  });

  it('keeps to its bound of sessions: 4 by default, one call on the token at a time with sessions: 1; refuses a bad bound', async () => {
    for (const sessions of [0, -1, 1.5, 1025, Number.NaN]) {
      const error = await rejection(openPkcs11KeyProvider(token.uri('kek-1', `env:${PIN_VAR}`), { env, sessions }));
      expect(error.code).toBe('INVALID_CONFIGURATION');
      expect(error.message).toContain('sessions');
    }
    const single = await open('kek-1', { sessions: 1 });
    const owned = await accounts(single, 4);
    const before = tokenSessions();
    // Its login session and the one session its calls take turns on.
    expect(before.open).toBe(2);
    let poolCalls = watchPoolCalls();
    await Promise.all(Array.from({ length: 60 }, async (_, i) => {
      const account = owned[i % owned.length]!;
      expect(await single.unwrap(account.wrapped, account.context)).toEqual(account.dek);
    }));
    expect(poolCalls()).toEqual({ total: 60, most: 1 });
    const after = tokenSessions();
    expect(after.open).toBe(2);
    expect(after.probe - before.probe - 1n).toBe(0n);
    await single.close?.();

    const byDefault = await open('kek-1');
    poolCalls = watchPoolCalls();
    await Promise.all(Array.from({ length: 60 }, async (_, i) => {
      const account = owned[i % owned.length]!;
      expect(await byDefault.unwrap(account.wrapped, account.context)).toEqual(account.dek);
    }));
    expect(poolCalls()).toEqual({ total: 60, most: 4 });
    expect(tokenSessions().open).toBe(5);
  });

  it('answers STORE_UNAVAILABLE, never DECRYPTION_FAILED, to the calls of a burst the token vanishes under, says so once, and recovers', async () => {
    const lines: string[] = [];
    const provider = await open('kek-1', { log: (line) => lines.push(line) });
    const owned = await accounts(provider, 8);
    type Outcome = { account: (typeof owned)[number]; wrap: boolean; result: Settled<WrappedKey | Buffer> };
    let settled = 0;
    const burst = (onSettled: () => void): Promise<Outcome[]> =>
      Promise.all(
        Array.from({ length: 200 }, async (_, i) => {
          const account = owned[i % owned.length]!;
          const wrap = i % 3 === 0;
          const result = await settle(async () => {
            try {
              return wrap ? await provider.wrap(account.dek, account.context) : await provider.unwrap(account.wrapped, account.context);
            } finally {
              onSettled();
            }
          });
          return { account, wrap, result };
        }),
      );
    const check = async (outcomes: Outcome[]): Promise<number> => {
      let ok = 0;
      for (const { account, wrap, result } of outcomes) {
        if (!result.ok) {
          expect(result.error).toBe('VaultError STORE_UNAVAILABLE');
          continue;
        }
        ok += 1;
        if (wrap) expect(await provider.unwrap(result.value as WrappedKey, account.context)).toEqual(account.dek);
        else expect(result.value).toEqual(account.dek);
      }
      return ok;
    };

    let outcomes: Outcome[];
    try {
      outcomes = await burst(() => {
        settled += 1;
        if (settled === 20) token.hide();
      });
    } finally {
      token.restore();
    }
    const failed = outcomes.filter(({ result }) => !result.ok);
    // The calls settled before the token went succeeded; those after it failed, each STORE_UNAVAILABLE (checked after recovery).
    expect(outcomes.length - failed.length).toBeGreaterThanOrEqual(20);
    expect(failed.length).toBeGreaterThanOrEqual(170);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^credvault: PKCS#11 token 'credvault' is unavailable \(CKR_[A-Z_]+\)/);

    const [first] = owned;
    await waitFor(async () => (await settle(() => provider.unwrap(first!.wrapped, first!.context))).ok, 'the provider to reconnect');
    expect(await check(outcomes)).toBe(outcomes.length - failed.length);
    expect(await check(await burst(() => undefined))).toBe(200);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toBe("credvault: PKCS#11 token 'credvault' is available again");
    // The sessions of before the loss are gone; a login session and 4 for calls again.
    expect(tokenSessions().open).toBe(5);
  });

  it('close() during a burst waits for the calls on the token, refuses the waiting ones and later calls with STORE_UNAVAILABLE, and closes every session', async () => {
    const anchor = await open('kek-1');
    const base = tokenSessions().open;
    const lines: string[] = [];
    const provider = await open('kek-1', { log: (line) => lines.push(line) });
    const owned = await accounts(provider, 8);
    expect(tokenSessions().open).toBe(base + 1 + 4);
    let settledCount = 0;
    let closing: Promise<void> | undefined;
    let settledAtClose: number | undefined;
    let sessionsAtClose: number | undefined;
    const outcomes = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const account = owned[i % owned.length]!;
        const result = await settle(async () => {
          try {
            return await provider.unwrap(account.wrapped, account.context);
          } finally {
            settledCount += 1;
            if (settledCount === 20) {
              closing = provider.close?.();
              void closing?.then(() => {
                settledAtClose = settledCount;
                sessionsAtClose = tokenSessions().open;
              });
            }
          }
        });
        return { account, result };
      }),
    );
    await closing;
    // When close resolved, every call had settled and every session of the provider was closed.
    expect(settledAtClose).toBe(200);
    expect(sessionsAtClose).toBe(base);
    let ok = 0;
    for (const { account, result } of outcomes) {
      if (result.ok) {
        ok += 1;
        expect(result.value).toEqual(account.dek);
      } else {
        expect(result.error).toBe('VaultError STORE_UNAVAILABLE');
      }
    }
    expect(ok).toBeGreaterThanOrEqual(20);
    expect(ok).toBeLessThan(200);
    const [first] = owned;
    expect((await rejection(provider.unwrap(first!.wrapped, first!.context))).code).toBe('STORE_UNAVAILABLE');
    expect((await rejection(provider.wrap(first!.dek, first!.context))).code).toBe('STORE_UNAVAILABLE');
    await provider.close?.();
    // Closing is no outage; and the module, still used by the anchor, was not finalised.
    expect(lines).toEqual([]);
    expect(await anchor.unwrap(first!.wrapped, first!.context)).toEqual(first!.dek);
  });

  it('keeps its calls on the event loop when other code of the process initialised the module first, its locking unknown', async () => {
    // Every provider of the earlier tests is closed, so the library is finalised: initialise it as other code might, with no locking.
    const foreign = new pkcs11js.PKCS11();
    foreign.load(SOFTHSM_MODULE);
    foreign.C_Initialize();
    try {
      const provider = await open('kek-1');
      const owned = await accounts(provider, 4);
      const poolCalls = watchPoolCalls();
      await Promise.all(
        Array.from({ length: 40 }, async (_, i) => {
          const account = owned[i % owned.length]!;
          expect(await provider.unwrap(account.wrapped, account.context)).toEqual(account.dek);
        }),
      );
      expect(poolCalls().total).toBe(0);
      await provider.close?.();
    } finally {
      foreign.close();
    }
  });
});

import { afterEach, expect, it } from 'vitest';
import {
  createApiKey,
  createLinkedAccount,
  createVault,
  getDefaultAppCredential,
  issueSessionToken,
  rotateKeys,
  upsertDefaultAppCredential,
  verifySessionToken,
  VaultError,
  type Vault,
  type VaultOptions,
} from '../../src/index.js';
import {
  accountGroup,
  CREDENTIAL_PREFIX,
  credentialMember,
  SESSION_PREFIX,
  unescapeComponent,
  type AccountRef,
} from '../../src/core/layout.js';
import { backendSuites, createBackend, keyEntry, marker, wrapStore, type Backend } from './helpers.js';

const X: AccountRef = { org: 'acme', environment: 'test', accountId: 'cust-x' };
const Y: AccountRef = { org: 'acme', environment: 'production', accountId: 'cust/y:1' };

async function rejection(promise: Promise<unknown>): Promise<VaultError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(VaultError);
  return error as VaultError;
}

for (const suite of await backendSuites(['sqlite', 'redis', 'postgres'])) {
  suite.describe(`keyring refusal and rotation: ${suite.kind}`, () => {
    const backends: Backend[] = [];
    const fresh = async () => {
      const backend = await createBackend(suite.kind);
      backends.push(backend);
      return backend;
    };
    const open = (backend: Backend, keys: string, extra: Partial<VaultOptions> = {}) =>
      createVault({ store: backend.openStore(), keys, log: () => undefined, ...extra });

    afterEach(async () => {
      await Promise.all(backends.splice(0).map((b) => b.cleanup()));
    });

    /** Every credential and session record of an account, with the key id its sealed value names. */
    async function sealedKeyIds(backend: Backend, vault: Vault, ref: AccountRef): Promise<string[]> {
      const group = accountGroup(ref);
      const ids: string[] = [];
      for (const { member } of await vault.store.list(group)) {
        if (!member.startsWith(CREDENTIAL_PREFIX) && !member.startsWith(SESSION_PREFIX)) continue;
        let sealed = (await backend.readSealed(group, member)) as string;
        if (member.startsWith(SESSION_PREFIX)) sealed = (JSON.parse(sealed) as { sealed: string }).sealed;
        ids.push(sealed.split('.')[1] as string);
      }
      return ids;
    }

    it('refuses to open with keys that cannot open the store (missing id, same id with other material), in one line naming key ids only, and writes nothing', async () => {
      const backend = await fresh();
      const A = keyEntry('kA');
      const B = keyEntry('kB');
      const A2 = { ...keyEntry('kA') };
      const secret = marker('secret');
      const vault = await open(backend, A.entry);
      const { apiKey: api_key } = await createApiKey(vault, { org: 'acme', environment: 'test' });
      await createLinkedAccount(vault, X, { credentials: { api_key: secret } });
      const { token } = await issueSessionToken(vault, X);
      const before = await backend.rawRecords();
      expect(before.length).toBeGreaterThan(0);

      const attempts = [
        { keys: B.entry, says: /kA/ },
        { keys: A2.entry, says: /kA/ },
        { keys: `${B.entry},${A2.entry}`, says: /kA/ },
        { keys: `${A2.entry},${B.entry}`, says: /kA/ },
      ];
      for (const { keys, says } of attempts) {
        const error = await rejection(open(backend, keys));
        expect(error.code, keys.replace(/:[^,]*/g, ':***')).toBe('KEYRING_MISMATCH');
        expect(error.message).not.toContain('\n');
        expect(error.message).toMatch(says);
        for (const leak of [A.material, B.material, A2.material, secret, api_key, token]) {
          expect(error.message).not.toContain(leak);
        }
        expect(await backend.rawRecords()).toEqual(before);
      }
      // The right keys still open everything.
      const again = await open(backend, A.entry);
      expect(await getDefaultAppCredential(again, X, 'api_key')).toBe(secret);
      expect((await verifySessionToken(again, token)).accountId).toBe(X.accountId);
      expect(await backend.rawRecords()).toEqual(before);
    });

    it('rotates everything sealed under A to B, counts what it did, is idempotent, and afterwards B alone opens the store and A alone is refused', async () => {
      const backend = await fresh();
      const A = keyEntry('kA');
      const B = keyEntry('kB');
      const expected = new Map<string, string>(); // `${accountId} ${key}` -> value
      const remember = (ref: AccountRef, key: string, value: string) => expected.set(`${ref.accountId} ${key}`, value);

      const va = await open(backend, A.entry);
      const underA: Record<string, string> = { api_key: marker('xa1'), client_secret: marker('xa2'), __proto__x: marker('xa3') };
      await createLinkedAccount(va, X, { credentials: underA });
      for (const [k, v] of Object.entries(underA)) remember(X, k, v);
      await createLinkedAccount(va, Y, { credentials: { api_key: marker('ya1'), 'unicode.key': 'пароль-🔑' } });
      remember(Y, 'api_key', (await getDefaultAppCredential(va, Y, 'api_key')) as string);
      remember(Y, 'unicode.key', 'пароль-🔑');
      const tokenX = (await issueSessionToken(va, X)).token;
      const tokenY = (await issueSessionToken(va, Y)).token;
      const sealedUnderA = 5 + 2;

      const vb = await open(backend, `${B.entry},${A.entry}`);
      for (const key of ['new_one', 'new_two']) {
        const value = marker(key);
        await upsertDefaultAppCredential(vb, X, key, value);
        remember(X, key, value);
      }
      const yNew = marker('y-new');
      await upsertDefaultAppCredential(vb, Y, 'y_new', yNew);
      remember(Y, 'y_new', yNew);
      const tokenX2 = (await issueSessionToken(vb, X, { forceRefresh: true })).token;
      const sealedUnderB = 3 + 1;
      expect(new Set([...(await sealedKeyIds(backend, vb, X)), ...(await sealedKeyIds(backend, vb, Y))])).toEqual(new Set(['kA', 'kB']));

      const progress: number[] = [];
      const first = await rotateKeys(vb, { batchSize: 3, onProgress: (n) => progress.push(n) });
      expect(first).toEqual({ resealed: sealedUnderA, alreadyCurrent: sealedUnderB });
      expect(progress.length).toBeGreaterThan(1);

      const readsEverything = async (vault: Vault) => {
        for (const [where, value] of expected) {
          const [accountId, key] = where.split(' ') as [string, string];
          const ref = accountId === X.accountId ? X : Y;
          expect(await getDefaultAppCredential(vault, ref, key), where).toBe(value);
        }
        for (const token of [tokenX, tokenY, tokenX2]) await verifySessionToken(vault, token);
        // A still-valid token is handed out again: its sealed copy opens under the new key.
        expect((await issueSessionToken(vault, Y)).token).toBe(tokenY);
      };
      await readsEverything(vb);
      expect(new Set([...(await sealedKeyIds(backend, vb, X)), ...(await sealedKeyIds(backend, vb, Y))])).toEqual(new Set(['kB']));

      expect(await rotateKeys(vb)).toEqual({ resealed: 0, alreadyCurrent: sealedUnderA + sealedUnderB });

      const onlyB = await open(backend, B.entry);
      await readsEverything(onlyB);
      const refused = await rejection(open(backend, A.entry));
      expect(refused.code).toBe('KEYRING_MISMATCH');
      expect(refused.message).not.toContain('\n');
      expect(refused.message).toMatch(/kB/);
      expect(refused.message).not.toContain(A.material);
      expect(refused.message).not.toContain(B.material);
    });

    it('an interrupted rotation leaves the old key required, and a second run completes with the remaining count', async () => {
      const backend = await fresh();
      const A = keyEntry('kA');
      const B = keyEntry('kB');
      const va = await open(backend, A.entry);
      const values: Record<string, string> = {};
      for (let i = 0; i < 6; i++) values[`key_${i}`] = marker(`v${i}`);
      await createLinkedAccount(va, X, { credentials: values });
      const { token } = await issueSessionToken(va, X);
      const total = 6 + 1;

      const K = 3;
      let replaced = 0;
      const failing = wrapStore(backend.openStore(), {
        async replace(_args, forward) {
          if (replaced >= K) throw new Error('connection reset by peer');
          const ok = await forward();
          if (ok) replaced += 1;
          return ok;
        },
      });
      const broken = await createVault({ store: failing, keys: `${B.entry},${A.entry}`, log: () => undefined });
      const error = await rejection(rotateKeys(broken, { batchSize: 2 }));
      expect(error.code).toBe('STORE_UNAVAILABLE');
      expect(error.message).not.toMatch(/connection reset/);
      expect(replaced).toBe(K);

      // Half done: the old key is still needed, and the store says so.
      expect((await rejection(open(backend, B.entry))).code).toBe('KEYRING_MISMATCH');

      const vb = await open(backend, `${B.entry},${A.entry}`);
      expect(await rotateKeys(vb, { batchSize: 2 })).toEqual({ resealed: total - K, alreadyCurrent: K });
      const onlyB = await open(backend, B.entry);
      for (const [key, value] of Object.entries(values)) expect(await getDefaultAppCredential(onlyB, X, key)).toBe(value);
      expect((await issueSessionToken(onlyB, X)).token).toBe(token);
    });

    for (const writer of ['a process already on the new keys', 'a process still on the old key alone'] as const) {
      it(`a credential written by ${writer} while rotation re-seals that very record is not lost`, async () => {
        const backend = await fresh();
        const A = keyEntry('kA');
        const B = keyEntry('kB');
        const va = await open(backend, A.entry);
        const values: Record<string, string> = { one: marker('one'), two: marker('two'), three: marker('three'), four: marker('four') };
        await createLinkedAccount(va, X, { credentials: values });
        // The old-key process opened before the new key existed, and is still running.
        const concurrent = writer === 'a process still on the old key alone' ? va : await open(backend, `${B.entry},${A.entry}`);

        const newer = marker('newer');
        let raced: string | undefined;
        const racing = wrapStore(backend.openStore(), {
          async replace([group, member], forward) {
            if (raced === undefined && group === accountGroup(X) && member.startsWith(CREDENTIAL_PREFIX)) {
              raced = unescapeComponent(member.slice(CREDENTIAL_PREFIX.length));
              await upsertDefaultAppCredential(concurrent, X, raced, newer);
            }
            return forward();
          },
        });
        const rotating = await createVault({ store: racing, keys: `${B.entry},${A.entry}`, log: () => undefined });
        const result = await rotateKeys(rotating);
        expect(raced).toBeDefined();
        expect(result.resealed + result.alreadyCurrent).toBe(4);
        if (writer === 'a process already on the new keys') expect(result).toEqual({ resealed: 3, alreadyCurrent: 1 });
        else expect(result).toEqual({ resealed: 4, alreadyCurrent: 0 });

        const onlyB = await open(backend, B.entry);
        for (const [key, value] of Object.entries(values)) {
          expect(await getDefaultAppCredential(onlyB, X, key), key).toBe(key === raced ? newer : value);
        }
        expect((await backend.readSealed(accountGroup(X), credentialMember(raced as string)))?.split('.')[1]).toBe('kB');
        expect(await rotateKeys(onlyB)).toEqual({ resealed: 0, alreadyCurrent: 4 });
      });
    }

    it('a record sealed under the old key after the first pass is caught by the verifying pass before the old key is retired', async () => {
      const backend = await fresh();
      const A = keyEntry('kA');
      const B = keyEntry('kB');
      const va = await open(backend, A.entry);
      const values: Record<string, string> = { one: marker('one'), two: marker('two') };
      await createLinkedAccount(va, X, { credentials: values });
      const three = marker('three');
      await createLinkedAccount(va, Y, { credentials: { three } });
      // A server still on the old key alone writes once the first pass has done its work.
      const late = marker('late');
      let replaces = 0;
      const hooked = wrapStore(backend.openStore(), {
        async replace(_args, forward) {
          const ok = await forward();
          replaces += 1;
          if (replaces === 3) await upsertDefaultAppCredential(va, X, 'late', late);
          return ok;
        },
      });
      const rotating = await createVault({ store: hooked, keys: `${B.entry},${A.entry}`, log: () => undefined });
      const result = await rotateKeys(rotating);
      expect(result.resealed).toBe(4);
      const onlyB = await open(backend, B.entry);
      expect(await getDefaultAppCredential(onlyB, X, 'late')).toBe(late);
      expect(await getDefaultAppCredential(onlyB, Y, 'three')).toBe(three);
      for (const [key, value] of Object.entries(values)) expect(await getDefaultAppCredential(onlyB, X, key)).toBe(value);
      expect((await sealedKeyIds(backend, onlyB, X)).every((id) => id === 'kB')).toBe(true);
    });

    it('a record no key opens is named, nothing is retired, and the old key stays required', async () => {
      const backend = await fresh();
      const A = keyEntry('kA');
      const B = keyEntry('kB');
      const va = await open(backend, A.entry);
      await createLinkedAccount(va, X, { credentials: { good: marker('good'), bad: marker('bad') } });
      const sealed = (await backend.readSealed(accountGroup(X), credentialMember('bad'))) as string;
      // Flip one character of the ciphertext: the tag no longer matches.
      const parts = sealed.split('.');
      const body = parts[3] as string;
      parts[3] = (body[0] === 'A' ? 'B' : 'A') + body.slice(1);
      await backend.writeSealed(accountGroup(X), credentialMember('bad'), parts.join('.'));
      const vb = await open(backend, `${B.entry},${A.entry}`);
      const error = await rejection(rotateKeys(vb));
      expect(error.code).toBe('ROTATION_INCOMPLETE');
      expect(error.message).toContain('acme/test/cust-x cred:bad (unreadable)');
      expect(error.message).not.toContain(sealed);
      // The good record moved to B, but A's canary stays, so B alone is still refused.
      expect((await backend.readSealed(accountGroup(X), credentialMember('good')))?.split('.')[1]).toBe('kB');
      expect((await rejection(open(backend, B.entry))).code).toBe('KEYRING_MISMATCH');
    });

    it('two servers with different keys starting at once on a fresh store never both start', async () => {
      for (let trial = 0; trial < 15; trial++) {
        const backend = await fresh();
        const A = keyEntry('kA');
        const B = keyEntry('kB');
        const outcomes = await Promise.allSettled([open(backend, A.entry), open(backend, B.entry)]);
        const started = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
        for (const o of outcomes) {
          if (o.status === 'rejected') expect((o.reason as VaultError).code).toBe('KEYRING_MISMATCH');
        }
        expect(started.length).toBeLessThanOrEqual(1);
        // Whoever started owns the store; the other key is refused from now on.
        const winner = started[0];
        if (winner !== undefined) {
          const loser = winner.keyring.primary.id === 'kA' ? B : A;
          expect((await rejection(open(backend, loser.entry))).code).toBe('KEYRING_MISMATCH');
        }
        await Promise.all(started.map((vault) => vault.close()));
      }
    });
  });
}

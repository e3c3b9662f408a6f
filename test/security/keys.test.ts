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
import { accountGroup, CREDENTIAL_PREFIX, DATA_KEY, SESSION_PREFIX, type AccountRef } from '../../src/core/layout.js';
import { parseDataKeyRecord } from '../../src/core/data-keys.js';
import { backendSuites, createBackend, keyEntry, marker, wrapStore, type Backend } from './helpers.js';
import { rejection } from '../helpers/rejection.js';

const X: AccountRef = { org: 'acme', environment: 'test', accountId: 'cust-x' };
const Y: AccountRef = { org: 'acme', environment: 'production', accountId: 'cust/y:1' };

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

    /** The KEK ids that wrap each of these accounts' data keys. */
    async function kekIds(vault: Vault, refs: readonly AccountRef[]): Promise<Set<string>> {
      const ids = new Set<string>();
      for (const ref of refs) {
        const record = parseDataKeyRecord((await vault.store.get(accountGroup(ref), DATA_KEY))?.value as string);
        for (const key of record?.keys ?? []) ids.add(key.kek);
      }
      return ids;
    }

    /** Every credential and session value of an account is sealed under its data key (cv2). */
    async function allUnderDataKeys(backend: Backend, vault: Vault, ref: AccountRef): Promise<boolean> {
      const group = accountGroup(ref);
      for (const { member } of await vault.store.list(group)) {
        if (!member.startsWith(CREDENTIAL_PREFIX) && !member.startsWith(SESSION_PREFIX)) continue;
        let sealed = (await backend.readSealed(group, member)) as string;
        if (member.startsWith(SESSION_PREFIX)) sealed = (JSON.parse(sealed) as { sealed: string }).sealed;
        if (!sealed.startsWith('cv2.')) return false;
      }
      return true;
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

    it('rotates everything under A to B by re-wrapping one data key per account, counts what it did, is idempotent, and afterwards B alone opens the store and A alone is refused', async () => {
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
      // 8 credentials and 3 session tokens, all under their account's data key; both keys wrapped by A.
      const values = 8 + 3;
      expect(await kekIds(vb, [X, Y])).toEqual(new Set(['local:kA']));

      const progress: number[] = [];
      const first = await rotateKeys(vb, { batchSize: 3, onProgress: (n) => progress.push(n) });
      expect(first).toEqual({ rewrapped: 2, resealed: 0, alreadyCurrent: values });
      expect(progress.length).toBeGreaterThan(1);

      const readsEverything = async (vault: Vault) => {
        for (const [where, value] of expected) {
          const [accountId, key] = where.split(' ') as [string, string];
          const ref = accountId === X.accountId ? X : Y;
          expect(await getDefaultAppCredential(vault, ref, key), where).toBe(value);
        }
        for (const token of [tokenX, tokenY, tokenX2]) await verifySessionToken(vault, token);
        // A still-valid token is handed out again: its sealed copy opens under the re-wrapped key.
        expect((await issueSessionToken(vault, Y)).token).toBe(tokenY);
      };
      await readsEverything(vb);
      expect(await kekIds(vb, [X, Y])).toEqual(new Set(['local:kB']));
      expect((await allUnderDataKeys(backend, vb, X)) && (await allUnderDataKeys(backend, vb, Y))).toBe(true);

      expect(await rotateKeys(vb)).toEqual({ rewrapped: 0, resealed: 0, alreadyCurrent: values + 2 });

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
      const accounts = Array.from({ length: 6 }, (_, i): AccountRef => ({ ...X, accountId: `cust-${i}` }));
      const values = new Map(accounts.map((ref) => [ref.accountId, marker(ref.accountId)]));
      for (const ref of accounts) await createLinkedAccount(va, ref, { credentials: { api_key: values.get(ref.accountId) as string } });
      const { token } = await issueSessionToken(va, accounts[0] as AccountRef);

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
      // The other 3 keys are re-wrapped now; the 3 done before and the 7 values were current.
      expect(await rotateKeys(vb, { batchSize: 2 })).toEqual({ rewrapped: accounts.length - K, resealed: 0, alreadyCurrent: K + accounts.length + 1 });
      const onlyB = await open(backend, B.entry);
      for (const ref of accounts) expect(await getDefaultAppCredential(onlyB, ref, 'api_key')).toBe(values.get(ref.accountId));
      expect((await issueSessionToken(onlyB, accounts[0] as AccountRef)).token).toBe(token);
    });

    for (const writer of ['a process already on the new keys', 'a process still on the old key alone'] as const) {
      it(`a credential written by ${writer} while rotation re-wraps its account's data key is not lost`, async () => {
        const backend = await fresh();
        const A = keyEntry('kA');
        const B = keyEntry('kB');
        const va = await open(backend, A.entry);
        const values: Record<string, string> = { one: marker('one'), two: marker('two'), three: marker('three'), four: marker('four') };
        await createLinkedAccount(va, X, { credentials: values });
        // The old-key process opened before the new key existed, and is still running (its data key cached).
        const concurrent = writer === 'a process still on the old key alone' ? va : await open(backend, `${B.entry},${A.entry}`);

        const newer = marker('newer');
        let raced = false;
        const racing = wrapStore(backend.openStore(), {
          async replace([group, member], forward) {
            if (!raced && group === accountGroup(X) && member === DATA_KEY) {
              raced = true;
              await upsertDefaultAppCredential(concurrent, X, 'one', newer);
            }
            return forward();
          },
        });
        const rotating = await createVault({ store: racing, keys: `${B.entry},${A.entry}`, log: () => undefined });
        const result = await rotateKeys(rotating);
        expect(raced).toBe(true);
        expect(result).toEqual({ rewrapped: 1, resealed: 0, alreadyCurrent: 4 });

        const onlyB = await open(backend, B.entry);
        for (const [key, value] of Object.entries(values)) {
          expect(await getDefaultAppCredential(onlyB, X, key), key).toBe(key === 'one' ? newer : value);
        }
        expect(await kekIds(onlyB, [X])).toEqual(new Set(['local:kB']));
        expect(await rotateKeys(onlyB)).toEqual({ rewrapped: 0, resealed: 0, alreadyCurrent: 5 });
      });
    }

    it('an account created under the old key after the first pass is caught by the verifying pass before the old key is retired', async () => {
      const backend = await fresh();
      const A = keyEntry('kA');
      const B = keyEntry('kB');
      const va = await open(backend, A.entry);
      const values: Record<string, string> = { one: marker('one'), two: marker('two') };
      await createLinkedAccount(va, X, { credentials: values });
      const three = marker('three');
      await createLinkedAccount(va, Y, { credentials: { three } });
      // A server still on the old key alone creates an account once the first pass has re-wrapped both keys.
      const Z: AccountRef = { ...X, accountId: 'cust-z' };
      const late = marker('late');
      let replaces = 0;
      const hooked = wrapStore(backend.openStore(), {
        async replace(_args, forward) {
          const ok = await forward();
          replaces += 1;
          if (replaces === 2) await createLinkedAccount(va, Z, { credentials: { late } });
          return ok;
        },
      });
      const rotating = await createVault({ store: hooked, keys: `${B.entry},${A.entry}`, log: () => undefined });
      const result = await rotateKeys(rotating);
      expect(result.rewrapped).toBe(3);
      const onlyB = await open(backend, B.entry);
      expect(await getDefaultAppCredential(onlyB, Z, 'late')).toBe(late);
      expect(await getDefaultAppCredential(onlyB, Y, 'three')).toBe(three);
      for (const [key, value] of Object.entries(values)) expect(await getDefaultAppCredential(onlyB, X, key)).toBe(value);
      expect(await kekIds(onlyB, [X, Y, Z])).toEqual(new Set(['local:kB']));
    });

    it('a data key no KEK unwraps is named, nothing is retired, and the old key stays required', async () => {
      const backend = await fresh();
      const A = keyEntry('kA');
      const B = keyEntry('kB');
      const va = await open(backend, A.entry);
      await createLinkedAccount(va, X, { credentials: { bad: marker('bad') } });
      await createLinkedAccount(va, Y, { credentials: { good: marker('good') } });
      // Flip one character of X's wrapped data key: its tag no longer matches.
      const stored = (await va.store.get(accountGroup(X), DATA_KEY))?.value as string;
      const record = JSON.parse(stored) as { v: number; keys: Array<{ id: string; kek: string; wrapped: string }> };
      const key = record.keys[0] as { wrapped: string };
      key.wrapped = (key.wrapped[0] === 'A' ? 'B' : 'A') + key.wrapped.slice(1);
      await va.store.put(accountGroup(X), DATA_KEY, JSON.stringify(record));
      const vb = await open(backend, `${B.entry},${A.entry}`);
      const error = await rejection(rotateKeys(vb));
      expect(error.code).toBe('ROTATION_INCOMPLETE');
      expect(error.message).toContain('acme/test/cust-x dek (unreadable)');
      expect(error.message).not.toContain(key.wrapped);
      // Y's key moved to B, but A's canary stays, so B alone is still refused.
      expect(await kekIds(vb, [Y])).toEqual(new Set(['local:kB']));
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

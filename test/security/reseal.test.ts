/**
 * `keys rotate --reseal` and the write fence, on every store: a reseal gives each account a
 * new data key, moves every value onto it and destroys the old key (a copy of an old
 * ciphertext never opens again); a reseal cut off is finished by the next rotation without
 * re-keying what it already moved; a write sealed under a key that was destroyed meanwhile
 * (by a reseal, or by the account's deletion and recreation) never lands, and is sealed again
 * under the key now current.
 */
import { afterEach, beforeEach, expect, it } from 'vitest';
import {
  createLinkedAccount,
  createVault,
  deleteLinkedAccount,
  getDefaultAppCredential,
  issueSessionToken,
  rotateKeys,
  upsertDefaultAppCredential,
  upsertLinkedAccount,
  VaultError,
  verifySessionToken,
  type Vault,
  type VaultStore,
} from '../../src/index.js';
import { accountGroup, CREDENTIAL_PREFIX, credentialMember, DATA_KEY, META_GROUP, RESEAL_RUN, SESSION_PREFIX, type AccountRef } from '../../src/core/layout.js';
import { parseDataKeyRecord, type StoredDataKey } from '../../src/core/data-keys.js';
import { sealedHeader } from '../../src/crypto/cipher.js';
import { backendSuites, createBackend, keyEntry, marker, wrapStore, type Backend } from './helpers.js';
import { rejection } from '../helpers/rejection.js';

const A: AccountRef = { org: 'acme', environment: 'test', accountId: 'cust-a' };

/** The account's stored data keys, current first. */
async function storedKeys(vault: Vault, ref: AccountRef): Promise<readonly StoredDataKey[]> {
  const raw = (await vault.store.get(accountGroup(ref), DATA_KEY))?.value;
  expect(raw).toBeDefined();
  const record = parseDataKeyRecord(raw as string);
  expect(record).toBeDefined();
  return record?.keys ?? [];
}

/** The data key id every sealed value of the account names (credentials and session-token copies). */
async function sealingIds(vault: Vault, ref: AccountRef): Promise<Set<string>> {
  const ids = new Set<string>();
  for (const { member, entry } of await vault.store.list(accountGroup(ref))) {
    if (!member.startsWith(CREDENTIAL_PREFIX) && !member.startsWith(SESSION_PREFIX)) continue;
    const sealed = member.startsWith(SESSION_PREFIX) ? (JSON.parse(entry.value) as { sealed: string }).sealed : entry.value;
    const header = sealedHeader(sealed);
    ids.add(`${header?.version}:${header?.keyId}`);
  }
  return ids;
}

/** A promise with its resolver, to hold a store call until the test lets it go. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((resolve) => (open = resolve));
  return { wait, open };
}

/**
 * `inner` with the first `count` writes (puts or batches) on `group` held until `release()`:
 * a writer that has read its data key record and sealed, stopped just before its write.
 * `reached` resolves once all of them are held.
 */
function holdingWrites(inner: VaultStore, group: string, count = 1) {
  const held = gate();
  const reached = gate();
  let holding = count;
  const hold = async <T>(target: string, forward: () => Promise<T>): Promise<T> => {
    if (holding > 0 && target === group) {
      holding -= 1;
      if (holding === 0) reached.open();
      await held.wait;
    }
    return forward();
  };
  const store = wrapStore(inner, {
    put: (args, forward) => hold(args[0], forward),
    batch: (args, forward) => hold(args[0], forward),
  });
  return { store, reached: reached.wait, release: held.open };
}

for (const suite of await backendSuites()) {
  suite.describe(`reseal and the write fence: ${suite.kind}`, () => {
    let backend: Backend;
    let vault: Vault;
    const k1 = keyEntry('k1');
    const opened: Vault[] = [];
    /** A store over the backend's data that a vault may close (the memory store is one object: its close would erase the data). */
    const openStore = (): VaultStore => {
      const store = backend.openStore();
      if (suite.kind !== 'memory') return store;
      return new Proxy(store, { get: (target, prop) => (prop === 'close' ? async () => undefined : (Reflect.get(target, prop) as unknown)) });
    };
    const open = async (store: VaultStore = openStore()) => {
      const v = await createVault({ store, keys: k1.entry, log: () => undefined });
      opened.push(v);
      return v;
    };

    beforeEach(async () => {
      backend = await createBackend(suite.kind);
      vault = await open();
    });
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((v) => v.close().catch(() => undefined)));
      await backend?.cleanup();
    });

    it('gives every account a new data key, moves every value onto it, destroys the old one, and a copied old ciphertext no longer opens', async () => {
      const accounts = Array.from({ length: 3 }, (_, i): AccountRef => ({ ...A, accountId: `cust-${i}` }));
      const values = new Map<string, Record<string, string>>();
      for (const ref of accounts) {
        const creds = { one: marker('one'), two: marker('two'), three: marker('three') };
        values.set(ref.accountId, creds);
        await createLinkedAccount(vault, ref, { credentials: creds });
      }
      const { token } = await issueSessionToken(vault, accounts[0] as AccountRef);
      const before = new Map<string, string>();
      for (const ref of accounts) before.set(ref.accountId, (await storedKeys(vault, ref))[0]?.id as string);
      const oldCopy = (await vault.store.get(accountGroup(accounts[0] as AccountRef), credentialMember('one')))?.value as string;

      // 3 new keys; 9 credentials and 1 session-token copy re-sealed.
      expect(await rotateKeys(vault, { reseal: true })).toEqual({ rewrapped: 3, resealed: 10, alreadyCurrent: 0 });

      const fresh = await open();
      let run: string | undefined;
      for (const ref of accounts) {
        const keys = await storedKeys(fresh, ref);
        expect(keys).toHaveLength(1);
        expect(keys[0]?.id).not.toBe(before.get(ref.accountId));
        run ??= keys[0]?.run;
        expect(keys[0]?.run).toBe(run);
        expect(await sealingIds(fresh, ref)).toEqual(new Set([`cv2:${keys[0]?.id}`]));
        for (const [key, value] of Object.entries(values.get(ref.accountId) ?? {})) {
          expect(await getDefaultAppCredential(fresh, ref, key)).toBe(value);
        }
      }
      expect(run).toMatch(/^[0-9a-f]{16}$/);
      expect(await fresh.store.get(META_GROUP, RESEAL_RUN)).toBeUndefined();
      expect((await verifySessionToken(fresh, token)).accountId).toBe('cust-0');
      expect((await issueSessionToken(fresh, accounts[0] as AccountRef)).token).toBe(token);

      // The old key is gone: its ciphertext, put back, does not open (in this process or another).
      await backend.writeSealed(accountGroup(accounts[0] as AccountRef), credentialMember('one'), oldCopy);
      expect((await rejection(getDefaultAppCredential(vault, accounts[0] as AccountRef, 'one'))).code).toBe('DECRYPTION_FAILED');
      expect((await rejection(getDefaultAppCredential(fresh, accounts[0] as AccountRef, 'one'))).code).toBe('DECRYPTION_FAILED');

      // A plain rotation afterwards finds everything current; another --reseal is a new run.
      expect(await rotateKeys(fresh)).toMatchObject({ rewrapped: 0, resealed: 0 });
    });

    it('a reseal cut off halfway is finished by the next rotation (without --reseal), which re-keys no account twice', async () => {
      const accounts = Array.from({ length: 6 }, (_, i): AccountRef => ({ ...A, accountId: `cust-${i}` }));
      const values = new Map(accounts.map((ref) => [ref.accountId, marker(ref.accountId)]));
      for (const ref of accounts) {
        await createLinkedAccount(vault, ref, { credentials: { api_key: values.get(ref.accountId) as string, other: marker('o') } });
      }
      // The store fails after 5 changes of data key records (a batch that adds the new key
      // and moves the app marker, or a swap that drops the old key): some accounts are moved,
      // one may hold two keys (new first), the rest one old key.
      let swaps = 0;
      const failing = wrapStore(openStore(), {
        async replace(args, forward) {
          if (args[1] === DATA_KEY && ++swaps > 5) throw new Error('connection reset by peer');
          return forward();
        },
        async batch(args, forward) {
          if (args[1].some((write) => write.op === 'replace' && write.member === DATA_KEY && write.expected !== write.value) && ++swaps > 5) {
            throw new Error('connection reset by peer');
          }
          return forward();
        },
      });
      const broken = await open(failing);
      const error = await rejection(rotateKeys(broken, { reseal: true, batchSize: 2 }));
      expect(error.code).toBe('STORE_UNAVAILABLE');
      const run = JSON.parse((await vault.store.get(META_GROUP, RESEAL_RUN))?.value as string) as { id: string };
      const movedBefore = new Map<string, string>();
      for (const ref of accounts) {
        const keys = await storedKeys(vault, ref);
        if (keys[0]?.run === run.id) movedBefore.set(ref.accountId, keys[0].id);
        // Half-way or not, every value opens.
        expect(await getDefaultAppCredential(vault, ref, 'api_key')).toBe(values.get(ref.accountId));
      }
      expect(movedBefore.size).toBeGreaterThan(0);
      expect(movedBefore.size).toBeLessThan(accounts.length);

      // The rerun also moves to a new primary KEK: re-wrapping keeps each key's run, so no
      // account the cut run moved is re-keyed again.
      const k2 = keyEntry('k2');
      const rerun = await createVault({ store: openStore(), keys: `${k2.entry},${k1.entry}`, log: () => undefined });
      opened.push(rerun);
      const result = await rotateKeys(rerun);
      // Unmoved accounts get a new key (wrapped under k2 at once), moved ones a re-wrap: one each.
      expect(result.rewrapped).toBe(accounts.length);
      // Accounts the cut run had finished were only re-wrapped: none is current under the new KEK.
      expect(result.alreadyCurrent).toBe(0);
      const after = await createVault({ store: openStore(), keys: k2.entry, log: () => undefined });
      opened.push(after);
      for (const ref of accounts) {
        const keys = await storedKeys(after, ref);
        expect(keys).toHaveLength(1);
        expect(keys[0]?.run).toBe(run.id);
        // An account moved before the cut keeps the key it got then; every key is under the new KEK.
        if (movedBefore.has(ref.accountId)) expect(keys[0]?.id).toBe(movedBefore.get(ref.accountId));
        expect(keys[0]?.kek).toBe('local:k2');
        expect(await sealingIds(after, ref)).toEqual(new Set([`cv2:${keys[0]?.id}`]));
        expect(await getDefaultAppCredential(after, ref, 'api_key')).toBe(values.get(ref.accountId));
      }
      expect(await after.store.get(META_GROUP, RESEAL_RUN)).toBeUndefined();
    });

    it('a credential sealed under the old key before the reseal and written after it is sealed again under the new key, never lost', async () => {
      await createLinkedAccount(vault, A, { credentials: { api_key: marker('first') } });
      const oldId = (await storedKeys(vault, A))[0]?.id as string;
      // The writer reads the data key record and seals, then its write is held until the reseal is over.
      const slow = holdingWrites(openStore(), accountGroup(A));
      const writer = await open(slow.store);
      const newer = marker('newer');
      const write = upsertDefaultAppCredential(writer, A, 'api_key', newer);
      await slow.reached;
      expect(await rotateKeys(vault, { reseal: true })).toEqual({ rewrapped: 1, resealed: 1, alreadyCurrent: 0 });
      slow.release();
      expect(await write).toEqual({ action: 'updated' });

      const keys = await storedKeys(vault, A);
      expect(keys.map((key) => key.id)).not.toContain(oldId);
      expect(await sealingIds(vault, A)).toEqual(new Set([`cv2:${keys[0]?.id}`]));
      expect(await getDefaultAppCredential(await open(), A, 'api_key')).toBe(newer);
    });

    it('a write that read the data key of an account deleted and created again meanwhile lands under the new account\'s key', async () => {
      await createLinkedAccount(vault, A, { credentials: { api_key: marker('first') } });
      const slow = holdingWrites(openStore(), accountGroup(A));
      const writer = await open(slow.store);
      const value = marker('late');
      const write = upsertDefaultAppCredential(writer, A, 'other', value);
      await slow.reached;
      await deleteLinkedAccount(vault, A);
      await createLinkedAccount(vault, A, { credentials: {} });
      slow.release();
      expect(await write).toEqual({ action: 'added' });
      const keys = await storedKeys(vault, A);
      expect(await sealingIds(vault, A)).toEqual(new Set([`cv2:${keys[0]?.id}`]));
      expect(await getDefaultAppCredential(await open(), A, 'other')).toBe(value);
    });

    it('seeded credentials of an account update and a session token, both racing a reseal, are sealed under the key that stays', async () => {
      await createLinkedAccount(vault, A, { credentials: { api_key: marker('first') } });
      const slow = holdingWrites(openStore(), accountGroup(A), 2);
      const writer = await open(slow.store);
      const seeded = marker('seeded');
      const update = upsertLinkedAccount(writer, A, { credentials: { seeded } });
      const issued = issueSessionToken(writer, A, { forceRefresh: true });
      await slow.reached;
      await rotateKeys(vault, { reseal: true });
      slow.release();
      await update;
      const { token } = await issued;
      const keys = await storedKeys(vault, A);
      expect(keys).toHaveLength(1);
      expect(await sealingIds(vault, A)).toEqual(new Set([`cv2:${keys[0]?.id}`]));
      const reader = await open();
      expect(await getDefaultAppCredential(reader, A, 'seeded')).toBe(seeded);
      expect((await issueSessionToken(reader, A)).token).toBe(token);
    });

    it('a default app (and its key marker) written between the reseal reading it and re-keying: a late write still lands under the key that stays', async () => {
      await createLinkedAccount(vault, A); // no default app yet
      const group = accountGroup(A);
      // A writer that read the old data key record, held just before its write.
      const slow = holdingWrites(openStore(), group);
      const writer = await open(slow.store);
      const late = marker('late');
      await upsertLinkedAccount(vault, A, { credentials: { first: marker('first') } });
      const write = upsertDefaultAppCredential(writer, A, 'late', late);
      await slow.reached;
      // The window: the rotation reads the default app as absent (this hook answers so, once),
      // and an account update writes it, with the old key's marker, before the re-keying step.
      let raced = false;
      const racing = wrapStore(openStore(), {
        async get(args, forward) {
          if (!raced && args[0] === group && args[1] === 'app:default') {
            raced = true;
            const seeded = marker('seeded');
            await upsertLinkedAccount(vault, A, { credentials: { seeded } });
            return undefined;
          }
          return forward();
        },
      });
      const rotating = await open(racing);
      await rotateKeys(rotating, { reseal: true });
      expect(raced).toBe(true);
      slow.release();
      await write;
      const keys = await storedKeys(vault, A);
      expect(keys).toHaveLength(1);
      expect(await sealingIds(vault, A)).toEqual(new Set([`cv2:${keys[0]?.id}`]));
      // The one marker left names the key that stays.
      expect((await vault.store.list(group, 'app-key:')).map((item) => item.member)).toEqual([`app-key:${keys[0]?.id}`]);
      expect(await getDefaultAppCredential(await open(), A, 'late')).toBe(late);
    });

    it('accounts created on every page of a reseal get a key of its run: the run completes, nothing is re-keyed twice', async () => {
      for (let i = 0; i < 4; i++) await createLinkedAccount(vault, { ...A, accountId: `seed-${i}` }, { credentials: { k: marker('k') } });
      let created = 0;
      const busy = wrapStore(openStore(), {
        async scan(args, forward) {
          created += 1;
          await createLinkedAccount(vault, { ...A, accountId: `busy-${created}` }, { credentials: { k: marker('busy') } });
          return forward();
        },
      });
      const result = await rotateKeys(await open(busy), { reseal: true, batchSize: 3 });
      expect(created).toBeGreaterThan(3);
      // The 4 accounts that predate the run got new keys; the ones created during it already had one.
      expect(result.rewrapped).toBe(4);
      expect(await vault.store.get(META_GROUP, RESEAL_RUN)).toBeUndefined();
      for (let i = 1; i <= created; i++) {
        const keys = await storedKeys(vault, { ...A, accountId: `busy-${i}` });
        expect(keys).toHaveLength(1);
        expect(keys[0]?.run).toMatch(/^[0-9a-f]{16}$/);
      }
    });

    it('a value no key opens is named as itself, and its account keeps its old key (and the run stays open) until it is dealt with', async () => {
      await createLinkedAccount(vault, A, { credentials: { good: marker('good'), broken: marker('broken') } });
      const oldId = (await storedKeys(vault, A))[0]?.id;
      const sealed = (await vault.store.get(accountGroup(A), credentialMember('broken')))?.value as string;
      // One flipped character in the ciphertext part: no key opens it.
      const at = sealed.length - 30;
      await backend.writeSealed(accountGroup(A), credentialMember('broken'), `${sealed.slice(0, at)}${sealed[at] === 'A' ? 'B' : 'A'}${sealed.slice(at + 1)}`);
      const error = await rejection(rotateKeys(vault, { reseal: true }));
      expect(error.code).toBe('ROTATION_INCOMPLETE');
      expect(error.message).toContain('acme/test/cust-a cred:broken (unreadable)');
      expect(error.message).not.toContain(' dek ');
      expect((await storedKeys(vault, A)).map((key) => key.id)).toContain(oldId);
      expect(await vault.store.get(META_GROUP, RESEAL_RUN)).toBeDefined();
      // Removed, the run completes.
      await vault.store.remove(accountGroup(A), credentialMember('broken'));
      await rotateKeys(vault);
      expect((await storedKeys(vault, A)).map((key) => key.id)).not.toContain(oldId);
      expect(await vault.store.get(META_GROUP, RESEAL_RUN)).toBeUndefined();
    });

    it('values written before data keys (cv1) are re-sealed once by a reseal, and counted once', async () => {
      await createLinkedAccount(vault, A, { credentials: { current: marker('current') } });
      const { sealCredential } = await import('../../src/crypto/cipher.js');
      const legacy = { one: marker('one'), two: marker('two') };
      for (const [name, value] of Object.entries(legacy)) {
        await vault.store.put(accountGroup(A), credentialMember(name), sealCredential(vault.keyring, value, { ...A, name }));
      }
      expect(await rotateKeys(vault, { reseal: true })).toEqual({ rewrapped: 1, resealed: 3, alreadyCurrent: 0 });
      const keys = await storedKeys(vault, A);
      expect(await sealingIds(vault, A)).toEqual(new Set([`cv2:${keys[0]?.id}`]));
      for (const [name, value] of Object.entries(legacy)) expect(await getDefaultAppCredential(await open(), A, name)).toBe(value);
    });

    it('a reseal whose store answers slowly, with the data key cache off, re-seals with a key that stays intact', async () => {
      await createLinkedAccount(vault, A, { credentials: Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`k${i}`, marker(`v${i}`)])) });
      const slow = wrapStore(openStore(), {
        async batch(args, forward) {
          await new Promise((resolve) => setTimeout(resolve, 300));
          return forward();
        },
      });
      const cold = await createVault({ store: slow, keys: k1.entry, log: () => undefined, dataKeyCache: { maxEntries: 0 } });
      opened.push(cold);
      expect(await rotateKeys(cold, { reseal: true })).toMatchObject({ rewrapped: 1, resealed: 5 });
      for (let i = 0; i < 5; i++) expect(await getDefaultAppCredential(await open(), A, `k${i}`)).toMatch(new RegExp(`^v${i}-`));
    }, 20_000);

    it('a write whose data key moves on every attempt gives up with STORE_UNAVAILABLE and writes nothing', async () => {
      await createLinkedAccount(vault, A, { credentials: { api_key: marker('first') } });
      let attempts = 0;
      // Before each of the writer's writes, another process moves the account on as a reseal
      // would: the record changes and the key marker goes.
      const moveOn = async () => {
        attempts += 1;
        const current = (await vault.store.get(accountGroup(A), DATA_KEY))?.value as string;
        // The same keys, another text each time (JSON allows trailing blanks): no fence matches again.
        expect(await vault.store.replace(accountGroup(A), DATA_KEY, current, `${current} `)).toBe(true);
        for (const { member } of await vault.store.list(accountGroup(A), 'app-key:')) await vault.store.remove(accountGroup(A), member);
      };
      const moving = wrapStore(openStore(), {
        async put(args, forward) {
          if (args[0] === accountGroup(A)) await moveOn();
          return forward();
        },
        async batch(args, forward) {
          if (args[0] === accountGroup(A)) await moveOn();
          return forward();
        },
      });
      const writer = await open(moving);
      const error = await rejection(upsertDefaultAppCredential(writer, A, 'never', marker('never')));
      expect(error.code).toBe('STORE_UNAVAILABLE');
      // The conditional put, then a fenced batch per attempt.
      expect(attempts).toBe(1 + 8);
      expect(await vault.store.get(accountGroup(A), credentialMember('never'))).toBeUndefined();
    });

    it('a writer remembers the current key: its next write reads no data key record; once a reseal elsewhere moves the key, the fence refuses the remembered one and the value lands under the new key', async () => {
      await createLinkedAccount(vault, A, { credentials: { api_key: marker('first') } });
      const calls: string[] = [];
      const watching = wrapStore(openStore(), {
        async get(args, forward) {
          if (args[0] === accountGroup(A) && args[1] === DATA_KEY) calls.push('read key record');
          return forward();
        },
        async put(args, forward) {
          if (args[0] === accountGroup(A)) calls.push('put');
          return forward();
        },
        async batch(args, forward) {
          if (args[0] === accountGroup(A)) calls.push('batch');
          return forward();
        },
      });
      const writer = await open(watching);
      expect(await upsertDefaultAppCredential(writer, A, 'api_key', marker('second'))).toEqual({ action: 'updated' });
      expect(calls.splice(0)).toEqual(['read key record', 'put']);
      expect(await upsertDefaultAppCredential(writer, A, 'api_key', marker('third'))).toEqual({ action: 'updated' });
      expect(calls.splice(0), 'the remembered key, fenced by its marker: one put').toEqual(['put']);

      const oldId = (await storedKeys(vault, A))[0]?.id as string;
      expect(await rotateKeys(vault, { reseal: true })).toEqual({ rewrapped: 1, resealed: 1, alreadyCurrent: 0 });
      const value = marker('after');
      expect(await upsertDefaultAppCredential(writer, A, 'api_key', value)).toEqual({ action: 'updated' });
      // Refused under the old key's marker, then the record read and the write sealed again.
      expect(calls.splice(0)).toEqual(['put', 'read key record', 'put']);
      const keys = await storedKeys(vault, A);
      expect(keys.map((key) => key.id)).not.toContain(oldId);
      expect(await sealingIds(vault, A)).toEqual(new Set([`cv2:${keys[0]?.id}`]));
      expect(await getDefaultAppCredential(await open(), A, 'api_key')).toBe(value);
    });

    it('a re-wrap (same data key, new record text) does not disturb a credential write: one conditional put', async () => {
      await createLinkedAccount(vault, A, { credentials: { api_key: marker('first') } });
      const calls: string[] = [];
      const watching = wrapStore(openStore(), {
        async put(args, forward) {
          if (args[0] === accountGroup(A)) {
            calls.push('put');
            const current = (await vault.store.get(accountGroup(A), DATA_KEY))?.value as string;
            await vault.store.replace(accountGroup(A), DATA_KEY, current, `${current} `);
          }
          return forward();
        },
        async batch(args, forward) {
          if (args[0] === accountGroup(A)) calls.push('batch');
          return forward();
        },
      });
      const writer = await open(watching);
      const value = marker('value');
      expect(await upsertDefaultAppCredential(writer, A, 'api_key', value)).toEqual({ action: 'updated' });
      expect(calls).toEqual(['put']);
      expect(await getDefaultAppCredential(await open(), A, 'api_key')).toBe(value);
    });
  });
}

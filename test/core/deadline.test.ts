/** Core deadlines: a store call that never settles, or fails, becomes one STORE_UNAVAILABLE that names no internals. */
import { describe, expect, it } from 'vitest';
import {
  createApiKey,
  createLinkedAccount,
  createVault,
  deleteDefaultAppCredential,
  deleteLinkedAccount,
  generateKey,
  getDefaultAppCredential,
  issueSessionToken,
  listDefaultAppCredentials,
  rotateKeys,
  upsertDefaultAppCredential,
  verifyApiKey,
  VaultError,
  type Vault,
  type VaultStore,
} from '../../src/index.js';
import { createMemoryStore } from '../../adapters/memory.js';
import { isInProcess, markInProcess } from '../../src/core/store.js';
import { rejection as failure } from '../helpers/rejection.js';

type Method = Exclude<keyof VaultStore, 'kind'>;

/**
 * A memory store whose chosen methods hang forever (or reject with `failWith`) once told to.
 * A Proxy is another object than the memory store, so it keeps the deadline unless `inProcess`
 * marks it (as a store that can never stall would be marked).
 */
function faultyStore(options: { inProcess?: boolean } = {}) {
  const inner = createMemoryStore();
  const faults = { hang: new Set<Method>(), failWith: undefined as Error | undefined, closed: 0 };
  const store = new Proxy(inner, {
    get(target, prop, receiver) {
      const original = Reflect.get(target, prop, receiver) as unknown;
      if (typeof original !== 'function') return original;
      return (...args: unknown[]) => {
        if (prop === 'close') faults.closed += 1;
        if (faults.hang.has(prop as Method)) {
          if (faults.failWith !== undefined) return Promise.reject(faults.failWith);
          return new Promise(() => undefined);
        }
        return (original as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  if (options.inProcess === true) markInProcess(store);
  return { store, faults };
}

const acct = { org: 'acme', environment: 'test', accountId: 'cust-1' };
const TIMEOUT_MS = 50;

async function readyVault(): Promise<{ vault: Vault; faults: ReturnType<typeof faultyStore>['faults'] }> {
  const { store, faults } = faultyStore();
  const vault = await createVault({ store, keys: generateKey('k').entry, storeTimeoutMs: TIMEOUT_MS });
  await createLinkedAccount(vault, acct, { credentials: { api_key: 'v' } });
  return { vault, faults };
}

// Each operation, and a store method it cannot do without.
const operations: Array<[string, Method, (vault: Vault) => Promise<unknown>]> = [
  ['upsertDefaultAppCredential', 'put', (v) => upsertDefaultAppCredential(v, acct, 'api_key', 'new')],
  ['getDefaultAppCredential', 'get', (v) => getDefaultAppCredential(v, acct, 'api_key')],
  ['listDefaultAppCredentials', 'list', (v) => listDefaultAppCredentials(v, acct)],
  ['deleteDefaultAppCredential', 'remove', (v) => deleteDefaultAppCredential(v, acct, 'api_key')],
  ['createLinkedAccount', 'batch', (v) => createLinkedAccount(v, { ...acct, accountId: 'other' })],
  ['deleteLinkedAccount', 'removeGroup', (v) => deleteLinkedAccount(v, acct)],
  ['issueSessionToken', 'batch', (v) => issueSessionToken(v, acct, { forceRefresh: true })],
  ['rotateKeys', 'scan', (v) => rotateKeys(v)],
  ['createApiKey', 'insert', (v) => createApiKey(v, { org: 'acme' })],
  ['verifyApiKey', 'get', (v) => verifyApiKey(v, `tk_${'a'.repeat(16)}_${'A'.repeat(43)}`)],
];

describe('the store deadline', () => {
  it.each(operations)('%s past storeTimeoutMs (%s never answers) is STORE_UNAVAILABLE saying the deadline', async (_name, method, run) => {
    const { vault, faults } = await readyVault();
    try {
      faults.hang.add(method);
      const error = await failure(run(vault));
      expect(error.code).toBe('STORE_UNAVAILABLE');
      expect(error.message).toBe(`The credential store did not answer within ${TIMEOUT_MS} ms`);
    } finally {
      faults.hang.clear();
      await vault.close();
    }
  });

  it('a store that never answers while the vault opens fails the open with STORE_UNAVAILABLE and closes the store', async () => {
    const { store, faults } = faultyStore();
    faults.hang.add('list');
    const error = await failure(createVault({ store, keys: generateKey('k').entry, storeTimeoutMs: TIMEOUT_MS }));
    expect(error.code).toBe('STORE_UNAVAILABLE');
    expect(error.message).toBe(`The credential store did not answer within ${TIMEOUT_MS} ms`);
    expect(faults.closed).toBe(1);
  });

  it('the vault is usable again once the store answers', async () => {
    const { vault, faults } = await readyVault();
    try {
      faults.hang.add('get');
      await expect(getDefaultAppCredential(vault, acct, 'api_key')).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
      faults.hang.clear();
      expect(await getDefaultAppCredential(vault, acct, 'api_key')).toBe('v');
    } finally {
      await vault.close();
    }
  });
});

describe('the store deadline over many calls at once', () => {
  it('each waiting call gets its own deadline, in the order the calls began, while calls that answer are untouched', async () => {
    const { vault, faults } = await readyVault();
    try {
      faults.hang.add('get');
      const settled: string[] = [];
      const first = failure(getDefaultAppCredential(vault, acct, 'api_key')).then((e) => (settled.push('first'), e));
      // Begun later, so due later: it must outlive the first call's deadline.
      await new Promise((resolve) => setTimeout(resolve, TIMEOUT_MS / 2));
      const second = failure(getDefaultAppCredential(vault, acct, 'api_key')).then((e) => (settled.push('second'), e));
      faults.hang.clear();
      // Calls answering meanwhile resolve with their answer, whatever waits beside them.
      expect(await upsertDefaultAppCredential(vault, acct, 'api_key', 'next')).toEqual({ action: 'updated' });
      expect(await getDefaultAppCredential(vault, acct, 'api_key')).toBe('next');
      const [a, b] = await Promise.all([first, second]);
      expect(settled).toEqual(['first', 'second']);
      for (const error of [a, b]) {
        expect(error.code).toBe('STORE_UNAVAILABLE');
        expect(error.message).toBe(`The credential store did not answer within ${TIMEOUT_MS} ms`);
      }
      // And once nothing waits, a later hang still gets its deadline.
      faults.hang.add('get');
      expect((await failure(getDefaultAppCredential(vault, acct, 'api_key'))).code).toBe('STORE_UNAVAILABLE');
    } finally {
      faults.hang.clear();
      await vault.close();
    }
  });

  it('a store that throws instead of rejecting is STORE_UNAVAILABLE too', async () => {
    const inner = createMemoryStore();
    let throwing = false;
    const store = new Proxy(inner, {
      get(target, prop, receiver) {
        const original = Reflect.get(target, prop, receiver) as unknown;
        if (prop !== 'get' || typeof original !== 'function') return original;
        return (...args: unknown[]) => {
          if (throwing) throw new Error('sync failure');
          return (original as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    const vault = await createVault({ store, keys: generateKey('k').entry, storeTimeoutMs: TIMEOUT_MS });
    try {
      throwing = true;
      const error = await failure(getDefaultAppCredential(vault, acct, 'api_key'));
      expect(error.code).toBe('STORE_UNAVAILABLE');
      expect(error.message).toBe('The credential store is unavailable');
    } finally {
      await vault.close();
    }
  });
});

describe('a failing store', () => {
  it('a backend error is STORE_UNAVAILABLE with a generic message, keeping the backend error as its cause', async () => {
    const { vault, faults } = await readyVault();
    try {
      const backendError = new Error('connect ECONNREFUSED 10.0.0.7:5432 password=hunter2');
      faults.failWith = backendError;
      faults.hang.add('get');
      const error = await failure(getDefaultAppCredential(vault, acct, 'api_key'));
      expect(error.code).toBe('STORE_UNAVAILABLE');
      expect(error.message).toBe('The credential store is unavailable');
      expect(error.cause).toBe(backendError);
    } finally {
      faults.hang.clear();
      await vault.close();
    }
  });

  it('an outage never reads as "not found": a failing read is not undefined, a failing list is not empty', async () => {
    const { vault, faults } = await readyVault();
    try {
      faults.failWith = new Error('down');
      faults.hang.add('get');
      faults.hang.add('list');
      await expect(getDefaultAppCredential(vault, acct, 'missing')).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
      await expect(listDefaultAppCredentials(vault, acct)).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    } finally {
      faults.hang.clear();
      await vault.close();
    }
  });

  it('a VaultError from the store passes through as it is', async () => {
    const { vault, faults } = await readyVault();
    try {
      faults.failWith = new VaultError('STORE_UNAVAILABLE', 'The memory store is closed');
      faults.hang.add('get');
      const error = await failure(getDefaultAppCredential(vault, acct, 'api_key'));
      expect(error).toBe(faults.failWith);
    } finally {
      faults.hang.clear();
      await vault.close();
    }
  });
});

describe('an in-process store', () => {
  it('the memory store is marked in process, and the vault keeps the mark; a wrapper or a copy of it is not', async () => {
    const store = createMemoryStore();
    expect(isInProcess(store)).toBe(true);
    expect(isInProcess(new Proxy(store, {}))).toBe(false);
    expect(isInProcess({ ...store })).toBe(false);
    const vault = await createVault({ store, keys: generateKey('k').entry });
    try {
      expect(isInProcess(vault.store)).toBe(true);
    } finally {
      await vault.close();
    }
  });

  it('a Proxy around the memory store whose reads stall still gets the deadline', async () => {
    const { vault, faults } = await readyVault();
    try {
      faults.hang.add('get');
      const error = await failure(getDefaultAppCredential(vault, acct, 'api_key'));
      expect(error.code).toBe('STORE_UNAVAILABLE');
    } finally {
      faults.hang.clear();
      await vault.close();
    }
  });

  it('a store method that returns a plain value instead of a promise is STORE_UNAVAILABLE, never a TypeError', async () => {
    for (const inProcess of [false, true]) {
      const inner = createMemoryStore();
      let broken = false;
      const store = new Proxy(inner, {
        get(target, prop, receiver) {
          const original = Reflect.get(target, prop, receiver) as unknown;
          if (prop !== 'get' || typeof original !== 'function') return original;
          return (...args: unknown[]) => (broken ? { value: 'not a promise' } : (original as (...a: unknown[]) => unknown).apply(target, args));
        },
      });
      if (inProcess) markInProcess(store);
      const vault = await createVault({ store, keys: generateKey('k').entry, storeTimeoutMs: TIMEOUT_MS });
      try {
        await createLinkedAccount(vault, acct, { credentials: { api_key: 'v' } });
        broken = true;
        const outcome = await getDefaultAppCredential(vault, acct, 'api_key').then(
          (value) => ({ value }),
          (error: unknown) => ({ error }),
        );
        // The plain value is taken as the answer (it opens to nothing: DECRYPTION_FAILED), never an unmapped TypeError.
        expect('error' in outcome && outcome.error).toBeInstanceOf(VaultError);
        expect('error' in outcome && (outcome.error as VaultError).code).toBe('DECRYPTION_FAILED');
      } finally {
        await vault.close();
      }
    }
  });

  it('runs without a deadline, and its failures are still one STORE_UNAVAILABLE', async () => {
    const { store, faults } = faultyStore({ inProcess: true });
    const vault = await createVault({ store, keys: generateKey('k').entry, storeTimeoutMs: TIMEOUT_MS });
    try {
      await createLinkedAccount(vault, acct, { credentials: { api_key: 'v' } });
      faults.hang.add('get');
      const read = getDefaultAppCredential(vault, acct, 'api_key');
      // Past several deadlines the call is still waiting: no timer was armed for it.
      const outcome = await Promise.race([read.then(() => 'settled', () => 'settled'), new Promise((r) => setTimeout(() => r('waiting'), TIMEOUT_MS * 4))]);
      expect(outcome).toBe('waiting');
      faults.hang.delete('get');
      faults.failWith = new Error('connect ECONNREFUSED password=hunter2');
      faults.hang.add('list');
      const error = await failure(listDefaultAppCredentials(vault, acct));
      expect(error.code).toBe('STORE_UNAVAILABLE');
      expect(error.message).toBe('The credential store is unavailable');
      expect(error.message).not.toContain('hunter2');
    } finally {
      faults.hang.clear();
      await vault.close();
    }
  });
});

describe('vault settings', () => {
  it.each([
    ['storeTimeoutMs', 0],
    ['storeTimeoutMs', -5],
    ['storeTimeoutMs', 1.5],
    ['storeTimeoutMs', Number.POSITIVE_INFINITY],
    ['storeTimeoutMs', Number.NaN],
    ['storeTimeoutMs', 2 ** 31],
    ['sessionTokenTtlSeconds', 0],
    ['sessionTokenTtlSeconds', Number.POSITIVE_INFINITY],
    ['maxValueBytes', 0],
    ['maxValueBytes', 0.5],
  ] as const)('%s = %s is refused with INVALID_CONFIGURATION, and the store is closed', async (name, value) => {
    const { store, faults } = faultyStore();
    const error = await failure(createVault({ store, keys: generateKey('k').entry, [name]: value }));
    expect(error.code).toBe('INVALID_CONFIGURATION');
    expect(error.message).toContain(name);
    expect(faults.closed).toBe(1);
  });

  it('the largest timer delay Node takes is accepted', async () => {
    const opened = createVault({ store: createMemoryStore(), keys: generateKey('k').entry, storeTimeoutMs: 2 ** 31 - 1 });
    await expect(opened.then((vault) => vault.close())).resolves.toBeUndefined();
  });
});

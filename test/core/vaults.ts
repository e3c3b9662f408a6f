/**
 * Vaults for the core unit tests: a memory store, or SQLite in a temp dir, each with fresh keys
 * and its cleanup; and stores that can be opened again on the same data, as a restart would.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createVault, generateKey, type Vault, type VaultEvent, type VaultSettings, type VaultStore } from '../../src/index.js';
import { createMemoryStore } from '../../adapters/memory.js';
import { createSqliteStore } from '../../adapters/sqlite.js';

export type Backend = 'memory' | 'sqlite';

/** The backends a store-dependent behaviour is checked on. */
export const BACKENDS: readonly Backend[] = ['memory', 'sqlite'];

export interface TestVault {
  vault: Vault;
  /** The undecorated store under the vault (no deadline), for looking at records. */
  store: VaultStore;
  /** Every audit event delivered so far. */
  events: VaultEvent[];
  /** Closes the vault and removes its files. */
  done(): Promise<void>;
}

/** Opens a store of this backend; `cleanup` removes what it left on disk. */
export function openStore(backend: Backend): { store: VaultStore; cleanup(): void } {
  if (backend === 'memory') return { store: createMemoryStore(), cleanup: () => undefined };
  const dir = mkdtempSync(path.join(os.tmpdir(), 'credvault-core-'));
  return { store: createSqliteStore({ path: path.join(dir, 'vault.db') }), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A vault over a fresh store of `backend`, recording its audit events. */
export async function openTestVault(backend: Backend = 'memory', settings: VaultSettings = {}, keys = generateKey('k1').entry): Promise<TestVault> {
  const { store, cleanup } = openStore(backend);
  const events: VaultEvent[] = [];
  const vault = await createVault({
    store,
    keys,
    ...settings,
    onEvent: (event) => {
      events.push(event);
      return settings.onEvent?.(event);
    },
  });
  return {
    vault,
    store,
    events,
    done: async () => {
      await vault.close();
      cleanup();
    },
  };
}

/** One backend's data, opened as often as a test likes: what a restarted server, or a second process, sees. */
export interface ReopenableStore {
  /** A store over the same data each time (SQLite: a new connection to one file; memory: one store whose close is left to `cleanup`). */
  open(): VaultStore;
  /** Closes what is still open and removes the files. */
  cleanup(): Promise<void>;
}

export function reopenableStore(backend: Backend): ReopenableStore {
  if (backend === 'memory') {
    const shared = createMemoryStore();
    // Closing one vault must not empty the data the next one opens.
    const handle = (): VaultStore =>
      new Proxy(shared, { get: (target, prop) => (prop === 'close' ? async () => undefined : (Reflect.get(target, prop) as unknown)) });
    return { open: handle, cleanup: () => shared.close() };
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'credvault-core-'));
  const opened: VaultStore[] = [];
  return {
    open: () => {
      const store = createSqliteStore({ path: path.join(dir, 'vault.db') });
      opened.push(store);
      return store;
    },
    cleanup: async () => {
      await Promise.all(opened.map((store) => store.close()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

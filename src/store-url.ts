/**
 * Store URLs (`memory:`, `sqlite:<path>`, `redis://`, `postgres://`): parsing them, and
 * opening the store one names by loading its adapter lazily. Part of the composition root.
 */
import path from 'node:path';
import { VaultError } from './errors.js';
import { loadOptionalPeer } from './optional-peers.js';
import type { VaultStore } from './core/store.js';

/** The embedded default. */
export const DEFAULT_STORE_URL = 'sqlite:./data/credvault.db';

export interface OpenStoreOptions {
  namespace?: string | undefined;
  /**
   * The vault's deadline per store call (`storeTimeoutMs`). The stores' own waits (SQLite's
   * `queueWaitMs`, Redis Cluster's `indexWaitMs`) are set to half of it, at most their
   * 1000 ms default, so a call the vault has answered 503 gives up before it can write.
   */
  storeTimeoutMs?: number | undefined;
}

/** Half the vault's deadline (at least 1 ms, at most 1000 ms), or the adapter's default when none (or no valid one) is given. */
function waitBelow(storeTimeoutMs: number | undefined): number | undefined {
  if (storeTimeoutMs === undefined || !Number.isSafeInteger(storeTimeoutMs) || storeTimeoutMs < 1) return undefined;
  return Math.max(1, Math.min(1000, Math.floor(storeTimeoutMs / 2)));
}

type ParsedStoreUrl =
  | { kind: 'memory' }
  | { kind: 'sqlite'; path: string }
  | { kind: 'redis'; url: string }
  | { kind: 'postgres'; url: string };

/** Parses a store URL, or throws `INVALID_CONFIGURATION` with one line saying what is accepted. */
export function parseStoreUrl(url: string): ParsedStoreUrl {
  if (url === 'memory:' || url === 'memory://') return { kind: 'memory' };
  if (url.startsWith('sqlite:')) {
    const file = url.slice('sqlite:'.length).replace(/^\/\//, '');
    if (file.length === 0) throw new VaultError('INVALID_CONFIGURATION', `Invalid store URL: sqlite: needs a file path, e.g. sqlite:./data/credvault.db`);
    return { kind: 'sqlite', path: file };
  }
  if (/^rediss?:\/\//.test(url)) return { kind: 'redis', url: checkUrl(url) };
  if (/^postgres(ql)?:\/\//.test(url)) return { kind: 'postgres', url: checkUrl(url) };
  throw new VaultError(
    'INVALID_CONFIGURATION',
    `Invalid store URL '${redactUrl(url)}': use memory:, sqlite:<path>, redis://host:port or postgres://user@host/db`,
  );
}

function checkUrl(url: string): string {
  try {
    new URL(url);
    return url;
  } catch {
    throw new VaultError('INVALID_CONFIGURATION', `Invalid store URL '${redactUrl(url)}'`);
  }
}

/** Hides a password in a URL before it reaches a message. */
function redactUrl(url: string): string {
  return url.replace(/\/\/([^:/@]*):[^@/]*@/, '//$1:***@');
}

/**
 * Opens the store a URL names. Adapters load lazily, so `credvault` alone pulls in no
 * SQLite, Redis or PostgreSQL client; a missing optional client (`@keyv/redis`,
 * `@keyv/postgres`, `pg`) is `INVALID_CONFIGURATION` naming the package to install.
 */
export async function openStore(url: string, options: OpenStoreOptions = {}): Promise<VaultStore> {
  const parsed = parseStoreUrl(url);
  const namespace = options.namespace;
  const wait = waitBelow(options.storeTimeoutMs);
  switch (parsed.kind) {
    case 'memory': {
      const { createMemoryStore } = await import('../adapters/memory.js');
      return createMemoryStore(namespace === undefined ? {} : { namespace });
    }
    case 'sqlite': {
      const { createSqliteStore } = await import('../adapters/sqlite.js');
      return createSqliteStore({
        path: parsed.path,
        ...(namespace === undefined ? {} : { namespace }),
        ...(wait === undefined ? {} : { queueWaitMs: wait }),
      });
    }
    case 'redis': {
      const { createRedisStore } = await loadOptionalPeer(['@keyv/redis'], 'The redis:// store', () => import('../adapters/redis.js'));
      return createRedisStore({
        url: parsed.url,
        ...(namespace === undefined ? {} : { namespace }),
        ...(wait === undefined ? {} : { indexWaitMs: wait }),
      });
    }
    case 'postgres': {
      const { createPostgresStore } = await loadOptionalPeer(['@keyv/postgres', 'pg'], 'The postgres:// store', () =>
        import('../adapters/postgres.js'),
      );
      return createPostgresStore(namespace === undefined ? { url: parsed.url } : { url: parsed.url, namespace });
    }
  }
}

/** For a SQLite store, the key file that sits beside its database (`data/credvault.db` -> `data/credvault.keys`). */
export function defaultKeyFileFor(url: string): string | undefined {
  const parsed = parseStoreUrl(url);
  if (parsed.kind !== 'sqlite') return undefined;
  const { dir, name } = path.parse(parsed.path);
  return path.join(dir, `${name}.keys`);
}

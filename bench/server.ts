/**
 * One benchmark server, run as a child process (forked with IPC) so that the load
 * generator and the server each get a core. Argument: JSON {binding, mode, store, namespace, keys}.
 * Sends {ready, port, apiKey} once listening; answers 'ops' with its store-call counts.
 */
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import Keyv from 'keyv';
import { KeyvSqlite } from '@keyv/sqlite';
import KeyvPostgres from '@keyv/postgres';
import { createKeyv as createRedisKeyv } from '@keyv/redis';
import { createVault, createApiKey, upsertLinkedAccount, openStore } from '../src/index.js';
import type { VaultStore } from '../src/core/store.js';
import { buildServer } from './apps.js';
import { ACCOUNTS, BENCH_ACCOUNT, type Binding, type Mode } from './matrix.js';

export interface ServerSpec {
  binding: Binding;
  mode: Mode;
  store: string;
  namespace: string;
  keys: string;
}

/** Counts calls per store method: each is one round trip on SQLite, Redis and PostgreSQL. */
function counted(store: VaultStore, ops: Record<string, number>): VaultStore {
  return new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver) as unknown;
      if (typeof value !== 'function' || property === 'close') return value;
      return (...args: unknown[]) => {
        ops[String(property)] = (ops[String(property)] ?? 0) + 1;
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

async function naiveKeyv(spec: ServerSpec): Promise<Keyv<string>> {
  if (spec.store.startsWith('sqlite:')) {
    const file = spec.store.slice('sqlite:'.length);
    const naivePath = path.join(path.dirname(file), `naive-${path.basename(file)}`);
    const sqlite = new KeyvSqlite({ uri: `sqlite://${naivePath}`, busyTimeout: 5000 });
    // The same durability settings the vault's SQLite store uses, for a fair comparison.
    await sqlite.query('PRAGMA journal_mode=WAL');
    await sqlite.query('PRAGMA synchronous=FULL');
    return new Keyv<string>({ store: sqlite, namespace: spec.namespace });
  }
  if (spec.store.startsWith('redis')) return createRedisKeyv(spec.store, { namespace: spec.namespace }) as unknown as Keyv<string>;
  if (spec.store.startsWith('postgres')) {
    return new Keyv<string>({ store: new KeyvPostgres({ uri: spec.store, table: 'bench_naive' }), namespace: spec.namespace });
  }
  return new Keyv<string>({ store: new Map(), namespace: spec.namespace });
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] as string) as ServerSpec;
  const ops: Record<string, number> = {};
  let apiKey = '';
  let vault;
  let keyv;
  if (spec.mode === 'credvault') {
    const store = counted(await openStore(spec.store, { namespace: spec.namespace }), ops);
    vault = await createVault({ store, keys: spec.keys });
    apiKey = (await createApiKey(vault, { org: 'bench', environment: 'test' })).apiKey;
    // Upserted, so that every round can reuse one store.
    for (let a = 0; a < ACCOUNTS; a++) {
      await upsertLinkedAccount(vault, { org: 'bench', environment: 'test', accountId: `${BENCH_ACCOUNT}-${a}` }, { credentials: {} });
    }
  } else if (spec.mode === 'naive') {
    keyv = await naiveKeyv(spec);
  }
  const server = await buildServer(spec.binding, spec.mode, vault, keyv);
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  process.on('message', (message) => {
    if (message === 'ops') process.send?.({ ops: { ...ops } });
    if (message === 'reset') for (const key of Object.keys(ops)) delete ops[key];
  });
  process.send?.({ ready: true, port, apiKey });
}

await main();

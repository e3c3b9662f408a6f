/**
 * The Keyv store across processes, on MariaDB: a second process is refused the namespace,
 * a batch killed with SIGKILL part-way is undone by the next store that opens it, and a
 * store whose connection is cut rejects every call.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import KeyvMysql from '@keyv/mysql';
import Keyv from 'keyv';
import mysql from 'mysql2/promise';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { createKeyvStore } from '../../adapters/keyv.js';
import type { VaultStore } from '../../src/core/store.js';
import { VaultError } from '../../src/index.js';
import { freePort, runId, serviceSuite, tcpProxy, waitFor } from '../helpers/services.js';
import { MARIADB_URL } from './keyv-mariadb.js';

const CHILD = fileURLToPath(new URL('./keyv-child.mjs', import.meta.url));
const COMPILED = fileURLToPath(new URL('../../dist/adapters/keyv.js', import.meta.url));
const LEASE_MS = 1000;

const mariadb = await serviceSuite('MariaDB', MARIADB_URL);
const table = runId('cv_keyvproc');
const children = new Set<ChildProcess>();

/** Spawns the child and resolves with it once it printed `line` (or rejects on another line). */
function child(args: string[]): { process: ChildProcess; lines: string[]; next(): Promise<string> } {
  const proc = spawn(process.execPath, [CHILD, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(proc);
  proc.on('exit', () => children.delete(proc));
  const lines: string[] = [];
  const waiting: Array<(line: string) => void> = [];
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    const resolve = waiting.shift();
    if (resolve === undefined) lines.push(line);
    else resolve(line);
  });
  return {
    process: proc,
    lines,
    next: () => (lines.length > 0 ? Promise.resolve(lines.shift() as string) : new Promise((resolve) => waiting.push(resolve))),
  };
}

async function kill(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  proc.kill('SIGKILL');
  await exited;
}

/** A store in `namespace` on its own Keyv; @keyv/mysql shares one pool per process, so one at a time. */
function openStore(namespace: string, uri = MARIADB_URL): VaultStore {
  return createKeyvStore(new Keyv({ store: new KeyvMysql({ uri, table }), throwOnErrors: true }), { namespace, leaseMs: LEASE_MS });
}

/** Retries the first call until the crashed holder's lease has run out. */
async function openAfterLease(namespace: string): Promise<VaultStore> {
  const store = openStore(namespace);
  await waitFor(
    async () => {
      try {
        await store.get('g', 'probe');
        return true;
      } catch (error) {
        if (error instanceof VaultError && error.code === 'INVALID_CONFIGURATION') return false;
        throw error;
      }
    },
    'the crashed holder lease to run out',
    LEASE_MS * 10,
  );
  return store;
}

async function sql<T>(query: string, values: unknown[] = []): Promise<T> {
  const connection = await mysql.createConnection(MARIADB_URL);
  try {
    return (await connection.query(query, values))[0] as T;
  } finally {
    await connection.end();
  }
}

mariadb.describe('keyv store across processes on MariaDB', () => {
  beforeAll(async () => {
    if (!existsSync(COMPILED)) throw new Error(`${COMPILED} is missing: run \`npx tsc -p tsconfig.build.json\` first`);
    await sql(`CREATE TABLE \`${table}\` (id VARCHAR(255) PRIMARY KEY, value LONGTEXT)`);
  });
  afterEach(async () => {
    await Promise.all([...children].map(kill));
  });
  afterAll(async () => {
    await sql(`DROP TABLE IF EXISTS \`${table}\``);
  });

  it('a second process opening a held namespace is refused with INVALID_CONFIGURATION, and admitted once it is released', async () => {
    const namespace = runId('held');
    const store = openStore(namespace);
    try {
      await store.put('g', 'm', 'v');
      const refused = child(['open', MARIADB_URL, table, namespace, String(LEASE_MS)]);
      expect(await refused.next()).toBe('refused INVALID_CONFIGURATION');
    } finally {
      await store.close();
    }
    const admitted = child(['open', MARIADB_URL, table, namespace, String(LEASE_MS)]);
    expect(await admitted.next()).toBe('ok');
    // And now the child holds it: this process is refused in turn.
    const again = openStore(namespace);
    try {
      expect(await again.get('g', 'm').catch((error: unknown) => (error as VaultError).code)).toBe('INVALID_CONFIGURATION');
    } finally {
      await again.close();
    }
  });

  /** Runs the child's batch and kills it with SIGKILL once it printed `signal`. */
  async function killDuring(namespace: string, pass: string, signal: string): Promise<void> {
    const writer = child(['crash', MARIADB_URL, table, namespace, String(LEASE_MS), 'g', pass]);
    expect(await writer.next()).toBe(signal);
    await kill(writer.process);
  }

  /** The group as the next store to open the namespace sees it, once the killed holder's lease ran out. */
  async function inspect(namespace: string): Promise<string[]> {
    const store = await openAfterLease(namespace);
    try {
      return (await store.list('g')).map((item) => `${item.member}=${item.entry.value}`);
    } finally {
      await store.close();
    }
  }

  it('a batch killed with SIGKILL part-way is undone by the next store to open the namespace', async () => {
    const namespace = runId('crash');
    await killDuring(namespace, '3', 'mid');
    // Torn on disk: the journal and two of the eight new values made it, the rest did not.
    // Keyv prefixes every key with its own namespace, `keyv:`.
    const rows = await sql<Array<{ id: string; value: string }>>(`SELECT id, value FROM \`${table}\` WHERE id LIKE ?`, [`keyv:${namespace}{g}:%`]);
    expect(rows.filter((row) => row.value.includes('new'))).toHaveLength(2);
    const journal = `keyv:${namespace}}journal`;
    expect(await sql<unknown[]>(`SELECT id FROM \`${table}\` WHERE id = ?`, [journal])).toHaveLength(1);

    expect(await inspect(namespace)).toEqual(Array.from({ length: 8 }, (_, i) => `m${i}=old`));
    expect(await sql<unknown[]>(`SELECT id FROM \`${table}\` WHERE id = ?`, [journal])).toHaveLength(0);
  });

  it('a batch that resolved before SIGKILL is there whole', async () => {
    const namespace = runId('done');
    await killDuring(namespace, 'all', 'committed');
    expect(await inspect(namespace)).toEqual(Array.from({ length: 8 }, (_, i) => `m${i}=new`));
  });

  it('a store whose connection is cut rejects every call, and its data is intact once it is back', async () => {
    const proxy = tcpProxy({ host: '127.0.0.1', port: 3306 }, await freePort());
    await proxy.start();
    const store = openStore(runId('cut'), `mysql://root@127.0.0.1:${proxy.port}/test`);
    try {
      await store.put('g', 'm', 'v');
      await store.insert('g', 's', 'x', { ttlMs: 60_000 });
      await store.batch('g', [], { index: { index: 'accounts', entry: 'g' } });
      await proxy.stop();
      const calls: Array<() => Promise<unknown>> = [
        () => store.get('g', 'm'),
        () => store.put('g', 'm', 'w'),
        () => store.list('g'),
        () => store.remove('g', 'm'),
        () => store.batch('g', [{ op: 'put', member: 'n', value: 'v' }]),
        () => store.purgeExpired(10),
        () => store.scan(undefined, 10),
        () => store.readIndex('accounts', 0, 10),
        () => store.batch('g', [], { index: { index: 'accounts', entry: 'g' } }),
        () => store.removeGroup('g', { index: { index: 'accounts', entry: 'g' } }),
      ];
      for (const call of calls) expect(await call().then(() => 'resolved', () => 'rejected')).toBe('rejected');
      await proxy.start();
      expect((await store.list('g')).map((item) => [item.member, item.entry.value])).toEqual([
        ['m', 'v'],
        ['s', 'x'],
      ]);
      expect(await store.readIndex('accounts', 0, 10)).toEqual({ total: 1, entries: ['g'] });
    } finally {
      await store.close();
      await proxy.stop();
    }
  });
});

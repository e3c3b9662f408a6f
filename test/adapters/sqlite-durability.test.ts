import { type ChildProcessByStdio, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';
import KeyvSqlite from '@keyv/sqlite';
import Keyv from 'keyv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSqliteStore } from '../../adapters/sqlite.js';
import { waitFor } from '../helpers/wait.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const fixture = join(root, 'test/fixtures/sqlite-writer.mjs');
const compiled = join(root, 'dist/adapters/sqlite.js');
const dir = mkdtempSync(join(tmpdir(), 'credvault-durability-'));
let counter = 0;
const freshPath = (): string => join(dir, `vault-${(counter += 1)}.db`);

type Child = ChildProcessByStdio<Writable, Readable, Readable>;

function startWriter(args: string[]): { child: Child; lines: string[]; exited: Promise<number | null> } {
  return startProcess([fixture, ...args]);
}

function startProcess(args: string[]): { child: Child; lines: string[]; exited: Promise<number | null> } {
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let partial = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    // A line cut short by SIGKILL was never fully printed, so it counts as unacknowledged.
    partial = parts.pop() ?? '';
    lines.push(...parts);
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => {
    child.on('close', (code) => {
      if (code !== 0 && code !== null) process.stderr.write(`writer exited ${code}: ${stderr}\n`);
      resolve(code);
    });
  });
  return { child, lines, exited };
}

/**
 * A child that creates indexed groups in three lanes for ever (each a batch of two writes
 * with an index entry) and removes every third one with its entry, printing `+group` or
 * `-group` once the call resolved. The two writers take the file's lock in turns, so a call
 * may wait for the other process past `queueWaitMs`: it is then refused unstarted, `!group`
 * for a creation (that group must never appear), and the lane goes on.
 */
const INDEXED_WRITER = `
import { createSqliteStore } from ${JSON.stringify(pathToFileURL(compiled).href)};
const [path, name] = process.argv.slice(1);
const store = createSqliteStore({ path, namespace: 'ix' });
const groupOf = (lane, i) => name + '-' + lane + '-' + String(i).padStart(6, '0');
const refusedUnstarted = (error) => {
  if (!/was not started; nothing was written/.test(String(error?.message))) throw error;
};
const lane = async (id) => {
  for (let i = 0; ; i += 1) {
    const group = groupOf(id, i);
    const writes = [{ op: 'insert', member: 'profile', value: 'p' }, { op: 'put', member: 'cred:a', value: 'v' }];
    try {
      const result = await store.batch(group, writes, { index: { index: 'accounts', entry: group } });
      if (!result.committed) throw new Error('batch of a fresh group did not commit');
      process.stdout.write('+' + group + '\\n');
    } catch (error) {
      refusedUnstarted(error);
      process.stdout.write('!' + group + '\\n');
    }
    if (i % 3 === 2) {
      const old = groupOf(id, i - 1);
      try {
        await store.removeGroup(old, { index: { index: 'accounts', entry: old } });
        process.stdout.write('-' + old + '\\n');
      } catch (error) {
        refusedUnstarted(error);
      }
    }
  }
};
await Promise.all([0, 1, 2].map(lane));
`;

function startIndexedWriter(path: string, name: string): { child: Child; lines: string[]; exited: Promise<number | null> } {
  return startProcess(['--input-type=module', '-e', INDEXED_WRITER, path, name]);
}

beforeAll(() => {
  // The child processes run the compiled adapter; a stale build would test old code.
  if (!existsSync(compiled) || statSync(compiled).mtimeMs < statSync(join(root, 'adapters/sqlite.ts')).mtimeMs) {
    throw new Error('dist/adapters/sqlite.js is missing or stale: run `npx tsc -p tsconfig.build.json` first');
  }
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('sqlite durability', () => {
  it('keeps data across close and reopen, in WAL mode, in the row format Keyv reads', async () => {
    const path = freshPath();
    const first = createSqliteStore({ path, namespace: 'tenant:a' });
    expect(await first.put('acct', 'cred:api_key', 'secret-1')).toBe('added');
    expect(await first.insert('acct', 'token:t1', 'tok', { ttlMs: 3_600_000 })).toBe(true);
    const before = await first.list('acct');
    await first.close();

    const second = createSqliteStore({ path, namespace: 'tenant:a' });
    expect(await second.list('acct')).toEqual(before);
    expect(await second.put('acct', 'cred:api_key', 'secret-2')).toBe('updated');
    await second.close();

    const raw = new KeyvSqlite({ uri: `sqlite://${path}`, table: 'keyv' });
    try {
      expect(await raw.query('PRAGMA journal_mode')).toEqual([{ journal_mode: 'wal' }]);
      expect(await raw.query('PRAGMA integrity_check')).toEqual([{ integrity_check: 'ok' }]);
      const rows = (await raw.query('SELECT key, value FROM keyv ORDER BY key')) as Array<{ key: string; value: string }>;
      expect(rows.map((row) => row.key)).toEqual(['tenant%3Aa{acct}:cred:api_key', 'tenant%3Aa{acct}:token:t1']);
      const stored = JSON.parse(rows[0]?.value ?? '{}') as { value: Record<string, unknown>; expires?: number };
      expect(Object.keys(stored)).toEqual(['value']);
      expect(Object.keys(stored.value).sort()).toEqual(['c', 'u', 'v', 'w']);
      expect(stored.value.v).toBe('secret-2');

      const keyv = new Keyv({ store: raw, namespace: undefined, useKeyPrefix: false, throwOnErrors: true });
      const viaKeyv = (await keyv.get('tenant%3Aa{acct}:token:t1')) as { v: string } | undefined;
      expect(viaKeyv?.v).toBe('tok');
    } finally {
      await raw.disconnect();
    }
  });

  it('keeps every acknowledged write when the writer is killed with SIGKILL', async () => {
    const path = freshPath();
    const writer = startWriter(['burst', path, 'kill', 'burst']);
    await waitFor(() => writer.lines.length >= 300, '300 acknowledged writes', 20_000);
    writer.child.kill('SIGKILL');
    expect(await writer.exited).toBe(null);
    const acknowledged = [...writer.lines];
    expect(acknowledged.length).toBeGreaterThan(299);

    const store = createSqliteStore({ path, namespace: 'kill' });
    try {
      const stored = new Map((await store.list('burst')).map((item) => [item.member, item.entry.value]));
      const lost = acknowledged.filter((member) => stored.get(member) !== `value:${member}`);
      expect(lost).toEqual([]);
      expect(stored.size >= acknowledged.length).toBe(true);
      expect(await store.put('burst', 'after-crash', 'v')).toBe('added');
    } finally {
      await store.close();
    }
  }, 30_000);

  it('keeps every acknowledged write of group-committed batches and puts when the writer is killed with SIGKILL', async () => {
    const path = freshPath();
    const writer = startWriter(['batches', path, 'groups', 'burst']);
    await waitFor(() => writer.lines.length >= 600, '600 acknowledged writes', 20_000);
    writer.child.kill('SIGKILL');
    expect(await writer.exited).toBe(null);
    const acknowledged = [...writer.lines];

    const store = createSqliteStore({ path, namespace: 'groups' });
    try {
      const stored = new Map((await store.list('burst')).map((item) => [item.member, item.entry.value]));
      const lost = acknowledged.filter((member) => stored.get(member) !== `value:${member}`);
      expect(lost).toEqual([]);
      // A batch is whole or absent: both members of each, or neither.
      for (const member of stored.keys()) {
        if (member.endsWith('-a')) expect(stored.has(member.replace(/-a$/, '-b')), member).toBe(true);
        if (member.endsWith('-b')) expect(stored.has(member.replace(/-b$/, '-a')), member).toBe(true);
      }
      expect(await store.put('burst', 'after-crash', 'v')).toBe('added');
    } finally {
      await store.close();
    }
  }, 30_000);

  it('gives exactly one added per new member when two processes race on one file', async () => {
    const path = freshPath();
    const members = 20;
    const putsPerMember = 5;
    const writers = [0, 1].map(() =>
      startWriter(['race', path, 'race', 'group', String(members), String(putsPerMember)]),
    );
    await waitFor(() => writers.every((writer) => writer.lines.includes('ready')), 'both writers ready', 20_000);
    for (const writer of writers) writer.child.stdin.write('go\n');
    expect(await Promise.all(writers.map((writer) => writer.exited))).toEqual([0, 0]);

    const reports = writers.map(
      (writer) => JSON.parse(writer.lines[1] ?? '{}') as { added: string[]; total: number; own: Record<string, string> },
    );
    for (const report of reports) expect(report.total).toBe(members * putsPerMember + members);
    const own = reports.flatMap((report) => Object.keys(report.own));
    expect(own).toHaveLength(2 * members);
    const added = reports.flatMap((report) => report.added).sort();
    expect(added).toEqual([...Array.from({ length: members }, (_, m) => `m${m}`), ...own].sort());

    const store = createSqliteStore({ path, namespace: 'race' });
    try {
      const stored = new Map((await store.list('group')).map((item) => [item.member, item.entry.value]));
      expect(stored.size).toBe(3 * members);
      // Every acknowledged value of a member one process wrote once is the stored one.
      for (const report of reports) for (const [member, value] of Object.entries(report.own)) expect(stored.get(member)).toBe(value);
    } finally {
      await store.close();
    }
  }, 30_000);

  it('leaves the index and the groups agreeing when writers are killed with SIGKILL mid-batch, again and again', async () => {
    const path = freshPath();
    // What was acknowledged: created and not removed afterwards, or removed.
    const created = new Set<string>();
    const removed = new Set<string>();
    const refused = new Set<string>();
    // Each round kills two writers wherever they are; several rounds make a kill between
    // the statements of a batch (or between a batch and a separate index write) likely.
    for (const round of [1, 2, 3, 4]) {
      const writers = ['a', 'b'].map((name) => startIndexedWriter(path, `${name}${round}`));
      // Answered either way: two processes writing one file non-stop can starve each other, and
      // a call refused after queueWaitMs (written nothing, checked below) is progress too.
      await waitFor(() => writers.every((writer) => writer.lines.length >= 100), 'each writer answering 100 calls', 20_000);
      for (const writer of writers) writer.child.kill('SIGKILL');
      expect(await Promise.all(writers.map((writer) => writer.exited))).toEqual([null, null]);
      for (const line of writers.flatMap((writer) => writer.lines)) {
        if (line.startsWith('+')) created.add(line.slice(1));
        else if (line.startsWith('-')) removed.add(line.slice(1));
        else if (line.startsWith('!')) refused.add(line.slice(1));
      }
    }
    for (const group of removed) created.delete(group);
    // Every third group (i % 3 === 1) has a removal that may have committed just before a
    // kill, unacknowledged; every other acknowledged group must be there.
    const kept = [...created].filter((group) => Number(group.slice(-6)) % 3 !== 1);
    expect(kept.length).toBeGreaterThan(50);
    expect(removed.size).toBeGreaterThan(50);

    const store = createSqliteStore({ path, namespace: 'ix' });
    try {
      const members = new Map<string, string[]>();
      for (let cursor: string | undefined, first = true; first || cursor !== undefined; first = false) {
        const page = await store.scan(cursor, 500);
        for (const item of page.items) members.set(item.group, [...(members.get(item.group) ?? []), item.member]);
        cursor = page.cursor;
      }
      // Each batch committed whole or not at all, so every group holds both of its members.
      for (const [group, names] of members) expect([group, names.sort()]).toEqual([group, ['cred:a', 'profile']]);
      const entries: string[] = [];
      let total = -1;
      for (let offset = 0; ; offset += 100) {
        const page = await store.readIndex('accounts', offset, 100);
        total = page.total;
        entries.push(...page.entries);
        if (page.entries.length < 100) break;
      }
      const groups = [...members.keys()].sort();
      expect(entries).toEqual(groups);
      expect(total).toBe(groups.length);
      for (const group of kept) expect(members.has(group), `acknowledged ${group} is there`).toBe(true);
      for (const group of removed) expect(members.has(group), `acknowledged removal of ${group} held`).toBe(false);
      for (const group of refused) expect(members.has(group), `refused creation of ${group} wrote nothing`).toBe(false);

      // The file goes on: one more indexed group counts once.
      const next = await store.batch('after-crash', [{ op: 'put', member: 'profile', value: 'p' }], {
        index: { index: 'accounts', entry: 'after-crash' },
      });
      expect(next.committed).toBe(true);
      expect((await store.readIndex('accounts', 0, 1)).total).toBe(groups.length + 1);
    } finally {
      await store.close();
    }
    const raw = new KeyvSqlite({ uri: `sqlite://${path}`, table: 'keyv' });
    try {
      expect(await raw.query('PRAGMA integrity_check')).toEqual([{ integrity_check: 'ok' }]);
    } finally {
      await raw.disconnect();
    }
  }, 40_000);
});

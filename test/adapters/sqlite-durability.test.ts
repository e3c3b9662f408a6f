import { type ChildProcessByStdio, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
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
  const child = spawn(process.execPath, [fixture, ...args], { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
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

    const reports = writers.map((writer) => JSON.parse(writer.lines[1] ?? '{}') as { added: string[]; total: number });
    for (const report of reports) expect(report.total).toBe(members * putsPerMember);
    const added = reports.flatMap((report) => report.added).sort();
    expect(added).toEqual(Array.from({ length: members }, (_, m) => `m${m}`).sort());

    const store = createSqliteStore({ path, namespace: 'race' });
    try {
      expect(await store.list('group')).toHaveLength(members);
    } finally {
      await store.close();
    }
  }, 30_000);
});

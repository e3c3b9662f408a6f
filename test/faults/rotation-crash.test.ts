/**
 * `credvault keys rotate` killed with SIGKILL mid-run, on SQLite, Redis and PostgreSQL, then
 * run again: after each kill every value still opens (with the keys the run was given), and
 * the rerun completes. For a re-wrap (a new primary key) the old key is then no longer needed;
 * for `--reseal`, the rerun (without the flag) finishes the same run: every account ends with
 * one data key of that run, every value sealed under it, and the run's record is gone.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { createClient } from '@keyv/redis';
import pg from 'pg';
import { afterEach, describe as describeAlways, expect, it } from 'vitest';
import { createLinkedAccount, createVault, getDefaultAppCredential, issueSessionToken, rotateKeys, type Vault } from '../../src/index.js';
import { accountGroup, DATA_KEY, META_GROUP, RESEAL_RUN, type AccountRef } from '../../src/core/layout.js';
import { parseDataKeyRecord } from '../../src/core/data-keys.js';
import { sealedHeader } from '../../src/crypto/cipher.js';
import { namespacePrefix } from '../../adapters/kernel.js';
import { assertBuilt, CLI, cleanEnv, killAll, makeTempDir, removeDir, run } from '../cli/helpers.js';
import { escapeGlob, POSTGRES_URL, REDIS_URL, redisUrlWithRandomDb, runId, serviceSuite } from '../helpers/services.js';
import { sleep } from '../helpers/wait.js';

assertBuilt();

const ACCOUNTS = 300;
const CREDENTIALS = ['alpha', 'beta', 'gamma'] as const;
const keyEntry = (id: string) => `${id}:${randomBytes(32).toString('base64')}`;
const valueOf = (accountId: string, key: string) => `secret-${key}-${accountId}`;
const refOf = (i: number): AccountRef => ({ org: 'acme', environment: 'test', accountId: `crash-${i}` });

interface Target {
  url: string;
  namespace: string;
  cleanup(): Promise<void>;
}

type Kind = 'sqlite' | 'redis' | 'postgres';

async function target(kind: Kind): Promise<Target> {
  const namespace = runId('cvrot');
  if (kind === 'sqlite') {
    const dir = await makeTempDir();
    return { url: `sqlite:${path.join(dir, 'vault.db')}`, namespace, cleanup: () => removeDir(dir) };
  }
  if (kind === 'redis') {
    const url = redisUrlWithRandomDb();
    return {
      url,
      namespace,
      async cleanup() {
        const client = createClient({ url });
        await client.connect();
        try {
          const keys: string[] = [];
          for await (const batch of client.scanIterator({ MATCH: `${escapeGlob(namespacePrefix(namespace))}*`, COUNT: 1000 })) keys.push(...batch);
          for (let i = 0; i < keys.length; i += 500) await client.del(keys.slice(i, i + 500));
        } finally {
          client.destroy();
        }
      },
    };
  }
  return {
    url: POSTGRES_URL,
    namespace,
    async cleanup() {
      const client = new pg.Client({ connectionString: POSTGRES_URL });
      await client.connect();
      try {
        await client.query('DELETE FROM public.keyv WHERE key LIKE $1', [`${namespacePrefix(namespace)}%`]);
      } finally {
        await client.end();
      }
    },
  };
}

const suites: Array<[Kind, (name: string, body: () => void) => void]> = [
  ['sqlite', (name, body) => describeAlways(name, body)],
  ['redis', (await serviceSuite('Redis', REDIS_URL)).describe],
  ['postgres', (await serviceSuite('PostgreSQL', POSTGRES_URL)).describe],
];

for (const [kind, describe] of suites) {
  describe(`keys rotate killed with SIGKILL and run again: ${kind}`, () => {
    const cleanups: Array<() => Promise<void>> = [];
    afterEach(async () => {
      killAll();
      for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
    });

    async function seeded(keys: string): Promise<{ at: Target; vault: Vault; token: string }> {
      const at = await target(kind);
      cleanups.push(at.cleanup);
      const vault = await createVault({ store: at.url, namespace: at.namespace, keys, log: () => undefined });
      cleanups.push(() => vault.close());
      for (let i = 0; i < ACCOUNTS; i++) {
        const ref = refOf(i);
        await createLinkedAccount(vault, ref, { credentials: Object.fromEntries(CREDENTIALS.map((k) => [k, valueOf(ref.accountId, k)])) });
      }
      const { token } = await issueSessionToken(vault, refOf(0));
      return { at, vault, token };
    }

    const rotateArgs = (at: Target, ...extra: string[]) => ['keys', 'rotate', '--store', at.url, '--namespace', at.namespace, '--batch-size', '7', ...extra];

    /**
     * Starts the rotation in a child process and kills it with SIGKILL as soon as `started`
     * sees its first change in the store, after a further random 0 to 40 ms. Returns whether it
     * was killed (false: it finished first).
     */
    async function killMidRun(args: string[], keys: string, started: () => Promise<boolean>): Promise<boolean> {
      const child: ChildProcess = spawn(process.execPath, [CLI, ...args], { env: cleanEnv({ CREDVAULT_KEYS: keys }), stdio: 'ignore' });
      let exited = false;
      const exit = new Promise<void>((resolve) => child.once('exit', () => ((exited = true), resolve())));
      const deadline = Date.now() + 20_000;
      while (!exited && !(await started())) {
        if (Date.now() > deadline) throw new Error('the rotation changed nothing within 20 s');
        await sleep(2);
      }
      await sleep(Math.floor(Math.random() * 40));
      const killed = !exited && child.kill('SIGKILL');
      await exit;
      return killed;
    }

    /** Every value of every account opens with `vault`. */
    async function allOpen(vault: Vault): Promise<void> {
      for (let i = 0; i < ACCOUNTS; i++) {
        const ref = refOf(i);
        for (const key of CREDENTIALS) expect(await getDefaultAppCredential(vault, ref, key)).toBe(valueOf(ref.accountId, key));
      }
    }

    async function dataKeys(vault: Vault, i: number) {
      return parseDataKeyRecord((await vault.store.get(accountGroup(refOf(i)), DATA_KEY))?.value as string)?.keys ?? [];
    }

    it('a re-wrap under a new primary: killed twice mid-run, every value opens each time, and a rerun retires the old key', async () => {
      const A = keyEntry('kA');
      const B = keyEntry('kB');
      const { at, vault } = await seeded(A);
      const both = `${B},${A}`;
      let kills = 0;
      for (let round = 0; round < 2; round++) {
        const probe = await createVault({ store: at.url, namespace: at.namespace, keys: both, log: () => undefined });
        const before = await Promise.all(Array.from({ length: ACCOUNTS }, (_, i) => dataKeys(probe, i).then((keys) => keys[0]?.kek)));
        // Watch a spread of accounts; the first one re-wrapped means the run is under way.
        const watched = Array.from({ length: 30 }, (_, n) => Math.floor((n * ACCOUNTS) / 30));
        const changed = async () => {
          for (const i of watched) if ((await dataKeys(probe, i))[0]?.kek !== before[i]) return true;
          return false;
        };
        if (await killMidRun(rotateArgs(at), both, changed)) kills += 1;
        const kekIds = new Set(await Promise.all(Array.from({ length: ACCOUNTS }, (_, i) => dataKeys(probe, i).then((keys) => keys.map((k) => k.kek).join()))));
        // Cut off mid-run: some accounts are under the new KEK; nothing is lost either way.
        expect(kekIds.has('local:kB')).toBe(true);
        await allOpen(probe);
        await probe.close();
      }
      expect(kills).toBeGreaterThan(0);
      const done = await run(rotateArgs(at), { env: { CREDVAULT_KEYS: both }, timeoutMs: 120_000 });
      expect(done.code, done.stderr).toBe(0);
      const onlyB = await createVault({ store: at.url, namespace: at.namespace, keys: B, log: () => undefined });
      cleanups.push(() => onlyB.close());
      await allOpen(onlyB);
      for (let i = 0; i < ACCOUNTS; i += 37) expect((await dataKeys(onlyB, i)).map((k) => k.kek)).toEqual(['local:kB']);
      expect(await rotateKeys(onlyB)).toMatchObject({ rewrapped: 0, resealed: 0 });
      await vault.close();
    });

    it('--reseal killed mid-run: values open after the kill, a plain rerun finishes the same run, and no account keeps an old key', async () => {
      const A = keyEntry('kA');
      const { at, vault, token } = await seeded(A);
      const before = await Promise.all(Array.from({ length: ACCOUNTS }, (_, i) => dataKeys(vault, i).then((keys) => keys[0]?.id as string)));
      const started = async () => (await vault.store.get(META_GROUP, RESEAL_RUN)) !== undefined && (await dataKeys(vault, 0)).length > 0;
      const killed = await killMidRun(rotateArgs(at, '--reseal'), A, async () => {
        if (!(await started())) return false;
        for (let n = 0; n < 30; n++) {
          const i = Math.floor((n * ACCOUNTS) / 30);
          if ((await dataKeys(vault, i))[0]?.id !== before[i]) return true;
        }
        return false;
      });
      expect(killed).toBe(true);
      const marker = await vault.store.get(META_GROUP, RESEAL_RUN);
      expect(marker).toBeDefined();
      const run1 = (JSON.parse(marker?.value as string) as { id: string }).id;
      const probe = await createVault({ store: at.url, namespace: at.namespace, keys: A, log: () => undefined });
      cleanups.push(() => probe.close());
      await allOpen(probe);

      const done = await run(rotateArgs(at), { env: { CREDVAULT_KEYS: A }, timeoutMs: 120_000 });
      expect(done.code, done.stderr).toBe(0);
      const after = await createVault({ store: at.url, namespace: at.namespace, keys: A, log: () => undefined });
      cleanups.push(() => after.close());
      expect(await after.store.get(META_GROUP, RESEAL_RUN)).toBeUndefined();
      for (let i = 0; i < ACCOUNTS; i++) {
        const keys = await dataKeys(after, i);
        expect(keys).toHaveLength(1);
        expect(keys[0]?.run).toBe(run1);
        expect(keys[0]?.id).not.toBe(before[i]);
        for (const { member, entry } of await after.store.list(accountGroup(refOf(i)), 'cred:')) {
          expect(sealedHeader(entry.value)?.keyId, member).toBe(keys[0]?.id);
        }
      }
      await allOpen(after);
      expect((await issueSessionToken(after, refOf(0))).token).toBe(token);
      await vault.close();
    });
  });
}

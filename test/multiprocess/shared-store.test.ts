import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { createClient, type RedisClientType } from '@keyv/redis';
import pg from 'pg';
import { assertBuilt, killAll, makeTempDir, putCredential, removeDir, request, runJson, startServer, type Server } from '../cli/helpers.js';
import { POSTGRES_URL, REDIS_URL, escapeGlob, serviceSuite } from '../helpers/services.js';

/**
 * Several `credvault serve` processes, on different frameworks, sharing one store: racing
 * writers get exactly one `added` per key and lose nothing, and a revocation made through
 * one process is seen by the others at once.
 */

const redis = await serviceSuite('Redis', REDIS_URL);
const postgres = await serviceSuite('PostgreSQL', POSTGRES_URL);

interface Backend {
  name: string;
  suite: (title: string, body: () => void) => void;
  /** The store URL for this run, and how to remove everything the run wrote. */
  prepare(namespace: string): Promise<{ url: string; cleanup(): Promise<void> }>;
}

const backends: Backend[] = [
  {
    name: 'SQLite',
    suite: describe,
    async prepare() {
      const dir = await makeTempDir();
      return { url: `sqlite:${path.join(dir, 'vault.db')}`, cleanup: () => removeDir(dir) };
    },
  },
  {
    name: 'Redis',
    suite: redis.describe,
    async prepare(namespace) {
      return {
        url: REDIS_URL,
        async cleanup() {
          const client = createClient({ url: REDIS_URL }) as RedisClientType;
          await client.connect();
          const keys: string[] = [];
          for await (const batch of client.scanIterator({ MATCH: `${escapeGlob(namespace)}*`, COUNT: 500 })) keys.push(...batch);
          if (keys.length > 0) await client.del(keys);
          await client.quit();
        },
      };
    },
  },
  {
    name: 'PostgreSQL',
    suite: postgres.describe,
    async prepare(namespace) {
      return {
        url: POSTGRES_URL,
        async cleanup() {
          const client = new pg.Client({ connectionString: POSTGRES_URL });
          await client.connect();
          await client.query('DELETE FROM keyv WHERE starts_with(key, $1)', [namespace]);
          await client.end();
        },
      };
    },
  },
];

for (const backend of backends) {
  backend.suite(`two server processes on one ${backend.name} store`, () => {
    const namespace = `mp_${randomBytes(6).toString('hex')}`;
    const env = { CREDVAULT_KEYS: `k1:${randomBytes(32).toString('base64')}`, CREDVAULT_NAMESPACE: namespace };
    let store: string[];
    let cleanup: () => Promise<void>;
    let servers: Server[];
    let apiKey: { api_key: string; key_id: string };

    beforeAll(async () => {
      assertBuilt();
      const prepared = await backend.prepare(namespace);
      cleanup = prepared.cleanup;
      store = ['--store', prepared.url];
      apiKey = await runJson(['api-key', 'create', '--org', 'acme', ...store], { env });
      await runJson(['linked-account', 'create', '--org', 'acme', '--id', 'shared', '--credential', 'seed=1', ...store], { env });
      servers = await Promise.all([
        startServer([...store, '--framework', 'express'], { env }),
        startServer([...store, '--framework', 'koa'], { env }),
      ]);
    });
    afterAll(async () => {
      killAll();
      await cleanup?.();
    });

    const auth = () => ({ apiKey: apiKey.api_key, accountId: 'shared' });

    it('racing writers on both processes: exactly one "added" per key, nothing lost', async () => {
      const keys = Array.from({ length: 12 }, (_, i) => `race_${i}`);
      const writes = keys.flatMap((key) =>
        Array.from({ length: 8 }, (_, n) => ({ key, value: `${key}-w${n}`, server: servers[n % 2] as Server })),
      );
      const results = await Promise.all(writes.map((w) => putCredential(w.server.url, w.key, w.value, auth())));
      expect(results.map((r) => r.status)).toEqual(writes.map(() => 200));
      for (const key of keys) {
        const actions = results.filter((_, i) => writes[i]?.key === key).map((r) => (r.body as { action: string }).action);
        expect(actions.filter((a) => a === 'added'), key).toHaveLength(1);
      }
      const distinct = Array.from({ length: 60 }, (_, i) => `distinct_${i}`);
      const distinctResults = await Promise.all(
        distinct.map((key, i) => putCredential((servers[i % 2] as Server).url, key, `v-${key}`, auth())),
      );
      expect(distinctResults.every((r) => r.status === 200 && (r.body as { action: string }).action === 'added')).toBe(true);
      const listed = await runJson<{ credentials: Array<{ key: string; value: string }> }>(
        ['credentials', 'list', '--org', 'acme', '--id', 'shared', '--reveal', ...store],
        { env },
      );
      const byKey = new Map(listed.credentials.map((c) => [c.key, c.value]));
      for (const key of distinct) expect(byKey.get(key)).toBe(`v-${key}`);
      for (const key of keys) expect(byKey.get(key)).toMatch(new RegExp(`^${key}-w[0-7]$`));
    });

    it('a session token revoked through one process is dead on the other at once', async () => {
      const [first, second] = servers as [Server, Server];
      const issued = await request(`${first.url}/api/v2/public/session-token`, {
        method: 'POST',
        headers: { 'x-api-key': apiKey.api_key, 'content-type': 'application/json' },
        body: JSON.stringify({ linked_account_id: 'shared' }),
      });
      const token = (issued.body as { token: string }).token;
      expect((await putCredential(second.url, 'via_token', 'v1', { token })).status).toBe(200);
      const revoked = await request(`${first.url}/api/v2/public/session-token/revoke`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
      expect(revoked.body).toEqual({ success: true, revoked_count: 1 });
      const after = await putCredential(second.url, 'via_token', 'v2', { token });
      expect(after.status).toBe(401);
      expect(after.body).toMatchObject({ error: 'INVALID_TOKEN', message: 'Invalid token' });
    });

    it('an API key revoked by the CLI is refused by both processes at once', async () => {
      const extra = await runJson<{ api_key: string; key_id: string }>(['api-key', 'create', '--org', 'acme', ...store], { env });
      for (const server of servers) {
        expect((await putCredential(server.url, 'via_extra', 'v', { apiKey: extra.api_key, accountId: 'shared' })).status).toBe(200);
      }
      await runJson(['api-key', 'revoke', '--key-id', extra.key_id, ...store], { env });
      for (const server of servers) {
        const result = await putCredential(server.url, 'via_extra', 'v', { apiKey: extra.api_key, accountId: 'shared' });
        expect(result.status).toBe(401);
      }
    });
  });
}

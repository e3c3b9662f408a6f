import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Runs an ES module in a fresh Node process from the project root, so `credvault` resolves to this package. */
function runModule(source: string): string {
  return execFileSync(process.execPath, ['--input-type=module', '-e', source], { cwd: root, encoding: 'utf8' });
}

describe('the published package', () => {
  it('exposes every documented entry point', () => {
    const out = runModule(`
      const entries = ['credvault', 'credvault/express', 'credvault/koa', 'credvault/fastify', 'credvault/fetch',
        'credvault/adapters/memory', 'credvault/adapters/sqlite', 'credvault/adapters/redis', 'credvault/adapters/postgres', 'credvault/testing'];
      const found = {};
      for (const entry of entries) found[entry] = Object.keys(await import(entry)).sort();
      console.log(JSON.stringify(found));
    `);
    const found = JSON.parse(out) as Record<string, string[]>;
    expect(found['credvault']).toEqual(expect.arrayContaining(['createVault', 'upsertDefaultAppCredential', 'VaultError', 'createHandler', 'rotateKeys']));
    expect(found['credvault/express']).toContain('credvaultExpress');
    expect(found['credvault/koa']).toContain('credvaultKoa');
    expect(found['credvault/fastify']).toEqual(expect.arrayContaining(['credvaultFastify', 'credvaultFrameworkErrors']));
    expect(found['credvault/fetch']).toContain('credvaultFetch');
    expect(found['credvault/adapters/memory']).toContain('createMemoryStore');
    expect(found['credvault/adapters/sqlite']).toContain('createSqliteStore');
    expect(found['credvault/adapters/redis']).toContain('createRedisStore');
    expect(found['credvault/adapters/postgres']).toContain('createPostgresStore');
    expect(found['credvault/testing']).toContain('runStoreConformance');
  });

  it('loads no SQLite, Redis or PostgreSQL client, nor any framework, from the root import', () => {
    const out = runModule(`
      import { createRequire } from 'node:module';
      await import('credvault');
      console.log(JSON.stringify(Object.keys(createRequire(import.meta.url).cache)));
    `);
    const loaded = JSON.parse(out) as string[];
    for (const client of ['sqlite3', '@keyv/sqlite', '@redis', '@keyv/redis', 'pg', '@keyv/postgres', 'express', 'koa', 'fastify']) {
      expect(loaded.filter((file) => file.includes(`/node_modules/${client}/`)), client).toEqual([]);
    }
    // The check itself can see a client when one is loaded.
    const withSqlite = JSON.parse(
      runModule(`
        import { createRequire } from 'node:module';
        await import('credvault/adapters/sqlite');
        console.log(JSON.stringify(Object.keys(createRequire(import.meta.url).cache)));
      `),
    ) as string[];
    expect(withSqlite.some((file) => file.includes('/node_modules/sqlite3/'))).toBe(true);
  });
});

/**
 * `CREDVAULT_KEK=module:<path>`: the CLI serves and rotates with a key provider of the
 * embedder's own (a KMS client), loaded from a module, through real processes. A store that
 * began on the keyring moves onto it with `keys rotate`; a module that exports no provider,
 * or cannot be loaded, is refused with exit 2 naming the file.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createVault } from '../../src/index.js';
import { accountGroup, DATA_KEY } from '../../src/core/layout.js';
import { parseDataKeyRecord } from '../../src/core/data-keys.js';
import { assertBuilt, killAll, makeTempDir, putCredential, removeDir, run, runJson, startServer } from './helpers.js';

assertBuilt();

/** A stand-in for a KMS client: AES-256-GCM under a key from the environment, the context as AAD. */
const PROVIDER_MODULE = `
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
export default async function provider() {
  const key = Buffer.from(process.env.TEST_KMS_KEY, 'base64');
  const aad = (kekId, c) => Buffer.from(JSON.stringify([kekId, c.org, c.environment, c.accountId, c.dekId]));
  return {
    kind: 'testkms',
    primaryKekId: 'testkms:one',
    hasKek: (kekId) => kekId === 'testkms:one',
    async wrap(dek, context) {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(aad('testkms:one', context));
      const out = Buffer.concat([iv, cipher.update(dek), cipher.final(), cipher.getAuthTag()]);
      return { kekId: 'testkms:one', wrapped: out.toString('base64url') };
    },
    async unwrap(wrapped, context) {
      const bytes = Buffer.from(wrapped.wrapped, 'base64url');
      const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(0, 12));
      decipher.setAAD(aad(wrapped.kekId, context));
      decipher.setAuthTag(bytes.subarray(bytes.length - 16));
      return Buffer.concat([decipher.update(bytes.subarray(12, bytes.length - 16)), decipher.final()]);
    },
  };
}
`;

describe('CREDVAULT_KEK=module:<path>', () => {
  let dir: string;
  const env = () => ({ CREDVAULT_STORE: `sqlite:${path.join(dir, 'vault.db')}`, TEST_KMS_KEY: Buffer.alloc(32, 7).toString('base64') });
  const withModule = (file = 'provider.mjs') => ({ ...env(), CREDVAULT_KEK: `module:${path.join(dir, file)}` });

  beforeAll(async () => {
    dir = await makeTempDir();
    writeFileSync(path.join(dir, 'provider.mjs'), PROVIDER_MODULE);
    writeFileSync(path.join(dir, 'not-a-provider.mjs'), 'export default { kind: "x" };\n');
    writeFileSync(path.join(dir, 'broken.mjs'), 'export default ;\n');
  });
  afterEach(() => killAll());
  afterAll(() => removeDir(dir));

  it('moves a keyring store onto the provider with keys rotate, then serves and reads with it', async () => {
    await runJson(['linked-account', 'create', '--org', 'acme', '--id', 'c1', '--credential', 'api_key=before-kms'], { env: env() });
    expect(await runJson(['keys', 'rotate'], { env: withModule() })).toMatchObject({ rewrapped: 1, resealed: 0 });

    const { api_key: apiKey } = await runJson<{ api_key: string }>(['api-key', 'create', '--org', 'acme'], { env: withModule() });
    const server = await startServer([], { env: withModule() });
    try {
      expect((await putCredential(server.url, 'other', 'via-kms', { apiKey, accountId: 'c1' })).body).toMatchObject({ action: 'added' });
    } finally {
      server.child.kill('SIGTERM');
      await server.exited();
    }
    const listed = await runJson<{ credentials: Array<{ key: string; value: string }> }>(['credentials', 'list', '--org', 'acme', '--id', 'c1', '--reveal'], {
      env: withModule(),
    });
    expect(listed.credentials.map(({ key, value }) => [key, value])).toEqual([
      ['api_key', 'before-kms'],
      ['other', 'via-kms'],
    ]);

    // Every data key is wrapped by the module's KEK now; the keyring alone no longer opens the store.
    const keys = await import('node:fs').then((fs) => fs.readFileSync(path.join(dir, 'vault.keys'), 'utf8'));
    const refused = await createVault({ store: `sqlite:${path.join(dir, 'vault.db')}`, keys: keys.trim(), log: () => undefined }).then(
      () => undefined,
      (error: unknown) => error as { code: string },
    );
    expect(refused?.code).toBe('KEYRING_MISMATCH');
    const reading = await run(['credentials', 'list', '--org', 'acme', '--id', 'c1'], { env: env() });
    expect(reading.code).toBe(1);
    expect(reading.stderr).toMatch(/testkms:one/);
  });

  it('a module that exports no provider, or cannot be loaded, exits 2 naming the file', async () => {
    for (const file of ['not-a-provider.mjs', 'broken.mjs', 'missing.mjs']) {
      const result = await run(['keys', 'rotate'], { env: withModule(file) });
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr).toContain(path.join(dir, file));
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
    }
  });

  it('the data key records name the provider\'s KEK', async () => {
    process.env.TEST_KMS_KEY = env().TEST_KMS_KEY;
    const vault = await createVault({
      store: `sqlite:${path.join(dir, 'vault.db')}`,
      keyFile: path.join(dir, 'vault.keys'),
      kek: (await import(path.join(dir, 'provider.mjs')).then((m: { default: () => Promise<never> }) => m.default())) as never,
      log: () => undefined,
    });
    try {
      const record = parseDataKeyRecord((await vault.store.get(accountGroup({ org: 'acme', environment: 'test', accountId: 'c1' }), DATA_KEY))?.value as string);
      expect(record?.keys.map((key) => key.kek)).toEqual(['testkms:one']);
    } finally {
      await vault.close();
      delete process.env.TEST_KMS_KEY;
    }
  });
});

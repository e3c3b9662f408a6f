import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  createApiKey,
  createLinkedAccount,
  createVault,
  deleteDefaultAppCredential,
  getDefaultAppCredential,
  issueSessionToken,
  revokeApiKey,
  revokeSessionToken,
  upsertDefaultAppCredential,
  upsertLinkedAccount,
  type Vault,
  type VaultEvent,
} from '../../src/index.js';
import { accountGroup, DATA_KEY, type AccountRef } from '../../src/core/layout.js';
import { parseDataKeyRecord, unwrapDataKey, type StoredDataKey } from '../../src/core/data-keys.js';
import { call, startBinding, type RunningServer } from '../http/harness.js';
import { apiKeySecret, backendSuites, createBackend, keyEntry, marker, tokenSecret, type Backend } from './helpers.js';

const BASE = '/api/v2/public';

/** The strings that must never be found, with a label for the failure message (never the secret itself). */
interface Needle {
  label: string;
  text: string;
  /** Binary needles (a key's raw bytes) are searched as these bytes, not as `text`. */
  bytes?: Buffer;
}

/** A key as it could leak: its raw bytes, base64, base64url and hex. */
function keyNeedles(label: string, key: Buffer): Needle[] {
  return [
    { label: `${label} (raw bytes)`, text: key.toString('hex'), bytes: Buffer.from(key) },
    { label: `${label} (base64)`, text: key.toString('base64') },
    { label: `${label} (base64url)`, text: key.toString('base64url') },
    { label: `${label} (hex)`, text: key.toString('hex') },
  ];
}

/** Needles for a long value: the whole of it, and windows from its start, middle and end. */
function longValueNeedles(label: string, value: string): Needle[] {
  const windows = [0, Math.floor(value.length / 2), value.length - 32].map((at) => value.slice(at, at + 32));
  return [{ label, text: value }, ...windows.map((text, i) => ({ label: `${label} window ${i}`, text }))];
}

function findNeedles(haystacks: Array<{ where: string; bytes: Buffer }>, needles: Needle[]): string[] {
  const found: string[] = [];
  for (const { where, bytes } of haystacks) {
    for (const { label, text, bytes: raw } of needles) {
      if (bytes.includes(raw ?? Buffer.from(text, 'utf8'))) found.push(`${label} in ${where}`);
    }
  }
  return found;
}

for (const suite of await backendSuites()) {
  suite.describe(`no secret at rest: ${suite.kind}`, () => {
    let backend: Backend;
    let vault: Vault;
    let server: RunningServer;
    const events: VaultEvent[] = [];
    const needles: Needle[] = [];
    const secret = (label: string, text: string) => {
      needles.push({ label, text });
      return text;
    };
    const A: AccountRef = { org: 'acme', environment: 'test', accountId: 'cust-1' };
    const B: AccountRef = { org: 'acme', environment: 'production', accountId: 'cust/2:ü' };

    beforeAll(async () => {
      backend = await createBackend(suite.kind);
      const k1 = keyEntry('k1');
      needles.push(...keyNeedles('keyring key k1', Buffer.from(k1.material, 'base64')));
      vault = await createVault({
        store: backend.openStore(),
        keys: k1.entry,
        log: () => undefined,
        onEvent: (event) => {
          events.push(structuredClone(event));
        },
      });
      server = await startBinding('express', vault);

      // API keys: one used over HTTP, one revoked.
      const testKey = await createApiKey(vault, { org: 'acme', environment: 'test' });
      const prodKey = await createApiKey(vault, { org: 'acme', environment: 'production' });
      const revoked = await createApiKey(vault, { org: 'acme', environment: 'test' });
      for (const [label, key] of [['test api key', testKey], ['production api key', prodKey], ['revoked api key', revoked]] as const) {
        secret(label, key.apiKey);
        secret(`${label} secret part`, apiKeySecret(key.apiKey));
      }
      await revokeApiKey(vault, revoked.keyId);

      // Credentials: seeded with the account, upserted, updated, deleted, over HTTP too.
      await createLinkedAccount(vault, A, {
        credentials: { api_key: secret('seeded', marker('seeded')), numeric: 4242424242424242 },
        udf: { note: 'not a secret' },
      });
      await upsertDefaultAppCredential(vault, A, 'client_secret', secret('upserted', marker('upserted')));
      await upsertDefaultAppCredential(vault, A, 'client_secret', secret('updated', marker('updated')));
      secret('numeric value', '4242424242424242');
      await upsertDefaultAppCredential(vault, A, 'to_delete', secret('deleted', marker('deleted')));
      await deleteDefaultAppCredential(vault, A, 'to_delete');
      // Exactly the 64 KiB cap, random so that no window of it occurs by chance.
      const big = randomBytes(48 * 1024).toString('base64');
      expect(Buffer.byteLength(big)).toBe(64 * 1024);
      needles.push(...longValueNeedles('64 KiB value', big));
      await upsertDefaultAppCredential(vault, A, 'big', big);
      const unicodeMarker = marker('uni');
      const unicode = `ключ-🔐-${unicodeMarker}-密钥-é\u0301-\u{1F600}`;
      secret('unicode value', unicode);
      secret('unicode value marker', unicodeMarker);
      secret('unicode value prefix', 'ключ-🔐');
      await upsertDefaultAppCredential(vault, A, 'unicode', unicode);

      await upsertLinkedAccount(vault, B, { credentials: { api_key: secret('upsert-seeded', marker('upsert-seeded')) } });
      const viaHttp = secret('http value', marker('http'));
      const put = await call(`${server.url}${BASE}/linked-account/default-app/auth-credentials/http_key`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json', 'x-api-key': testKey.apiKey, linked_account_id: A.accountId },
        body: JSON.stringify({ value: viaHttp }),
      });
      expect(put.status).toBe(200);
      const created = await call(`${server.url}${BASE}/linked-account`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': testKey.apiKey },
        body: JSON.stringify({ account_id: 'cust-3', your_app: { auth_credentials: { token: secret('http seeded', marker('http-seeded')) } } }),
      });
      expect(created.status).toBe(200);

      // Session tokens: issued in the library and over HTTP, reused, refreshed, revoked.
      const tokens = [
        (await issueSessionToken(vault, A)).token,
        (await issueSessionToken(vault, A, { forceRefresh: true })).token,
        (await issueSessionToken(vault, B)).token,
      ];
      const issued = await call(`${server.url}${BASE}/session-token?force_refresh=true`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': testKey.apiKey },
        body: JSON.stringify({ linked_account_id: 'cust-3' }),
      });
      expect(issued.status).toBe(200);
      tokens.push((issued.body as { token: string }).token);
      const revokedToken = (await issueSessionToken(vault, B, { forceRefresh: true })).token;
      expect(await revokeSessionToken(vault, revokedToken)).toBe(1);
      tokens.push(revokedToken);
      // A credential write authenticated by a session token.
      const bySession = await call(`${server.url}${BASE}/linked-account/default-app/auth-credentials/by_session`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${tokens[3] as string}` },
        body: JSON.stringify({ value: secret('session-written', marker('session-written')) }),
      });
      expect(bySession.status).toBe(200);
      tokens.forEach((token, i) => {
        secret(`session token ${i}`, token);
        secret(`session token ${i} secret part`, tokenSecret(token));
      });
      // A failed attempt with a wrong secret leaves nothing of it either.
      const wrong = `${(tokens[0] as string).slice(0, (tokens[0] as string).lastIndexOf('.') + 1)}${randomBytes(32).toString('base64url')}`;
      secret('guessed token', wrong);
      const refused = await call(`${server.url}${BASE}/session/active-linked-account`, { headers: { authorization: `Bearer ${wrong}` } });
      expect(refused.status).toBe(401);

      // Each account's data key, unwrapped: stored only wrapped.
      for (const ref of [A, B, { ...A, accountId: 'cust-3' }]) {
        const record = parseDataKeyRecord((await vault.store.get(accountGroup(ref), DATA_KEY))?.value as string);
        expect(record?.keys).toHaveLength(1);
        const dataKey = await unwrapDataKey(vault.keyProvider, ref, record?.keys[0] as StoredDataKey);
        expect(dataKey.key).toHaveLength(32);
        needles.push(...keyNeedles(`data key of ${ref.accountId}`, dataKey.key));
      }
    });

    afterAll(async () => {
      await server?.close();
      await backend?.cleanup();
    });

    it('the values are really stored (the scan below looks at live data)', async () => {
      expect(await getDefaultAppCredential(vault, A, 'big')).toHaveLength(64 * 1024);
      expect(await getDefaultAppCredential(vault, A, 'unicode')).toMatch(/^ключ-🔐-uni-/);
      const haystacks = await backend.atRest();
      expect(haystacks.length).toBeGreaterThan(0);
      // Sealed values are there, so a missing needle means "sealed", not "nowhere".
      const all = Buffer.concat(haystacks.map((h) => h.bytes));
      expect(all.includes(Buffer.from('cv1.k1.'))).toBe(true);
      expect(needles.length).toBeGreaterThan(30);
    });

    it('the scan finds a plaintext that is written to the store (a positive control for the search itself)', async () => {
      const control = { label: 'control', text: `ctl-ключ-${marker('control')}` };
      await vault.store.put('control', 'plain', control.text);
      try {
        expect(findNeedles(await backend.atRest(), [control]).length).toBeGreaterThan(0);
      } finally {
        await vault.store.remove('control', 'plain');
      }
    });

    it('a data key written in the clear would be found (a positive control for the key needles)', async () => {
      const key = randomBytes(32);
      await vault.store.put('control', 'key', `{"k":"${key.toString('base64url')}","h":"${key.toString('hex')}"}`);
      try {
        const labels = findNeedles(await backend.atRest(), keyNeedles('control key', key)).map((found) => found.replace(/ in .*$/, ''));
        expect(new Set(labels)).toEqual(new Set(['control key (base64url)', 'control key (hex)']));
      } finally {
        await vault.store.remove('control', 'key');
      }
    });

    it('no credential value, API key, session token, data key or keyring key, or secret part of one, is anywhere in the backend', async () => {
      expect(findNeedles(await backend.atRest(), needles)).toEqual([]);
    });

    it.runIf(suite.kind === 'sqlite')('nor in the SQLite files once the store is closed and the WAL checkpointed', async () => {
      await backend.closeStores();
      expect(findNeedles(await backend.atRest(), needles)).toEqual([]);
    });

    it('no audit event carries any of them', () => {
      expect(events.length).toBeGreaterThan(10);
      const text = JSON.stringify(events);
      expect(needles.filter((n) => text.includes(n.text)).map((n) => n.label)).toEqual([]);
    });
  });
}

import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  createApiKey,
  createLinkedAccount,
  createVault,
  getDefaultAppCredential,
  issueSessionToken,
  listDefaultAppCredentials,
  upsertDefaultAppCredential,
  VaultError,
  type Vault,
} from '../../src/index.js';
import { accountGroup, credentialMember, SESSION_PREFIX, type AccountRef } from '../../src/core/layout.js';
import { call, startBinding, type RunningServer } from '../http/harness.js';
import { backendSuites, createBackend, keyEntry, marker, type Backend } from './helpers.js';

const OPAQUE = 'Stored credential could not be decrypted';
const BASE = '/api/v2/public';

/** Changes the character at `index` to another base64url character (or another character of the header). */
function flipAt(sealed: string, index: number): string {
  const c = sealed[index] as string;
  const replacement = c === 'A' ? 'B' : c === '.' ? '_' : 'A';
  return sealed.slice(0, index) + replacement + sealed.slice(index + 1);
}

/** Positions inside each part of `cv2.<data key id>.<nonce>.<ciphertext>.<tag>`. */
function flipPositions(sealed: string): Array<{ part: string; index: number }> {
  const parts = sealed.split('.');
  expect(parts).toHaveLength(5);
  const starts: number[] = [];
  let at = 0;
  for (const p of parts) {
    starts.push(at);
    at += p.length + 1;
  }
  const s = (i: number) => starts[i] as number;
  const len = (i: number) => (parts[i] as string).length;
  return [
    { part: 'version', index: s(0) + 1 },
    { part: 'key id', index: s(1) },
    { part: 'nonce (first)', index: s(2) },
    { part: 'nonce (middle)', index: s(2) + Math.floor(len(2) / 2) },
    { part: 'ciphertext (first)', index: s(3) },
    { part: 'ciphertext (middle)', index: s(3) + Math.floor(len(3) / 2) },
    { part: 'ciphertext (last)', index: s(3) + len(3) - 1 },
    { part: 'tag (first)', index: s(4) },
    { part: 'tag (middle)', index: s(4) + Math.floor(len(4) / 2) },
    { part: 'tag (last)', index: s(4) + len(4) - 1 },
    { part: 'separator', index: s(3) - 1 },
  ];
}

async function expectDecryptionFailed(promise: Promise<unknown>): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(VaultError);
  expect((error as VaultError).code).toBe('DECRYPTION_FAILED');
  expect((error as VaultError).message).toBe(OPAQUE);
}

for (const suite of await backendSuites()) {
  suite.describe(`tampering with ciphertext at rest: ${suite.kind}`, () => {
    let backend: Backend;
    let vault: Vault;
    let server: RunningServer;
    let apiKey: string;
    const A: AccountRef = { org: 'acme', environment: 'test', accountId: 'cust-1' };
    const B: AccountRef = { org: 'acme', environment: 'test', accountId: 'cust-2' };
    // Same account id in another org and another environment.
    const otherOrg: AccountRef = { org: 'globex', environment: 'test', accountId: 'cust-1' };
    const otherEnv: AccountRef = { org: 'acme', environment: 'production', accountId: 'cust-1' };
    const values = {
      a_api: marker('a-api'),
      a_other: marker('a-other'),
      b_api: marker('b-api'),
      org_api: marker('org-api'),
      env_api: marker('env-api'),
    };
    const member = (key: string) => credentialMember(key);

    beforeAll(async () => {
      backend = await createBackend(suite.kind);
      vault = await createVault({ store: backend.openStore(), keys: keyEntry('k1').entry, log: () => undefined });
      await createLinkedAccount(vault, A, { credentials: { api_key: values.a_api, other: values.a_other } });
      await createLinkedAccount(vault, B, { credentials: { api_key: values.b_api } });
      await createLinkedAccount(vault, otherOrg, { credentials: { api_key: values.org_api } });
      await createLinkedAccount(vault, otherEnv, { credentials: { api_key: values.env_api } });
      apiKey = (await createApiKey(vault, { org: 'acme', environment: 'test' })).apiKey;
      server = await startBinding('express', vault);
    });

    afterAll(async () => {
      await server?.close();
      await backend?.cleanup();
    });

    it('a record edited by one character anywhere in its sealed value fails to open with the one opaque error; restored, it opens again', async () => {
      const group = accountGroup(A);
      const original = await backend.readSealed(group, member('api_key'));
      expect(original).toMatch(/^cv2\.[0-9a-f]{16}\./);
      const sealed = original as string;
      for (const { part, index } of flipPositions(sealed)) {
        const tampered = flipAt(sealed, index);
        expect(tampered, part).not.toBe(sealed);
        await backend.writeSealed(group, member('api_key'), tampered);
        expect(await backend.readSealed(group, member('api_key')), part).toBe(tampered);
        await expectDecryptionFailed(getDefaultAppCredential(vault, A, 'api_key'));
        await expectDecryptionFailed(listDefaultAppCredentials(vault, A, { reveal: true }));
        // Names and timestamps alone do not need the value.
        expect((await listDefaultAppCredentials(vault, A)).map((c) => c.key)).toEqual(['api_key', 'other']);
        // The neighbour in the same account is untouched.
        expect(await getDefaultAppCredential(vault, A, 'other')).toBe(values.a_other);
      }
      await backend.writeSealed(group, member('api_key'), sealed);
      expect(await getDefaultAppCredential(vault, A, 'api_key')).toBe(values.a_api);
    });

    it('a tampered record can still be overwritten over HTTP, and the new value opens', async () => {
      const group = accountGroup(A);
      const sealed = (await backend.readSealed(group, member('other'))) as string;
      await backend.writeSealed(group, member('other'), flipAt(sealed, sealed.length - 5));
      await expectDecryptionFailed(getDefaultAppCredential(vault, A, 'other'));
      const fresh = marker('fresh');
      const res = await call(`${server.url}${BASE}/linked-account/default-app/auth-credentials/other`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json', 'x-api-key': apiKey, linked_account_id: A.accountId },
        body: JSON.stringify({ value: fresh }),
      });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ action: 'updated' });
      expect(await getDefaultAppCredential(vault, A, 'other')).toBe(fresh);
      values.a_other = fresh;
    });

    it('a ciphertext copied onto another account, another org, another environment or another key name fails to open', async () => {
      const fromA = (await backend.readSealed(accountGroup(A), member('api_key'))) as string;
      const targets: Array<{ ref: AccountRef; key: string; restore: string }> = [
        { ref: B, key: 'api_key', restore: values.b_api },
        { ref: otherOrg, key: 'api_key', restore: values.org_api },
        { ref: otherEnv, key: 'api_key', restore: values.env_api },
        { ref: A, key: 'other', restore: values.a_other },
      ];
      for (const { ref, key, restore } of targets) {
        const group = accountGroup(ref);
        const own = (await backend.readSealed(group, member(key))) as string;
        expect(own).toMatch(/^cv2\./);
        await backend.writeSealed(group, member(key), fromA);
        await expectDecryptionFailed(getDefaultAppCredential(vault, ref, key));
        await expectDecryptionFailed(listDefaultAppCredentials(vault, ref, { reveal: true }));
        await backend.writeSealed(group, member(key), own);
        expect(await getDefaultAppCredential(vault, ref, key)).toBe(restore);
      }
      // And the source still opens where it belongs.
      expect(await getDefaultAppCredential(vault, A, 'api_key')).toBe(values.a_api);
    });

    it('a copied ciphertext stays unreadable after a legitimate write elsewhere in the account', async () => {
      // Copy B's value onto A's api_key, then write a new A credential: the copy must not become readable.
      const fromB = (await backend.readSealed(accountGroup(B), member('api_key'))) as string;
      const own = (await backend.readSealed(accountGroup(A), member('api_key'))) as string;
      await backend.writeSealed(accountGroup(A), member('api_key'), fromB);
      await upsertDefaultAppCredential(vault, A, 'third', marker('third'));
      await expectDecryptionFailed(getDefaultAppCredential(vault, A, 'api_key'));
      await backend.writeSealed(accountGroup(A), member('api_key'), own);
      expect(await getDefaultAppCredential(vault, A, 'api_key')).toBe(values.a_api);
    });

    it('a tampered session token record: POST /session-token answers the plain 500 row of the error table, never the token', async () => {
      const issued = await issueSessionToken(vault, B);
      const sessions = await vault.store.list(accountGroup(B), SESSION_PREFIX);
      expect(sessions).toHaveLength(1);
      const sessionMember = (sessions[0] as { member: string }).member;
      // The session record is JSON holding `sealed`; edit it inside, directly in the backend.
      const recordText = (await backend.readSealed(accountGroup(B), sessionMember)) as string;
      const record = JSON.parse(recordText) as { hash: string; sealed: string };
      const tampered = JSON.stringify({ ...record, sealed: flipAt(record.sealed, record.sealed.length - 3) });
      await backend.writeSealed(accountGroup(B), sessionMember, tampered);

      const res = await call(`${server.url}${BASE}/session-token`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': apiKey },
        body: JSON.stringify({ linked_account_id: B.accountId }),
      });
      expect(res.status).toBe(500);
      expect(res.body).toEqual({
        status_code: 500,
        http_error_type: 'INTERNAL_SERVER_ERROR',
        error: 'INTERNAL_SERVER_ERROR',
        message: 'Internal server error',
      });
      expect(res.text).not.toContain(issued.token);
      // The token itself still authenticates: its hash was not touched.
      const active = await call(`${server.url}${BASE}/session/active-linked-account`, {
        headers: { authorization: `Bearer ${issued.token}` },
      });
      expect(active.status).toBe(200);
      // A forced refresh does not need the old record, so it still works.
      const refreshed = await call(`${server.url}${BASE}/session-token?force_refresh=true`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': apiKey },
        body: JSON.stringify({ linked_account_id: B.accountId }),
      });
      expect(refreshed.status).toBe(200);
    });
  });
}

/** What the client tests share: failures taken apart, a leak check, small servers and a route probe. */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { inspect } from 'node:util';
import { expect } from 'vitest';
import { CredvaultError } from '../../src/client/index.js';
import { createHandler, createLinkedAccount, createVault, DEFAULT_BASE_PATH, issueSessionToken } from '../../src/index.js';

/**
 * Awaits `promise`, expects a {@link CredvaultError} with these fields, and returns it.
 *
 * @example
 * ```ts
 * await failure(client.revoke(), { status_code: 401, error: 'INVALID_TOKEN' });
 * ```
 */
export async function failure(promise: Promise<unknown>, expected: Partial<Pick<CredvaultError, 'status_code' | 'http_error_type' | 'error' | 'message'>>): Promise<CredvaultError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(CredvaultError);
  expect(error).toMatchObject({ name: 'CredvaultError', ...expected });
  return error as CredvaultError;
}

/** Every text an error could show: message, stack, JSON, and everything inspect sees (causes, hidden properties). */
export function textsOf(error: unknown): string {
  return [String(error), (error as Error).stack ?? '', JSON.stringify(error), inspect(error, { showHidden: true, depth: Infinity })].join('\n');
}

/** Fails if any of `secrets` appears anywhere in the error. */
export function expectNoSecret(error: unknown, secrets: Iterable<string>): void {
  const text = textsOf(error);
  for (const secret of secrets) expect(text.includes(secret), `a secret leaked into ${String(error)}`).toBe(false);
}

/** A listening server on 127.0.0.1 and an ephemeral port. */
export interface Listening {
  url: string;
  port: number;
  close(): Promise<void>;
}

export async function listen(server: http.Server): Promise<Listening> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A port nothing listens on (it was free a moment ago). */
export async function closedPort(): Promise<number> {
  const probe = await listen(http.createServer());
  await probe.close();
  return probe.port;
}

/**
 * Whether the handler routes `method path` (under the base path) at all: an unknown route
 * answers 404 "No route for ...". Asked of a throwaway vault with a valid session token, so
 * that tests of endpoints still being built can wait for them rather than fail or be faked.
 */
export async function routeExists(method: string, path: string, options: Record<string, unknown> = {}): Promise<boolean> {
  const vault = await createVault({ store: 'memory:' });
  try {
    const ref = { org: 'probe', environment: 'test', accountId: 'probe-1' };
    await createLinkedAccount(vault, ref, { credentials: {} });
    const { token } = await issueSessionToken(vault, ref);
    const handler = createHandler(vault, { failedAuthLimit: false, logError: () => undefined, ...options });
    const response = await handler.handle({ method, path: `${DEFAULT_BASE_PATH}${path}`, headers: { authorization: `Bearer ${token}` } });
    const body = response.body as { message?: unknown } | undefined;
    return !(response.status === 404 && typeof body?.message === 'string' && body.message.startsWith('No route for'));
  } finally {
    await vault.close();
  }
}

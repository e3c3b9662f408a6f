/** What the client tests share: failures taken apart, a leak check, and small servers. */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { inspect } from 'node:util';
import { expect } from 'vitest';
import { CredvaultError } from '../../src/client/index.js';
import { rejection } from '../helpers/rejection.js';

/**
 * Awaits `promise`, expects a {@link CredvaultError} with these fields, and returns it.
 *
 * @example
 * ```ts
 * await failure(client.revoke(), { status_code: 401, error: 'INVALID_TOKEN' });
 * ```
 */
export async function failure(promise: Promise<unknown>, expected: Partial<Pick<CredvaultError, 'status_code' | 'http_error_type' | 'error' | 'message'>>): Promise<CredvaultError> {
  const error = await rejection(promise, CredvaultError);
  expect(error).toMatchObject({ name: 'CredvaultError', ...expected });
  return error;
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

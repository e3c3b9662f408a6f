import { randomBytes, randomInt } from 'node:crypto';
import { connect, createServer, type Server, Socket } from 'node:net';
import { describe } from 'vitest';

/** The shared services the adapter suites run against (DESIGN.md section 6). */
export const REDIS_URL = process.env.CREDVAULT_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
export const POSTGRES_URL = process.env.CREDVAULT_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** Whether a missing service fails the run (CI) instead of skipping its suites. */
const required = process.env.CREDVAULT_REQUIRE_SERVICES === '1';

function reachable(url: string, timeoutMs = 1500): Promise<boolean> {
  const { hostname, port, protocol } = new URL(url);
  const defaultPort = protocol.startsWith('redis') ? 6379 : 5432;
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('error', () => done(false));
    socket.connect(Number(port || defaultPort), hostname.replace(/^\[|\]$/g, ''), () => done(true));
  });
}

/** A `describe` that runs its suite only when the service was reachable. */
export interface ServiceSuite {
  available: boolean;
  describe(name: string, body: () => void): void;
}

/**
 * Checks a service once per test file. Unreachable, its suites skip after a visible notice;
 * with `CREDVAULT_REQUIRE_SERVICES=1` an unreachable service throws, failing the file.
 *
 * @example
 * ```ts
 * const redis = await serviceSuite('Redis', REDIS_URL);
 * runStoreConformance({ describe: redis.describe, it, expect }, open);
 * ```
 */
export async function serviceSuite(name: string, url: string): Promise<ServiceSuite> {
  const available = await reachable(url);
  if (!available) {
    const where = url.replace(/\/\/[^@/]*@/, '//');
    if (required) {
      throw new Error(`${name} is not reachable at ${where}, and CREDVAULT_REQUIRE_SERVICES=1 requires it`);
    }
    console.warn(`[credvault tests] ${name} is not reachable at ${where}: skipping its suites (set CREDVAULT_REQUIRE_SERVICES=1 to fail instead)`);
  }
  // A plain function: vitest's describe.skip loses its mode when called as another object's method.
  return {
    available,
    describe: (title, body) => (available ? describe(title, body) : describe.skip(title, body)),
  };
}

/** A name unique to this test run, safe as a namespace, schema or table name. */
export function runId(prefix: string): string {
  return `${prefix}_${randomBytes(6).toString('hex')}`;
}

/** The shared Redis with a random database number (1 to 15), so runs rarely share a database. */
export function redisUrlWithRandomDb(): string {
  const url = new URL(REDIS_URL);
  url.pathname = `/${1 + randomInt(15)}`;
  return url.toString();
}

/** Escapes Redis glob characters so a literal prefix can go into `SCAN MATCH`. */
export function escapeGlob(literal: string): string {
  return literal.replace(/[*?[\]\\^]/g, '\\$&');
}

/** `url` pointed at 127.0.0.1:`port`, keeping its user, database and query: to reach a service through a proxy. */
export function viaPort(url: string, port: number): string {
  const out = new URL(url);
  out.hostname = '127.0.0.1';
  out.port = String(port);
  return out.toString();
}

/** A TCP port that nothing listens on right now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no TCP port');
  return address.port;
}

// Kept here too, so the service suites import their helpers from one place.
export { waitFor } from './wait.js';

/**
 * A TCP forwarder to `target`, to cut and restore a connection without touching the real
 * service: `stop()` drops every open connection at once, `start()` listens again on the same port.
 */
export function tcpProxy(target: { host: string; port: number }, port: number) {
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  const track = (socket: Socket): void => {
    sockets.add(socket);
    socket.on('error', () => socket.destroy());
    socket.on('close', () => sockets.delete(socket));
  };
  return {
    port,
    async start(): Promise<void> {
      const listening = createServer((inbound) => {
        const outbound = connect(target.port, target.host);
        track(inbound);
        track(outbound);
        inbound.pipe(outbound).pipe(inbound);
        inbound.on('close', () => outbound.destroy());
        outbound.on('close', () => inbound.destroy());
      });
      await new Promise<void>((resolve, reject) => {
        listening.once('error', reject);
        listening.listen(port, '127.0.0.1', () => resolve());
      });
      server = listening;
    },
    async stop(): Promise<void> {
      const closing = server;
      server = undefined;
      for (const socket of sockets) socket.destroy();
      if (closing !== undefined) await new Promise<void>((resolve) => closing.close(() => resolve()));
    },
  };
}

/** A server that accepts TCP connections and never says a word: a hung backend. */
export async function silentServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP port');
  return {
    port: address.port,
    async close(): Promise<void> {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

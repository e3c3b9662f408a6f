import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { expect } from 'vitest';
import { waitFor } from '../helpers/wait.js';
import { createApiKey, createLinkedAccount, createVault, listDefaultAppCredentials, type Vault, type VaultStore } from '../../src/index.js';
import { createMemoryStore } from '../../adapters/memory.js';
import { createApiServer, type ApiServerOptions, type Framework } from '../../src/cli/server.js';

export const BASE = '/api/v2/public';
export const CREDENTIALS = `${BASE}/linked-account/default-app/auth-credentials`;
export const ACME = { org: 'acme', environment: 'test' } as const;

/** A store whose every call answers after `latencyMs`, as a networked store would. */
export function slowStore(inner: VaultStore, latencyMs: number): VaultStore {
  const later = <T>(run: () => Promise<T>) => new Promise<T>((resolve, reject) => setTimeout(() => run().then(resolve, reject), latencyMs));
  return {
    kind: inner.kind,
    get: (...a) => later(() => inner.get(...a)),
    put: (...a) => later(() => inner.put(...a)),
    insert: (...a) => later(() => inner.insert(...a)),
    replace: (...a) => later(() => inner.replace(...a)),
    remove: (...a) => later(() => inner.remove(...a)),
    list: (...a) => later(() => inner.list(...a)),
    removeGroup: (...a) => later(() => inner.removeGroup(...a)),
    batch: (...a) => later(() => inner.batch(...a)),
    increment: (...a) => later(() => inner.increment(...a)),
    purgeExpired: (...a) => later(() => inner.purgeExpired(...a)),
    scan: (...a) => later(() => inner.scan(...a)),
    readIndex: (...a) => later(() => inner.readIndex(...a)),
    close: () => inner.close(),
  };
}

/** A vault over a memory store with one API key and the linked accounts `accounts` (each with an empty default app). */
export async function seededVault(options: { latencyMs?: number; accounts?: string[] } = {}): Promise<{ vault: Vault; apiKey: string }> {
  const memory = createMemoryStore();
  const store = options.latencyMs === undefined ? memory : slowStore(memory, options.latencyMs);
  const vault = await createVault({ store, keys: `k1:${randomBytes(32).toString('base64')}`, log: () => undefined });
  const apiKey = (await createApiKey(vault, ACME)).apiKey;
  for (const accountId of options.accounts ?? ['cust-1']) {
    await createLinkedAccount(vault, { ...ACME, accountId }, { credentials: {} });
  }
  return { vault, apiKey };
}

/** The credential names stored for an account (read through the core, not over HTTP). */
export async function storedKeys(vault: Vault, accountId: string): Promise<string[]> {
  return (await listDefaultAppCredentials(vault, { ...ACME, accountId })).map((c) => c.key);
}

export interface Listening {
  server: http.Server;
  port: number;
  url: string;
  close(): Promise<void>;
}

/** `createApiServer` on an ephemeral port. */
export async function listen(vault: Vault, framework: Framework, options: ApiServerOptions = {}): Promise<Listening> {
  const server = await createApiServer(vault, framework, options);
  return listenOn(server);
}

export async function listenOn(server: http.Server): Promise<Listening> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    server,
    port,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface RawResponse {
  status: number;
  /** Header names lower-cased; repeated headers joined with `, `. */
  headers: Record<string, string>;
  text: string;
  body: unknown;
  /** Everything received on the connection. */
  raw: string;
}

/** Parses the first complete HTTP/1.1 response in `raw`, or returns undefined. */
export function parseResponse(raw: Buffer): RawResponse | undefined {
  let start = 0;
  // Skip interim responses (100 Continue).
  for (;;) {
    const end = raw.indexOf('\r\n\r\n', start);
    if (end === -1) return undefined;
    const head = raw.toString('latin1', start, end);
    const [statusLine, ...lines] = head.split('\r\n');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')?.[1]);
    if (status >= 100 && status < 200) {
      start = end + 4;
      continue;
    }
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(':');
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
    }
    const length = Number(headers['content-length'] ?? NaN);
    if (!Number.isFinite(length)) return undefined;
    if (raw.length < end + 4 + length) return undefined;
    const text = raw.toString('utf8', end + 4, end + 4 + length);
    let body: unknown;
    try {
      body = JSON.parse(text) as unknown;
    } catch {
      body = undefined;
    }
    return { status, headers, text, body, raw: raw.toString('latin1') };
  }
}

/** A raw TCP connection to the server, for requests that need exact bytes. */
export interface RawSocket {
  socket: net.Socket;
  write(data: string | Buffer): Promise<void>;
  /** The first complete response (bounded wait). */
  response(timeoutMs?: number): Promise<RawResponse>;
  /** Resolves once the server has closed the connection (bounded wait). */
  closed(timeoutMs?: number): Promise<void>;
  received(): Buffer;
  destroy(): void;
}

export async function rawSocket(port: number): Promise<RawSocket> {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  let received = Buffer.alloc(0);
  let isClosed = false;
  socket.on('data', (chunk: Buffer) => {
    received = Buffer.concat([received, chunk]);
  });
  socket.on('error', () => undefined);
  socket.on('close', () => {
    isClosed = true;
  });
  const shown = () => JSON.stringify(received.toString('latin1').slice(0, 500));
  // Settles on a complete response or on close, whichever comes first; the bound only stops a hang.
  const response = async (timeoutMs: number): Promise<RawResponse> => {
    let parsed: RawResponse | undefined;
    await waitFor(() => (parsed = parseResponse(received)) !== undefined || isClosed, () => `a complete response; received ${shown()}`, timeoutMs);
    if (parsed === undefined) throw new Error(`connection closed before a complete response; received ${shown()}`);
    return parsed;
  };
  return {
    socket,
    write: (data) =>
      new Promise<void>((resolve) => {
        if (socket.destroyed) return resolve();
        socket.write(data, () => resolve());
      }),
    response: (timeoutMs = 10_000) => response(timeoutMs),
    closed: (timeoutMs = 10_000) =>
      new Promise<void>((resolve, reject) => {
        if (isClosed) return resolve();
        const timer = setTimeout(() => reject(new Error(`connection still open after ${timeoutMs} ms`)), timeoutMs);
        socket.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
      }),
    received: () => received,
    destroy: () => socket.destroy(),
  };
}

/** Sends `data` on a fresh connection and returns the first complete response. */
export async function rawRequest(port: number, data: string | Buffer, timeoutMs = 10_000): Promise<RawResponse> {
  const connection = await rawSocket(port);
  try {
    await connection.write(data);
    return await connection.response(timeoutMs);
  } finally {
    connection.destroy();
  }
}

/** A request head (CRLF line ends, blank line at the end) from a request line and header lines. */
export function head(requestLine: string, ...headerLines: string[]): string {
  return `${requestLine}\r\n${headerLines.map((line) => `${line}\r\n`).join('')}\r\n`;
}

/** Asserts the JSON error envelope, exactly its four fields. */
export function expectEnvelope(response: { status: number; body: unknown; headers: Record<string, string> | Headers }, status: number, error: string, httpErrorType?: string): void {
  expect(response.status).toBe(status);
  const contentType = response.headers instanceof Headers ? response.headers.get('content-type') : response.headers['content-type'];
  expect(contentType).toMatch(/^application\/json/);
  const body = response.body as Record<string, unknown>;
  expect(body).toBeTypeOf('object');
  expect(Object.keys(body).sort()).toEqual(['error', 'http_error_type', 'message', 'status_code']);
  expect(body['status_code']).toBe(status);
  expect(body['error']).toBe(error);
  if (httpErrorType !== undefined) expect(body['http_error_type']).toBe(httpErrorType);
  expect(body['message']).toBeTypeOf('string');
}

/** A small authenticated PUT, as JSON over fetch. */
export async function putCredential(url: string, apiKey: string, accountId: string, key: string, value: string): Promise<{ status: number; body: unknown }> {
  const response = await fetch(`${url}${CREDENTIALS}/${key}?linked_account_id=${encodeURIComponent(accountId)}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json', 'x-api-key': apiKey },
    body: JSON.stringify({ value }),
    signal: AbortSignal.timeout(10_000),
  });
  return { status: response.status, body: (await response.json()) as unknown };
}

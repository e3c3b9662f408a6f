/** Node HTTP server hardening shared by the bindings: parser errors as JSON, strict header bytes, connection tracking and draining. */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { VaultError } from '../errors.js';
import { errorEnvelope, type ErrorEnvelope } from './errors.js';

// Only type imports from node: this module is also loaded by the fetch binding.

/**
 * The headers that name an account or carry a credential. Their values must reach the
 * handler exactly as the client sent them: an id that Node trimmed, or whose UTF-8 bytes
 * it read as latin1, would silently name another account.
 */
export const STRICT_HEADERS = ['linked_account_id', 'x-api-key', 'authorization'] as const;
export type StrictHeader = (typeof STRICT_HEADERS)[number];

// ---------------------------------------------------------------------------------------
// Parser errors: Node answers them itself, without the API's envelope, unless told otherwise.

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  408: 'Request Timeout',
  413: 'Payload Too Large',
  431: 'Request Header Fields Too Large',
};

/** Safe descriptions of the parser's errors (never its `rawPacket`, which holds request bytes). */
const PARSE_MESSAGES: Record<string, string> = {
  HPE_INVALID_HEADER_TOKEN: 'The request could not be parsed: a header holds a character HTTP does not allow',
  HPE_UNEXPECTED_CONTENT_LENGTH: 'The request could not be parsed: Content-Length and Transfer-Encoding both sent',
  HPE_INVALID_CONTENT_LENGTH: 'The request could not be parsed: invalid Content-Length',
  // Node's parser reports Content-Length with Transfer-Encoding under either code.
  HPE_INVALID_TRANSFER_ENCODING: 'The request could not be parsed: invalid Transfer-Encoding, or Content-Length and Transfer-Encoding both sent',
  HPE_INVALID_CHUNK_SIZE: 'The request could not be parsed: invalid chunk size',
  HPE_INVALID_METHOD: 'The request could not be parsed: invalid method',
  HPE_INVALID_URL: 'The request could not be parsed: invalid request target',
  HPE_INVALID_VERSION: 'The request could not be parsed: invalid HTTP version',
};

/**
 * The status and JSON envelope for an error Node's HTTP parser (or its request timeouts)
 * raised before any handler ran.
 */
function clientErrorEnvelope(error: { code?: string | undefined }): ErrorEnvelope {
  switch (error.code) {
    case 'HPE_HEADER_OVERFLOW':
      return {
        status_code: 431,
        http_error_type: 'REQUEST_HEADER_FIELDS_TOO_LARGE',
        error: 'REQUEST_HEADER_FIELDS_TOO_LARGE',
        message: 'The request headers exceed the server limit',
      };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return {
        status_code: 408,
        http_error_type: 'REQUEST_TIMEOUT',
        error: 'REQUEST_TIMEOUT',
        message: 'The request was not received in time',
      };
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return errorEnvelope(new VaultError('PAYLOAD_TOO_LARGE', 'The request chunk extensions exceed the server limit'));
    default:
      return errorEnvelope(
        new VaultError('VALIDATION_ERROR', PARSE_MESSAGES[error.code ?? ''] ?? 'The request could not be parsed'),
      );
  }
}

/**
 * A `'clientError'` listener for `http.Server` that answers with the API's JSON error
 * envelope (a complete HTTP/1.1 response: `content-type: application/json`,
 * `content-length`, `connection: close`) and closes the connection. For Fastify, pass it
 * as the app's `clientErrorHandler` option; otherwise see {@link attachClientErrorHandler}.
 */
export function credvaultClientError(error: Error & { code?: string }, socket: Duplex): void {
  // As Node's own listener: answer only when no response has begun on this socket.
  const inFlight = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
  if (error.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent === true) {
    socket.destroy();
    return;
  }
  const envelope = clientErrorEnvelope(error);
  const body = JSON.stringify(envelope);
  const head =
    `HTTP/1.1 ${envelope.status_code} ${STATUS_TEXT[envelope.status_code] ?? 'Error'}\r\n` +
    'content-type: application/json; charset=utf-8\r\n' +
    `content-length: ${Buffer.byteLength(body)}\r\n` +
    'connection: close\r\n\r\n';
  // A client that never reads must not keep the socket: destroy it in any case soon after.
  const timer = setTimeout(() => socket.destroy(), 2_000);
  timer.unref?.();
  socket.end(head + body, () => {
    clearTimeout(timer);
    socket.destroy();
  });
}

/**
 * Answers Node's parser errors (431 headers too large, 400 for malformed requests, 408 for
 * `headersTimeout`/`requestTimeout`) with the API's JSON error envelope instead of Node's
 * bare responses. Replaces the server's other `'clientError'` listeners.
 *
 * @example
 * ```ts
 * const server = http.createServer(app);
 * attachClientErrorHandler(server);
 * ```
 */
export function attachClientErrorHandler<S extends Server>(server: S): S {
  server.removeAllListeners('clientError');
  server.on('clientError', credvaultClientError);
  return server;
}

// ---------------------------------------------------------------------------------------
// Header inspection: what the client put on the wire for the strict headers.

/** Strict headers that were not sent exactly once as clean ASCII, per request. */
const wireReports = new WeakMap<IncomingMessage, readonly StrictHeader[]>();
const inspected = new WeakSet<Server>();

/**
 * The strict headers of `request` whose bytes on the wire were not exactly the value Node
 * parsed (sent more than once, surrounded by whitespace that Node trimmed, or holding
 * bytes outside ASCII), when the server has {@link attachHeaderInspection}; otherwise
 * `undefined`.
 */
export function wireHeaderDefects(request: IncomingMessage): readonly StrictHeader[] | undefined {
  return wireReports.get(request);
}

/**
 * Watches the raw bytes of every request head on this server, so that the bindings can
 * refuse a strict header (`linked_account_id`, `x-api-key`, `authorization`) that Node
 * would otherwise hand over trimmed (`"tw "` read as `tw`) or re-read (`café` sent as
 * UTF-8 read as `cafÃ©`). Node's `rawHeaders` are trimmed as well, so only the bytes tell.
 * Costs Node's native socket consumption: request bytes are parsed through JavaScript.
 */
export function attachHeaderInspection<S extends Server>(server: S): S {
  if (inspected.has(server)) return server;
  inspected.add(server);
  const scanners = new WeakMap<object, HeadScanner>();
  // Registered after Node's own 'connection' listener: adding a 'data' listener then
  // switches the parser to reading through the socket's events, after ours.
  server.on('connection', (socket: Duplex) => {
    const scanner = new HeadScanner();
    scanners.set(socket, scanner);
    socket.prependListener('data', (chunk: Buffer | string) => scanner.feed(typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk));
  });
  server.prependListener('request', (request: IncomingMessage) => {
    const report = scanners.get(request.socket)?.next();
    if (report !== undefined) wireReports.set(request, report);
  });
  return server;
}

/** Both of the above: the envelope for parser errors, and strict header inspection. */
export function hardenNodeServer<S extends Server>(server: S): S {
  return attachHeaderInspection(attachClientErrorHandler(server));
}

const CR = 13;
const LF = 10;
const SP = 32;
const HTAB = 9;
/** Node's default `maxHeaderSize` is 16 KiB; beyond this Node answers 431 anyway. */
const MAX_HEAD_BYTES = 256 * 1024;

type ScanState = 'head' | 'length' | 'chunk-size' | 'chunk-data' | 'chunk-end' | 'trailers' | 'opaque';

/**
 * Follows HTTP/1.1 request framing on one connection (heads, Content-Length and chunked
 * bodies) and reports, per head, the strict headers whose raw value was not clean.
 * When it cannot follow (upgrades, framing Node itself refuses), it stops reporting.
 */
class HeadScanner {
  private state: ScanState = 'head';
  private head: Buffer[] = [];
  private headBytes = 0;
  /** Whether the head's current line has a byte other than CR yet. */
  private lineHasContent = false;
  private remaining = 0;
  private line = '';
  private readonly reports: Array<readonly StrictHeader[]> = [];

  next(): readonly StrictHeader[] | undefined {
    return this.reports.shift();
  }

  feed(chunk: Buffer): void {
    try {
      this.scan(chunk);
    } catch {
      this.state = 'opaque';
    }
  }

  private scan(chunk: Buffer): void {
    let i = 0;
    while (i < chunk.length) {
      switch (this.state) {
        case 'opaque':
          return;
        case 'head': {
          // Empty lines before a request line are skipped, as the parser does.
          if (this.headBytes === 0) {
            while (i < chunk.length && (chunk[i] === CR || chunk[i] === LF)) i++;
            if (i === chunk.length) return;
          }
          const from = i;
          let done = false;
          for (; i < chunk.length; i++) {
            const byte = chunk[i];
            if (byte === LF) {
              // An empty line (CRLF, or a bare LF) ends the head.
              if (!this.lineHasContent) {
                i++;
                done = true;
                break;
              }
              this.lineHasContent = false;
            } else if (byte !== CR) {
              this.lineHasContent = true;
            }
          }
          this.head.push(chunk.subarray(from, i));
          this.headBytes += i - from;
          if (this.headBytes > MAX_HEAD_BYTES) {
            this.state = 'opaque';
            return;
          }
          if (done) this.endHead();
          break;
        }
        case 'length': {
          const take = Math.min(this.remaining, chunk.length - i);
          i += take;
          this.remaining -= take;
          if (this.remaining === 0) this.state = 'head';
          break;
        }
        case 'chunk-size':
        case 'chunk-end':
        case 'trailers': {
          const lf = chunk.indexOf(LF, i);
          const end = lf === -1 ? chunk.length : lf;
          this.line += chunk.toString('latin1', i, end);
          if (this.line.length > 16 * 1024) {
            this.state = 'opaque';
            return;
          }
          i = end;
          if (lf === -1) break;
          i++;
          const line = this.line.replace(/\r$/, '');
          this.line = '';
          if (this.state === 'chunk-size') {
            const size = /^([0-9a-fA-F]{1,12})(?:[ \t]*;.*)?[ \t]*$/.exec(line);
            if (size === null) {
              this.state = 'opaque';
              return;
            }
            this.remaining = parseInt(size[1] as string, 16);
            this.state = this.remaining === 0 ? 'trailers' : 'chunk-data';
          } else if (this.state === 'chunk-end') {
            this.state = 'chunk-size';
          } else if (line === '') {
            this.state = 'head';
          }
          break;
        }
        case 'chunk-data': {
          const take = Math.min(this.remaining, chunk.length - i);
          i += take;
          this.remaining -= take;
          if (this.remaining === 0) this.state = 'chunk-end';
          break;
        }
      }
    }
  }

  private endHead(): void {
    const head = Buffer.concat(this.head, this.headBytes);
    this.head = [];
    this.headBytes = 0;
    this.lineHasContent = false;
    const lines = splitLines(head);
    const requestLine = lines.shift() ?? Buffer.alloc(0);
    const counts = new Map<StrictHeader, number>();
    const defects = new Set<StrictHeader>();
    let contentLength: string | undefined;
    let transferEncoding: string | undefined;
    let upgrade = false;
    let previous: StrictHeader | undefined;
    for (const raw of lines) {
      if (raw.length === 0) continue;
      if (raw[0] === SP || raw[0] === HTAB) {
        // A folded continuation line: it belongs to the previous header's value.
        if (previous !== undefined) defects.add(previous);
        continue;
      }
      previous = undefined;
      const colon = raw.indexOf(':'.charCodeAt(0));
      if (colon <= 0) continue;
      const name = raw.toString('latin1', 0, colon).toLowerCase();
      const value = raw.subarray(colon + 1);
      if ((STRICT_HEADERS as readonly string[]).includes(name)) {
        const strict = name as StrictHeader;
        counts.set(strict, (counts.get(strict) ?? 0) + 1);
        previous = strict;
        if (!cleanWireValue(value)) defects.add(strict);
      } else if (name === 'content-length') {
        contentLength = contentLength === undefined ? value.toString('latin1').trim() : '\u0000';
      } else if (name === 'transfer-encoding') {
        transferEncoding = (transferEncoding === undefined ? '' : `${transferEncoding},`) + value.toString('latin1').trim().toLowerCase();
      } else if (name === 'upgrade') {
        upgrade = true;
      }
    }
    for (const [name, count] of counts) if (count > 1) defects.add(name);
    this.reports.push([...defects]);

    const method = requestLine.toString('latin1', 0, Math.max(0, requestLine.indexOf(SP))).toUpperCase();
    if (method === 'CONNECT' || upgrade) {
      this.state = 'opaque';
    } else if (transferEncoding !== undefined) {
      const codings = transferEncoding.split(',').map((c) => c.trim()).filter(Boolean);
      this.state = codings[codings.length - 1] === 'chunked' ? 'chunk-size' : 'opaque';
    } else if (contentLength !== undefined) {
      if (!/^\d{1,15}$/.test(contentLength)) {
        this.state = 'opaque';
      } else {
        this.remaining = Number(contentLength);
        this.state = this.remaining === 0 ? 'head' : 'length';
      }
    } else {
      this.state = 'head';
    }
  }
}

/** The lines of a head, without their CRLF (or bare LF). */
function splitLines(head: Buffer): Buffer[] {
  const lines: Buffer[] = [];
  let start = 0;
  for (;;) {
    const lf = head.indexOf(LF, start);
    if (lf === -1) break;
    const end = lf > start && head[lf - 1] === CR ? lf - 1 : lf;
    lines.push(head.subarray(start, end));
    start = lf + 1;
  }
  return lines;
}

/**
 * Whether a raw header value (the bytes after the colon) is what Node will hand over:
 * at most the one conventional space after the colon, no trailing whitespace, and only
 * printable ASCII (and tabs) in between.
 */
function cleanWireValue(value: Buffer): boolean {
  let start = 0;
  if (value[0] === SP) start = 1;
  if (value.length > start && (value[start] === SP || value[start] === HTAB)) return false;
  const last = value[value.length - 1];
  if (value.length > start && (last === SP || last === HTAB)) return false;
  for (let i = start; i < value.length; i++) {
    const byte = value[i] as number;
    if (byte >= 0x7f || (byte < 0x20 && byte !== HTAB)) return false;
  }
  return true;
}

/** How long {@link drainServer} lets requests in flight finish by default, in ms. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 10_000;

// ---------------------------------------------------------------------------------------
// Connections and graceful shutdown.

interface Tracker {
  /** Each open connection, with how many of its requests have not been answered yet. */
  sockets: Map<Duplex, number>;
  responses: Set<ServerResponse>;
  draining: boolean;
  drainTimeoutMs: number;
  drained?: Promise<DrainResult>;
}

const trackers = new WeakMap<Server, Tracker>();

/** Closes a connection once what was written to it has gone out. */
function endConnection(socket: Duplex): void {
  const withDestroySoon = socket as Duplex & { destroySoon?: () => void };
  if (typeof withDestroySoon.destroySoon === 'function') withDestroySoon.destroySoon();
  else socket.end(() => socket.destroy());
}

/** Internal: starts counting a server's connections and requests, for {@link drainServer}. */
export function trackConnections(server: Server, drainTimeoutMs = DEFAULT_DRAIN_TIMEOUT_MS): Tracker {
  const existing = trackers.get(server);
  if (existing !== undefined) return existing;
  const tracker: Tracker = { sockets: new Map(), responses: new Set(), draining: false, drainTimeoutMs };
  trackers.set(server, tracker);
  server.on('connection', (socket: Duplex) => {
    tracker.sockets.set(socket, 0);
    socket.once('close', () => tracker.sockets.delete(socket));
  });
  server.prependListener('request', (request: IncomingMessage, response: ServerResponse) => {
    const socket = request.socket;
    tracker.sockets.set(socket, (tracker.sockets.get(socket) ?? 0) + 1);
    tracker.responses.add(response);
    // While draining, every response closes its connection.
    if (tracker.draining) response.setHeader('connection', 'close');
    response.once('close', () => {
      tracker.responses.delete(response);
      const pending = (tracker.sockets.get(socket) ?? 1) - 1;
      if (!tracker.sockets.has(socket)) return;
      tracker.sockets.set(socket, pending);
      // A response whose keep-alive head went out before the drain began leaves the connection idle.
      if (tracker.draining && pending === 0) endConnection(socket);
    });
  });
  return tracker;
}

export interface DrainOptions {
  /**
   * How long in-flight requests may take to finish, in ms; past it the connections left are
   * destroyed. Default: the server's `drainTimeoutMs` (`credvault serve`'s server), else 10 000.
   */
  timeoutMs?: number;
  /** Where a forced close is reported (one line, no request data). Default: nowhere. */
  log?: (line: string) => void;
}

export interface DrainResult {
  /** Connections still busy at the deadline, destroyed (0 when every request finished). */
  forcedConnections: number;
}

/**
 * Shuts an HTTP server down within a bound: stops accepting connections at once, closes
 * idle connections and those still sending a request head (slow or stalled clients), lets
 * the requests in flight finish (their responses carry `connection: close`), and destroys
 * whatever is left after `timeoutMs`. Resolves once every connection is closed; calling it
 * again returns the same promise. The server `credvault serve` runs tracks its requests
 * from the start (so does any server passed to `trackConnections` early); on another server, requests already in flight when this is
 * called are waited for but cannot be told to close their connection.
 *
 * @example
 * ```ts
 * process.once('SIGTERM', async () => {
 *   await drainServer(server, { timeoutMs: 10_000 });
 *   await vault.close();
 *   process.exit(0);
 * });
 * ```
 */
export function drainServer(server: Server, options: DrainOptions = {}): Promise<DrainResult> {
  const tracker = trackConnections(server);
  if (tracker.drained !== undefined) return tracker.drained;
  const timeoutMs = options.timeoutMs ?? tracker.drainTimeoutMs;
  tracker.draining = true;
  tracker.drained = new Promise<DrainResult>((resolve) => {
    let forcedConnections = 0;
    let timer: NodeJS.Timeout | undefined;
    const finish = () => {
      clearTimeout(timer);
      resolve({ forcedConnections });
    };
    if (server.listening) server.close(finish);
    else if (tracker.sockets.size === 0) queueMicrotask(finish);
    else server.once('close', finish);
    for (const response of tracker.responses) if (!response.headersSent) response.setHeader('connection', 'close');
    // Connections with no request in flight: idle keep-alives, and clients still sending a head.
    for (const [socket, pending] of tracker.sockets) if (pending === 0) endConnection(socket);
    server.closeIdleConnections();
    timer = setTimeout(() => {
      forcedConnections = tracker.sockets.size;
      if (forcedConnections > 0) {
        options.log?.(`credvault: shutdown bound of ${timeoutMs} ms reached; closing ${forcedConnections} connection(s) still open`);
      }
      for (const socket of tracker.sockets.keys()) socket.destroy();
      server.closeAllConnections();
      // Destroyed sockets close within a tick; do not wait on the server's 'close' beyond that.
      setImmediate(finish);
    }, timeoutMs);
  });
  return tracker.drained;
}

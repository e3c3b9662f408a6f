/**
 * The Redis adapter's connection: one node-redis client (standalone, Cluster or Sentinel)
 * owned by a `@keyv/redis` Keyv store, how a call waits for it to be ready, and how a
 * command or script reaches the node that owns its keys, each within a deadline. It relies
 * on node-redis reconnecting by itself; commands are never queued while disconnected.
 * Internal to the Redis adapter.
 */
import KeyvRedis, {
  createClient,
  type RedisClientType,
  type RedisClusterType,
  type RedisConnectionClientType,
  type RedisConnectionClusterType,
  type RedisConnectionSentinelType,
  type RedisSentinelType,
} from '@keyv/redis';
import { VaultError } from '../../src/errors.js';
import { createKeyv } from '../kernel.js';
import type { Script } from './scripts.js';

export type RedisClient = RedisConnectionClientType | RedisConnectionClusterType | RedisConnectionSentinelType;

export interface ConnectionOptions {
  url?: string;
  client?: RedisClient;
  connectTimeoutMs: number;
  commandTimeoutMs: number;
}

/** What the operations need from the connection. */
export interface RedisConnection {
  readonly topology: 'client' | 'cluster' | 'sentinel';
  /** Waits (at most the connect timeout) until commands can go; rejects `STORE_UNAVAILABLE` otherwise. */
  connected(): Promise<void>;
  /** One command to the node owning `firstKey`, within the command deadline. */
  command(firstKey: string, args: string[]): Promise<unknown>;
  /** One script over `keys` (all of one slot), within the command deadline. */
  run(which: Script, keys: string[], args: string[]): Promise<unknown>;
  /** One command sender per node that holds data, in a stable order. */
  scanNodes(): Promise<Array<(args: string[]) => Promise<unknown>>>;
  /** `promise`, or `STORE_UNAVAILABLE` once the command deadline passes. */
  bounded<T>(promise: Promise<T>): Promise<T>;
  close(): Promise<void>;
}

const DEFAULT_URL = 'redis://127.0.0.1:6379';

/** Clients that already have this module's no-op 'error' listener. */
const quieted = new WeakSet<object>();

function unavailable(message: string): VaultError {
  return new VaultError('STORE_UNAVAILABLE', message);
}

/** Rejects with `STORE_UNAVAILABLE` when `promise` has not settled within `ms`. */
async function within<T>(ms: number, promise: Promise<T>, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(unavailable(message)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** Opens (or adopts) the client and wraps it for the operations. */
export function openConnection(options: ConnectionOptions): RedisConnection {
  const { connectTimeoutMs, commandTimeoutMs } = options;
  const ownsClient = options.client === undefined;
  const client: RedisClient =
    options.client ??
    (createClient({
      url: options.url ?? DEFAULT_URL,
      // Without this, commands issued while disconnected wait in a queue forever.
      disableOfflineQueue: true,
      socket: {
        connectTimeout: connectTimeoutMs,
        // Never give up: the store must come back by itself when Redis does.
        reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, 1000) + Math.floor(Math.random() * 50),
      },
    }) as RedisClientType);
  const adapter = new KeyvRedis<string>(client, {
    throwOnConnectError: true,
    throwOnErrors: true,
    connectionTimeout: connectTimeoutMs,
  });
  // Keys are the kernel's in full (no Keyv namespace or prefix, or they would be prefixed twice).
  const keyv = createKeyv(adapter);
  // Errors reach callers through rejected promises. An 'error' event without a listener
  // would crash the process, so every emitter in the chain gets one.
  if (!quieted.has(client)) {
    // Once per client: several stores may share one, and each listener counts towards Node's limit.
    quieted.add(client);
    client.on('error', () => undefined);
  }
  adapter.on('error', () => undefined);

  const topology: 'client' | 'cluster' | 'sentinel' = adapter.isCluster()
    ? 'cluster'
    : adapter.isSentinel()
      ? 'sentinel'
      : 'client';
  let closed = false;
  const single = client as RedisClientType;
  const clusterClient = client as RedisClusterType;
  const sentinelClient = client as RedisSentinelType;
  let readyWaiters: Array<() => void> = [];
  const wakeAll = (): void => {
    const waiters = readyWaiters;
    readyWaiters = [];
    for (const wake of waiters) wake();
  };
  // A plain client says 'ready' after every (re)connect. Cluster and sentinel clients have no
  // event for "commands can go now", so connected() polls them while a call waits.
  if (topology === 'client') single.on('ready', wakeAll);

  /**
   * Whether commands can be sent now. A cluster client is open before it has discovered the
   * slots, and sending then fails inside node-redis, so it also needs a known master.
   */
  function isReady(): boolean {
    switch (topology) {
      case 'client':
        return single.isReady;
      case 'cluster':
        return clusterClient.isOpen && clusterClient.masters.length > 0;
      case 'sentinel':
        return sentinelClient.isReady;
    }
  }

  // A client handed over unconnected is connected here, in the background: connect() only
  // settles once connected, and may retry for ever. A cluster's or sentinel's first connect
  // can fail for good (no root node reachable); then the next call starts another attempt.
  const connectsClient = !client.isOpen;
  let connecting: Promise<void> | undefined;
  function startConnect(): void {
    if (connecting !== undefined || closed || client.isOpen) return;
    connecting = client
      .connect()
      .then(
        () => undefined,
        () => undefined,
      )
      .finally(() => {
        connecting = undefined;
        wakeAll();
      });
  }

  if (connectsClient) startConnect();

  async function connected(): Promise<void> {
    if (closed) throw unavailable('The Redis store is closed');
    if (isReady()) return;
    if (connectsClient && topology !== 'client') startConnect();
    let wake: (() => void) | undefined;
    let poll: NodeJS.Timeout | undefined;
    const ready = new Promise<void>((resolve) => {
      wake = resolve;
      readyWaiters.push(resolve);
      if (topology !== 'client') {
        poll = setInterval(() => {
          if (isReady() || closed) resolve();
        }, 20);
      }
    });
    try {
      await within(connectTimeoutMs, ready, `Redis is not reachable within ${connectTimeoutMs} ms`);
    } finally {
      clearInterval(poll);
      readyWaiters = readyWaiters.filter((waiter) => waiter !== wake);
    }
    if (closed) throw unavailable('The Redis store is closed');
    if (!isReady()) throw unavailable('Redis is not reachable');
  }

  /**
   * Sends one command to the node that owns `firstKey`. Always as a write (`isReadonly`
   * false): with replicas in use, a read sent to a replica could miss the caller's own write.
   */
  function send(firstKey: string, args: string[]): Promise<unknown> {
    switch (topology) {
      case 'client':
        return single.sendCommand(args);
      case 'cluster':
        return clusterClient.sendCommand(firstKey, false, args);
      case 'sentinel':
        return sentinelClient.sendCommand(false, args);
    }
  }

  async function command(firstKey: string, args: string[]): Promise<unknown> {
    await connected();
    return within(commandTimeoutMs, send(firstKey, args), `Redis did not answer within ${commandTimeoutMs} ms`);
  }

  async function run(which: Script, keys: string[], args: string[]): Promise<unknown> {
    await connected();
    const firstKey = keys[0] as string;
    const call = async (): Promise<unknown> => {
      try {
        return await send(firstKey, ['EVALSHA', which.sha, String(keys.length), ...keys, ...args]);
      } catch (error) {
        // A restarted or flushed server, a cluster master that never ran the script, or a
        // promoted replica has not got the script: send it once in full to that node.
        if (!(error instanceof Error && error.message.startsWith('NOSCRIPT'))) throw error;
        return send(firstKey, ['EVAL', which.source, String(keys.length), ...keys, ...args]);
      }
    };
    return within(commandTimeoutMs, call(), `Redis did not answer within ${commandTimeoutMs} ms`);
  }


  /**
   * One command sender per node that holds data: every master of a Cluster (in a stable
   * order, so a cursor stays valid from page to page), else the one server.
   */
  async function scanNodes(): Promise<Array<(args: string[]) => Promise<unknown>>> {
    await connected();
    if (topology !== 'cluster') return [(args) => send('', args)];
    const masters = [...clusterClient.masters].sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
    return masters.map((master) => async (args) => (await clusterClient.nodeClient(master)).sendCommand(args));
  }

  const bounded = <T>(promise: Promise<T>): Promise<T> =>
    within(commandTimeoutMs, promise, `Redis did not answer within ${commandTimeoutMs} ms`);

  return {
    topology,
    connected,
    command,
    run,
    scanNodes,
    bounded,
    async close() {
      if (closed) return;
      closed = true;
      wakeAll();
      if (topology === 'client') single.off('ready', wakeAll);
      if (!ownsClient || !client.isOpen) return;
      if (single.isReady) {
        // A graceful close lets in-flight replies arrive, but must not outlast an outage.
        await within(connectTimeoutMs, keyv.disconnect(), 'close timed out').catch(() => undefined);
      }
      if (client.isOpen) client.destroy();
    },
  };
}

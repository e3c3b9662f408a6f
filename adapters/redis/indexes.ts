/**
 * The Redis adapter's indexes (rule 10): the keys of an index, its read, and on Cluster the
 * protocol that keeps an index agreeing with its groups although no Redis primitive spans
 * their two slots (an intent taken like a lock in the index's slot, a fenced mark in the
 * group's slot, then the index step). The protocol and its guarantee are written on
 * `createRedisStore`. Internal to the Redis adapter.
 */
import type { IndexEntry, IndexPage } from '../../src/core/store.js';
import type { RedisConnection } from './connection.js';
import { SCRIPTS } from './scripts.js';

/** How long a fence (and the marks of an emptied group) outlives its write: one day. */
export const FENCE_MS = 24 * 60 * 60 * 1000;
/** How long after its intent was taken a group step may still run; half the fence time, so a fence always outlives it. */
export const VALID_MS = FENCE_MS / 2;

/**
 * Test hooks for the Cluster index protocol. `afterIndexStep` is awaited after a step of a
 * batch or removeGroup with an index ('intent': the entry's intent is taken; 'group': the
 * group step ran); a throw abandons the call right there, leaving what a crash would leave.
 */
export interface IndexFaults {
  afterIndexStep?: (step: 'intent' | 'group') => void | Promise<void>;
}

/** What the index steps change: add the entry, remove it, or nothing (an uncommitted batch). */
type Apply = 'add' | 'remove' | 'none';

/** A taken intent: its sequence number, and the last instant (index master's clock) its group step may run. */
export interface Intent {
  seq: string;
  last: string;
}

/** What a group step did: fenced (nothing written, the intent was resolved without it), or ran. */
export type StepOutcome<T> = { fenced: true } | { fenced: false; committed: boolean; value: T };

export interface IndexOptions {
  /** How long an intent holds its entry before another call may resolve it. */
  leaseMs: number;
  /**
   * How long a batch or removeGroup may try to take its entry (waiting while another call
   * holds it) before it rejects, having written nothing: below the vault's store deadline.
   */
  waitMs: number;
  /** How long a read keeps resolving intents whose lease ran out before it rejects. */
  readRetryMs: number;
  faults: IndexFaults | undefined;
}

/**
 * The index keys of one namespace. All of one index share the hash tag `{<index>}`, and
 * start `<prefix>#ix`, so they never meet a group's keys (`<prefix>{<group>}...`) nor the
 * scan pattern `<prefix>{*}#idx`; `encodeURIComponent` never emits `#`, so no namespace
 * prefix reaches into another's.
 */
export function indexKeyLayout(prefix: string) {
  return {
    /** The sorted set of entries (score 0, so rank order is byte order). */
    entries: (index: string) => `${prefix}#ix{${index}}`,
    /** Cluster: entry -> `<seq> <op> <group>`, the intent holding that entry. */
    intents: (index: string) => `${prefix}#ix{${index}}#pending`,
    /** Cluster: entry -> when its intent's lease runs out (index master's clock, ms). */
    leases: (index: string) => `${prefix}#ix{${index}}#leases`,
    /** Cluster: the index's sequence counter, which orders every intent on its entries. */
    sequence: (index: string) => `${prefix}#ix{${index}}#seq`,
    /** Cluster: a group's marks, `<index> <entry>` -> `<seq>:c` (its step ran) or `<seq>:a` (fenced). */
    marks: (group: string) => `${prefix}{${group}}#ixc`,
    /** The marks' field of one index entry (names never hold a space). */
    field: (link: IndexEntry) => `${link.index} ${link.entry}`,
  };
}

const sleep = (ms: number): Promise<void> =>
  new Promise((resolve) => {
    setTimeout(resolve, ms).unref();
  });

/** The index operations over one connection and namespace. */
export function redisIndexes(redis: RedisConnection, prefix: string, options: IndexOptions) {
  const keys = indexKeyLayout(prefix);
  const { leaseMs, waitMs, readRetryMs, faults } = options;

  async function finish(link: IndexEntry, seq: string, apply: Apply): Promise<boolean> {
    const { index, entry } = link;
    return (await redis.run(SCRIPTS.indexFinish, [keys.entries(index), keys.intents(index), keys.leases(index)], [entry, seq, apply])) === 1;
  }

  /**
   * Settles an intent whose caller is gone, late or unsure: the group's slot decides whether
   * its step ran (and fences it if not), then the index step applies that, if the intent is
   * still that one.
   */
  async function resolve(link: IndexEntry, held: string, late: () => boolean = () => false): Promise<void> {
    const [seq = '', op = '', group = ''] = held.split(' ');
    if (seq === '') {
      await finish(link, seq, 'none');
      return;
    }
    const ran = (await redis.run(SCRIPTS.indexDecide, [keys.marks(group)], [keys.field(link), seq, String(FENCE_MS)])) === 1;
    // Stopping here is safe: the decision is recorded in the group's slot, and the next
    // resolver of this intent reads the same decision back before it finishes.
    if (late()) throw gaveUp();
    await finish(link, seq, ran && (op === 'add' || op === 'remove') ? op : 'none');
  }

  const gaveUp = (): Error => new Error(`Redis: could not take this index entry within ${waitMs} ms; nothing was written`);

  /**
   * Takes the entry's intent, waiting while a live call holds it and resolving one whose
   * lease ran out, for at most `waitMs`. Past that no step begins (the vault may already
   * have answered for this call, so a late write would be a change nobody was told of), and
   * an intent taken only after it, by a reply that came late, is handed back at once.
   */
  async function acquire(link: IndexEntry, op: 'add' | 'remove', group: string): Promise<Intent> {
    const { index, entry } = link;
    // Node's monotonic clock: a wall-clock jump must neither stretch nor cut the wait.
    const started = performance.now();
    const late = (): boolean => performance.now() - started > waitMs;
    let pause = 2;
    for (;;) {
      if (late()) throw gaveUp();
      const reply = (await redis.run(SCRIPTS.indexAcquire, [keys.intents(index), keys.leases(index), keys.sequence(index)], [
        entry, op, group, String(leaseMs),
      ])) as [number, string, number];
      if (reply[0] === 1) {
        const intent = { seq: String(reply[1]), last: String(Number(reply[2]) + VALID_MS) };
        if (late()) {
          // Nothing of this call ran under it, so clearing it undoes nothing; if Redis fails
          // here, the lease settles it as a call cut off before its group step.
          await finish(link, intent.seq, 'none').catch(() => undefined);
          throw gaveUp();
        }
        return intent;
      }
      const [, held, left] = reply;
      if (left <= 0) {
        await resolve(link, held, late);
        continue;
      }
      const wait = Math.min(left, pause);
      if (performance.now() - started + wait > waitMs) throw gaveUp();
      await sleep(wait + Math.floor(Math.random() * 3));
      pause = Math.min(pause * 2, 50);
    }
  }

  return {
    /**
     * Runs `step` (the group step) under the entry's intent, then the index step. Whenever
     * it is unknown whether the step ran (an error) or it was fenced, the intent is resolved
     * at once, and the call rejects.
     */
    async withIntent<T>(link: IndexEntry, op: 'add' | 'remove', group: string, step: (intent: Intent) => Promise<StepOutcome<T>>): Promise<T> {
      const intent = await acquire(link, op, group);
      await faults?.afterIndexStep?.('intent');
      const own = `${intent.seq} ${op} ${group}`;
      let outcome: StepOutcome<T>;
      try {
        outcome = await step(intent);
      } catch (error) {
        // Best effort: if Redis is gone, the intent waits for the next call after its lease.
        await resolve(link, own).catch(() => undefined);
        throw error;
      }
      if (outcome.fenced) {
        await resolve(link, own).catch(() => undefined);
        throw new Error('Redis: this call outlasted its hold on the index entry; nothing was written');
      }
      await faults?.afterIndexStep?.('group');
      // false: another call resolved the intent first, from this step's own mark, so the index agrees.
      await finish(link, intent.seq, outcome.committed ? op : 'none');
      return outcome.value;
    },

    /** One page and the total, read at one instant, after resolving every intent whose lease ran out. */
    async read(index: string, offset: number, limit: number): Promise<IndexPage> {
      const last = (BigInt(offset) + BigInt(limit) - 1n).toString();
      const started = performance.now();
      for (;;) {
        const reply = (await redis.run(SCRIPTS.indexRead, [keys.entries(index), keys.leases(index), keys.intents(index)], [
          String(offset), last,
        ])) as Array<number | string>;
        if (reply[0] !== -1) return { total: reply[0] as number, entries: reply.slice(1) as string[] };
        for (let i = 1; i + 1 < reply.length; i += 2) await resolve({ index, entry: reply[i] as string }, reply[i + 1] as string);
        if (performance.now() - started > readRetryMs) throw new Error(`Redis: index intents kept running out for ${readRetryMs} ms`);
      }
    },
  };
}

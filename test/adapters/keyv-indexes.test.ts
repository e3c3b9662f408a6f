/**
 * The Keyv store's indexes (rule 10) beyond the conformance suite: the suite again with
 * chunks small enough to split and merge on every few writes, a long random run against a
 * model, what one readIndex reads from Keyv whatever the index's size and the page's
 * offset, and an indexed batch or removeGroup cut off part-way, undone by the next store.
 */
import Keyv from 'keyv';
import { describe, expect, it } from 'vitest';
import { createKeyvStore } from '../../adapters/keyv.js';
import type { VaultStore } from '../../src/core/store.js';
import { VaultError } from '../../src/index.js';
import { runIndexConformance } from '../../src/testing/index.js';
import { runId } from '../helpers/services.js';
import { waitFor } from '../helpers/wait.js';

const faultHook = (controls: { failAt: number }) => ({
  beforeWrite: (i: number) => {
    if (i === controls.failAt) throw new Error('injected fault');
  },
});

const shared = new Map();
const sharedKeyv = () => new Keyv({ store: shared, throwOnErrors: true });

for (const indexChunkSize of [2, 3]) {
  runIndexConformance({ describe, it, expect }, ({ namespace }) => createKeyvStore(sharedKeyv(), { namespace, indexChunkSize }), {
    name: `keyv over a Map, index chunks of ${indexChunkSize}`,
    faults: { factory: ({ namespace }, controls) => createKeyvStore(sharedKeyv(), { namespace, indexChunkSize, faults: faultHook(controls) }) },
  });
}

/** A Map that counts the reads Keyv makes of it. */
class Backend extends Map<string, unknown> {
  reads = 0;
  override get(key: string): unknown {
    this.reads += 1;
    return super.get(key);
  }
  keysOf(namespace: string): string[] {
    return [...this.keys()].filter((key) => key.includes(namespace));
  }
}

/** Another way into a backend's data that, once `writesLeft` reaches 0, never finishes a write: a process cut off mid-call. */
class Cuttable extends Map<string, unknown> {
  constructor(
    private readonly target: Map<string, unknown>,
    public writesLeft: number,
  ) {
    super();
  }
  override get(key: string): unknown {
    return this.target.get(key);
  }
  override has(key: string): boolean {
    return this.target.has(key);
  }
  override set(key: string, value: unknown): this {
    if (this.writesLeft <= 0) return new Promise(() => undefined) as unknown as this;
    this.writesLeft -= 1;
    this.target.set(key, value);
    return this;
  }
  override delete(key: string): boolean {
    if (this.writesLeft <= 0) return new Promise(() => undefined) as unknown as boolean;
    this.writesLeft -= 1;
    return this.target.delete(key);
  }
}

/** A small deterministic generator, so a failing run can be repeated. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (Math.imul(state, 1_103_515_245) + 12_345) >>> 0;
    return state / 2 ** 32;
  };
}

const byCodeUnit = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

describe('keyv store: index records', () => {
  it('a long random run of adds and removes reads like a sorted set on every page, and leaves no record once empty', async () => {
    const backend = new Backend();
    const namespace = runId('model');
    const store = createKeyvStore(new Keyv({ store: backend, throwOnErrors: true }), { namespace, indexChunkSize: 4 });
    try {
      const next = random(7);
      const names = Array.from({ length: 90 }, (_, i) => `${'aAz0_.-%:'[i % 9]}${(i * 37) % 101}`);
      const model = new Set<string>();
      for (let step = 0; step < 600; step += 1) {
        const name = names[Math.floor(next() * names.length)] as string;
        const group = `g-${name}`;
        if (next() < 0.6) {
          await store.batch(group, [], { index: { index: 'accounts', entry: name } });
          model.add(name);
        } else {
          await store.removeGroup(group, { index: { index: 'accounts', entry: name } });
          model.delete(name);
        }
        if (step % 15 === 0) {
          const sorted = [...model].sort(byCodeUnit);
          const offset = Math.floor(next() * (sorted.length + 3));
          const limit = 1 + Math.floor(next() * 12);
          expect(await store.readIndex('accounts', offset, limit)).toEqual({ total: sorted.length, entries: sorted.slice(offset, offset + limit) });
          expect(await store.readIndex('accounts', 0, 1000)).toEqual({ total: sorted.length, entries: sorted });
        }
      }
      for (const name of [...model]) await store.removeGroup(`g-${name}`, { index: { index: 'accounts', entry: name } });
      expect(await store.readIndex('accounts', 0, 1000)).toEqual({ total: 0, entries: [] });
      // Only the lease is left of this namespace.
      expect(backend.keysOf(namespace)).toHaveLength(1);
    } finally {
      await store.close();
    }
  });

  it('readIndex reads the same few records whatever the index size and the offset', async () => {
    const backend = new Backend();
    const store = createKeyvStore(new Keyv({ store: backend, throwOnErrors: true }), { namespace: runId('cost'), indexChunkSize: 8 });
    try {
      const readsOf = async (offset: number, limit: number): Promise<number> => {
        const before = backend.reads;
        const page = await store.readIndex('big', offset, limit);
        expect(page.entries).toHaveLength(Math.max(0, Math.min(limit, page.total - offset)));
        return backend.reads - before;
      };
      for (let i = 0; i < 1200; i += 1) {
        await store.batch(`g${i}`, [], { index: { index: 'big', entry: `e${String((i * 7919) % 1200).padStart(4, '0')}` } });
      }
      const small = [await readsOf(0, 10), await readsOf(600, 10), await readsOf(1190, 10)];
      // The head, then the chunks a 10-entry page overlaps: chunks hold at least 2 entries, at most 8.
      for (const reads of small) expect(reads).toBeLessThanOrEqual(1 + 6);
      expect(await readsOf(0, 1)).toBeLessThanOrEqual(2);
      expect(await readsOf(5000, 10)).toBe(1);
      // A page of 100 reads in proportion to 100, not to the 1200 entries.
      expect(await readsOf(500, 100)).toBeLessThanOrEqual(1 + 51);
    } finally {
      await store.close();
    }
  });
});

describe('keyv store: an indexed call cut off part-way', () => {
  const LEASE_MS = 300;

  /** Opens a store on `backend`'s data once the cut-off holder's lease has run out. */
  async function takeOver(backend: Backend, namespace: string): Promise<VaultStore> {
    const store = createKeyvStore(new Keyv({ store: backend, throwOnErrors: true }), { namespace, leaseMs: LEASE_MS, indexChunkSize: 2 });
    await waitFor(
      async () => {
        try {
          await store.get('probe', 'probe');
          return true;
        } catch (error) {
          if (error instanceof VaultError && error.code === 'INVALID_CONFIGURATION') return false;
          throw error;
        }
      },
      'the cut-off holder lease to run out',
      LEASE_MS * 20,
    );
    return store;
  }

  /** Seeds a namespace, then runs `call` with only `writes` Keyv writes allowed; returns what the next store sees of `group`. */
  async function cutOff(
    writes: number,
    group: string,
    call: (store: VaultStore) => Promise<unknown>,
  ): Promise<{ settled: boolean; members: string[]; index: { total: number; entries: string[] } }> {
    const backend = new Backend();
    const namespace = runId('cut');
    const view = new Cuttable(backend, Number.POSITIVE_INFINITY);
    const first = createKeyvStore(new Keyv({ store: view, throwOnErrors: true }), { namespace, leaseMs: LEASE_MS, indexChunkSize: 2 });
    for (const entry of ['a', 'c', 'd']) {
      await first.batch(`g-${entry}`, [{ op: 'put', member: 'profile', value: 'old' }], { index: { index: 'accounts', entry } });
    }
    await first.put('g-b', 'profile', 'old');
    view.writesLeft = writes;
    let settled = false;
    void call(first).then(
      () => (settled = true),
      () => undefined,
    );
    // The first store is never closed and its writes (lease refreshes too) hang for good, as a killed process's would.
    await waitFor(() => view.writesLeft === 0 || settled, 'the call to use its writes');
    const next = await takeOver(backend, namespace);
    try {
      const members = (await next.list(group)).map((item) => `${item.member}=${item.entry.value}`);
      return { settled, members, index: await next.readIndex('accounts', 0, 100) };
    } finally {
      await next.close();
    }
  }

  it('an indexed batch is undone whole, its entry included, wherever it stopped, or is there whole once it resolved', async () => {
    const batch = (store: VaultStore) =>
      store.batch(
        'g-b',
        [
          { op: 'put', member: 'profile', value: 'new' },
          { op: 'put', member: 'app', value: 'new' },
        ],
        { index: { index: 'accounts', entry: 'b' } },
      );
    const outcomes: string[] = [];
    for (let writes = 0; writes < 30; writes += 1) {
      const seen = await cutOff(writes, 'g-b', batch);
      if (seen.settled) {
        expect(seen).toEqual({ settled: true, members: ['app=new', 'profile=new'], index: { total: 4, entries: ['a', 'b', 'c', 'd'] } });
        outcomes.push('whole');
        break;
      }
      expect(seen).toEqual({ settled: false, members: ['profile=old'], index: { total: 3, entries: ['a', 'c', 'd'] } });
      outcomes.push('undone');
    }
    // Cut off after the journal, after some of the new records, after all of them: each time undone.
    expect(outcomes.filter((outcome) => outcome === 'undone').length).toBeGreaterThan(3);
    expect(outcomes.at(-1)).toBe('whole');
  });

  it('an indexed removeGroup is undone whole, its entry included, wherever it stopped', async () => {
    const removal = (store: VaultStore) => store.removeGroup('g-c', { index: { index: 'accounts', entry: 'c' } });
    let undone = 0;
    for (let writes = 0; writes < 30; writes += 1) {
      const seen = await cutOff(writes, 'g-c', removal);
      if (seen.settled) {
        expect(seen).toEqual({ settled: true, members: [], index: { total: 2, entries: ['a', 'd'] } });
        break;
      }
      expect(seen).toEqual({ settled: false, members: ['profile=old'], index: { total: 3, entries: ['a', 'c', 'd'] } });
      undone += 1;
    }
    expect(undone).toBeGreaterThan(2);
  });
});

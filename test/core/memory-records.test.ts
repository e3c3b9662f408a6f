/** The memory store under the vault: records are objects now, and no caller may ever hold one the store holds. */
import { describe, expect, it } from 'vitest';
import { createMemoryStore } from '../../adapters/memory.js';

describe('memory store records', () => {
  it('an entry read, listed or scanned is the caller\'s own: changing it changes nothing stored', async () => {
    const store = createMemoryStore();
    try {
      await store.put('g', 'm', 'v1');
      const [got, listed, scanned] = [await store.get('g', 'm'), await store.list('g'), await store.scan(undefined, 10)];
      for (const entry of [got, listed[0]?.entry, scanned.items[0]?.entry]) {
        if (entry === undefined) throw new Error('entry missing');
        entry.value = 'changed';
        entry.createdAt = 0;
        entry.expiresAt = 1;
      }
      const again = await store.get('g', 'm');
      expect(again?.value).toBe('v1');
      expect(again?.createdAt).toBeGreaterThan(0);
      expect(again?.expiresAt).toBeUndefined();
      expect(again).not.toBe(got);
    } finally {
      await store.close();
    }
  });

  it('a value that is not a string (past the types) is stored as a copy and read as a copy', async () => {
    const store = createMemoryStore();
    try {
      const value = { nested: ['a'] };
      await store.put('g', 'm', value as unknown as string);
      value.nested.push('b');
      const first = (await store.get('g', 'm'))?.value as unknown as { nested: string[] };
      expect(first).toEqual({ nested: ['a'] });
      first.nested.push('c');
      expect((await store.get('g', 'm'))?.value).toEqual({ nested: ['a'] });
    } finally {
      await store.close();
    }
  });

  it('a replace, an increment and a batch build new records: earlier reads keep what they read', async () => {
    const store = createMemoryStore();
    try {
      await store.put('g', 'm', 'one');
      const before = await store.get('g', 'm');
      expect(await store.replace('g', 'm', 'one', 'two')).toBe(true);
      expect(before?.value).toBe('one');
      const counter = await store.increment('g', 'n', 60_000);
      await store.increment('g', 'n', 60_000);
      expect(counter.count).toBe(1);
      const batch = await store.batch('g', [{ op: 'put', member: 'm', value: 'three' }]);
      expect(batch).toEqual({ committed: true, results: ['updated'] });
      expect((await store.get('g', 'm'))?.value).toBe('three');
      expect((await store.get('g', 'n'))?.value).toBe('2');
    } finally {
      await store.close();
    }
  });
});

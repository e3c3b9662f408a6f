/**
 * Indexing the linked accounts a store held before account indexes existed: one walk of the
 * store, once per store, when a vault opens it; afterwards a marker makes every open skip it.
 */
import { ACCOUNTS_INDEXED, META_GROUP, PROFILE, accountGroup, accountIndexEntry, parseAccountGroup } from './layout.js';
import type { IndexEntry, VaultStore } from './store.js';

/** Records read per scan call of the walk. */
const SCAN_PAGE = 500;
/** Index writes in flight at once, so a pooled backend is not flooded. */
const PARALLEL = 16;

/**
 * Puts every account whose profile is live into its index, unless the store says this was
 * done already; then marks the store. Returns how many accounts it found and indexed (0 when
 * the marker was there). Safe to run from several processes at once and to interrupt: each
 * index write is conditional on the profile in the same atomic step, so an account deleted
 * meanwhile is never indexed, and indexing one twice is a no-op. The marker goes in only
 * after a complete walk.
 */
export async function indexExistingAccounts(store: VaultStore): Promise<number> {
  if ((await store.get(META_GROUP, ACCOUNTS_INDEXED)) !== undefined) return 0;
  let indexed = 0;
  let cursor: string | undefined;
  do {
    const page = await store.scan(cursor, SCAN_PAGE);
    // A scan may return a member twice; within one page that is easily skipped.
    const found = new Map<string, IndexEntry>();
    for (const { group, member } of page.items) {
      if (member !== PROFILE || found.has(group)) continue;
      const index = indexEntryOfGroup(group);
      if (index !== undefined) found.set(group, index);
    }
    const work = [...found];
    for (let i = 0; i < work.length; i += PARALLEL) {
      const results = await Promise.all(
        work.slice(i, i + PARALLEL).map(([group, index]) => store.batch(group, [], { requires: PROFILE, index })),
      );
      indexed += results.filter((result) => result.committed).length;
    }
    cursor = page.cursor;
  } while (cursor !== undefined);
  await store.insert(META_GROUP, ACCOUNTS_INDEXED, new Date().toISOString());
  return indexed;
}

/** The index entry of an account group the vault wrote, or `undefined` for any other group. */
function indexEntryOfGroup(group: string): IndexEntry | undefined {
  const ref = parseAccountGroup(group);
  if (ref === undefined) return undefined;
  // Only a group spelled exactly as the vault spells it is an account's group.
  try {
    return accountGroup(ref) === group ? accountIndexEntry(ref) : undefined;
  } catch {
    return undefined;
  }
}

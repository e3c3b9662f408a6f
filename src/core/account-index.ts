/**
 * Indexing linked accounts stored without an index entry (by a release before account
 * indexes, or by such a release still running during a rolling upgrade): one walk of the
 * store on the first open of a store, which then marks it, and the same walk on demand
 * ({@link reindexLinkedAccounts}), whatever the marker says.
 */
import { ACCOUNTS_INDEXED, META_GROUP, PROFILE, accountGroup, accountIndexEntry, parseAccountGroup } from './layout.js';
import type { IndexEntry, VaultStore } from './store.js';
import type { Vault } from './vault.js';

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
  const indexed = await indexEveryAccount(store);
  await store.insert(META_GROUP, ACCOUNTS_INDEXED, new Date().toISOString());
  return indexed;
}

/** What {@link reindexLinkedAccounts} did. */
export interface ReindexResult {
  /**
   * Accounts the walk found with a live profile and left in their index. It counts accounts
   * seen, not entries added: the store contract cannot tell an entry added from one that
   * was there already. An account the backend's scan returns twice (Redis does during a
   * rehash) may count twice.
   */
  accounts: number;
}

/** Options of {@link reindexLinkedAccounts}. */
export interface ReindexOptions {
  /** Called after each scan page with the number of accounts indexed so far. */
  onProgress?: (accounts: number) => void;
}

/**
 * Walks the whole store, as the first open of a store does but whatever its marker says,
 * and puts every account whose profile is live into its org's and environment's index.
 * Run it once every process runs this release: processes on a release without account
 * indexes (a rolling upgrade) create accounts without an entry, and after the first open's
 * walk nothing else would list them.
 *
 * Safe while the vault is in use and from several processes at once: each entry is added
 * in one atomic step with a check that the profile is live, so an account deleted during
 * the walk is not put back, and an entry already there stays once. Costs one walk of the
 * store. An entry whose account an older release deleted stays (see `listLinkedAccounts`).
 *
 * @throws VaultError `STORE_UNAVAILABLE`
 * @example
 * ```ts
 * const { accounts } = await reindexLinkedAccounts(vault);
 * console.error(`${accounts} linked accounts are listed`);
 * ```
 */
export async function reindexLinkedAccounts(vault: Vault, options: ReindexOptions = {}): Promise<ReindexResult> {
  // The marker stays as it is: every open vault's store has it already.
  return { accounts: await indexEveryAccount(vault.store, options.onProgress) };
}

/** One walk of the store: the entry of each live account, added only while its profile is live. Returns how many committed. */
async function indexEveryAccount(store: VaultStore, onProgress?: (accounts: number) => void): Promise<number> {
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
    onProgress?.(indexed);
    cursor = page.cursor;
  } while (cursor !== undefined);
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

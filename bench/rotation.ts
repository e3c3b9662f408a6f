/**
 * The key-rotation measurement: `rotateKeys` re-sealing a SQLite store of 10^4 and 10^5
 * credentials from an old key to a new primary, in a process of its own (rotate-child.ts):
 * seconds, records/s, and that process's memory (RSS, and the live heap after full GCs)
 * before and at its peak. The baseline is the process's memory before rotating: rotation
 * that streams keeps the peak near it whatever the store's size.
 */
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sealCredential } from '../src/crypto/cipher.js';
import { parseKeyring } from '../src/crypto/keyring.js';
import { SEED_ENVIRONMENT, SEED_ORG, seedSqlite } from './seed.js';

export interface RotationRow {
  credentials: number;
  seconds: number;
  baselineMiB: number;
  peakMiB: number;
  heapBaselineMiB: number;
  heapPeakMiB: number;
}

export interface RotationSettings {
  /** Credentials in the store rotated, one row per size. */
  sizes: readonly number[];
  /** A directory for the SQLite files. */
  dir: string;
  log: (line: string) => void;
}

/** What rotate-child.ts sends back. */
interface ChildReport {
  rotated: number;
  seconds: number;
  baselineRss: number;
  peakRss: number;
  baselineHeap: number;
  peakHeap: number;
}

const here = path.dirname(fileURLToPath(import.meta.url));
const NAMESPACE = 'rotate';
const mib = (bytes: number) => bytes / 2 ** 20;

function rotateInChild(file: string, keys: string): Promise<ChildReport> {
  const child = fork(path.join(here, 'rotate-child.js'), [JSON.stringify({ file, namespace: NAMESPACE, keys })], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    execArgv: ['--expose-gc'],
  });
  return new Promise<ChildReport>((resolve, reject) => {
    child.once('message', (message) => resolve(message as ChildReport));
    child.once('exit', (code) => (code === 0 ? undefined : reject(new Error(`rotation child exited ${code}`))));
  });
}

/** Seeds each size under a fresh old key, rotates it to a fresh new key, one row per size. */
export async function measureRotation(settings: RotationSettings): Promise<RotationRow[]> {
  const rows: RotationRow[] = [];
  const old = parseKeyring(`old:${randomBytes(32).toString('base64')}`);
  const keys = `new:${randomBytes(32).toString('base64')},old:${old.primary.key.toString('base64')}`;
  for (const count of settings.sizes) {
    const file = path.join(settings.dir, `rotate-${count}.db`);
    settings.log(`rotation: seeding ${count} credentials sealed under the old key`);
    await seedSqlite(
      file,
      NAMESPACE,
      count,
      (accountId, name) => sealCredential(old, `sk_live_${accountId}_${name}`, { org: SEED_ORG, environment: SEED_ENVIRONMENT, accountId, name }),
      { accounts: true },
    );
    const result = await rotateInChild(file, keys);
    if (result.rotated !== count) throw new Error(`rotation re-sealed ${result.rotated} of ${count}`);
    const row: RotationRow = {
      credentials: count,
      seconds: result.seconds,
      baselineMiB: mib(result.baselineRss),
      peakMiB: mib(result.peakRss),
      heapBaselineMiB: mib(result.baselineHeap),
      heapPeakMiB: mib(result.peakHeap),
    };
    rows.push(row);
    settings.log(
      `rotation: ${count} in ${row.seconds.toFixed(1)} s, RSS ${row.baselineMiB.toFixed(0)} -> ${row.peakMiB.toFixed(0)} MiB, live heap ${row.heapBaselineMiB.toFixed(1)} -> ${row.heapPeakMiB.toFixed(1)} MiB`,
    );
  }
  return rows;
}

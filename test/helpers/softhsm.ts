/**
 * SoftHSM2 for the PKCS#11 tests: whether it is installed, and a throwaway token in its own
 * directory. SoftHSM reads SOFTHSM2_CONF at C_Initialize, so a process has one token dir.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe } from 'vitest';
import type { ServiceSuite } from './services.js';

/** Debian's SoftHSM2 module. */
export const SOFTHSM_MODULE = process.env.CREDVAULT_TEST_SOFTHSM_MODULE ?? '/usr/lib/softhsm/libsofthsm2.so';

const required = process.env.CREDVAULT_REQUIRE_SERVICES === '1';

function utilityInstalled(): boolean {
  try {
    execFileSync('softhsm2-util', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * Checks once per test file that `softhsm2-util` and the module are installed. Missing, the
 * suites skip after a visible notice; with `CREDVAULT_REQUIRE_SERVICES=1` (CI) this throws,
 * failing the file.
 *
 * @example
 * ```ts
 * const softhsm = softhsmSuite();
 * softhsm.describe('PKCS#11 provider', () => { ... });
 * ```
 */
export function softhsmSuite(): ServiceSuite {
  const missing = !utilityInstalled() ? 'softhsm2-util is not on PATH' : !existsSync(SOFTHSM_MODULE) ? `${SOFTHSM_MODULE} does not exist` : undefined;
  const available = missing === undefined;
  if (!available) {
    if (required) throw new Error(`SoftHSM2 is not installed (${missing}), and CREDVAULT_REQUIRE_SERVICES=1 requires it`);
    console.warn(`[credvault tests] SoftHSM2 is not installed (${missing}): skipping its suites (apt-get install softhsm2, or set CREDVAULT_REQUIRE_SERVICES=1 to fail instead)`);
  }
  return {
    available,
    describe: (title, body) => (available ? describe(title, body) : describe.skip(title, body)),
  };
}

export interface SoftHsmToken {
  readonly label: string;
  readonly pin: string;
  /** The directory SoftHSM keeps its tokens in (`directories.tokendir`). */
  readonly tokenDir: string;
  /** A URI for the key labelled `object`; the PIN as `pin-value` unless `pinSource` (e.g. `env:NAME`) is given. */
  uri(object: string, pinSource?: string): string;
  /** Moves the token directory away: the token vanishes as an unreachable HSM would. */
  hide(): void;
  /** Puts the token directory back. */
  restore(): void;
  /** Removes the directory and unsets SOFTHSM2_CONF. */
  cleanup(): void;
}

let live: string | undefined;

/**
 * Initialises a SoftHSM2 token in a new temporary directory with its own softhsm2.conf and
 * points `process.env.SOFTHSM2_CONF` at it. One per process at a time.
 *
 * @example
 * ```ts
 * const token = createSoftHsmToken({ label: 'credvault', pin: '4321' });
 * const provider = await openPkcs11KeyProvider(token.uri('kek-1'));
 * ```
 */
export function createSoftHsmToken(options: { label: string; pin: string }): SoftHsmToken {
  if (live !== undefined) throw new Error(`a SoftHSM token dir (${live}) is in use in this process: SoftHSM reads SOFTHSM2_CONF once per C_Initialize`);
  if (options.pin.length < 4) throw new Error('SoftHSM PINs have at least 4 characters');
  const dir = mkdtempSync(join(tmpdir(), 'credvault-softhsm-'));
  const tokenDir = join(dir, 'tokens');
  const hidden = join(dir, 'tokens.hidden');
  mkdirSync(tokenDir);
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${tokenDir}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
  const soPin = randomBytes(8).toString('hex');
  try {
    execFileSync('softhsm2-util', ['--init-token', '--free', '--label', options.label, '--so-pin', soPin, '--pin', options.pin], {
      env: { ...process.env, SOFTHSM2_CONF: conf },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    // execFileSync's own message repeats the command line, PINs included.
    const stderr = String((error as { stderr?: unknown }).stderr ?? '').trim();
    throw new Error(`softhsm2-util --init-token failed: ${stderr}`);
  }
  process.env.SOFTHSM2_CONF = conf;
  live = dir;
  let isHidden = false;
  const pinValue = encodeURIComponent(options.pin);
  return {
    label: options.label,
    pin: options.pin,
    tokenDir,
    uri: (object, pinSource) =>
      `pkcs11:token=${encodeURIComponent(options.label)};object=${encodeURIComponent(object)}?module-path=${SOFTHSM_MODULE}&` +
      (pinSource === undefined ? `pin-value=${pinValue}` : `pin-source=${pinSource}`),
    hide() {
      if (isHidden) return;
      renameSync(tokenDir, hidden);
      isHidden = true;
    },
    restore() {
      if (!isHidden) return;
      renameSync(hidden, tokenDir);
      isHidden = false;
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
      if (process.env.SOFTHSM2_CONF === conf) delete process.env.SOFTHSM2_CONF;
      if (live === dir) live = undefined;
    },
  };
}

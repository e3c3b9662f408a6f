/**
 * Chromium for the browser tests: Debian's package, driven by playwright-core (which never
 * downloads a browser of its own). Where it is missing the suites skip with a visible notice,
 * except in CI (`CI` set, or `CREDVAULT_REQUIRE_SERVICES=1`), where that fails the file.
 */
import { accessSync, constants } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';
import { describe } from 'vitest';
import type { ServiceSuite } from '../helpers/services.js';

/** Where Chromium is: `CREDVAULT_CHROMIUM` when set, else Debian's `/usr/bin/chromium`. */
export const CHROMIUM_PATH = process.env.CREDVAULT_CHROMIUM || '/usr/bin/chromium';

/** Flags for a quiet headless run on a machine without a sandbox, a GPU or the internet. */
const LAUNCH_ARGS = [
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-gpu',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

function ciRun(): boolean {
  const ci = process.env.CI;
  return (ci !== undefined && ci !== '' && ci !== '0' && ci.toLowerCase() !== 'false') || process.env.CREDVAULT_REQUIRE_SERVICES === '1';
}

function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Checks once per test file that Chromium is installed. Missing, its suites skip after a
 * `[credvault tests]` notice; in CI this throws instead, failing the file.
 *
 * @example
 * ```ts
 * const browser = chromiumSuite();
 * browser.describe('Connect page', () => { ... });
 * ```
 */
export function chromiumSuite(): ServiceSuite {
  const available = executable(CHROMIUM_PATH);
  if (!available) {
    const where = process.env.CREDVAULT_CHROMIUM ? `${CHROMIUM_PATH} (CREDVAULT_CHROMIUM)` : CHROMIUM_PATH;
    if (ciRun()) {
      throw new Error(`Chromium is not installed at ${where}, and this CI run (CI or CREDVAULT_REQUIRE_SERVICES=1) requires it`);
    }
    console.warn(
      `[credvault tests] Chromium is not installed at ${where}: skipping the browser suites (apt-get install chromium, point CREDVAULT_CHROMIUM at one, or set CREDVAULT_REQUIRE_SERVICES=1 to fail instead)`,
    );
  }
  return {
    available,
    // A plain function: vitest's describe.skip loses its mode when called as another object's method.
    describe: (title, body) => (available ? describe(title, body) : describe.skip(title, body)),
  };
}

/** Launches headless Chromium from {@link CHROMIUM_PATH}; the caller closes it. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: LAUNCH_ARGS });
}

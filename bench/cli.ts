/**
 * The CLI start-up measurement: wall time from spawning `node` to its exit, for
 * `credvault --help` and `credvault api-key create --org bench --store memory:` (the built
 * CLI, dist/src/cli/main.js), against `node -e 0`, the floor any Node.js CLI starts from.
 * The three commands alternate, their order rotated each run, and each runs `runs` times.
 * Output is discarded unread: `api-key create` prints a fresh API key.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { median } from './report.js';

/** The commands timed, by the name the report gives them. */
export const CLI_COMMANDS = ['node -e 0', 'credvault --help', 'credvault api-key create --org bench --store memory:'] as const;
export type CliCommand = (typeof CLI_COMMANDS)[number];

export interface CliResult {
  /** Milliseconds of wall time per run, by command. */
  ms: Record<CliCommand, number[]>;
}

export interface CliSettings {
  /** Runs per command. */
  runs: number;
  log: (line: string) => void;
}

const here = path.dirname(fileURLToPath(import.meta.url));
/** bench/ and src/ sit side by side in dist/. */
const cli = path.join(here, '..', 'src', 'cli', 'main.js');

const ARGS: Record<CliCommand, string[]> = {
  'node -e 0': ['-e', '0'],
  'credvault --help': [cli, '--help'],
  'credvault api-key create --org bench --store memory:': [cli, 'api-key', 'create', '--org', 'bench', '--store', 'memory:'],
};

/** The environment without CREDVAULT_* settings, so the caller's own configuration changes nothing timed. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('CREDVAULT_')));
}

function timeOnce(command: CliCommand, env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(process.execPath, ARGS[command], { stdio: 'ignore', env });
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      if (code === 0) resolve(ms);
      else reject(new Error(`${command} exited ${code ?? signal}`));
    });
  });
}

/** Every command `runs` times, one of each per run; the first run of each is not timed (disk cache). */
export async function measureCli(settings: CliSettings): Promise<CliResult> {
  if (!existsSync(cli)) throw new Error(`no built CLI at ${cli}: run npm run build first`);
  const env = cleanEnv();
  const result: CliResult = { ms: { 'node -e 0': [], 'credvault --help': [], 'credvault api-key create --org bench --store memory:': [] } };
  for (const command of CLI_COMMANDS) await timeOnce(command, env);
  for (let run = 0; run < settings.runs; run++) {
    const order = CLI_COMMANDS.map((_, i) => CLI_COMMANDS[(i + run) % CLI_COMMANDS.length] as CliCommand);
    for (const command of order) result.ms[command].push(await timeOnce(command, env));
  }
  settings.log(`cli: ${CLI_COMMANDS.map((c) => `${c} in ${Math.round(median(result.ms[c]))} ms`).join(', ')}`);
  return result;
}

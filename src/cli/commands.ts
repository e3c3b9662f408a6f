/**
 * The `credvault` command table: the program's top-level commands and their descriptions,
 * and the answers to `--help` and `--version` made from it without loading commander.
 * A leaf (node:fs only), so the entry point can answer those two before loading anything.
 */
import { readFileSync } from 'node:fs';

/** What `credvault --help` says the program is. */
export const PROGRAM_DESCRIPTION = "An encrypted vault for linked accounts' default-app auth credentials";

/** The version flag and its help line. */
export const VERSION_FLAGS = '-V, --version';
export const VERSION_DESCRIPTION = 'print the credvault version';

/** A top-level command as the top-level help lists it. */
export interface CommandEntry {
  readonly name: string;
  /** True for a command taking options itself (commander lists it as `name [options]`); false for a group of subcommands. */
  readonly options: boolean;
  readonly description: string;
}

/**
 * Every top-level command, in the order the help lists them. The commander program is built
 * with these names and descriptions, and a test checks the text below against commander's.
 *
 * @example
 * ```ts
 * program.command('serve').description(commandDescription('serve'));
 * ```
 */
export const COMMANDS: readonly CommandEntry[] = [
  { name: 'serve', options: true, description: 'serve the HTTP API' },
  { name: 'api-key', options: false, description: 'create and revoke org API keys' },
  { name: 'linked-account', options: false, description: 'manage linked accounts' },
  { name: 'session-token', options: false, description: 'issue session tokens' },
  { name: 'credentials', options: false, description: 'inspect stored credentials' },
  { name: 'keys', options: false, description: 'manage encryption keys' },
  { name: 'openapi', options: true, description: 'print the OpenAPI 3.1 document of the API' },
];

/**
 * The description of a top-level command in {@link COMMANDS}; throws for a name not in it.
 *
 * @example
 * ```ts
 * commandDescription('keys'); // 'manage encryption keys'
 * ```
 */
export function commandDescription(name: string): string {
  const entry = COMMANDS.find((command) => command.name === name);
  if (entry === undefined) throw new Error(`credvault: no top-level command '${name}' in the command table`);
  return entry.description;
}

/** Commander's own help entries, which every program it builds has. */
const HELP_OPTION = ['-h, --help', 'display help for command'] as const;
const HELP_COMMAND = ['help [command]', 'display help for command'] as const;

/**
 * The top-level help, laid out as commander lays it out (terms padded to the longest, two
 * spaces before each description) for a terminal wide enough that nothing wraps.
 *
 * @example
 * ```ts
 * process.stdout.write(topLevelHelp());
 * ```
 */
export function topLevelHelp(): string {
  const options: Array<readonly [string, string]> = [[VERSION_FLAGS, VERSION_DESCRIPTION], HELP_OPTION];
  const commands: Array<readonly [string, string]> = [
    ...COMMANDS.map((command) => [command.options ? `${command.name} [options]` : command.name, command.description] as const),
    HELP_COMMAND,
  ];
  const width = Math.max(...[...options, ...commands].map(([term]) => term.length));
  const item = ([term, description]: readonly [string, string]) => `  ${term.padEnd(width)}  ${description}`;
  return [
    'Usage: credvault [options] [command]',
    '',
    PROGRAM_DESCRIPTION,
    '',
    'Options:',
    ...options.map(item),
    '',
    'Commands:',
    ...commands.map(item),
    '',
  ].join('\n');
}

/**
 * The version in credvault's own package.json, found by walking up from this file: the
 * same from a checkout (`dist/src/cli/`) and from an install (`node_modules/credvault/...`).
 *
 * @example
 * ```ts
 * packageVersion(); // '0.1.0'
 * ```
 */
export function packageVersion(): string {
  let dir = new URL('.', import.meta.url);
  for (;;) {
    try {
      const manifest = JSON.parse(readFileSync(new URL('package.json', dir), 'utf8')) as { name?: unknown; version?: unknown };
      if (manifest.name === 'credvault' && typeof manifest.version === 'string') return manifest.version;
    } catch {
      // No package.json here (or not ours): keep walking up.
    }
    const parent = new URL('..', dir);
    if (parent.href === dir.href) return 'unknown';
    dir = parent;
  }
}

/** Where help goes: commander wraps at the terminal's width, and at 80 columns off a terminal. */
export interface HelpOutput {
  readonly isTTY?: boolean;
  readonly columns?: number;
}

/**
 * What stdout gets for `credvault --help`, `-h`, `help`, `--version` or `-V` given alone, or
 * undefined for any other command line (and for a terminal so narrow that commander would
 * wrap the help), which then goes to commander.
 *
 * @example
 * ```ts
 * const text = quickAnswer(process.argv.slice(2), process.stdout);
 * if (text !== undefined) process.stdout.write(text);
 * ```
 */
export function quickAnswer(argv: readonly string[], output: HelpOutput): string | undefined {
  if (argv.length !== 1) return undefined;
  const [arg] = argv;
  if (arg === '--version' || arg === '-V') return `${packageVersion()}\n`;
  if (arg !== '--help' && arg !== '-h' && arg !== 'help') return undefined;
  const text = topLevelHelp();
  const width = output.isTTY === true ? output.columns : undefined;
  // Commander leaves a line alone when it fits; only then is this text what it would print.
  const fits = width === undefined || text.split('\n').every((line) => line.length <= width);
  return fits ? text : undefined;
}

/**
 * `credvault --help` and `--version` without commander: the built CLI (a real process) answers
 * a bare `--help`, `-h` or `help` from the command table, and that text is exactly what the
 * commander program prints, lists every command the program has, and gives way to commander
 * on a terminal too narrow for it. Subcommand help still comes from commander.
 */
import { describe, expect, it } from 'vitest';
import type { Command } from 'commander';
import { COMMANDS, quickAnswer, topLevelHelp } from '../../src/cli/commands.js';
import { buildProgram } from '../../src/cli/program.js';
import { assertBuilt, run } from './helpers.js';

/** What commander itself prints for `command --help` at `width` columns. */
function commanderHelp(command: Command, width: number): string {
  return command.configureHelp({ helpWidth: width }).helpInformation();
}

const program = buildProgram();
/** The program's own commands, from commander, so a command missing from the table shows. */
const commandNames = program.commands.map((command) => command.name());

describe('credvault --help', () => {
  it('prints, as a real process, exactly what commander prints for the program, and exits 0', async () => {
    assertBuilt();
    const expected = commanderHelp(buildProgram(), 80);
    for (const flag of ['--help', '-h', 'help']) {
      const result = await run([flag]);
      expect(result, flag).toMatchObject({ code: 0, stdout: expected, stderr: '' });
    }
  });

  it('lists every command the program has, each with its description', async () => {
    const { stdout } = await run(['--help']);
    expect(commandNames.length).toBeGreaterThanOrEqual(7);
    for (const command of program.commands) {
      const line = stdout.split('\n').find((text) => text.startsWith(`  ${command.name()} `));
      expect(line, `${command.name()} in --help`).toBeDefined();
      expect(line).toContain(command.description());
    }
    expect(COMMANDS.map((command) => command.name)).toEqual(commandNames);
  });

  it('lists every subcommand of each command group (from commander)', async () => {
    for (const group of program.commands.filter((command) => command.commands.length > 0)) {
      const result = await run([group.name(), '--help']);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toBe(commanderHelp(group, 80));
      for (const sub of group.commands) expect(result.stdout).toMatch(new RegExp(`^  ${sub.name()} `, 'm'));
    }
  });
});

describe('the help made from the command table', () => {
  it('is what commander prints at any width where nothing wraps', () => {
    for (const width of [80, 120, 300]) expect(topLevelHelp(), `${width} columns`).toBe(commanderHelp(buildProgram(), width));
    expect(quickAnswer(['--help'], { isTTY: true, columns: 120 })).toBe(topLevelHelp());
    expect(quickAnswer(['--help'], { isTTY: false, columns: 20 })).toBe(topLevelHelp());
  });

  it('gives way to commander on a terminal narrow enough for commander to wrap it', () => {
    // Commander wraps here, so the table's text would be wrong: the command line goes to commander.
    expect(commanderHelp(buildProgram(), 60)).not.toBe(topLevelHelp());
    expect(quickAnswer(['--help'], { isTTY: true, columns: 60 })).toBeUndefined();
  });

  it('answers only a bare --help, -h, help, --version or -V', () => {
    for (const argv of [['--help', 'serve'], ['serve', '--help'], ['help', 'keys'], ['-V', '--help'], [], ['--helpx'], ['version']]) {
      expect(quickAnswer(argv, {}), argv.join(' ')).toBeUndefined();
    }
    expect(quickAnswer(['--version'], {})).toMatch(/^\d+\.\d+\.\d+\S*\n$/);
    expect(quickAnswer(['-V'], {})).toBe(quickAnswer(['--version'], {}));
  });
});

#!/usr/bin/env node
/**
 * The `credvault` executable. A bare `--help` or `--version` is answered from the command
 * table alone; anything else loads the commander program (program.ts), which loads only what
 * the command it runs needs.
 */
import { quickAnswer } from './commands.js';

const argv = process.argv.slice(2);
const quick = quickAnswer(argv, process.stdout);
if (quick !== undefined) {
  process.stdout.write(quick);
} else {
  const { main } = await import('./program.js');
  const exitCode = await main(argv);
  // serve keeps running; every other command exits with its code.
  if (exitCode !== 0 || argv[0] !== 'serve') process.exitCode = exitCode;
}

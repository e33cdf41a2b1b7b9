/**
 * The `smolrate-model` command line (bin/smolrate-model.js). Each command lives in `commands/<name>.ts`, loaded
 * on demand, and exports `run(argv)`, a one-line `summary` and its `usage`. Errors become one line
 * on stderr and an exit code from EXIT_CODES (core's runLazyCommand / runCommand).
 */
import { runLazyCommand, type LazyCommand } from '@smolrate/core';

export const PROGRAM = 'smolrate-model';

/** The dispatch table: command name → summary and loader (commands/<name>.ts). */
export const COMMANDS: Record<string, LazyCommand> = {
  inspect: { summary: 'parameter and multiply-accumulate counts per component (no weights needed)', load: () => import('./commands/inspect.js') },
  forward: { summary: 'run the model forward on an image and a prompt', load: () => import('./commands/forward.js') },
  init: { summary: 'write a seeded, randomly initialised checkpoint', load: () => import('./commands/init.js') },
  bench: { summary: 'time forward / backward steps on a compute backend', load: () => import('./commands/bench.js') },
};

/** Runs one command line and returns its exit code (prints usage, messages and errors itself). */
export async function dispatch(argv: string[], commands: Record<string, LazyCommand> = COMMANDS): Promise<number> {
  return runLazyCommand(PROGRAM, commands, argv);
}

/** Entry point of bin/smolrate-model.js: sets process.exitCode rather than exiting, so output drains. */
export async function main(argv: string[]): Promise<void> {
  process.exitCode = await dispatch(argv);
}

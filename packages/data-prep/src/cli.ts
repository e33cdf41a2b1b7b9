/**
 * The `smolrate-data-prep` command line (bin/smolrate-data-prep.js). Each command lives in `commands/<name>.ts`, loaded
 * on demand, and exports `run(argv)`, a one-line `summary` and its `usage`. Errors become one line
 * on stderr and an exit code from EXIT_CODES (core's runLazyCommand / runCommand).
 */
import { runLazyCommand, type LazyCommand } from '@smolrate/core';

export const PROGRAM = 'smolrate-data-prep';

/** The dispatch table: command name → summary and loader (commands/<name>.ts). */
export const COMMANDS: Record<string, LazyCommand> = {
  'build-shards': { summary: 'metadata JSONL(.gz) → selected items → fetched, resized images → Parquet shards + manifest.json', load: () => import('./commands/build-shards.js') },
  worker: { summary: 'serve the BullMQ jobs of data-prep builds (join a build from any host)', load: () => import('./commands/worker.js') },
  synth: { summary: 'write a synthetic dataset in the exact Amazon Reviews\'23 format', load: () => import('./commands/synth.js') },
  bench: { summary: 'benchmarks: select throughput (0.5 M and 2 M records) and image fetch/resize', load: () => import('./commands/bench.js') },
};

/** Runs one command line and returns its exit code (prints usage, messages and errors itself). */
export async function dispatch(argv: string[], commands: Record<string, LazyCommand> = COMMANDS): Promise<number> {
  return runLazyCommand(PROGRAM, commands, argv);
}

/** Entry point of bin/smolrate-data-prep.js: sets process.exitCode rather than exiting, so output drains. */
export async function main(argv: string[]): Promise<void> {
  process.exitCode = await dispatch(argv);
}

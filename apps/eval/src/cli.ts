/**
 * The `smolrate-eval` command line (bin/smolrate-eval.js). Each command lives in `commands/<name>.ts`, loaded
 * on demand, and exports `run(argv)`, a one-line `summary` and its `usage`. Errors become one line
 * on stderr and an exit code from EXIT_CODES (core's runLazyCommand / runCommand).
 */
import { runLazyCommand, type LazyCommand } from '@smolrate/core';

export const PROGRAM = 'smolrate-eval';

/** The dispatch table: command name → summary and loader (commands/<name>.ts). */
export const COMMANDS: Record<string, LazyCommand> = {
  metrics: { summary: 'RMSE / MAE / PLCC / SRCC / PLCC⁺ of a CSV (target,prediction)', load: () => import('./commands/metrics.js') },
  report: { summary: 'metrics, CES, throughput, figures of a checkpoint on a split → report.html/json', load: () => import('./commands/report.js') },
  predict: { summary: 'ratings for items (JSONL/CSV + image folder) → parent_asin,score', load: () => import('./commands/predict.js') },
  'browser-check': { summary: 'open a report.html in headless Chromium: figures load, no console errors', load: () => import('./commands/browser-check.js') },
  submit: { summary: 'LoViF submission CSV (item_id,score,params,flops) for a test set folder', load: () => import('./commands/submit.js') },
};

/** Runs one command line and returns its exit code (prints usage, messages and errors itself). */
export async function dispatch(argv: string[], commands: Record<string, LazyCommand> = COMMANDS): Promise<number> {
  return runLazyCommand(PROGRAM, commands, argv);
}

/** Entry point of bin/smolrate-eval.js: sets process.exitCode rather than exiting, so output drains. */
export async function main(argv: string[]): Promise<void> {
  process.exitCode = await dispatch(argv);
}

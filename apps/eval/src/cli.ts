/**
 * The `smolrate-eval` command line (bin/smolrate-eval.js). Each command lives in
 * `commands/<name>.ts`, loaded on demand, exporting `run(argv)`, `summary` and `usage`; errors
 * become one line on stderr and an exit code (core's runCommand / EXIT_CODES).
 */
import { runCommand, type CommandSpec } from '@smolrate/core';

export const PROGRAM = 'smolrate-eval';

interface CommandModule {
  summary: string;
  usage: string;
  run(argv: string[]): Promise<number | void>;
}

const LOADERS: Record<string, { summary: string; load: () => Promise<CommandModule> }> = {
  metrics: { summary: 'RMSE / MAE / PLCC / SRCC / PLCC⁺ of a CSV (target,prediction)', load: () => import('./commands/metrics.js') },
  report: { summary: 'metrics, CES, throughput, figures of a checkpoint on a split → report.html/json', load: () => import('./commands/report.js') },
  predict: { summary: 'ratings for items (JSONL/CSV + image folder) → parent_asin,score', load: () => import('./commands/predict.js') },
  'browser-check': { summary: 'open a report.html in headless Chromium: figures load, no console errors', load: () => import('./commands/browser-check.js') },
  submit: { summary: 'LoViF submission CSV (item_id,score,params,flops) for a test set folder', load: () => import('./commands/submit.js') },
};

export async function dispatch(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  const entry = name === undefined ? undefined : LOADERS[name];
  if (entry && (rest.includes('--help') || rest.includes('-h'))) {
    const mod = await entry.load();
    process.stdout.write(`${PROGRAM} ${name}: ${mod.summary}\n\n${mod.usage.trimEnd()}\n`);
    return 0;
  }
  const specs: Record<string, CommandSpec> = Object.fromEntries(Object.entries(LOADERS).map(([k, c]) => [k, { summary: c.summary, run: async (a: string[]) => (await c.load()).run(a) }]));
  return runCommand(PROGRAM, specs, argv);
}

/** Entry point of bin/smolrate-eval.js: sets process.exitCode rather than exiting, so output drains. */
export async function main(argv: string[]): Promise<void> {
  process.exitCode = await dispatch(argv);
}

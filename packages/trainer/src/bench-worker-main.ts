/**
 * Entry of one benchmark worker process (started by bench-workers.ts `runBenchWorkers`):
 * `bench-worker-main allreduce|step|data`, environment as the launcher sets it plus SMOLRATE_BENCH.
 * Runs built (`dist/bench-worker-main.js`) or from source through tsx (the specs).
 */
import { reportError } from '@smolrate/core';
import { runAllReduceBenchWorker } from './bench-allreduce.js';
import { runDataBenchWorker } from './bench-data-run.js';
import { runStepBenchWorker } from './bench-step.js';

const kind = process.argv[2];
try {
  if (kind === 'allreduce') await runAllReduceBenchWorker();
  else if (kind === 'step') await runStepBenchWorker();
  else if (kind === 'data') await runDataBenchWorker();
  else throw new Error(`bench-worker-main: unknown worker kind ${JSON.stringify(kind)} (allreduce | step | data)`);
} catch (e) {
  process.exitCode = reportError(`bench ${kind ?? '?'} worker ${process.env.RANK ?? '?'}`, e);
}

/**
 * Entry of the all-reduce benchmark: `bench-allreduce-main [--workers 4] [--mb 64] [--iters 5]
 * [--chunk-mib 8] [--redis URL] [--json]` runs it and prints the figures; with `--child` the
 * process is one of its workers (started by runAllReduceBench). Runs built
 * (`node packages/trainer/dist/bench-allreduce-main.js`) or from source
 * (`node --import tsx packages/trainer/src/bench-allreduce-main.ts`).
 */
import { reportError } from '@smolrate/core';
import { benchAllReduceCommand, runAllReduceBenchWorker } from './bench-allreduce.js';

const argv = process.argv.slice(2);
if (argv[0] === '--child') {
  try {
    await runAllReduceBenchWorker();
  } catch (e) {
    process.exitCode = reportError(`bench-allreduce worker ${process.env.RANK ?? '?'}`, e);
  }
} else if (argv.includes('--help') || argv.includes('-h')) {
  process.stdout.write(`bench-allreduce: ${benchAllReduceCommand.summary}\n\n${benchAllReduceCommand.usage}\n`);
} else {
  try {
    process.exitCode = (await benchAllReduceCommand.run(argv)) ?? 0;
  } catch (e) {
    process.exitCode = reportError('bench-allreduce', e);
  }
}

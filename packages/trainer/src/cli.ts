/**
 * The `smolrate-trainer` command line (bin/smolrate-trainer.js):
 *
 *   smolrate-trainer launch --gpus N [--nnodes M --node-rank R --redis URL --run-id ID]
 *                           [--max-restarts R] [--resume] [--config file] [config flags]
 *   smolrate-trainer worker [--config file] [config flags]     one rank, from RANK/WORLD_SIZE/…
 *   smolrate-trainer bench-allreduce [--workers 4 --mb 64 …]
 *   smolrate-trainer bench-scaling --data URI --run DIR [--workers 1,2,4 --steps 6] [config flags]
 *   smolrate-trainer bench-optimizer [--params N --repeats R]
 *   smolrate-trainer bench-data [--samples N --ranks 1,4 …]
 *
 * Config flags are the keys of config.ts in kebab case (`--peak-lr 1e-3`, `--global-batch 64`,
 * `--collective.timeout-ms 60000`); `--help-config` lists them with their defaults.
 */
import { createLogger, describeSchema, flagNumber, flagString, parseArgs, runCommand, UsageError, type CommandSpec, type ParsedArgs } from '@smolrate/core';
import { benchAllReduceCommand } from './bench-allreduce.js';
import { benchDataCommand } from './bench-data.js';
import { benchOptimizerCommand } from './bench-optimizer.js';
import { benchScalingCommand } from './bench-scaling.js';
import { resolveTrainerConfig, TRAINER_CONFIG_SCHEMA, type TrainerConfig } from './config.js';
import { launch } from './launch.js';
import { CONFIG_ENV, runWorker, workerEnv } from './train-worker.js';

export const PROGRAM = 'smolrate-trainer';

const BOOLEAN_FLAGS = ['resume', 'fp32-embedding-state', 'help-config'];
const LAUNCH_FLAGS = ['gpus', 'nnodes', 'nodeRank', 'redis', 'runId', 'maxRestarts'];

/** The trainer config from `--config` and the remaining flags (launcher flags excluded). */
function configFromArgs(args: ParsedArgs, exclude: readonly string[] = []): TrainerConfig {
  if (args.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(args.positionals[0])}`);
  const overrides: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(args.flags)) {
    if (k === 'config' || exclude.includes(k)) continue;
    // `--collective tcp|redis` is short for `--collective.data-plane`.
    if (k === 'collective' && typeof v === 'string') overrides['collective.dataPlane'] = v;
    else overrides[k] = v;
  }
  return resolveTrainerConfig({ file: flagString(args, 'config') ?? null, overrides });
}

const configHelp = () => ['config keys (defaults):', ...describeSchema(TRAINER_CONFIG_SCHEMA).map((l) => `  ${l}`)].join('\n');

function printConfigHelp(args: ParsedArgs): boolean {
  if (args.flags.helpConfig !== true) return false;
  process.stdout.write(configHelp() + '\n');
  return true;
}

const launchCommand: CommandSpec = {
  summary: 'start N data-parallel workers on this node (torchrun-like), with a watchdog and restarts',
  usage: [
    'options:',
    '  --gpus N            workers on this node (CPU workers on a host without GPUs)',
    '  --nnodes M          nodes (default 1); with --node-rank R, --redis URL and --run-id ID',
    '  --redis URL         shared Redis (default: a private redis-server when the world has > 1 rank)',
    '  --run-id ID         names the run in Redis (default: random)',
    '  --max-restarts R    restart all workers from the latest checkpoint up to R times (default 0)',
    '  --resume            continue from <run>/checkpoints/latest',
    '  --config FILE       JSON/YAML config; other --flags override its keys (--help-config)',
  ].join('\n'),
  async run(argv) {
    const args = parseArgs(argv, BOOLEAN_FLAGS);
    if (printConfigHelp(args)) return 0;
    const gpus = flagNumber(args, 'gpus');
    if (gpus === undefined) throw new UsageError('missing required --gpus N');
    const config = configFromArgs(args, LAUNCH_FLAGS);
    const log = createLogger({ name: 'launch', rank: null });
    const result = await launch({
      config,
      gpus,
      nnodes: flagNumber(args, 'nnodes'),
      nodeRank: flagNumber(args, 'nodeRank'),
      redis: flagString(args, 'redis') ?? null,
      runId: flagString(args, 'runId') ?? null,
      maxRestarts: flagNumber(args, 'maxRestarts'),
      handleSignals: true,
      log,
    });
    if (result.stoppedBy !== null) {
      log.warn(`stopped by ${result.stoppedBy}; all workers have exited (resume with --resume)`);
      return result.stoppedBy === 'SIGINT' ? 130 : 143;
    }
    log.info('run complete', { ...result, pids: result.pids.length });
    return 0;
  },
};

const workerCommand: CommandSpec = {
  summary: `run one rank from RANK / WORLD_SIZE / SMOLRATE_RUN_ID / REDIS_URL (config from flags or ${CONFIG_ENV})`,
  usage: 'options: --config FILE and config flags (--help-config); without them the JSON in ' + CONFIG_ENV + ' is used',
  async run(argv) {
    const args = parseArgs(argv, BOOLEAN_FLAGS);
    if (printConfigHelp(args)) return 0;
    const fromEnv = process.env[CONFIG_ENV];
    const config =
      Object.keys(args.flags).length === 0 && fromEnv !== undefined ? resolveTrainerConfig({ file: JSON.parse(fromEnv) as object }) : configFromArgs(args);
    const summary = await runWorker(config, workerEnv());
    if (workerEnv().rank === 0) process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
    return 0;
  },
};

export const COMMANDS: Record<string, CommandSpec> = {
  launch: launchCommand,
  worker: workerCommand,
  'bench-allreduce': benchAllReduceCommand,
  'bench-scaling': benchScalingCommand,
  'bench-optimizer': benchOptimizerCommand,
  'bench-data': benchDataCommand,
};

/** Entry point of bin/smolrate-trainer.js. */
export async function main(argv: string[]): Promise<void> {
  const code = await runCommand(PROGRAM, COMMANDS, argv);
  // Exit explicitly: a tfjs backend or Redis client left by a command must not keep the process alive.
  process.exit(code);
}

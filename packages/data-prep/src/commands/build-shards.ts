/**
 * `smolrate-data-prep build-shards`: see build-shards.ts. Config precedence: defaults ← --config
 * file ← flags (any config key as a flag: --seed 3, --selection.top-k 5000, --images.rewrite '{…}').
 */
import {
  createLogger,
  describeSchema,
  flagBool,
  flagNumber,
  flagString,
  parseArgs,
  UsageError,
} from '@smolrate/core';
import { buildShards, formatBuildSummary } from '../build-shards.js';
import { dataPrepSchema, resolveDataPrepConfig } from '../config.js';
import { manifestConfig } from '../finalize.js';

export const summary = 'metadata JSONL(.gz) → selected items → fetched, resized images → Parquet shards + manifest.json';

export const usage = `usage: smolrate-data-prep build-shards [INPUT...] --out URI [--config FILE]
            [--redis URL] [--workers N] [--dry-run] [--keep-work] [--<config key> VALUE ...]

  INPUT, --input A,B    metadata files (meta_<Category>.jsonl[.gz], <Category>.jsonl[.gz]) or
                        folders holding them; local paths, file:// or s3://bucket/prefix
  --out URI             shard root: a local folder, file:// or s3://bucket/prefix
  --config FILE         a JSON or YAML config file (keys: --help-config)
  --redis URL           run as a BullMQ flow on this Redis; workers on any host join with
                        \`smolrate-data-prep worker --redis URL\`
  --workers N           start N local worker processes (without --redis: on a private
                        redis-server, or REDIS_URL when set); 0 and no --redis: single process
  --dry-run             select and plan only: report the selection; no image is fetched and no
                        shard written
  --keep-work           keep <out>/_work/ (the steps' intermediate files) after success
  --quiet               no progress output
  --run-id ID           the build's id (its BullMQ queue prefix); default: random
  --worker-concurrency N   jobs at once per local worker (default 2)
  --lock-duration-ms N     job lock of the local workers (default 10000): a killed worker's
  --stalled-interval-ms N  job is taken over after about lock + 2 × interval (default 5000)
  --help-config         list every config key with its default

Any config key is also a flag: --seed 1, --selection.top-k 5000, --selection.val-size 100,
--images.rewrite '{"https://m.media-amazon.com/images/I/": "file:///mirror/"}'.
Prints a summary table (kept, rejected by reason, per category, shards, bytes) on stdout.`;

const OWN_FLAGS = ['config', 'keepWork', 'quiet', 'runId', 'workerConcurrency', 'lockDurationMs', 'stalledIntervalMs', 'helpConfig'];

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, ['dry-run', 'keep-work', 'quiet', 'help-config']);
  if (flagBool(args, 'helpConfig')) {
    process.stdout.write(`${describeSchema(dataPrepSchema).join('\n')}\n`);
    return 0;
  }
  if (args.rest.length > 0) throw new UsageError(`unexpected arguments after --: ${args.rest.join(' ')}`);
  const overrides: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(args.flags)) if (!OWN_FLAGS.includes(k)) overrides[k] = v;
  const cfg = resolveDataPrepConfig({ file: flagString(args, 'config') ?? null, overrides });
  if (args.positionals.length > 0) cfg.input = [...cfg.input, ...args.positionals];
  if (cfg.input.length === 0) throw new UsageError('no input: give metadata files or folders (positional, or --input)');
  if (cfg.out === '') throw new UsageError('missing required --out URI');

  const log = createLogger({ name: 'data-prep' });
  log.info('resolved config', { config: manifestConfig(cfg), out: cfg.out, redis: cfg.redis === null ? null : 'set', workers: cfg.workers });

  const controller = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => {
    if (controller.signal.aborted) return;
    log.warn(`${sig}: stopping the build (workers finish their current job)`);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const result = await buildShards({
      cfg,
      keepWork: flagBool(args, 'keepWork'),
      runId: flagString(args, 'runId'),
      log,
      progressStream: flagBool(args, 'quiet') ? undefined : process.stderr,
      workerConcurrency: flagNumber(args, 'workerConcurrency'),
      lockDurationMs: flagNumber(args, 'lockDurationMs'),
      stalledIntervalMs: flagNumber(args, 'stalledIntervalMs'),
      signal: controller.signal,
    });
    process.stdout.write(formatBuildSummary(result));
    return 0;
  } catch (e) {
    if (controller.signal.aborted) {
      process.stderr.write('smolrate-data-prep: build-shards interrupted; the output has no manifest.json (incomplete)\n');
      return 130;
    }
    throw e;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

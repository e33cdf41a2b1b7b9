/**
 * `smolrate-data-prep worker`: a worker process serving the BullMQ jobs of data-prep builds
 * (worker.ts). Started by `build-shards --workers N`, or by hand on any host to join builds:
 * `smolrate-data-prep worker --redis redis://host:6379`. Stops gracefully on SIGINT / SIGTERM
 * (running jobs finish), and when its parent process dies (when forked).
 */
import { createLogger, flagNumber, flagString, parseArgs, UsageError } from '@smolrate/core';
import { runDataPrepWorker, type WorkerJobEvent } from '../worker.js';
import type { WorkerJobMessage } from '../worker-pool.js';

export const summary = 'serve the BullMQ jobs of data-prep builds (join a build from any host)';

export const usage = `usage: smolrate-data-prep worker [--redis URL] [--run-id ID] [--concurrency N]
            [--lock-duration-ms N] [--stalled-interval-ms N]

  --redis URL              the builds' Redis (default: REDIS_URL)
  --run-id ID              serve this build only, and exit when it is finished; default: every
                           build registered in Redis, until stopped
  --concurrency N          jobs at once (default 2; image fetches per job: images.concurrency)
  --lock-duration-ms N     job lock (default 10000) and stalled-job check interval (default 5000):
  --stalled-interval-ms N  a dead worker's job is taken over after about lock + 2 × interval

Stops on SIGINT / SIGTERM after its running jobs finish (at most 30 s).`;

const KNOWN = ['redis', 'runId', 'concurrency', 'lockDurationMs', 'stalledIntervalMs'];

function positiveInt(v: number | undefined, flag: string): number | undefined {
  if (v !== undefined && (!Number.isSafeInteger(v) || v < 1)) throw new UsageError(`--${flag} must be a positive integer, got ${v}`);
  return v;
}

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  for (const k of Object.keys(args.flags)) if (!KNOWN.includes(k)) throw new UsageError(`unknown option --${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`);
  if (args.positionals.length > 0) throw new UsageError(`unexpected argument ${args.positionals[0]}`);
  const redisUrl = flagString(args, 'redis') ?? process.env.REDIS_URL;
  if (redisUrl === undefined || redisUrl === '') throw new UsageError('no Redis: give --redis URL or set REDIS_URL');
  const runId = flagString(args, 'runId');
  const log = createLogger({ name: 'data-prep-worker', fields: { pid: process.pid } });

  const controller = new AbortController();
  const stop = (why: string) => () => {
    if (controller.signal.aborted) return;
    log.info(`${why}: finishing running jobs, then stopping`);
    controller.abort();
  };
  const onInt = stop('SIGINT');
  const onTerm = stop('SIGTERM');
  const onDisconnect = stop('parent process gone');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  if (process.connected) process.on('disconnect', onDisconnect);
  try {
    await runDataPrepWorker(
      {
        redisUrl,
        runId,
        concurrency: positiveInt(flagNumber(args, 'concurrency'), 'concurrency'),
        lockDurationMs: positiveInt(flagNumber(args, 'lockDurationMs'), 'lock-duration-ms'),
        stalledIntervalMs: positiveInt(flagNumber(args, 'stalledIntervalMs'), 'stalled-interval-ms'),
        log,
        onJobEvent: (ev: WorkerJobEvent) => {
          if (process.connected) process.send?.({ kind: 'smolrate-dp-job', ...ev } satisfies WorkerJobMessage);
        },
      },
      controller.signal,
    );
    return 0;
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
    process.off('disconnect', onDisconnect);
  }
}

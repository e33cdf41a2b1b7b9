/**
 * A data-prep worker: serves every job kind (select, plan, build-shard, build-val, finalize) of
 * one build (`runId`) or of every build registered in Redis (run-registry.ts), until stopped.
 *
 * Lock settings (BullMQ): a job's lock lasts `lockDurationMs` and is renewed every half of it
 * while the job runs; every worker checks for stalled jobs (lock gone) every `stalledIntervalMs`.
 * So a killed worker's job goes back to the queue within about lockDuration + 2 × stalledInterval
 * (10 + 2 × 5 s by default), and another worker runs it again — the steps are idempotent.
 * `maxStalledCount` 2: a job whose workers die twice in a row fails rather than looping forever.
 *
 * Shutdown (`signal` aborted): stops taking jobs, lets running ones finish (at most
 * `shutdownGraceMs`, then closes anyway — their locks expire and other workers take them over).
 */
import { Worker, type Job } from 'bullmq';
import { createRedis, redactUrl, silentLogger, type Logger } from '@smolrate/core';
import { bullConnection, createProcessor, QUEUE_NAME, queuePrefix, type RetryPolicy } from './flow.js';
import { activeRuns } from './run-registry.js';
import { closeStepContext, type StepContext } from './steps.js';

export interface DataPrepWorkerOptions {
  redisUrl: string;
  /** Serve this build only (and return when it is no longer registered); default: every registered build. */
  runId?: string;
  /** Jobs run at once per build. Default 2 (image fetches inside a job have their own limit). */
  concurrency?: number;
  /** Default 10 000 ms. */
  lockDurationMs?: number;
  /** Default 5 000 ms. */
  stalledIntervalMs?: number;
  /** How often the run registry is read. Default 1 000 ms. */
  pollMs?: number;
  /** Wait for running jobs on shutdown at most this long. Default 30 000 ms. */
  shutdownGraceMs?: number;
  retry?: RetryPolicy;
  log?: Logger;
  /** Job lifecycle events (the local worker pool forwards them to its parent). */
  onJobEvent?: (ev: WorkerJobEvent) => void;
}

export interface WorkerJobEvent {
  type: 'active' | 'completed' | 'failed';
  runId: string;
  name: string;
  id: string;
  error?: string;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

async function closeWithin(worker: Worker, ms: number, log: Logger): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const graceful = worker.close().then(() => true);
  const timeout = new Promise<boolean>((r) => {
    timer = setTimeout(() => r(false), ms);
  });
  const ok = await Promise.race([graceful, timeout]);
  clearTimeout(timer);
  if (!ok) {
    log.warn('running jobs did not finish in time; closing anyway (their locks will expire)', { graceMs: ms });
    await worker.close(true);
  }
}

/** Runs until `signal` aborts (or, with `runId`, until that build is finished). */
export async function runDataPrepWorker(opts: DataPrepWorkerOptions, signal: AbortSignal): Promise<void> {
  const log = opts.log ?? silentLogger;
  const ctx: StepContext = { log, stores: new Map(), fetchers: new Map() };
  const processor = createProcessor({ ...ctx, redisUrl: opts.redisUrl, retry: opts.retry });
  const workers = new Map<string, Worker>();
  const grace = opts.shutdownGraceMs ?? 30_000;

  const start = (runId: string): void => {
    const worker = new Worker(QUEUE_NAME, processor, {
      connection: bullConnection(opts.redisUrl),
      prefix: queuePrefix(runId),
      concurrency: opts.concurrency ?? 2,
      lockDuration: opts.lockDurationMs ?? 10_000,
      stalledInterval: opts.stalledIntervalMs ?? 5_000,
      maxStalledCount: 2,
    });
    const emit = (type: WorkerJobEvent['type'], job: Job | undefined, error?: string): void => {
      if (job) opts.onJobEvent?.({ type, runId, name: job.name, id: String(job.id), ...(error !== undefined ? { error } : {}) });
    };
    worker.on('active', (job) => emit('active', job));
    worker.on('completed', (job) => emit('completed', job));
    worker.on('failed', (job, err) => emit('failed', job, err.message));
    worker.on('error', (err) => log.warn('worker error', { runId, error: err.message }));
    workers.set(runId, worker);
    log.info('serving build', { runId, redis: redactUrl(opts.redisUrl) });
  };

  const registry = createRedis(opts.redisUrl, { connectionName: 'smolrate-dp-worker' });
  registry.on('error', (e: Error) => log.warn('redis error', { error: e.message }));
  let seen = false;
  try {
    if (opts.runId !== undefined) start(opts.runId);
    while (!signal.aborted) {
      let runs: string[];
      try {
        runs = await activeRuns(registry);
      } catch (e) {
        log.warn('cannot read the run registry', { error: (e as Error).message });
        await sleep(opts.pollMs ?? 1000, signal);
        continue;
      }
      const active = new Set(runs);
      if (opts.runId !== undefined) {
        if (active.has(opts.runId)) seen = true;
        else if (seen) break; // the build is over
      } else {
        for (const id of active) if (!workers.has(id) && /^[A-Za-z0-9_-]+$/.test(id)) start(id);
        for (const [id, w] of workers) {
          if (!active.has(id)) {
            workers.delete(id);
            await closeWithin(w, grace, log);
            log.info('build finished; stopped serving it', { runId: id });
          }
        }
      }
      await sleep(opts.pollMs ?? 1000, signal);
    }
  } finally {
    await Promise.all([...workers.values()].map((w) => closeWithin(w, grace, log)));
    registry.disconnect();
    closeStepContext(ctx);
  }
}

/**
 * The distributed pipeline as BullMQ flows, one queue per build (`prefix smolrate:dp:<runId>`,
 * queue `jobs`), so builds never see each other's jobs and a finished build is removed whole:
 *
 *   flow 1:  plan ← select × (one per input file)
 *   flow 2:  finalize ← build-shard × (train chunks) + build-val × (validation shards)
 *
 * The `plan` job enqueues flow 2 when it runs (the number of shards is known only then). Every job
 * has a fixed id (`select-<category>`, `plan`, `build-train-<name>`, `build-val-<name>`,
 * `finalize`), so a retried `plan` adding flow 2 again adds nothing new, and every step writes the
 * same keys when it reruns — retries and taken-over jobs are safe.
 *
 * Failures: transient ones (storage, network, Redis) are retried `attempts` times with
 * exponential backoff; a job whose input is permanently invalid (a config or data error, a
 * missing input file) fails at once with UnrecoverableError. Bad *records* never fail a job —
 * they are rejects. A failed child fails its parent (`failParentOnFailure`), so the build stops.
 * Locks: `lockDuration` short enough that a killed worker's job is taken over within seconds.
 */
import { FlowProducer, Queue, UnrecoverableError, type ConnectionOptions, type Job, type JobsOptions } from 'bullmq';
import {
  ConfigError,
  DataError,
  NotFoundError,
  parseRedisUrl,
  PermissionError,
  redisOptionsFromUrl,
  ServiceError,
  UsageError,
  type Logger,
} from '@smolrate/core';
import type { InputFile } from './inputs.js';
import type { BuildTask, Plan } from './plan.js';
import { runBuildStep, runFinalizeStep, runPlanStep, runSelectStep, type RunSpec, type StepContext } from './steps.js';

/** Queue name inside each run's prefix. */
export const QUEUE_NAME = 'jobs';

export type JobName = 'select' | 'plan' | 'build-shard' | 'build-val' | 'finalize';

export function queuePrefix(runId: string): string {
  if (!/^[A-Za-z0-9_-]+$/.test(runId)) throw new UsageError(`run id ${JSON.stringify(runId)}: letters, digits, '_' and '-' only`);
  return `smolrate:dp:${runId}`;
}

/** BullMQ connection options for a Redis URL (BullMQ needs maxRetriesPerRequest: null on workers). */
export function bullConnection(redisUrl: string): ConnectionOptions {
  return { ...redisOptionsFromUrl(parseRedisUrl(redisUrl)), maxRetriesPerRequest: null };
}

export interface SelectJobData {
  run: RunSpec;
  input: InputFile;
}
export interface PlanJobData {
  run: RunSpec;
  categories: string[];
  /** Plan only: no build jobs are enqueued. */
  dryRun: boolean;
}
export interface BuildJobData {
  run: RunSpec;
  task: BuildTask;
}
export interface FinalizeJobData {
  run: RunSpec;
}

export interface PlanJobResult {
  tasks: number;
  trainRows: number;
  valRows: number;
}

/** Retry policy. Defaults: 5 attempts, backoff 1 s, 2 s, 4 s, 8 s. */
export interface RetryPolicy {
  attempts?: number;
  backoffMs?: number;
}

function jobOptions(jobId: string, policy: RetryPolicy, child: boolean): JobsOptions {
  return {
    jobId,
    attempts: policy.attempts ?? 5,
    backoff: { type: 'exponential', delay: policy.backoffMs ?? 1000 },
    // Kept until the run's queue is obliterated at the end of the build (the monitor reads them).
    removeOnComplete: false,
    removeOnFail: false,
    ...(child ? { failParentOnFailure: true } : {}),
  };
}

/** `train/All_Beauty-00000.parquet` → `build-train-All_Beauty-00000` (job ids cannot hold ':'). */
function buildJobId(task: BuildTask): string {
  return `build-${task.file.replace(/\.parquet$/, '').replace('/', '-')}`;
}

function selectJobId(category: string): string {
  return `select-${category}`;
}

/** Adds flow 1 (plan ← selects) of a run. */
export async function enqueueSelectFlow(
  redisUrl: string,
  run: RunSpec,
  inputs: readonly InputFile[],
  opts: { dryRun: boolean; retry?: RetryPolicy },
): Promise<void> {
  const producer = new FlowProducer({ connection: bullConnection(redisUrl), prefix: queuePrefix(run.runId) });
  const retry = opts.retry ?? {};
  try {
    const data: PlanJobData = { run, categories: inputs.map((i) => i.category), dryRun: opts.dryRun };
    await producer.add({
      name: 'plan',
      queueName: QUEUE_NAME,
      data,
      opts: jobOptions('plan', retry, false),
      children: inputs.map((input) => ({
        name: 'select',
        queueName: QUEUE_NAME,
        data: { run, input } satisfies SelectJobData,
        opts: jobOptions(selectJobId(input.category), retry, true),
      })),
    });
  } finally {
    await producer.close();
  }
}

/** Adds flow 2 (finalize ← build-shard / build-val) for a plan. Idempotent (fixed job ids). */
export async function enqueueBuildFlow(redisUrl: string, run: RunSpec, plan: Plan, retry: RetryPolicy = {}): Promise<void> {
  const producer = new FlowProducer({ connection: bullConnection(redisUrl), prefix: queuePrefix(run.runId) });
  try {
    await producer.add({
      name: 'finalize',
      queueName: QUEUE_NAME,
      data: { run } satisfies FinalizeJobData,
      opts: jobOptions('finalize', retry, false),
      children: plan.tasks.map((task) => ({
        name: task.split === 'val' ? 'build-val' : 'build-shard',
        queueName: QUEUE_NAME,
        data: { run, task } satisfies BuildJobData,
        opts: jobOptions(buildJobId(task), retry, true),
      })),
    });
  } finally {
    await producer.close();
  }
}

/**
 * Errors that another attempt cannot fix: bad configuration, damaged or inconsistent data, a
 * missing or forbidden input. Everything else (storage and network hiccups, Redis) is retried.
 */
export function isPermanentError(e: unknown): boolean {
  return e instanceof ConfigError || e instanceof DataError || e instanceof UsageError || e instanceof NotFoundError || e instanceof PermissionError;
}

/** Calls `fn` at most every `ms` (the last value always gets through on `flush`). */
function throttle<T>(ms: number, fn: (v: T) => void): { call: (v: T) => void; flush: () => void } {
  let last = 0;
  let pending: { v: T } | undefined;
  return {
    call(v) {
      const now = Date.now();
      if (now - last >= ms) {
        last = now;
        pending = undefined;
        fn(v);
      } else pending = { v };
    },
    flush() {
      if (pending) fn(pending.v);
      pending = undefined;
    },
  };
}

export interface ProcessorOptions extends StepContext {
  /** Redis URL, for the plan job to enqueue flow 2. */
  redisUrl: string;
  retry?: RetryPolicy;
}

/** The job processor shared by every worker: dispatches on the job name. */
export function createProcessor(opts: ProcessorOptions): (job: Job) => Promise<unknown> {
  const log = opts.log;
  return async (job: Job) => {
    const name = job.name as JobName;
    const progress = throttle<object>(1000, (p) => {
      job.updateProgress(p).catch(() => undefined); // progress is advisory
    });
    try {
      switch (name) {
        case 'select': {
          const d = job.data as SelectJobData;
          const r = await runSelectStep(d.run, d.input, { ...opts, onProgress: (read) => progress.call({ read }) });
          progress.flush();
          await job.updateProgress({ read: r.read, done: true });
          return { category: r.category, read: r.read, kept: r.kept };
        }
        case 'plan': {
          const d = job.data as PlanJobData;
          const plan = await runPlanStep(d.run, d.categories, opts);
          if (!d.dryRun) await enqueueBuildFlow(opts.redisUrl, d.run, plan, opts.retry);
          return { tasks: plan.tasks.length, trainRows: plan.trainRows, valRows: plan.valRows } satisfies PlanJobResult;
        }
        case 'build-shard':
        case 'build-val': {
          const d = job.data as BuildJobData;
          const r = await runBuildStep(d.run, d.task, { ...opts, onItem: (done, total) => progress.call({ done, total }) });
          return { file: r.file, rows: r.shard?.rows ?? 0, bytes: r.shard?.bytes ?? 0, rejected: r.rejects.length };
        }
        case 'finalize': {
          const d = job.data as FinalizeJobData;
          const m = await runFinalizeStep(d.run, opts);
          return { kept: m.counts.kept, read: m.counts.read };
        }
        default:
          throw new UnrecoverableError(`unknown job name ${JSON.stringify(job.name)}`);
      }
    } catch (e) {
      if (e instanceof UnrecoverableError) throw e;
      const msg = e instanceof Error ? e.message : String(e);
      if (isPermanentError(e)) {
        log?.error('job failed (not retried)', { job: job.id, name: job.name, error: msg });
        throw new UnrecoverableError(`${job.name} ${job.id}: ${msg}`);
      }
      log?.warn('job failed (will be retried)', { job: job.id, name: job.name, attempt: job.attemptsMade + 1, error: msg });
      throw e;
    }
  };
}

export interface FlowStatus {
  stage: 'select' | 'plan' | 'build' | 'finalize' | 'done';
  /** Lines read by each select job so far, by category. */
  selectRead: Record<string, number>;
  selectsDone: number;
  selects: number;
  /** Build jobs completed / planned (planned is known once plan completed). */
  shardsDone: number;
  shards: number | null;
}

export interface MonitorOptions {
  redisUrl: string;
  runId: string;
  categories: readonly string[];
  dryRun: boolean;
  pollMs?: number;
  onStatus?: (s: FlowStatus) => void;
  /** Called every poll; throw to abort (e.g. no worker left alive, interrupted). */
  check?: () => void;
  log?: Logger;
}

/** First line of a failure reason, with the job it came from. */
function describeFailure(job: Job): string {
  const reason = (job.failedReason ?? 'unknown error').split('\n')[0];
  return `${job.name} job ${job.id} failed after ${job.attemptsMade} attempt(s): ${reason}`;
}

/**
 * Waits for a run's flows to finish: `finalize` completed (or `plan`, for a dry run). Throws a
 * ServiceError naming the root-cause job when any job fails for good.
 */
export async function waitForRun(opts: MonitorOptions): Promise<void> {
  const queue = new Queue(QUEUE_NAME, { connection: bullConnection(opts.redisUrl), prefix: queuePrefix(opts.runId) });
  const pollMs = opts.pollMs ?? 300;
  const status: FlowStatus = { stage: 'select', selectRead: {}, selectsDone: 0, selects: opts.categories.length, shardsDone: 0, shards: null };
  try {
    for (;;) {
      opts.check?.();
      const counts = await queue.getJobCounts('failed', 'completed');
      if ((counts.failed ?? 0) > 0) {
        const failed = (await queue.getFailed(0, 50)) as Job[];
        // A parent fails because a child did: report the child (the root cause) first.
        failed.sort((a, b) => Number(/child/i.test(a.failedReason ?? '')) - Number(/child/i.test(b.failedReason ?? '')));
        throw new ServiceError(`build ${opts.runId} failed: ${failed.map(describeFailure).join('; ')}`);
      }
      if (status.stage === 'select') {
        let done = 0;
        for (const c of opts.categories) {
          const job = await queue.getJob(selectJobId(c));
          const p = job?.progress as { read?: number; done?: boolean } | undefined;
          if (p && typeof p === 'object' && typeof p.read === 'number') status.selectRead[c] = p.read;
          if (job && (await job.isCompleted())) done++;
        }
        status.selectsDone = done;
        if (done === opts.categories.length) status.stage = 'plan';
      }
      if (status.stage === 'plan') {
        const plan = await queue.getJob('plan');
        if (plan && (await plan.isCompleted())) {
          // Read the result from a fetch made after the completion was seen: the job object above
          // may predate it (its returnvalue still null), which crashed a build now and then.
          const r = (await queue.getJob('plan'))?.returnvalue as PlanJobResult | null | undefined;
          if (r == null) throw new ServiceError(`build ${opts.runId}: the plan job completed without a result`);
          status.shards = r.tasks;
          status.stage = opts.dryRun ? 'done' : 'build';
        }
      }
      if (status.stage === 'build' || status.stage === 'finalize') {
        // Completed jobs: the selects, plan, then the build jobs, then finalize.
        status.shardsDone = Math.min(status.shards ?? 0, Math.max(0, (counts.completed ?? 0) - opts.categories.length - 1));
        if (status.shardsDone === status.shards) status.stage = 'finalize';
        const fin = await queue.getJob('finalize');
        if (fin && (await fin.isCompleted())) status.stage = 'done';
      }
      opts.onStatus?.({ ...status, selectRead: { ...status.selectRead } });
      if (status.stage === 'done') return;
      await new Promise((r) => setTimeout(r, pollMs));
    }
  } finally {
    await queue.close();
  }
}

/** Removes every key of a run's queue. */
export async function removeRunQueue(redisUrl: string, runId: string): Promise<void> {
  const queue = new Queue(QUEUE_NAME, { connection: bullConnection(redisUrl), prefix: queuePrefix(runId) });
  try {
    await queue.obliterate({ force: true });
  } finally {
    await queue.close();
  }
}

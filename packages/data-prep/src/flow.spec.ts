/**
 * The BullMQ flow against a real Redis (REDIS_URL from the Vitest global setup), with workers in
 * this process and a random run id per test (its queue is removed afterwards).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue, type Job } from 'bullmq';
import { ConfigError, createRedis, DataError, NotFoundError, openStore, StorageError } from '@smolrate/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveDataPrepConfig } from './config.js';
import {
  bullConnection,
  enqueueBuildFlow,
  enqueueSelectFlow,
  isPermanentError,
  QUEUE_NAME,
  queuePrefix,
  removeRunQueue,
  waitForRun,
} from './flow.js';
import { listInputs } from './inputs.js';
import { rawLine } from './metadata-samples.js';
import type { Plan } from './plan.js';
import { readPlan } from './plan.js';
import type { RunSpec } from './steps.js';
import { heartbeatRun, unregisterRun } from './run-registry.js';
import { runDataPrepWorker } from './worker.js';

const redisUrl = process.env.REDIS_URL!;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'smolrate-flow-spec-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function newRun(out: string, overrides: Record<string, unknown> = {}): RunSpec {
  const cfg = resolveDataPrepConfig({ overrides: { out, seed: 1, 'selection.valSize': 2, ...overrides } });
  return { runId: `t${randomBytes(5).toString('hex')}`, cfg, chunkRows: 3 };
}

/** A worker serving `runId` (or the registry) until the returned stop() is called. */
function startWorker(runId: string | undefined) {
  const controller = new AbortController();
  const done = runDataPrepWorker({ redisUrl, runId, lockDurationMs: 5000, stalledIntervalMs: 2000, pollMs: 100, shutdownGraceMs: 5000 }, controller.signal);
  return async () => {
    controller.abort();
    await done;
  };
}

async function metaFile(name: string, lines: string[]): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, lines.map((l) => `${l}\n`).join(''));
  return path;
}

describe('isPermanentError', () => {
  it('fails bad input at once and retries the rest', () => {
    expect(isPermanentError(new ConfigError('x'))).toBe(true);
    expect(isPermanentError(new DataError('x'))).toBe(true);
    expect(isPermanentError(new NotFoundError('file:///x'))).toBe(true);
    expect(isPermanentError(new StorageError('timeout', 's3://b/k'))).toBe(false);
    expect(isPermanentError(new Error('ECONNRESET'))).toBe(false);
  });
});

describe('BullMQ flow', () => {
  it('runs select → plan (dry run) on a worker that found the build in the run registry', async () => {
    const lines = Array.from({ length: 6 }, (_, i) => rawLine({ parent_asin: `B0000000${String(i).padStart(2, '0')}`, rating_number: 10 + i }));
    const inputs = await listInputs([await metaFile('meta_All_Beauty.jsonl', [...lines, '{not json'])]);
    const run = newRun(join(dir, 'out-dry'));
    const registry = createRedis(redisUrl);
    const stop = startWorker(undefined); // no run id: serves whatever is registered
    try {
      await heartbeatRun(registry, run.runId);
      await enqueueSelectFlow(redisUrl, run, inputs, { dryRun: true });
      const stages: string[] = [];
      await waitForRun({ redisUrl, runId: run.runId, categories: ['All_Beauty'], dryRun: true, pollMs: 100, onStatus: (s) => stages.push(s.stage) });
      expect(stages.at(-1)).toBe('done');
      const plan = await readPlan(openStore(run.cfg.out));
      expect(plan.trainRows + plan.valRows).toBe(6);
      expect(plan.tasks.map((t) => t.split)).toEqual(['train', 'train', 'val']);
      // A dry run enqueues no build jobs.
      const queue = new Queue(QUEUE_NAME, { connection: bullConnection(redisUrl), prefix: queuePrefix(run.runId) });
      expect(await queue.getJob('finalize')).toBeUndefined();
      await queue.close();
    } finally {
      await unregisterRun(registry, run.runId);
      registry.disconnect();
      await stop();
      await removeRunQueue(redisUrl, run.runId);
    }
  });

  it('fails a job with a permanently bad input at once (no retries) and reports it as the cause', async () => {
    const path = await metaFile('meta_Books.jsonl', [rawLine()]);
    const inputs = await listInputs([path]);
    await rm(path); // listed, then gone: the select job cannot ever succeed
    const run = newRun(join(dir, 'out-missing'));
    const stop = startWorker(run.runId);
    try {
      await enqueueSelectFlow(redisUrl, run, inputs, { dryRun: false, retry: { attempts: 4, backoffMs: 100 } });
      const err = await waitForRun({ redisUrl, runId: run.runId, categories: ['Books'], dryRun: false, pollMs: 100 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toMatch(/^build \S+ failed: select job select-Books failed after 1 attempt\(s\): .*meta_Books\.jsonl/);
      const queue = new Queue(QUEUE_NAME, { connection: bullConnection(redisUrl), prefix: queuePrefix(run.runId) });
      const select = (await queue.getJob('select-Books')) as Job;
      expect(select.attemptsMade).toBe(1);
      // The parent fails with its child (failParentOnFailure), so nothing waits forever.
      expect(await (await queue.getJob('plan'))!.getState()).toBe('failed');
      await queue.close();
    } finally {
      await stop();
      await removeRunQueue(redisUrl, run.runId);
    }
  });

  it('adding the build flow twice (a retried plan job) adds no job twice', async () => {
    const run = newRun(join(dir, 'out-twice'));
    const plan: Plan = {
      seed: 1,
      chunkRows: 3,
      categories: [],
      valRows: 0,
      trainRows: 2,
      duplicates: 0,
      tasks: ['A', 'B'].map((c) => ({ split: 'train', file: `train/${c}-00000.parquet`, chunkKey: `_work/selected/${c}/chunk-00000.jsonl`, chunkRows: 1, exclude: [], rows: 1 })),
    };
    const queue = new Queue(QUEUE_NAME, { connection: bullConnection(redisUrl), prefix: queuePrefix(run.runId) });
    try {
      await enqueueBuildFlow(redisUrl, run, plan);
      await enqueueBuildFlow(redisUrl, run, plan);
      const counts = await queue.getJobCounts('waiting', 'waiting-children', 'prioritized');
      expect(counts.waiting + counts.prioritized).toBe(2);
      expect(counts['waiting-children']).toBe(1);
      const fin = (await queue.getJob('finalize'))!;
      expect((await fin.getDependenciesCount()).unprocessed).toBe(2);
    } finally {
      await queue.close();
      await removeRunQueue(redisUrl, run.runId);
    }
  });
});

/**
 * The simulated data-parallel step of bench-scaling (docs/training.md, "Benchmarks"): the real
 * non-compute half of a step at a real model's size, with the model compute replaced by a sleep.
 *
 * Each worker holds the trainable parameters of a preset (by default the 256M preset's
 * 134,755,201, names and sizes from the model's parameter list), the trainer's default optimizer
 * built as the trainer builds it (optimizer.ts: AdamW8bit, fp32 state for embed_tokens), and a
 * fixed gradient. A step:
 *
 *   sleep(computeMsPerSample · globalBatch / worldSize)    ← the labelled simulation
 *   copy the gradient into the flat buffer, parameter by parameter, advancing the watermark
 *   (the trainer's device → host copy; the exchange's buckets leave behind it)
 *   DataParallelUpdate.apply: reduce-scatter wait, norm, AdamW on this rank's slice, all-gather
 *
 * — the same DataParallelUpdate the trainer runs (data-parallel-update.ts), over the same
 * RedisCollective (tcp data plane by default). Rank 0 reports every rank's per-step timings and
 * the weights' hash of every rank (the replicas must agree).
 */
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { CollectiveError, defaults } from '@smolrate/core';
import { expectedParameters, presetConfig } from '@smolrate/model';
import { ADAMW_DEFAULTS } from './adamw-options.js';
import { LocalCollective, type Collective } from './collective.js';
import { TRAINER_CONFIG_SCHEMA } from './config.js';
import { DataParallelUpdate, type HostParam } from './data-parallel-update.js';
import { Watermark, type GradDtype } from './grad-transport.js';
import { reportBenchResult } from './bench-workers.js';
import { makeOptimizer } from './optimizer.js';
import { RedisCollective } from './redis-collective.js';

export interface StepBenchParams {
  preset: string;
  /** Simulated single-worker compute per sample (ms): each rank sleeps this × its share of the batch. */
  computeMsPerSample: number;
  globalBatch: number;
  /** Steps, the first of which is the warm-up. */
  steps: number;
  zero: number;
  gradDtype: GradDtype;
  dataPlane: 'tcp' | 'redis';
  bucketBytes: number;
}

/** One rank's timings of one step (ms). */
export interface StepTiming {
  stepMs: number;
  computeMs: number;
  copyMs: number;
  reduceMs: number;
  optimizerMs: number;
  gatherMs: number;
}

export interface StepBenchReport {
  rank: number;
  params: number;
  steps: StepTiming[];
  weightsHash: string;
  /** Optimizer state held by this rank (bytes). */
  stateBytes: number;
}

/** The trainable parameters of a preset as host copies in one flat buffer (deterministic values). */
export function simulatedParams(preset: string): { params: HostParam[]; weights: Float32Array } {
  const specs = expectedParameters(presetConfig(preset)).filter((s) => s.trainable);
  let offset = 0;
  const layout = specs.map((s) => {
    const n = s.shape.reduce((a, b) => a * b, 1);
    const at = offset;
    offset += n;
    return { name: s.name, offset: at, n };
  });
  const weights = new Float32Array(offset);
  for (let i = 0; i < offset; i++) weights[i] = (Math.imul(i, 0x9e3779b1) >>> 0) * 2 ** -32 * 0.04 - 0.02;
  return { params: layout.map((l) => ({ name: l.name, offset: l.offset, data: weights.subarray(l.offset, l.offset + l.n) })), weights };
}

/** One worker of the simulated step (the child entry; environment as runBenchWorkers sets it). */
export async function runStepBenchWorker(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const rank = Number(env.RANK);
  const worldSize = Number(env.WORLD_SIZE);
  const p = JSON.parse(env.SMOLRATE_BENCH ?? '{}') as StepBenchParams;
  const c: Collective =
    worldSize === 1
      ? new LocalCollective()
      : await RedisCollective.connect({
          url: env.REDIS_URL!, runId: env.SMOLRATE_RUN_ID!, rank, worldSize, dataPlane: p.dataPlane, chunkBytes: p.bucketBytes,
          timeoutMs: 300_000, rendezvousTimeoutMs: 300_000,
        });
  try {
    const { params, weights } = simulatedParams(p.preset);
    const update = new DataParallelUpdate({ collective: c, params, weights, zero: p.zero, blockSize: ADAMW_DEFAULTS.blockSize, gradDtype: p.gradDtype, gradClip: 1 });
    const cfg = defaults(TRAINER_CONFIG_SCHEMA); // the trainer's default optimizer, as it builds it
    const optimizer = makeOptimizer(cfg, null, update.ownedSlices());
    const grad = new Float32Array(weights.length + 1);
    for (let i = 0; i < weights.length; i++) grad[i] = ((Math.imul(i + rank, 0x85ebca6b) >>> 0) * 2 ** -32 - 0.5) * 1e-3;
    grad[weights.length] = 0.5; // the loss
    const computeMs = (p.computeMsPerSample * p.globalBatch) / worldSize;
    const steps: StepTiming[] = [];
    await c.barrier('start');
    for (let step = 0; step < p.steps; step++) {
      const t0 = performance.now();
      await sleep(computeMs);
      const tCopy = performance.now();
      const ready = new Watermark();
      const exchange = update.exchange(ready);
      for (const q of params) {
        update.flat.set(grad.subarray(q.offset, q.offset + q.data.length), q.offset);
        ready.advance(q.offset + q.data.length);
      }
      update.flat[weights.length] = grad[weights.length];
      ready.advance(weights.length + 1);
      const copyMs = performance.now() - tCopy;
      const r = await update.apply(exchange, optimizer, cfg.peakLr, step);
      steps.push({ stepMs: performance.now() - t0, computeMs: tCopy - t0, copyMs, reduceMs: r.reduceMs, optimizerMs: r.optimizerMs, gatherMs: r.gatherMs });
    }
    const weightsHash = createHash('sha256').update(new Uint8Array(weights.buffer)).digest('hex');
    const all = await c.allGatherJson<StepBenchReport>({ rank, params: weights.length, steps, weightsHash, stateBytes: optimizer.stateBytes() }, 'reports');
    if (rank === 0) {
      if (all.some((r) => r.weightsHash !== weightsHash)) throw new CollectiveError(`bench step: replicas diverged: ${all.map((r) => r.weightsHash.slice(0, 12)).join(', ')}`);
      reportBenchResult(all);
    }
  } finally {
    await c.close();
  }
}

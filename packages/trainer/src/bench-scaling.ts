/**
 * Training-throughput scaling (docs/training.md, "Benchmarks"), two parts measured side by side:
 *
 *  - real runs (with `--data`): the same short training run (same global batch, `steps`
 *    optimizer steps) launched with 1, 2 and 4 workers; throughput is the global batch over the
 *    median step time (rank 0's metrics, first step excluded as warm-up). Image features are
 *    computed once into a shared cache before the timed runs, so only training is measured.
 *  - the simulated step (bench-step.ts): the trainer's exchange, sharded AdamW and all-gather at
 *    a real model's size (the 256M preset: 134,755,201 trainable parameters), with the model
 *    compute replaced by a sleep of a given single-worker compute time per sample — so the cost
 *    of communication at real scale is visible next to a compute time of your choosing.
 *
 * Speed-up is throughput(W) / throughput(W0) and efficiency speed-up / (W / W0), relative to the
 * first worker count given (normally 1).
 */
import { join } from 'node:path';
import { createLogger, flagBool, flagNumber, flagString, parseArgs, readMetrics, UsageError, type CommandSpec } from '@smolrate/core';
import { ensureRedis } from '@smolrate/core/redis-server';
import type { StepBenchParams, StepBenchReport } from './bench-step.js';
import { runBenchWorkers } from './bench-workers.js';
import type { TrainerConfig } from './config.js';
import { featureCacheDir, resolveTrainerConfig } from './config.js';
import { launch } from './launch.js';

export interface ScalingPoint {
  workers: number;
  medianStepSeconds: number;
  samplesPerSecond: number;
  /** throughput(W) / (W · throughput(1)). */
  efficiency: number;
  allreduceShare: number;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function runScalingBench(base: TrainerConfig, workers: number[], steps: number, redis: string | null): Promise<ScalingPoint[]> {
  const log = createLogger({ name: 'bench-scaling', rank: null });
  const cache = featureCacheDir(base);
  const points: ScalingPoint[] = [];
  for (const w of workers) {
    const run = join(base.run, `bench-w${w}`);
    const config: TrainerConfig = { ...base, run, featureCache: cache, maxSteps: steps, resume: false, evalEvery: 0, checkpointEvery: 0 };
    log.info('running', { workers: w, steps, globalBatch: base.globalBatch });
    await launch({ config, gpus: w, redis, log, env: { SMOLRATE_LOG_LEVEL: process.env.SMOLRATE_LOG_LEVEL ?? 'warn' } });
    const recs = readMetrics(join(run, 'metrics.jsonl')).filter((r) => r.kind === 'train').slice(-steps);
    const timed = recs.slice(1);
    if (timed.length === 0) throw new UsageError('bench-scaling: --steps must be at least 2 (the first step is warm-up)');
    const stepSeconds = median(timed.map((r) => (r.stepMs as number) / 1000));
    const samplesPerSecond = base.globalBatch / stepSeconds;
    // Baseline: the first run (normally 1 worker); efficiency = thr(W) / ((W / W0) · thr(W0)).
    const baseline = points[0] ?? { workers: w, samplesPerSecond };
    const efficiency = samplesPerSecond / ((w / baseline.workers) * baseline.samplesPerSecond);
    points.push({ workers: w, medianStepSeconds: stepSeconds, samplesPerSecond, efficiency, allreduceShare: median(timed.map((r) => r.allreduceShare as number)) });
  }
  return points;
}

function formatScaling(points: ScalingPoint[]): string {
  const lines = ['workers  s/step   samples/s  efficiency  allreduce share'];
  for (const p of points) {
    lines.push(`${String(p.workers).padStart(7)}  ${p.medianStepSeconds.toFixed(3).padStart(6)}  ${p.samplesPerSecond.toFixed(2).padStart(10)}  ${(100 * p.efficiency).toFixed(1).padStart(9)}%  ${(100 * p.allreduceShare).toFixed(1).padStart(14)}%`);
  }
  return lines.join('\n');
}

/** One worker count of the simulated step. */
export interface SimPoint {
  workers: number;
  computeMsPerSample: number;
  /** Median over the timed steps of the slowest rank's step (s). */
  stepSeconds: number;
  samplesPerSecond: number;
  speedup: number;
  efficiency: number;
  /** Medians of rank 0's parts of a step (ms): the sleep, the gradient copy, the exchange's wait, AdamW, the all-gather. */
  computeMs: number;
  copyMs: number;
  reduceMs: number;
  optimizerMs: number;
  gatherMs: number;
  /** Everything but the sleep (ms): what communication and the host optimizer cost per step. */
  overheadMs: number;
  /** Optimizer state held by rank 0 (bytes). */
  stateBytes: number;
}

export interface SimOptions extends Omit<StepBenchParams, 'computeMsPerSample'> {
  workers: number[];
  computeMsPerSample: number[];
  redisUrl: string | null;
  onProgress?: (line: string) => void;
}

/** Runs the simulated step for every compute time and worker count. */
export async function runSimulatedScaling(o: SimOptions): Promise<SimPoint[]> {
  if (o.steps < 2) throw new UsageError('bench-scaling: --sim-steps must be at least 2 (the first step is warm-up)');
  const owned = o.redisUrl === null && o.workers.some((w) => w > 1) ? await ensureRedis({ name: 'bench-scaling' }) : undefined;
  const url = o.redisUrl ?? owned?.url ?? '';
  const points: SimPoint[] = [];
  try {
    for (const computeMsPerSample of o.computeMsPerSample) {
      let baseline: { workers: number; samplesPerSecond: number } | undefined;
      for (const w of o.workers) {
        o.onProgress?.(`simulated step: ${w} worker(s), compute ${computeMsPerSample} ms/sample`);
        const params: StepBenchParams = { preset: o.preset, computeMsPerSample, globalBatch: o.globalBatch, steps: o.steps, zero: o.zero, gradDtype: o.gradDtype, dataPlane: o.dataPlane, bucketBytes: o.bucketBytes };
        const { result } = await runBenchWorkers<StepBenchReport[]>({ kind: 'step', workers: w, redisUrl: url, params });
        const timed = (r: StepBenchReport) => r.steps.slice(1);
        const stepSeconds = median(timed(result[0]).map((_, i) => Math.max(...result.map((r) => timed(r)[i].stepMs)))) / 1000;
        const part = (k: keyof StepBenchReport['steps'][number]) => median(timed(result[0]).map((t) => t[k]));
        const samplesPerSecond = o.globalBatch / stepSeconds;
        baseline ??= { samplesPerSecond, workers: w };
        const speedup = samplesPerSecond / baseline.samplesPerSecond;
        const computeMs = part('computeMs');
        points.push({
          workers: w, computeMsPerSample, stepSeconds, samplesPerSecond, speedup, efficiency: speedup / (w / baseline.workers),
          computeMs, copyMs: part('copyMs'), reduceMs: part('reduceMs'), optimizerMs: part('optimizerMs'), gatherMs: part('gatherMs'),
          overheadMs: stepSeconds * 1000 - computeMs, stateBytes: result[0].stateBytes,
        });
      }
    }
  } finally {
    await owned?.stop();
  }
  return points;
}

export function formatSimulated(points: SimPoint[], o: { preset: string; globalBatch: number; params?: number }): string {
  const lines = [
    `simulated step: ${o.preset} trainable parameters, global batch ${o.globalBatch}; the model compute is SIMULATED by a sleep of`,
    'compute-ms-per-sample × global batch / workers; everything else is the trainer\'s own exchange, AdamW8bit and all-gather',
    'compute/sample  workers  s/step  samples/s  speed-up  efficiency | sleep ms  copy ms  reduce ms  adamw ms  gather ms  overhead ms  state MB/rank',
  ];
  for (const p of points) {
    lines.push(
      `${String(p.computeMsPerSample).padStart(11)} ms  ${String(p.workers).padStart(7)}  ${p.stepSeconds.toFixed(3).padStart(6)}  ${p.samplesPerSecond.toFixed(3).padStart(9)}  ${p.speedup.toFixed(2).padStart(7)}×  ${(100 * p.efficiency).toFixed(1).padStart(9)}% | ` +
        `${p.computeMs.toFixed(0).padStart(8)}  ${p.copyMs.toFixed(0).padStart(7)}  ${p.reduceMs.toFixed(0).padStart(9)}  ${p.optimizerMs.toFixed(0).padStart(8)}  ${p.gatherMs.toFixed(0).padStart(9)}  ${p.overheadMs.toFixed(0).padStart(11)}  ${(p.stateBytes / 1e6).toFixed(0).padStart(13)}`,
    );
  }
  return lines.join('\n');
}

const list = (v: string, what: string): number[] => {
  const xs = v.split(',').map(Number);
  if (xs.length === 0 || xs.some((x) => !Number.isFinite(x) || x < 0)) throw new UsageError(`${what} must be a list of non-negative numbers, got ${JSON.stringify(v)}`);
  return xs;
};

/** The 256M decoder training step at batch 1 as `smolrate-model bench` measured it on the 2-core wasm machine (docs/model.md). */
const CPU_256M_MS_PER_SAMPLE = 9800;

export const benchScalingCommand: CommandSpec = {
  summary: 'training throughput with 1, 2 and 4 workers: real tiny-preset runs and a simulated 256M-sized step',
  usage: [
    'options:',
    '  --workers 1,2,4          worker counts (default 1,2,4; the first is the baseline)',
    '  --redis URL              Redis for the multi-worker runs (default: a private redis-server)',
    '  --json                   print JSON',
    'real runs (only with --data):',
    '  --data URI --run DIR     shards and a scratch run folder; plus trainer config flags (--preset tiny, --global-batch 8, ...)',
    '  --steps N                optimizer steps per run (default 6; the first is not timed)',
    'simulated step (--no-sim skips it):',
    '  --sim-preset NAME        whose trainable parameters (default smolvlm2-256m: 134,755,201)',
    `  --sim-compute-ms-per-sample A,B   single-worker compute per sample, slept (default ${CPU_256M_MS_PER_SAMPLE},100: this machine's`,
    '                           measured 256M CPU step, and a GPU-like 100 ms at which communication shows)',
    '  --sim-global-batch N     (default 4)   --sim-steps N (default 3; the first is not timed)',
    '  --sim-zero 0|1 (default 1)   --sim-grad-dtype f32|bf16 (default f32)   --sim-collective tcp|redis (default tcp)',
    '  --sim-bucket-mb N        bucket size of the exchange (default 4)',
  ].join('\n'),
  async run(argv) {
    const args = parseArgs(argv, ['json', 'fp32-embedding-state', 'no-sim']);
    const workers = list(flagString(args, 'workers') ?? '1,2,4', '--workers');
    if (workers.some((w) => !Number.isSafeInteger(w) || w < 1)) throw new UsageError(`--workers must be a list of positive integers, got ${String(args.flags.workers)}`);
    const redis = flagString(args, 'redis') ?? null;
    const log = createLogger({ name: 'bench-scaling', rank: null });
    const out: { real?: ScalingPoint[]; simulated?: SimPoint[] } = {};
    const text: string[] = [];
    if (flagString(args, 'data') !== undefined) {
      const steps = flagNumber(args, 'steps', 6)!;
      const overrides: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(args.flags)) if (!['workers', 'steps', 'redis', 'json', 'config', 'noSim'].includes(k) && !k.startsWith('sim')) overrides[k] = v;
      const base = resolveTrainerConfig({ file: flagString(args, 'config') ?? null, overrides });
      out.real = await runScalingBench(base, workers, steps, redis);
      text.push(`real runs: preset ${base.preset}, global batch ${base.globalBatch}`, formatScaling(out.real), '');
    }
    if (!flagBool(args, 'noSim')) {
      const dtype = flagString(args, 'simGradDtype') ?? 'f32';
      const plane = flagString(args, 'simCollective') ?? 'tcp';
      if (dtype !== 'f32' && dtype !== 'bf16') throw new UsageError(`--sim-grad-dtype must be f32 or bf16, got ${JSON.stringify(dtype)}`);
      if (plane !== 'tcp' && plane !== 'redis') throw new UsageError(`--sim-collective must be tcp or redis, got ${JSON.stringify(plane)}`);
      const o: SimOptions = {
        preset: flagString(args, 'simPreset') ?? 'smolvlm2-256m',
        workers,
        computeMsPerSample: list(flagString(args, 'simComputeMsPerSample') ?? `${CPU_256M_MS_PER_SAMPLE},100`, '--sim-compute-ms-per-sample'),
        globalBatch: flagNumber(args, 'simGlobalBatch', 4)!,
        steps: flagNumber(args, 'simSteps', 3)!,
        zero: flagNumber(args, 'simZero', 1)!,
        gradDtype: dtype,
        dataPlane: plane,
        bucketBytes: flagNumber(args, 'simBucketMb', 4)! * 1024 * 1024,
        redisUrl: redis,
        onProgress: (l) => log.info(l),
      };
      out.simulated = await runSimulatedScaling(o);
      text.push(formatSimulated(out.simulated, o));
    }
    process.stdout.write((args.flags.json === true ? JSON.stringify(out, null, 2) : text.join('\n')) + '\n');
    return 0;
  },
};

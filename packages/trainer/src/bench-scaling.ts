/**
 * Training-throughput scaling: the same short run (same global batch, `steps` optimizer steps)
 * launched with 1, 2 and 4 workers; throughput is the global batch over the median step time
 * (rank 0's metrics, first step excluded as warm-up), and scaling efficiency is
 * throughput(W) / (W · throughput(1)) (relative to the first worker count given). Image features are computed once into a shared cache
 * before the timed runs, so only training is measured.
 */
import { join } from 'node:path';
import { createLogger, flagNumber, flagString, parseArgs, readMetrics, UsageError, type CommandSpec } from '@smolrate/core';
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

export async function runScalingBench(base: TrainerConfig, workers: number[], steps: number, redis: string | null): Promise<ScalingPoint[]> {
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

export function formatScaling(points: ScalingPoint[]): string {
  const lines = ['workers  s/step   samples/s  efficiency  allreduce share'];
  for (const p of points) {
    lines.push(`${String(p.workers).padStart(7)}  ${p.medianStepSeconds.toFixed(3).padStart(6)}  ${p.samplesPerSecond.toFixed(2).padStart(10)}  ${(100 * p.efficiency).toFixed(1).padStart(9)}%  ${(100 * p.allreduceShare).toFixed(1).padStart(14)}%`);
  }
  return lines.join('\n');
}

export const benchScalingCommand: CommandSpec = {
  summary: 'training throughput with 1, 2 and 4 workers and the scaling efficiency',
  usage: [
    'options:',
    '  --workers 1,2,4   worker counts (default 1,2,4; the first is the baseline)',
    '  --steps N         optimizer steps per run (default 6; the first is not timed)',
    '  --redis URL       Redis for the multi-worker runs (default: a private redis-server per run)',
    '  --json            print JSON',
    '  plus trainer config flags: --data URI --run DIR (required), --preset tiny, --global-batch 8, ...',
  ].join('\n'),
  async run(argv) {
    const args = parseArgs(argv, ['json', 'fp32-embedding-state']);
    const workers = (flagString(args, 'workers') ?? '1,2,4').split(',').map(Number);
    if (workers.some((w) => !Number.isSafeInteger(w) || w < 1)) throw new UsageError(`--workers must be a list of positive integers, got ${String(args.flags.workers)}`);
    const steps = flagNumber(args, 'steps', 6)!;
    const overrides: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(args.flags)) if (!['workers', 'steps', 'redis', 'json', 'config'].includes(k)) overrides[k] = v;
    const base = resolveTrainerConfig({ file: flagString(args, 'config') ?? null, overrides });
    const points = await runScalingBench(base, workers, steps, flagString(args, 'redis') ?? null);
    process.stdout.write((args.flags.json === true ? JSON.stringify(points, null, 2) : formatScaling(points)) + '\n');
    return 0;
  },
};

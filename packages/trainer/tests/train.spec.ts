/**
 * End-to-end training with real worker processes (forked from source through tsx) and the real
 * Redis of the global setup: data-parallel equivalence, replica hashes, bitwise resume, the
 * watchdog with and without restarts, and learning on learnable data. Tiny preset, 32 train /
 * 16 val rows, global batch 8; the vision features are computed once in beforeAll into a shared
 * cache (same seed → same backbone), so workers only scan it.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore, readMetrics } from '@smolrate/core';
import { initBackend, loadModelDir, presetConfig, readSafetensorsFile, SmolVLMRegressor } from '@smolrate/model';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readPointer, readTrainerFiles } from '../src/checkpoint.js';
import { resolveTrainerConfig, type TrainerConfig } from '../src/config.js';
import { FeatureCache } from '../src/feature-cache.js';
import { launch, type LaunchOptions } from '../src/launch.js';
import { precomputeFeatures } from '../src/precompute-features.js';
import { Replica } from '../src/replica.js';
import { ShardDataset } from '../src/shard-dataset.js';
import { writeLearnableShards } from './learnable-shards.js';

const REDIS_URL = process.env.REDIS_URL;
let dir: string;
let data: string;
let featureCache: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'smolrate-train-'));
  data = join(dir, 'data');
  featureCache = join(dir, 'features');
  const store = openStore(data);
  const manifest = await writeLearnableShards(store, { train: 32, val: 16 });
  await initBackend('wasm');
  const model = SmolVLMRegressor.fromSeed(presetConfig('tiny'), 0);
  try {
    const cache = await FeatureCache.forModel(model, { dir: featureCache, dtype: 'f32' });
    for (const split of ['train', 'val'] as const) {
      await precomputeFeatures({ model, cache, dataset: await ShardDataset.open({ store, manifest, split }) });
    }
  } finally {
    model.dispose();
  }
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function config(run: string, overrides: Record<string, unknown>): TrainerConfig {
  return resolveTrainerConfig({
    overrides: { data, run: join(dir, run), featureCache, featureDtype: 'f32', preset: 'tiny', backend: 'wasm', globalBatch: 8, peakLr: 1e-3, seed: 0, 'collective.heartbeatMs': 500, ...overrides },
  });
}

function run(cfg: TrainerConfig, gpus: number, extra: Partial<LaunchOptions> = {}) {
  return launch({
    config: cfg,
    gpus,
    redis: gpus > 1 ? REDIS_URL : null,
    runId: `test-${randomBytes(4).toString('hex')}`,
    env: { SMOLRATE_LOG_LEVEL: 'warn' },
    killGraceMs: 2_000,
    ...extra,
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The trainable tensors of a checkpoint's model.safetensors. */
async function trainedTensors(ckpt: string): Promise<Map<string, Float32Array>> {
  const { tensors } = await readSafetensorsFile(join(ckpt, 'model.safetensors'));
  const names = new Set(SmolVLMRegressor.fromSeed(presetConfig('tiny'), 0).namedParameters().filter((p) => p.trainable).map((p) => p.name));
  return new Map([...tensors].filter(([n]) => names.has(n)).map(([n, t]) => [n, t.data]));
}

function relDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  let n = 0;
  for (let i = 0; i < a.length; i++) {
    d += (a[i] - b[i]) ** 2;
    n += a[i] ** 2;
  }
  return Math.sqrt(d / n);
}

describe('data-parallel training (real processes + Redis)', () => {
  it('(a) one worker with global batch 8 and two workers with 4 each reach the same parameters after one step', async () => {
    await run(config('a1', { maxSteps: 1 }), 1);
    await run(config('a2', { maxSteps: 1 }), 2);
    const one = await trainedTensors((await readPointer(join(dir, 'a1'), 'latest'))!);
    const two = await trainedTensors((await readPointer(join(dir, 'a2'), 'latest'))!);
    const init = SmolVLMRegressor.fromSeed(presetConfig('tiny'), 0).stateDict();
    expect([...one.keys()]).toEqual([...two.keys()]);
    let moved = 0;
    for (const [name, a] of one) {
      expect(relDiff(a, two.get(name)!), name).toBeLessThan(1e-6);
      moved = Math.max(moved, relDiff(a, init.get(name)!.data));
    }
    expect(moved).toBeGreaterThan(1e-3); // the step did change the weights
  });

  it('(b) four workers stay bit-identical over several steps (hash-checked every step by the run and here)', async () => {
    const cfg = config('b', { maxSteps: 3, hashCheckEvery: 1, microBatch: 1 }); // 2 micro-batches of 1 per rank
    await run(cfg, 4);
    const ranks = await Promise.all([0, 1, 2, 3].map(async (r) => JSON.parse(await readFile(join(cfg.run, 'workers', `rank-${r}.json`), 'utf8')) as { step: number; paramHash: string }));
    expect(ranks.map((r) => r.step)).toEqual([3, 3, 3, 3]);
    expect(new Set(ranks.map((r) => r.paramHash)).size).toBe(1);
    // The saved checkpoint holds exactly those parameters.
    const loaded = await loadModelDir((await readPointer(cfg.run, 'latest'))!);
    try {
      expect(Replica.of(loaded.model).hash()).toBe(ranks[0].paramHash);
    } finally {
      loaded.model.dispose();
    }
  });

  it('(c) a run stopped after 3 steps and resumed ends bitwise identical to an uninterrupted run', async () => {
    const common = { maxSteps: 6, evalEvery: 2 };
    await run(config('c-full', common), 2);
    const partial = await run(config('c-part', { ...common, stopAfterSteps: 3 }), 2);
    expect(partial.restarts).toBe(0);
    expect((await readTrainerFiles((await readPointer(join(dir, 'c-part'), 'latest'))!)).state.step).toBe(3);
    // --patience is applied on resume (a higher one: no early stop in 3 validations either way).
    await run(config('c-part', { ...common, resume: true, patience: 5 }), 2);
    const full = (await readPointer(join(dir, 'c-full'), 'latest'))!;
    const resumed = (await readPointer(join(dir, 'c-part'), 'latest'))!;
    expect(resumed.endsWith('step-6')).toBe(true);
    for (const f of ['model.safetensors', 'optimizer.bin']) {
      expect((await readFile(join(resumed, f))).equals(await readFile(join(full, f))), f).toBe(true);
    }
    const [a, b] = await Promise.all([readTrainerFiles(full), readTrainerFiles(resumed)]);
    expect(b.state.earlyStopping).toEqual({ ...a.state.earlyStopping, patience: 5 });
    expect(b.state.sampler).toEqual(a.state.sampler);
  });

  it('(c2) ZeRO-1 (default) equals ZeRO-0 and the Redis data plane byte for byte; its checkpoint resumes on another world size', async () => {
    const common = { maxSteps: 6, evalEvery: 2 };
    await run(config('z0', { ...common, zero: 0 }), 2);
    await run(config('zredis', { ...common, 'collective.dataPlane': 'redis' }), 2);
    const full = (await readPointer(join(dir, 'c-full'), 'latest'))!; // (c): ZeRO-1 over TCP
    for (const other of ['z0', 'zredis']) {
      const ckpt = (await readPointer(join(dir, other), 'latest'))!;
      for (const f of ['model.safetensors', 'optimizer.bin']) {
        expect((await readFile(join(ckpt, f))).equals(await readFile(join(full, f))), `${other} ${f}`).toBe(true);
      }
    }
    // 2 ranks to step 3, then 4 ranks to the end: each rank takes its slices of the merged state.
    await run(config('zresume', { ...common, stopAfterSteps: 3 }), 2);
    await run(config('zresume', { ...common, resume: true }), 4);
    const resumed = await trainedTensors((await readPointer(join(dir, 'zresume'), 'latest'))!);
    const reference = await trainedTensors(full);
    for (const [name, a] of reference) expect(relDiff(resumed.get(name)!, a), name).toBeLessThan(1e-5);
    const state = (await readTrainerFiles((await readPointer(join(dir, 'zresume'), 'latest'))!)).state;
    expect([state.step, state.worldSize]).toEqual([6, 4]);
  });

  it('(d) kill -9 of a worker: with --max-restarts 1 the run completes from the latest checkpoint; without, it fails naming the rank; no orphans', async () => {
    const killWhenCheckpointed = (runDir: string): Partial<LaunchOptions> => ({
      onWorker: ({ rank, attempt, pid }) => {
        if (rank !== 1 || attempt !== 0) return;
        const timer = setInterval(() => {
          if (existsSync(join(runDir, 'checkpoints', 'latest'))) {
            clearInterval(timer);
            process.kill(pid, 'SIGKILL');
          }
        }, 50);
        timer.unref();
      },
    });
    const cfgR = config('d-restart', { epochs: 3, checkpointEvery: 2 });
    const restarted = await run(cfgR, 2, { maxRestarts: 1, ...killWhenCheckpointed(cfgR.run) });
    expect(restarted.restarts).toBe(1);
    expect((await readPointer(cfgR.run, 'latest'))!.endsWith('step-12')).toBe(true);
    expect(restarted.pids.filter(isAlive)).toEqual([]);

    const cfgF = config('d-fail', { epochs: 3, checkpointEvery: 2 });
    const pids: number[] = [];
    const kill = killWhenCheckpointed(cfgF.run);
    await expect(
      run(cfgF, 2, {
        onWorker: (w) => {
          pids.push(w.pid);
          kill.onWorker!(w);
        },
      }),
    ).rejects.toThrow(/rank 1 \(pid \d+\) died: killed by SIGKILL; all workers stopped/);
    expect(pids).toHaveLength(2);
    expect(pids.filter(isAlive)).toEqual([]);
  });

  it('(e) on learnable data the training loss falls and validation PLCC is positive', async () => {
    const cfg = config('e', { epochs: 3, evalEvery: 4 });
    await run(cfg, 1);
    const recs = readMetrics(join(cfg.run, 'metrics.jsonl'));
    const losses = recs.filter((r) => r.kind === 'train').map((r) => r.loss as number);
    expect(losses).toHaveLength(12);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean(losses.slice(-4))).toBeLessThan(mean(losses.slice(0, 4)));
    const val = recs.filter((r) => r.kind === 'val');
    expect(val.length).toBeGreaterThanOrEqual(3);
    expect(val[val.length - 1].plcc as number).toBeGreaterThan(0);
  });
});

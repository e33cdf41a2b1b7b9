/**
 * The per-rank training recipe (docs/reference/design.md "Training topology"): every rank runs this with the
 * same config; RANK / WORLD_SIZE / SMOLRATE_RUN_ID / REDIS_URL say which rank it is.
 *
 *   weights (seeded init | init folder | latest checkpoint) → vision features cached (spread
 *   over the ranks) → per step: this rank's slice of the global batch in micro-batches →
 *   gradients summed with weights micro/rankBatch (= the mean over the slice) into one flat
 *   buffer [grads…, loss], whose buckets go on the wire as the last micro-batch fills them →
 *   ZeRO-1 (default): reduce-scatter of the mean, so each rank holds the global-batch mean of its
 *   1/N segment (zero-shards.ts) → global norm from the ranks' partial sums → optional clipping →
 *   AdamW on its segment only → all-gather of the updated weights; ZeRO-0: all-reduce and AdamW
 *   on every parameter → replicas identical (hash-checked). docs/training.md.
 *   Rank 0 logs metrics, validates, decides early stopping (broadcast) and writes checkpoints
 *   (the optimizer slices of all ranks merged into the one unsharded state).
 *
 * Everything that defines the trajectory — weights, optimizer state, global step, sampler
 * cursor, early-stopping state — is in the checkpoint, and dropout masks are functions of
 * (seed, step, sample), so a resumed run continues bit for bit.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CheckpointError, CollectiveError, ConfigError, createLogger, MetricsSink, openStore, readManifest, type Logger } from '@smolrate/core';
import { describeBackend, initBackend, loadModelDir, loadTokenizer, presetConfig, SmolVLMRegressor, TINY_TOKENIZER_URL } from '@smolrate/model';
import { ADAMW_DEFAULTS } from './adamw-options.js';
import { BatchBuilder, type TrainingBatch } from './batches.js';
import { readTrainerFiles, resumeCheckpoint, TRAINER_STATE_FORMAT, writeCheckpoint, type TrainerState } from './checkpoint.js';
import { LocalCollective, type Collective } from './collective.js';
import { DataParallelUpdate } from './data-parallel-update.js';
import { checkTrainerConfig, effectiveMicroBatch, featureCacheDir, type TrainerConfig } from './config.js';
import { EarlyStopping } from './early-stopping.js';
import { batchTensors, evaluate } from './evaluate.js';
import { FeatureCache } from './feature-cache.js';
import { Watermark } from './grad-transport.js';
import { linearWarmupDecay } from './lr-schedule.js';
import { makeOptimizer, optimizerName } from './optimizer.js';
import { decodeOptimizerState, encodeOptimizerState, mergeOptimizerStates } from './optimizer-state-file.js';
import { precomputeFeatures } from './precompute-features.js';
import { Prefetcher } from './prefetcher.js';
import { RedisCollective } from './redis-collective.js';
import { Replica } from './replica.js';
import { loadOrBuildSampleIndex, type SampleIndex } from './sample-index.js';
import { dropoutSeeds, GlobalSampler, type SamplerStep } from './sampler.js';
import { ShardDataset } from './shard-dataset.js';
import { TrainingProgress } from './training-progress.js';
import type { ValMetrics } from './evaluate.js';

/** The resolved config travels to the workers as JSON in this variable. */
export const CONFIG_ENV = 'SMOLRATE_TRAINER_CONFIG';

export interface WorkerEnv {
  rank: number;
  worldSize: number;
  localRank: number;
  runId: string;
  redisUrl: string | null;
}

export function workerEnv(env: NodeJS.ProcessEnv = process.env): WorkerEnv {
  const int = (k: string, def?: number): number => {
    const v = env[k];
    if (v === undefined && def !== undefined) return def;
    if (v === undefined || !/^\d+$/.test(v)) throw new ConfigError(`environment variable ${k} must be a non-negative integer, got ${JSON.stringify(v)}`);
    return Number(v);
  };
  const worldSize = int('WORLD_SIZE', 1);
  const rank = int('RANK', 0);
  if (worldSize < 1 || rank >= worldSize) throw new ConfigError(`RANK (${rank}) must be in [0, WORLD_SIZE = ${worldSize})`);
  const redisUrl = env.REDIS_URL ?? null;
  if (worldSize > 1 && !redisUrl) throw new ConfigError(`WORLD_SIZE is ${worldSize} but REDIS_URL is not set`);
  return { rank, worldSize, localRank: int('LOCAL_RANK', rank), runId: env.SMOLRATE_RUN_ID ?? 'local', redisUrl };
}

export interface TrainSummary {
  steps: number;
  totalSteps: number;
  epochs: number;
  stoppedEarly: boolean;
  interrupted: boolean;
  best: TrainerState['best'];
  lastValidation: TrainerState['lastValidation'];
  paramHash: string;
  backend: string;
  secondsPerStep: number;
  precomputeSecondsPerImage: number | null;
  seconds: number;
}

/** Compares the parameter hash of every rank; a mismatch means the replicas diverged. */
async function checkReplicas(c: Collective, replica: Replica, step: number): Promise<string> {
  const mine = replica.hash();
  const all = await c.allGatherJson(mine, `hash-${step}`);
  if (all.some((h) => h !== mine)) {
    throw new CollectiveError(`replicas diverged at step ${step}: parameter hashes by rank ${all.map((h, r) => `${r}=${h.slice(0, 12)}`).join(', ')}`);
  }
  return mine;
}

/** Runs one rank from its environment and the resolved config. */
export async function runWorker(cfg: TrainerConfig, env: WorkerEnv = workerEnv(), log: Logger = createLogger({ name: 'trainer', rank: env.rank })): Promise<TrainSummary> {
  checkTrainerConfig(cfg, env.worldSize);
  const backend = await initBackend(cfg.backend);
  const collective: Collective =
    env.worldSize === 1
      ? new LocalCollective()
      : await RedisCollective.connect({
          url: env.redisUrl!, runId: env.runId, rank: env.rank, worldSize: env.worldSize, log,
          timeoutMs: cfg.collective.timeoutMs, rendezvousTimeoutMs: cfg.collective.rendezvousTimeoutMs, heartbeatMs: cfg.collective.heartbeatMs,
          dataPlane: cfg.collective.dataPlane, host: cfg.collective.host, port: cfg.collective.port,
          advertise: cfg.collective.advertise === '' ? undefined : cfg.collective.advertise, chunkBytes: cfg.collective.bucketMb * 1024 * 1024,
        });
  try {
    return await train(cfg, env, collective, describeBackend(backend), log);
  } finally {
    await collective.close();
  }
}

async function train(cfg: TrainerConfig, env: WorkerEnv, c: Collective, backend: string, log: Logger): Promise<TrainSummary> {
  const t0 = performance.now();
  const lead = env.rank === 0;
  const waitLong = { timeoutMs: cfg.collective.evalTimeoutMs };
  if (lead) log.info('trainer config', { backend, worldSize: env.worldSize, runId: env.runId, config: cfg });

  // 1. The same initial weights on every rank.
  const resumeDir = cfg.resume ? await resumeCheckpoint(cfg) : null;
  if (cfg.resume && resumeDir === null) log.warn('--resume: no checkpoint yet, starting from the initial weights', { run: cfg.run });
  const source = resumeDir ?? cfg.init;
  let model: SmolVLMRegressor;
  let tokenizerJson: string | null = null;
  if (source !== null) {
    const loaded = await loadModelDir(source, { requireHead: resumeDir !== null, seed: cfg.seed, keepLmHead: false });
    ({ model, tokenizerJson } = loaded);
  } else {
    model = SmolVLMRegressor.fromSeed(presetConfig(cfg.preset), cfg.seed);
  }
  if (cfg.tokenizer !== null) tokenizerJson = await readFile(cfg.tokenizer, 'utf8');
  else if (tokenizerJson === null && source === null && cfg.preset === 'tiny') tokenizerJson = await readFile(TINY_TOKENIZER_URL, 'utf8');
  if (tokenizerJson === null) throw new ConfigError('no tokenizer: pass --tokenizer <tokenizer.json> (or an --init folder that has one)');
  const tokenizer = loadTokenizer(tokenizerJson);
  const modelConfig = cfg.maxTextLength > 0 ? { ...model.config, regression: { ...model.config.regression, truncation: cfg.maxTextLength } } : model.config;

  // 2. Data, and the frozen vision features of every image (each rank a share; then a barrier).
  const store = openStore(cfg.data);
  const manifest = await readManifest(store);
  const trainSet = await ShardDataset.open({ store, manifest, split: 'train' });
  const valSet = await ShardDataset.open({ store, manifest, split: 'val' });
  const cache = await FeatureCache.forModel(model, { dir: featureCacheDir(cfg), dtype: cfg.featureDtype });
  let precomputed = { seconds: 0, images: 0 };
  for (const dataset of [trainSet, valSet]) {
    const r = await precomputeFeatures({ model, dataset, cache, rank: env.rank, worldSize: env.worldSize, log });
    precomputed = { seconds: precomputed.seconds + r.seconds, images: precomputed.images + r.computed };
  }
  await c.barrier('features', waitLong);
  // The splits' sample indexes: rank 0 builds the missing ones while the others wait, then they
  // load its files — or, when the run directory is not shared with them, build the same bytes.
  const tokenizerSha256 = createHash('sha256').update(tokenizerJson).digest('hex');
  const indexOf = async (dataset: ShardDataset) =>
    (await loadOrBuildSampleIndex({ dir: join(cfg.run, 'sample-index'), dataset, tokenizer, tokenizerSha256, config: modelConfig, log })).index;
  const leadIndexes = lead ? [await indexOf(trainSet), await indexOf(valSet)] : [];
  await c.barrier('sample-index', waitLong);
  const [trainIndex, valIndex] = lead ? leadIndexes : [await indexOf(trainSet), await indexOf(valSet)];
  const builder = (dataset: ShardDataset, index: SampleIndex) => new BatchBuilder({ config: modelConfig, cache: cache.reader(dataset.shards), locate: (i) => dataset.locate(i), index });
  const trainBatches = builder(trainSet, trainIndex);
  const valBatches = builder(valSet, valIndex);

  // 3. Sampler, schedule, optimizer and the run state (fresh or from the checkpoint).
  const micro = effectiveMicroBatch(cfg, env.worldSize);
  const sampler = new GlobalSampler({ numSamples: trainSet.numSamples, seed: cfg.seed, globalBatch: cfg.globalBatch, worldSize: env.worldSize, rank: env.rank, microBatch: micro, sampleBlock: cfg.sampleBlock });
  const fullSteps = cfg.epochs * sampler.stepsPerEpoch;
  const totalSteps = cfg.maxSteps > 0 ? Math.min(cfg.maxSteps, fullSteps) : fullSteps;
  const schedule = linearWarmupDecay({ peakLr: cfg.peakLr, totalSteps, warmupFraction: cfg.warmupFraction });
  let step = 0;
  let cursor = { epoch: 0, step: 0 };
  let stopping = new EarlyStopping({ patience: cfg.patience, mode: 'max' });
  let best: TrainerState['best'] = { metric: 'val_plcc', value: null, step: null, checkpoint: null };
  let lastValidation: TrainerState['lastValidation'] = null;
  let savedOptimizer: Buffer | null = null;
  if (resumeDir !== null) {
    const saved = await readTrainerFiles(resumeDir);
    const s = saved.state;
    if (s.schedule.totalSteps !== totalSteps) throw new CheckpointError(`${resumeDir}: the schedule spans ${s.schedule.totalSteps} steps, this config gives ${totalSteps}`);
    cursor = sampler.resume(s.sampler);
    step = s.step;
    if (sampler.globalStep(cursor) !== step) throw new CheckpointError(`${resumeDir}: step ${step} disagrees with the sampler cursor ${JSON.stringify(cursor)}`);
    stopping = EarlyStopping.fromState({ ...s.earlyStopping, patience: cfg.patience }); // --patience applies on resume
    ({ best, lastValidation } = s);
    savedOptimizer = saved.optimizer;
    log.info('resumed', { checkpoint: resumeDir, step, epoch: cursor.epoch });
  }
  const replica = Replica.of(model);
  const blockSize = savedOptimizer !== null ? decodeOptimizerState(savedOptimizer).meta.hyper.blockSize : ADAMW_DEFAULTS.blockSize;
  const update = new DataParallelUpdate({ collective: c, params: replica.params, weights: replica.weights, zero: cfg.zero, blockSize, gradDtype: cfg.gradDtype, gradClip: cfg.gradClip });
  const sharded = update.sharded;
  const optimizer = makeOptimizer(cfg, savedOptimizer, update.ownedSlices());
  savedOptimizer = null;
  await checkReplicas(c, replica, step); // identical starting weights (and resumed state) everywhere

  const metrics = lead ? new MetricsSink(join(cfg.run, 'metrics.jsonl')) : null;
  const state = (): TrainerState => ({
    format: TRAINER_STATE_FORMAT, step, epoch: cursor.epoch, sampler: sampler.state(cursor),
    random: { seed: cfg.seed, dropout: 'seedFrom(seed, "dropout", globalStep, globalIndex)', rng: null },
    best, earlyStopping: stopping.state(),
    schedule: { kind: 'linear-warmup-decay', peakLr: schedule.peakLr, totalSteps, warmupSteps: schedule.warmupSteps, minLr: schedule.minLr },
    lastValidation, worldSize: env.worldSize, config: cfg,
  });

  // 4. The loop.
  const lastStep = cfg.stopAfterSteps > 0 ? Math.min(totalSteps, cfg.stopAfterSteps) : totalSteps;
  function* stepsToRun(): Generator<SamplerStep> {
    if (step >= lastStep) return;
    for (const s of sampler.steps(cursor)) {
      yield s;
      if (s.globalStep + 1 >= lastStep) return;
    }
  }
  const prefetcher = new Prefetcher({
    keys: stepsToRun(),
    depth: cfg.prefetch,
    build: async (s: SamplerStep) => ({ s, batches: await Promise.all(sampler.microBatches(s.cursor.epoch, s.cursor.step).map((ix) => trainBatches.build(ix))) }),
  });
  const flat = update.flat;
  if (lead) log.info('data parallel', { zero: sharded ? 1 : 0, segments: update.plan.bounds, gradDtype: cfg.gradDtype, dataPlane: env.worldSize > 1 ? cfg.collective.dataPlane : null });
  const weight = micro / sampler.rankBatchSize;
  const progress = new TrainingProgress({ log, firstStep: step, lastStep, globalBatch: cfg.globalBatch });
  let stoppedEarly = false;
  let stepSeconds = 0;
  let stepsRun = 0;
  try {
    for (;;) {
      const tWait = performance.now();
      const next = await prefetcher.next();
      if (next.done) break;
      const tStep = performance.now();
      const { s, batches } = next.value;
      flat.fill(0);
      // The exchange starts with the last micro-batch: its buckets leave as soon as the host copy
      // of their gradients is complete (tfjs hands all gradients over at the end of the backward,
      // so this overlaps the device → host copies and the accumulation with the network).
      const ready = new Watermark();
      let exchange: Promise<Float32Array> | null = null;
      for (const [i, b] of batches.entries()) {
        const last = i === batches.length - 1;
        if (last) exchange = update.exchange(ready);
        await accumulate(model, replica, flat, b, weight, dropoutSeeds(cfg.seed, s.globalStep, b.globalIndices), last ? (end) => ready.advance(end) : undefined);
      }
      const tReduce = performance.now();
      const lr = schedule(step);
      const { loss, gradNorm, reduceMs, optimizerMs, gatherMs } = await update.apply(exchange!, optimizer, lr, step);
      replica.upload();
      step += 1;
      cursor = sampler.advance(s.cursor);
      const stepMs = performance.now() - tStep;
      stepSeconds += stepMs / 1000;
      stepsRun += 1;
      if (lead) progress.step(step, loss, s.cursor.epoch);
      metrics?.write({
        kind: 'train', step, epoch: s.cursor.epoch, loss, lr, gradNorm,
        samplesPerSec: cfg.globalBatch / (stepMs / 1000), allreduceShare: (reduceMs + gatherMs) / stepMs, dataWaitMs: tStep - tWait, stepMs,
        computeMs: tReduce - tStep, reduceWaitMs: reduceMs, optimizerMs, gatherMs,
      });

      const runEnd = step >= totalSteps;
      const interrupted = !runEnd && step >= lastStep;
      const epochEnd = cursor.step === 0;
      let improved = false;
      if (epochEnd || runEnd || (cfg.evalEvery > 0 && step % cfg.evalEvery === 0)) {
        const decision = await c.broadcastJson(lead ? await validate() : null, 0, `eval-${step}`, waitLong);
        ({ improved, stop: stoppedEarly } = decision);
        if (improved) best = { metric: 'val_plcc', value: decision.metrics.plcc, step, checkpoint: `step-${step}` };
        lastValidation = { ...decision.metrics, step };
      }
      const done = runEnd || interrupted || stoppedEarly;
      if (done || epochEnd || improved || (cfg.checkpointEvery > 0 && step % cfg.checkpointEvery === 0)) {
        // ZeRO-1: every rank's optimizer slices go to rank 0, which writes them as one unsharded state.
        const slices = sharded ? await c.gather(optimizer.serialize(), 0, `optimizer-${step}`, waitLong) : null;
        if (lead) {
          const optimizerBytes = slices === null ? optimizer.serialize() : encodeOptimizerState(mergeOptimizerStates(slices!.map(decodeOptimizerState), optimizerName(cfg)));
          const dir = await writeCheckpoint({ runDir: cfg.run, model, tokenizerJson, optimizer: optimizerBytes, state: state(), best: improved, keep: cfg.keepCheckpoints });
          log.info('checkpoint', { dir, step });
        }
        await c.barrier(`ckpt-${step}`, waitLong);
      }
      if (cfg.hashCheckEvery > 0 && step % cfg.hashCheckEvery === 0) await checkReplicas(c, replica, step);
      if (done) break;
    }
  } finally {
    await prefetcher.return();
  }

  async function validate(): Promise<{ improved: boolean; stop: boolean; metrics: ValMetrics }> {
    const m = await evaluate(model, valBatches, valSet.numSamples, cfg.evalBatch);
    const d = stopping.update(m.plcc);
    metrics?.write({ kind: 'val', step, epoch: cursor.epoch, rmse: m.rmse, plcc: m.plcc, srcc: m.srcc, samples: m.samples });
    log.info('validation', { step, ...m, improved: d.improved, stop: d.stop });
    return { ...d, metrics: m };
  }

  if (lead) log.info('optimizer state of rank 0', { bytes: optimizer.stateBytes(), zero: sharded ? 1 : 0, worldSize: env.worldSize });

  // 5. The end: replicas must agree; rank 0 summarises.
  const paramHash = await checkReplicas(c, replica, step);
  const summary: TrainSummary = {
    steps: step, totalSteps, epochs: cursor.epoch, stoppedEarly, interrupted: step < totalSteps && !stoppedEarly,
    best, lastValidation, paramHash, backend,
    secondsPerStep: stepsRun > 0 ? stepSeconds / stepsRun : 0,
    precomputeSecondsPerImage: precomputed.images > 0 ? precomputed.seconds / precomputed.images : null,
    seconds: (performance.now() - t0) / 1000,
  };
  // Every rank records its final hash: an outside check of the replicas (tests, post-mortems).
  await mkdir(join(cfg.run, 'workers'), { recursive: true });
  await writeFile(join(cfg.run, 'workers', `rank-${env.rank}.json`), JSON.stringify({ rank: env.rank, worldSize: env.worldSize, step, paramHash }) + '\n');
  if (lead) {
    await writeFile(join(cfg.run, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
    log.info('training finished', { ...summary });
  }
  await cache.close();
  model.dispose();
  return summary;
}

/** One micro-batch: loss and gradients, added into `flat` with `weight`; `done(end)` as parts of `flat` are final. */
async function accumulate(
  model: SmolVLMRegressor, replica: Replica, flat: Float32Array, b: TrainingBatch, weight: number, seeds: number[], done?: (end: number) => void,
): Promise<void> {
  const t = batchTensors(b);
  let out;
  try {
    out = model.lossAndGrads({ tokens: b, imageFeatures: t.imageFeatures }, t.targets, { dropoutSeed: seeds });
  } finally {
    for (const x of Object.values(t)) x.dispose();
    b.release(); // its features are in no tensor now
  }
  await replica.accumulate(flat, out.grads, weight, done);
  flat[replica.size] += weight * out.loss;
  done?.(replica.size + 1);
}

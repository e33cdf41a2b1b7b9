/**
 * `smolrate-model bench`: throughput of the model on one compute backend, set against that
 * backend's own matmul ceiling measured in the same run — so the ratio says how much of what the
 * backend can do the model gets, whatever the machine.
 *
 *  1. ceiling: GMAC/s of plain 2-D matmuls of the model's Linear shapes (the best of them), plus,
 *     for comparison only, the product forms the model also issues (batched attention products,
 *     the backward pass's transposed products). It is sampled again right before and right after
 *     each timed measurement, and each ratio uses the mean of its two samples: on a shared
 *     machine the load changes during a run, and a ceiling from minutes earlier would skew it;
 *  2. a profiled warm-up on one image: per-item memory of the vision tower and of the decoder,
 *     and where the time goes by kernel;
 *  3. forward, pixels → rating, per batch size: s/image and GMAC/s in both MAC conventions
 *     (counter.ts), and their ratio to the ceiling;
 *  4. a decoder-only training step (lossAndGrads from cached image features): samples/s, and a
 *     GMAC/s figure from the usual 3 × forward-MAC estimate of forward + backward.
 *
 * Weights are a seeded random init: speed does not depend on the values. Every timed figure is the
 * median of `repeats` runs after one warm-up run of the same shapes.
 */
import os from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { createLogger, flagBool, flagNumber, flagString, kebab, parseArgs, Rng, silentLogger, UsageError, type Logger } from '@smolrate/core';
import { describeBackend, initBackend, parseBackendChoice, type BackendChoice, type BackendInfo } from '../backend.js';
import { imageTokenCount, presetConfig, type ModelConfig } from '../config.js';
import { countMacs, countParameters, DEFAULT_TEXT_TOKENS, IMAGE_BLOCK_TOKENS, type MacCounts } from '../counter.js';
import { Param } from '../layers.js';
import { formatBytes, MemoryBudgetError, MemoryMeter, WASM_HEAP_MAX_BYTES } from '../memory-meter.js';
import { CONNECTOR_PREFIX, VISION_PREFIX } from '../params.js';
import { packTokenRows } from '../prompt.js';
import { SmolVLMRegressor, type TokenBatch } from '../smolvlm.js';

export const summary = 'time forward / backward steps on a compute backend';

const DEFAULT_BATCHES: readonly number[] = [1, 2];
const DEFAULT_REPEATS = 3;
const DEFAULT_TRAIN_BATCH = 1;

export const usage = `usage: smolrate-model bench [--backend auto|tensorflow|wasm|cpu] [--preset NAME]
                            [--batch B[,B…]] [--text-tokens T] [--repeats N]
                            [--train-batch B] [--skip-train] [--json]

  --backend NAME     compute backend (default auto: tfjs-node-gpu, tfjs-node, wasm, cpu —
                     the first that loads)
  --preset NAME      model preset: smolvlm2-256m (default) or tiny (a quick smoke run)
  --batch LIST       forward batch sizes, comma-separated (default ${DEFAULT_BATCHES.join(',')}: what fits the
                     wasm backend's 4 GiB heap with the full preset). Also --batches: through
                     \`nx run model:bench\` use --batches, since nx takes --batch as its own flag
  --text-tokens T    prompt-text tokens per row (default ${DEFAULT_TEXT_TOKENS}, the paper's prompt with
                     100-character fields); L = image tokens + ${IMAGE_BLOCK_TOKENS} block tokens + T
  --repeats N        timed runs per measurement, after one warm-up run (default ${DEFAULT_REPEATS})
  --train-batch B    batch of the decoder-only training step (default ${DEFAULT_TRAIN_BATCH})
  --skip-train       leave out the training step
  --json             print the report as JSON

Weights are a seeded random init. MACs follow counter.ts: "Linear/Conv" counts Linear and Conv
layers only (the paper's convention), "all" adds the attention products QKᵀ and AV. The ceiling
is the best GMAC/s of plain 2-D matmuls of the model's Linear shapes on the same backend, in
the same run. The training step's GMAC/s uses 3 × its forward MACs for forward + backward (an
estimate). A batch that does not fit in memory is reported as such, not run.`;

const KNOWN_FLAGS = ['backend', 'preset', 'batch', 'batches', 'textTokens', 'repeats', 'trainBatch', 'skipTrain', 'json'];

/** Random init seed; fixed, so two runs build the same weights. */
const INIT_SEED = 0;
/** Shortest measuring time of one matmul shape; short shapes repeat until it has passed. */
const CEILING_MIN_SECONDS = 0.5;
const CEILING_MIN_CALLS = 3;
/** Heap kept free for what the meter cannot see: C++ scratch buffers, allocator fragmentation. */
const WASM_RESERVE_BYTES = 32 * 2 ** 20;
/** Share of free system memory the plain JS backend may fill. */
const CPU_MEMORY_SHARE = 0.8;
/**
 * SmolVLM's added tokens relative to `<image>` (49190 in the 256M vocabulary; the tiny preset
 * keeps the layout, shifted): `<global-img>` = image − 38, `<fake_token_around_image>` = image − 1,
 * and the BPE vocabulary ends at `<global-img>`.
 */
const GLOBAL_IMAGE_OFFSET = 38;
const FAKE_IMAGE_OFFSET = 1;
/** First ordinary text id (0–2 are <|endoftext|>, <|im_start|>, <|im_end|>). */
const FIRST_TEXT_ID = 3;

export interface BenchOptions {
  backend?: BackendChoice;
  preset?: string;
  batches?: number[];
  textTokens?: number;
  repeats?: number;
  trainBatch?: number;
  skipTrain?: boolean;
}

export interface Rate {
  /** MACs per second in the Linear/Conv-only convention, ÷ 1e9. */
  linearConv: number;
  /** The same with the attention products counted. */
  all: number;
}

export interface MatmulResult {
  label: string;
  /** [M×K]·[K×N] in the shape the model issues (batched / transposed where it is). */
  shape: string;
  macs: number;
  calls: number;
  secondsPerCall: number;
  gmacPerSecond: number;
}

export interface KernelShare {
  kernel: string;
  seconds: number;
  share: number;
}

export interface ForwardResult {
  batch: number;
  /** forward: one `forward` call from pixels; staged: encodeImages one image at a time, then `forward` from the features. */
  mode: 'forward' | 'staged' | 'skipped';
  /** Why the mode is not the one-call forward, or why the batch was skipped. */
  note: string | null;
  repeats: number;
  seconds: number[];
  /** Ceiling used for the ratios: mean of the samples taken right before and after this row. */
  ceilingGmacPerSecond: number | null;
  secondsPerBatch: number | null;
  secondsPerImage: number | null;
  gmacPerSecond: Rate | null;
  ratioToCeiling: Rate | null;
}

export interface TrainResult {
  batch: number;
  fits: boolean;
  note: string | null;
  repeats: number;
  seconds: number[];
  secondsPerStep: number | null;
  samplesPerSecond: number | null;
  /** Forward MACs per sample of the trained path: decoder + head (the image features are cached). */
  forwardMacsPerSample: Rate;
  /** 3 × forward MACs per second: the usual forward + backward estimate. */
  gmacPerSecond: Rate | null;
  /** Mean of the ceiling samples taken right before and after the timed steps. */
  ceilingGmacPerSecond: number | null;
  ratioToCeiling: Rate | null;
  kernels: KernelShare[];
  /** Wall time of the profiled warm-up step the kernel times come from. */
  profileWallSeconds: number | null;
}

export interface BenchReport {
  backend: BackendInfo & { description: string };
  model: { preset: string; seed: number; parameters: number; trainable: number; buildSeconds: number };
  sequence: { imageSize: number; imageTokens: number; blockTokens: number; textTokens: number; seqLen: number };
  /** Forward MACs per image (batch 1) in both conventions. */
  macsPerImage: { linearConv: number; all: number };
  memory: {
    /** Bytes the metered tensors may reach in the forward runs (null: not metered, tfjs-node). */
    budget: number | null;
    /** The same for the training step, after the frozen weights were released. */
    trainBudget: number | null;
    /** How the budget was set. */
    basis: string;
    /** Metered peak of one image through the vision tower + connector (encodeImages). */
    visionPerImage: number | null;
    /** Metered peak of the decoder + head for one row, from features. */
    decoderPerRow: number | null;
  };
  ceiling: {
    /** Best of `linear` at the start of the run. */
    gmacPerSecond: number;
    linear: MatmulResult[];
    other: MatmulResult[];
    /** Every ceiling sample of the run, in order (the first is gmacPerSecond). */
    samples: number[];
  };
  /** Time by kernel in the profiled one-image warm-up (vision + decoder). */
  kernels: KernelShare[];
  /** Wall time of that warm-up; the kernels' sum over it is the share spent inside kernels. */
  profileWallSeconds: number | null;
  forward: ForwardResult[];
  train: TrainResult | null;
  notes: string[];
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const now = () => performance.now() / 1000;

function positiveInt(name: string, v: number | undefined): void {
  if (v !== undefined && (!Number.isInteger(v) || v < 1)) throw new UsageError(`--${kebab(name)} must be an integer ≥ 1, got ${v}`);
}

export function parseBatchList(value: string): number[] {
  const parts = value.split(',').map((s) => s.trim());
  const out: number[] = [];
  for (const p of parts) {
    const n = Number(p);
    if (p === '' || !Number.isInteger(n) || n < 1) throw new UsageError(`--batch must be a comma-separated list of integers ≥ 1, got ${JSON.stringify(value)}`);
    if (!out.includes(n)) out.push(n);
  }
  return out;
}

/**
 * Token ids of one synthetic prompt row: the image block (`<fake><global-img>` + N × `<image>` +
 * `<fake>`) followed by `textTokens` seeded random ids of the BPE vocabulary.
 */
export function syntheticRow(cfg: ModelConfig, textTokens: number, rng: Rng): Int32Array {
  const n = imageTokenCount(cfg);
  const image = cfg.imageTokenId;
  const global = image - GLOBAL_IMAGE_OFFSET;
  const fake = image - FAKE_IMAGE_OFFSET;
  if (global <= FIRST_TEXT_ID || image >= cfg.text.vocabSize) {
    throw new UsageError(`image_token_id ${image} does not follow SmolVLM's added-token layout in a vocabulary of ${cfg.text.vocabSize}`);
  }
  const row = new Int32Array(n + IMAGE_BLOCK_TOKENS + textTokens);
  row[0] = fake;
  row[1] = global;
  row.fill(image, 2, 2 + n);
  row[2 + n] = fake;
  for (let t = n + IMAGE_BLOCK_TOKENS; t < row.length; t++) row[t] = FIRST_TEXT_ID + rng.int(global - FIRST_TEXT_ID);
  return row;
}

function syntheticInputs(cfg: ModelConfig, batch: number, textTokens: number, seed: number): { tokens: TokenBatch } {
  const rng = new Rng(seed, 'bench', 'ids', batch);
  return { tokens: packTokenRows(cfg, Array.from({ length: batch }, () => syntheticRow(cfg, textTokens, rng))) };
}

/** Normalised pixels (x/127.5 − 1 ∈ [−1, 1]), one tensor per image. */
function syntheticImages(cfg: ModelConfig, count: number, seed: number): tf.Tensor4D[] {
  const S = cfg.regression.imageSize;
  return Array.from({ length: count }, (_, i) => tf.randomUniform([1, S, S, 3], -1, 1, 'float32', seed * 1000 + i) as tf.Tensor4D);
}

type ProfileInfo = Awaited<ReturnType<typeof tf.profile>>;

/** Aggregates a profile's kernel times; matmuls split into 2-D (Linear) and batched (attention). */
function kernelShares(kernels: ProfileInfo['kernels'], top = 8): KernelShare[] {
  const by = new Map<string, number>();
  for (const k of kernels) {
    const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0; // tf.profile has awaited the times
    let name = k.name;
    if (name === 'BatchMatMul' || name === '_FusedMatMul') {
      const a = k.inputShapes[0] ?? [];
      const batched = a.length > 2 && a.slice(0, -2).reduce((p, c) => p * c, 1) > 1;
      name = `${name} (${batched ? 'batched' : '2-D'})`;
    }
    by.set(name, (by.get(name) ?? 0) + ms / 1000);
  }
  const total = [...by.values()].reduce((p, c) => p + c, 0) || 1;
  const sorted = [...by].sort((a, b) => b[1] - a[1]);
  const out = sorted.slice(0, top).map(([kernel, seconds]) => ({ kernel, seconds, share: seconds / total }));
  const rest = sorted.slice(top).reduce((p, [, s]) => p + s, 0);
  if (rest > 0) out.push({ kernel: `other (${sorted.length - top} kernels)`, seconds: rest, share: rest / total });
  return out;
}

/** Runs `f` under tf.profile; returns its kernel records (a copy: tf.profile reuses one object per engine). */
export async function profiled<T>(f: () => T): Promise<{ result: T; kernels: ProfileInfo['kernels'] }> {
  let result!: T;
  // The profiler runs each kernel through backend.time(), which the wasm and cpu backends declare
  // async: a kernel's exception (MemoryBudgetError) would become an unhandled rejection and the
  // profiler would fail on the missing outputs instead ("reading 'map'"). A synchronous timer
  // lets the kernel's own error reach the caller.
  const backend = tf.backend() as unknown as { time?: (g: () => void) => Promise<{ kernelMs: number }> };
  const ownTime = Object.prototype.hasOwnProperty.call(backend, 'time');
  const originalTime = backend.time;
  backend.time = (g) => {
    const t0 = now();
    g();
    return Promise.resolve({ kernelMs: (now() - t0) * 1000 });
  };
  try {
    const info = await tf.profile(() => {
      result = f();
    });
    return { result, kernels: [...info.kernels] };
  } catch (e) {
    // tf.profile leaves profiling switched on when its function throws (tfjs-core 4.22).
    const state = tf.engine().state as unknown as { profiling: boolean; activeProfile: { kernels: unknown[] } };
    state.profiling = false;
    state.activeProfile.kernels = [];
    throw e;
  } finally {
    if (ownTime) backend.time = originalTime;
    else delete backend.time;
  }
}

/** Times `f` (synchronous backends; `f` reads a value back to be safe): warm-up excluded. */
function timeRuns(repeats: number, f: () => void): number[] {
  f();
  const seconds: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const t0 = now();
    f();
    seconds.push(now() - t0);
  }
  return seconds;
}

function measureMatmul(label: string, aShape: number[], bShape: number[], transposeA: boolean, transposeB: boolean, seed: number): MatmulResult {
  const a = tf.randomNormal(aShape, 0, 1, 'float32', seed);
  const b = tf.randomNormal(bShape, 0, 1, 'float32', seed + 1);
  try {
    const m = transposeA ? aShape[aShape.length - 1] : aShape[aShape.length - 2];
    const k = transposeA ? aShape[aShape.length - 2] : aShape[aShape.length - 1];
    const n = transposeB ? bShape[bShape.length - 2] : bShape[bShape.length - 1];
    const batch = aShape.slice(0, -2).reduce((p, c) => p * c, 1);
    const macs = batch * m * k * n;
    const call = () => tf.matMul(a, b, transposeA, transposeB).dispose();
    call(); // warm-up: XNNPACK packs a weight operand on first use
    let calls = 0;
    const t0 = now();
    while (calls < CEILING_MIN_CALLS || now() - t0 < CEILING_MIN_SECONDS) {
      call();
      calls++;
    }
    const secondsPerCall = (now() - t0) / calls;
    const dims = (s: number[], t: boolean) => `[${s.join('×')}]${t ? 'ᵀ' : ''}`;
    return { label, shape: `${dims(aShape, transposeA)}·${dims(bShape, transposeB)}`, macs, calls, secondsPerCall, gmacPerSecond: macs / secondsPerCall / 1e9 };
  } finally {
    a.dispose();
    b.dispose();
  }
}

/** The model's Linear shapes at batch 1, as plain 2-D matmuls: the ceiling is the best of them. */
function linearMatmuls(cfg: ModelConfig, seqLen: number): MatmulResult[] {
  const v = cfg.vision;
  const t = cfg.text;
  const P = (cfg.regression.imageSize / v.patchSize) ** 2;
  return [
    measureMatmul('vision fc1', [P, v.hiddenSize], [v.hiddenSize, v.intermediateSize], false, false, 1),
    measureMatmul('vision q/k/v/out', [P, v.hiddenSize], [v.hiddenSize, v.hiddenSize], false, false, 2),
    measureMatmul('decoder gate/up', [seqLen, t.hiddenSize], [t.hiddenSize, t.intermediateSize], false, false, 3),
  ];
}

const best = (ms: MatmulResult[]) => Math.max(...ms.map((m) => m.gmacPerSecond));

/** The ceiling, and the other product forms the model issues (batched, transposed). */
function matmulCeiling(cfg: ModelConfig, seqLen: number): BenchReport['ceiling'] {
  const v = cfg.vision;
  const t = cfg.text;
  const P = (cfg.regression.imageSize / v.patchSize) ** 2;
  const hd = v.hiddenSize / v.numHeads;
  const kv = t.numKvHeads;
  const g = t.numHeads / kv;
  const L = seqLen;
  let seed = 4;
  const linear = linearMatmuls(cfg, seqLen);
  const other = [
    measureMatmul('vision attention QKᵀ', [v.numHeads, P, hd], [v.numHeads, P, hd], false, true, seed++),
    measureMatmul('decoder attention QKᵀ (GQA)', [kv, g * L, t.headDim], [kv, L, t.headDim], false, true, seed++),
    measureMatmul('backward dx = dy·Wᵀ (gate/up)', [L, t.intermediateSize], [t.hiddenSize, t.intermediateSize], false, true, seed++),
    measureMatmul('backward dW = xᵀ·dy (gate/up)', [L, t.hiddenSize], [L, t.intermediateSize], true, false, seed++),
  ];
  return { gmacPerSecond: best(linear), linear, other, samples: [best(linear)] };
}

/** Bytes of the weights XNNPACK keeps a packed copy of on wasm (every Linear and Conv weight). */
function packedWeightBytes(model: SmolVLMRegressor, released: boolean): number {
  let n = 0;
  for (const p of model.namedParameters()) {
    if (released && (p.name.startsWith(`${VISION_PREFIX}.`) || p.name.startsWith(`${CONNECTOR_PREFIX}.`))) continue;
    const gathered = p.name.endsWith('embed_tokens.weight') || p.name.endsWith('position_embedding.weight');
    if (p.shape.length >= 2 && !gathered) n += 4 * p.shape.reduce((a, b) => a * b, 1);
  }
  return n;
}

/**
 * Frees the frozen vision tower and connector (a training step from cached features does not use
 * them, and a feature-cache trainer would not load them). The model cannot encode images after.
 */
function releaseFrozenWeights(model: SmolVLMRegressor): void {
  const seen = new Set<object>();
  const walk = (o: unknown): void => {
    if (o === null || typeof o !== 'object' || seen.has(o)) return;
    seen.add(o);
    if (o instanceof Param) o.dispose();
    else for (const v of Object.values(o)) walk(v);
  };
  walk(model.visionModel);
  walk(model.connector);
}

const rate = (macs: { linearConv: number; all: number }, count: number, seconds: number): Rate => ({
  linearConv: (macs.linearConv * count) / seconds / 1e9,
  all: (macs.all * count) / seconds / 1e9,
});
const ratio = (r: Rate, ceiling: number): Rate => ({ linearConv: r.linearConv / ceiling, all: r.all / ceiling });

interface Budget {
  basis: string;
  /** Recomputes the budget after the frozen weights were released. */
  afterRelease(): void;
}

function setUpBudget(backend: BackendInfo, meter: MemoryMeter | null, model: SmolVLMRegressor): Budget {
  if (meter === null) return { basis: 'not metered (tfjs-node allocates natively)', afterRelease: () => undefined };
  if (backend.name === 'wasm') {
    const set = (released: boolean) => {
      meter.budget = WASM_HEAP_MAX_BYTES - packedWeightBytes(model, released) - WASM_RESERVE_BYTES;
    };
    set(false);
    const packed = packedWeightBytes(model, false);
    return {
      basis: `metered tensors ≤ wasm heap limit ${formatBytes(WASM_HEAP_MAX_BYTES)} − XNNPACK-packed weight copies ${formatBytes(packed)} − reserve ${formatBytes(WASM_RESERVE_BYTES)}`,
      afterRelease: () => set(true),
    };
  }
  meter.budget = meter.live + CPU_MEMORY_SHARE * os.freemem();
  return { basis: `metered tensors ≤ ${CPU_MEMORY_SHARE * 100}% of free system memory at start`, afterRelease: () => undefined };
}

function memoryNote(e: unknown): string {
  return e instanceof MemoryBudgetError ? e.message : String(e);
}

export async function runBench(opts: BenchOptions, log: Logger = silentLogger): Promise<BenchReport> {
  const preset = opts.preset ?? 'smolvlm2-256m';
  const batches = opts.batches ?? [...DEFAULT_BATCHES];
  const repeats = opts.repeats ?? DEFAULT_REPEATS;
  const trainBatch = opts.trainBatch ?? DEFAULT_TRAIN_BATCH;
  const textTokens = opts.textTokens ?? DEFAULT_TEXT_TOKENS;
  positiveInt('repeats', repeats);
  positiveInt('trainBatch', trainBatch);
  batches.forEach((b) => positiveInt('batch', b));
  if (!Number.isInteger(textTokens) || textTokens < 0) throw new UsageError(`--text-tokens must be an integer ≥ 0, got ${textTokens}`);
  const cfg = presetConfig(preset);
  const macs: MacCounts = countMacs(cfg, { textTokens });
  if (macs.seqLen > cfg.text.maxPositionEmbeddings) {
    throw new UsageError(`sequence length ${macs.seqLen} exceeds max_position_embeddings ${cfg.text.maxPositionEmbeddings}`);
  }

  const backend = await initBackend(opts.backend ?? 'auto');
  log.info(`backend ${describeBackend(backend)}`);
  const numTensors = tf.memory().numTensors;
  const meter = MemoryMeter.install();
  const owned: tf.Tensor[] = [];
  let model: SmolVLMRegressor | null = null;
  const notes: string[] = [];
  try {
    log.info(`building ${preset} (random init, seed ${INIT_SEED})`);
    const t0 = now();
    model = SmolVLMRegressor.fromSeed(cfg, INIT_SEED);
    const buildSeconds = now() - t0;
    const budget = setUpBudget(backend, meter, model);
    const params = countParameters(cfg);

    log.info('matmul ceiling');
    const ceiling = matmulCeiling(cfg, macs.seqLen);
    log.info(`matmul ceiling ${ceiling.gmacPerSecond.toFixed(2)} GMAC/s`);

    // Profiled warm-up on one image: per-item memory and time by kernel; also packs the weights.
    log.info('profiled warm-up on one image');
    const [probeImage] = syntheticImages(cfg, 1, 1);
    const probeInputs = syntheticInputs(cfg, 1, textTokens, 1);
    owned.push(probeImage);
    const m = model;
    let visionPerImage: number | null = null;
    let decoderPerRow: number | null = null;
    let features: tf.Tensor3D | null = null;
    let kernels: KernelShare[] = [];
    let profileWallSeconds: number | null = null;
    let trainBudget: number | null = null;
    const sampleCeiling = () => {
      const c = best(linearMatmuls(cfg, macs.seqLen));
      ceiling.samples.push(c);
      return c;
    };
    /** Runs a timed section between two ceiling samples; returns their mean with the result. */
    const bracketed = async <T>(f: () => Promise<T>): Promise<{ result: T; ceiling: number }> => {
      const before = sampleCeiling();
      const result = await f();
      return { result, ceiling: (before + sampleCeiling()) / 2 };
    };
    try {
      const w0 = now();
      const enc = await profiled(() => (meter ? meter.measure(() => m.encodeImages(probeImage)) : { result: m.encodeImages(probeImage), peak: null }));
      features = enc.result.result;
      owned.push(features);
      visionPerImage = enc.result.peak;
      const feats = features;
      const dec = await profiled(() =>
        meter
          ? meter.measure(() => {
              const out = m.forward({ imageFeatures: feats, ...probeInputs });
              out.rating.dataSync();
              tf.dispose([out.pooled, out.logit, out.rating]);
            }).peak
          : null,
      );
      decoderPerRow = dec.result;
      profileWallSeconds = now() - w0;
      kernels = kernelShares([...enc.kernels, ...dec.kernels]);
    } catch (e) {
      if (!(e instanceof MemoryBudgetError)) throw e;
      notes.push(`one image does not fit: ${e.message}`);
    }

    const forward: ForwardResult[] = [];
    const fwdMacs = { linearConv: macs.linearConv.total, all: macs.all.total };
    for (const B of batches) {
      if (features === null) {
        forward.push(skipped(B, repeats, 'one image does not fit'));
        continue;
      }
      const { result: row, ceiling: c } = await bracketed(() => benchForward(m, cfg, B, textTokens, repeats, fwdMacs, meter, visionPerImage, decoderPerRow, log));
      forward.push(row.gmacPerSecond ? { ...row, ceilingGmacPerSecond: c, ratioToCeiling: ratio(row.gmacPerSecond, c) } : row);
    }

    const forwardBudget = meter?.budget ?? null;
    let train: TrainResult | null = null;
    if (!opts.skipTrain && features !== null) {
      const cached = features;
      const { result: t, ceiling: c } = await bracketed(() => {
        // After the ceiling sample: the step needs large contiguous blocks (the embedding
        // gradient is 108 MiB), best taken from the space the frozen weights leave.
        releaseFrozenWeights(m);
        budget.afterRelease();
        trainBudget = meter?.budget ?? null;
        return benchTrain(m, cfg, cached, trainBatch, textTokens, repeats, macs, log);
      });
      train = t.gmacPerSecond ? { ...t, ceilingGmacPerSecond: c, ratioToCeiling: ratio(t.gmacPerSecond, c) } : t;
      notes.push('training step: the vision tower and connector weights were released first (their output is cached), as a feature-cache trainer would');
    }

    return {
      backend: { ...backend, description: describeBackend(backend) },
      model: { preset, seed: INIT_SEED, parameters: params.total, trainable: params.trainable, buildSeconds },
      sequence: { imageSize: macs.imageSize, imageTokens: macs.imageTokens, blockTokens: IMAGE_BLOCK_TOKENS, textTokens: macs.textTokens, seqLen: macs.seqLen },
      macsPerImage: fwdMacs,
      memory: { budget: forwardBudget, trainBudget, basis: budget.basis, visionPerImage, decoderPerRow },
      ceiling,
      kernels,
      profileWallSeconds,
      forward,
      train,
      notes,
    };
  } finally {
    tf.dispose(owned);
    model?.dispose();
    meter?.uninstall();
    const leaked = tf.memory().numTensors - numTensors;
    if (leaked !== 0) log.warn(`bench: ${leaked} tensors left after the run`);
  }
}

function skipped(batch: number, repeats: number, note: string): ForwardResult {
  return { batch, mode: 'skipped', note, repeats, seconds: [], ceilingGmacPerSecond: null, secondsPerBatch: null, secondsPerImage: null, gmacPerSecond: null, ratioToCeiling: null };
}

async function benchForward(
  model: SmolVLMRegressor,
  cfg: ModelConfig,
  B: number,
  textTokens: number,
  repeats: number,
  fwdMacs: { linearConv: number; all: number },
  meter: MemoryMeter | null,
  visionPerImage: number | null,
  decoderPerRow: number | null,
  log: Logger,
): Promise<ForwardResult> {
  const images = syntheticImages(cfg, B, 100 + B);
  const inputs = syntheticInputs(cfg, B, textTokens, 100 + B);
  const pixels = tf.concat(images, 0) as tf.Tensor4D; // [B, S, S, 3]
  try {
    // Plan from the one-image footprints: forward keeps the vision tower's intermediates of
    // every image until its tidy ends, the staged form only one image's at a time.
    let mode: 'forward' | 'staged' = 'forward';
    let note: string | null = null;
    if (meter?.budget !== undefined && visionPerImage !== null && decoderPerRow !== null) {
      const free = meter.budget - meter.live;
      const oneCall = B * (visionPerImage + decoderPerRow);
      const staged = Math.max(visionPerImage, B * decoderPerRow);
      if (oneCall > free) {
        if (staged > free) return skipped(B, repeats, `does not fit: needs ≈ ${formatBytes(staged)} even staged, ${formatBytes(free)} free`);
        mode = 'staged';
        note = `one-call forward needs ≈ ${formatBytes(oneCall)} (vision ${formatBytes(visionPerImage)} per image held to the end of forward's tidy), ${formatBytes(free)} free`;
      }
    }
    const oneCall = () => {
      const out = model.forward({ pixels, ...inputs });
      out.rating.dataSync();
      tf.dispose([out.pooled, out.logit, out.rating]);
    };
    const stagedCall = () => {
      const feats: tf.Tensor[] = [];
      try {
        for (const img of images) feats.push(model.encodeImages(img));
        feats.push(tf.concat(feats, 0)); // [B, N, D]
        const out = model.forward({ imageFeatures: feats[feats.length - 1] as tf.Tensor3D, ...inputs });
        out.rating.dataSync();
        tf.dispose([out.pooled, out.logit, out.rating]);
      } finally {
        tf.dispose(feats);
      }
    };
    let seconds: number[];
    log.info(`forward batch ${B} (${mode}), ${repeats} runs after a warm-up`);
    try {
      seconds = timeRuns(repeats, mode === 'forward' ? oneCall : stagedCall);
    } catch (e) {
      if (!(e instanceof MemoryBudgetError)) throw e;
      if (mode === 'staged') return skipped(B, repeats, `does not fit: ${e.message}`);
      mode = 'staged';
      note = `one-call forward ran out of memory (${e.message})`;
      log.info(`forward batch ${B}: ${note}; staged instead`);
      try {
        seconds = timeRuns(repeats, stagedCall);
      } catch (e2) {
        if (!(e2 instanceof MemoryBudgetError)) throw e2;
        return skipped(B, repeats, `does not fit: ${e2.message}`);
      }
    }
    const perBatch = median(seconds);
    const gmac = rate(fwdMacs, B, perBatch);
    log.info(`forward batch ${B} (${mode}): ${(perBatch / B).toFixed(3)} s/image, ${gmac.linearConv.toFixed(2)} GMAC/s Linear/Conv`);
    return { batch: B, mode, note, repeats, seconds, ceilingGmacPerSecond: null, secondsPerBatch: perBatch, secondsPerImage: perBatch / B, gmacPerSecond: gmac, ratioToCeiling: null };
  } finally {
    tf.dispose([...images, pixels]);
  }
}

async function benchTrain(
  model: SmolVLMRegressor,
  cfg: ModelConfig,
  probeFeatures: tf.Tensor3D,
  B: number,
  textTokens: number,
  repeats: number,
  macs: MacCounts,
  log: Logger,
): Promise<TrainResult> {
  const forwardMacsPerSample = { linearConv: macs.linearConv.decoder + macs.linearConv.head, all: macs.all.decoder + macs.all.head };
  const base: TrainResult = {
    batch: B,
    fits: true,
    note: null,
    repeats,
    seconds: [],
    secondsPerStep: null,
    samplesPerSecond: null,
    forwardMacsPerSample,
    gmacPerSecond: null,
    ceilingGmacPerSecond: null,
    ratioToCeiling: null,
    kernels: [],
    profileWallSeconds: null,
  };
  // The cached features of the probe image, one copy per row: the work does not depend on the values.
  const features = tf.tile(probeFeatures, [B, 1, 1]) as tf.Tensor3D;
  const inputs = syntheticInputs(cfg, B, textTokens, 200 + B);
  const rng = new Rng(0, 'bench', 'targets');
  const targets = tf.tensor1d(Array.from({ length: B }, () => 1 + 4 * rng.next()));
  let step = 0;
  const trainStep = () => {
    const { grads } = model.lossAndGrads({ imageFeatures: features, ...inputs }, targets, { dropoutSeed: step++ });
    tf.dispose([...grads.values()]);
  };
  try {
    log.info(`training step batch ${B}: profiled warm-up, then ${repeats} runs`);
    const w0 = now();
    const warm = await profiled(trainStep);
    const profileWallSeconds = now() - w0;
    const seconds: number[] = [];
    for (let r = 0; r < repeats; r++) {
      const t0 = now();
      trainStep();
      seconds.push(now() - t0);
    }
    const perStep = median(seconds);
    log.info(`training step batch ${B}: ${perStep.toFixed(3)} s/step`);
    const gmac = rate({ linearConv: 3 * forwardMacsPerSample.linearConv, all: 3 * forwardMacsPerSample.all }, B, perStep);
    return { ...base, seconds, secondsPerStep: perStep, samplesPerSecond: B / perStep, gmacPerSecond: gmac, kernels: kernelShares(warm.kernels), profileWallSeconds };
  } catch (e) {
    if (!(e instanceof MemoryBudgetError)) throw e;
    return { ...base, fits: false, note: `does not fit: ${memoryNote(e)}` };
  } finally {
    tf.dispose([features, targets]);
  }
}

// ---------------------------------------------------------------------------------------------
// Output

const fixed = (n: number | null | undefined, d = 2) => (n === null || n === undefined ? '—' : n.toFixed(d));
const gmacs = (n: number) => `${(n / 1e9).toFixed(3)} G`;

function table(rows: string[][], indent = '  '): string[] {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => indent + r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('   ').trimEnd());
}

function kernelTable(ks: KernelShare[]): string[] {
  return table([['kernel', 's', 'share'], ...ks.map((k) => [k.kernel, k.seconds.toFixed(2), `${(100 * k.share).toFixed(1)}%`])]);
}

function formatBench(r: BenchReport): string {
  const out: string[] = [];
  const s = r.sequence;
  out.push(`smolrate-model bench — backend ${r.backend.description}`);
  out.push(`Model: preset ${r.model.preset}, random init (seed ${r.model.seed}), ${r.model.parameters.toLocaleString('en-US')} parameters, built in ${r.model.buildSeconds.toFixed(1)} s`);
  out.push(`Sequence: ${s.imageSize}², ${s.imageTokens} image + ${s.blockTokens} block + ${s.textTokens} text tokens = L ${s.seqLen}`);
  out.push(`MACs per image (forward, batch 1): ${gmacs(r.macsPerImage.linearConv)} Linear/Conv only (paper, CES); ${gmacs(r.macsPerImage.all)} all (+ attention QKᵀ, AV)`);
  const mem = r.memory;
  out.push(`Memory budget: ${mem.budget === null ? 'none' : formatBytes(mem.budget)} (${mem.basis})${mem.trainBudget === null ? '' : `; ${formatBytes(mem.trainBudget)} for the training step`}`);
  if (mem.visionPerImage !== null) out.push(`  per item (metered peaks): vision tower ${formatBytes(mem.visionPerImage)} per image, decoder ${formatBytes(mem.decoderPerRow ?? 0)} per row`);

  const c = r.ceiling;
  out.push('', 'Matmul ceiling (same backend, this run; warm-up excluded)');
  const row = (m: MatmulResult, indent = '') => [indent + m.label, m.shape, m.gmacPerSecond.toFixed(2), (1000 * m.secondsPerCall).toFixed(1)];
  const rows = table([['product', 'shape', 'GMAC/s', 'ms/call'], ...c.linear.map((m) => row(m)), ['ceiling = best of the above', '', c.gmacPerSecond.toFixed(2), ''], ...c.other.map((m) => row(m, '  '))]);
  out.push(...rows.slice(0, c.linear.length + 2), '  other product forms the model issues (not in the ceiling):', ...rows.slice(c.linear.length + 2));
  out.push(`  ceiling samples over the run (before and after each timed section): ${c.samples.map((x) => x.toFixed(2)).join(', ')} GMAC/s`);

  out.push('', `Forward, pixels → rating (median of ${r.forward[0]?.repeats ?? 0} runs after 1 warm-up)`);
  out.push(
    ...table([
      ['batch', 'mode', 's/batch', 's/image', 'ceiling', 'GMAC/s Linear/Conv', 'ratio', 'GMAC/s all', 'ratio'],
      ...r.forward.map((f) => [
        String(f.batch),
        f.mode,
        fixed(f.secondsPerBatch),
        fixed(f.secondsPerImage),
        fixed(f.ceilingGmacPerSecond),
        fixed(f.gmacPerSecond?.linearConv),
        fixed(f.ratioToCeiling?.linearConv, 3),
        fixed(f.gmacPerSecond?.all),
        fixed(f.ratioToCeiling?.all, 3),
      ]),
    ]),
  );
  for (const f of r.forward) if (f.note) out.push(`  batch ${f.batch}: ${f.note}`);
  if (r.forward.some((f) => f.mode === 'staged')) {
    out.push('  staged = encodeImages one image at a time, then forward from the features (same MACs)');
  }
  out.push('  ratio = achieved GMAC/s ÷ ceiling (GMAC/s; mean of the samples right before and after the row)');

  if (r.kernels.length > 0) {
    const inKernels = r.kernels.reduce((p, k) => p + k.seconds, 0);
    const wall = r.profileWallSeconds === null ? '' : `: ${inKernels.toFixed(2)} s in kernels of ${r.profileWallSeconds.toFixed(2)} s wall`;
    out.push('', `Time by kernel, profiled one-image warm-up (vision tower + decoder)${wall}`);
    out.push(...kernelTable(r.kernels));
  }

  const t = r.train;
  if (t) {
    out.push('', `Decoder-only training step (forward + backward from cached image features), batch ${t.batch}`);
    if (!t.fits) out.push(`  ${t.note}`);
    else {
      out.push(`  median of ${t.repeats} steps after 1 warm-up: ${fixed(t.secondsPerStep)} s/step, ${fixed(t.samplesPerSecond, 4)} samples/s`);
      out.push(`  forward MACs per sample (decoder + head): ${gmacs(t.forwardMacsPerSample.linearConv)} Linear/Conv, ${gmacs(t.forwardMacsPerSample.all)} all`);
      out.push(
        `  estimated 3 × forward MACs for forward + backward: ${fixed(t.gmacPerSecond?.linearConv)} GMAC/s Linear/Conv (ratio ${fixed(t.ratioToCeiling?.linearConv, 3)}),` +
          ` ${fixed(t.gmacPerSecond?.all)} GMAC/s all (ratio ${fixed(t.ratioToCeiling?.all, 3)}); ceiling ${fixed(t.ceilingGmacPerSecond)} GMAC/s`,
      );
      const inKernels = t.kernels.reduce((p, k) => p + k.seconds, 0);
      out.push(`  time by kernel, profiled warm-up step: ${inKernels.toFixed(2)} s in kernels of ${fixed(t.profileWallSeconds)} s wall`);
      out.push(...kernelTable(t.kernels).map((l) => `  ${l}`));
    }
  }
  if (r.notes.length > 0) out.push('', ...r.notes.map((n) => `Note: ${n}`));
  return out.join('\n') + '\n';
}

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, ['json', 'skipTrain']);
  const unknown = Object.keys(args.flags).filter((k) => !KNOWN_FLAGS.includes(k));
  if (unknown.length > 0) throw new UsageError(`unknown option${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `--${kebab(k)}`).join(', ')} (see --help)`);
  if (args.positionals.length > 0) throw new UsageError(`unexpected argument "${args.positionals[0]}" (see --help)`);
  if (args.flags.batch !== undefined && args.flags.batches !== undefined) throw new UsageError('give --batch or --batches, not both');
  const batch = flagString(args, 'batch') ?? flagString(args, 'batches');
  const opts: BenchOptions = {
    backend: parseBackendChoice(flagString(args, 'backend', 'auto')!),
    preset: flagString(args, 'preset'),
    batches: batch === undefined ? undefined : parseBatchList(batch),
    textTokens: flagNumber(args, 'textTokens'),
    repeats: flagNumber(args, 'repeats'),
    trainBatch: flagNumber(args, 'trainBatch'),
    skipTrain: flagBool(args, 'skipTrain'),
  };
  const report = await runBench(opts, createLogger({ name: 'bench' }));
  process.stdout.write(flagBool(args, 'json') ? JSON.stringify(report, null, 2) + '\n' : formatBench(report));
  return 0;
}

/**
 * Batched inference from pixels: for each batch, decoded RGB images → pixelBatchTensor
 * (x/127.5 − 1, model pixels.ts) → forward({ pixels, tokens }) (which runs the
 * frozen encodeImages and the decoder) → ratings. Images are decoded by the caller (core's
 * decodeImage) so that this file sees no image codec.
 *
 * Throughput counts only the model's work (tensor creation + forward + reading the ratings),
 * per batch, so decoding and I/O do not dilute it; the end-to-end rate is reported beside it.
 */
import * as tf from '@tensorflow/tfjs-core';
import { CheckpointError, ConfigError } from '@smolrate/core';
import { encodeBatch, loadModelDir, pixelBatchTensor, type ModelConfig, type PromptItem, type SmolVLMRegressor, type TextTokenizer } from '@smolrate/model';

export interface LoadedPredictor {
  dir: string;
  model: SmolVLMRegressor;
  config: ModelConfig;
  tokenizer: TextTokenizer;
}

/** Loads a checkpoint folder for inference: the regression head and the tokenizer must be present. */
export async function loadPredictor(dir: string): Promise<LoadedPredictor> {
  const loaded = await loadModelDir(dir, { requireHead: true, keepLmHead: false });
  if (!loaded.tokenizer) throw new CheckpointError(`${dir} has no tokenizer.json: inference needs one`);
  return { dir, model: loaded.model, config: loaded.config, tokenizer: loaded.tokenizer };
}

export interface PredictInput {
  prompt: PromptItem;
  /** size × size × 3 RGB at the model's image size. */
  rgb: Uint8Array;
}

export interface Throughput {
  /** Images per second of model work (forward from pixels, batched). */
  imagesPerSecond: number;
  /** Including the caller's decoding and reading, when measured by runBatches. */
  endToEndImagesPerSecond?: number;
  batchSize: number;
  items: number;
  /** Seconds of model work. */
  modelSeconds: number;
  backend: string;
}

/** Ratings of one batch; records the model time in `timer`. */
export function predictBatch(p: LoadedPredictor, batch: readonly PredictInput[], timer?: { seconds: number }): Float32Array {
  if (batch.length === 0) return new Float32Array(0);
  const size = p.config.regression.imageSize;
  const t0 = performance.now();
  const tokens = encodeBatch(p.tokenizer, p.config, batch.map((b) => b.prompt));
  const pixels = pixelBatchTensor(batch.map((b) => b.rgb), size); // [B, S, S, 3]
  try {
    const out = p.model.forward({ pixels, tokens });
    try {
      const ratings = out.rating.dataSync() as Float32Array; // [B]
      return Float32Array.from(ratings);
    } finally {
      tf.dispose([out.pooled, out.logit, out.rating]);
    }
  } finally {
    pixels.dispose();
    if (timer) timer.seconds += (performance.now() - t0) / 1000;
  }
}

/**
 * Runs `load(i)` for each of `count` items, `batchSize` at a time, and returns all ratings in
 * order with the throughput. `onBatch` reports progress.
 */
export async function predictAll(
  p: LoadedPredictor,
  count: number,
  load: (index: number) => Promise<PredictInput>,
  options: { batchSize: number; backend: string; onBatch?: (done: number) => void },
): Promise<{ ratings: Float32Array; throughput: Throughput }> {
  const { batchSize } = options;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new ConfigError(`--batch must be a positive integer, got ${batchSize}`);
  const ratings = new Float32Array(count);
  const timer = { seconds: 0 };
  const start = performance.now();
  for (let i = 0; i < count; i += batchSize) {
    const idx = Array.from({ length: Math.min(batchSize, count - i) }, (_, k) => i + k);
    const batch = await Promise.all(idx.map((j) => load(j)));
    ratings.set(predictBatch(p, batch, timer), i);
    options.onBatch?.(i + idx.length);
  }
  const total = (performance.now() - start) / 1000;
  return {
    ratings,
    throughput: {
      imagesPerSecond: timer.seconds > 0 ? count / timer.seconds : 0,
      endToEndImagesPerSecond: total > 0 ? count / total : 0,
      batchSize,
      items: count,
      modelSeconds: timer.seconds,
      backend: options.backend,
    },
  };
}

/**
 * Fills the feature cache before training (the frozen vision encoder + connector run once per
 * image, not once per sample per epoch). The work is spread over the ranks by sample: rank r
 * takes the samples whose global index i has i mod W = r, and computes the features of their
 * images that are not cached yet — each distinct image (by SHA-256 of its JPEG bytes) once per
 * call, however many samples share it. Run by every rank, followed by a barrier (the caller's),
 * after which every rank can read every feature.
 *
 * An image shared by samples of different ranks is computed by whichever rank gets to it first;
 * ranks running at the same moment may both compute it, which costs time but never correctness
 * (identical bytes, atomic writes). A rerun, or a second run with the same backbone, finds
 * everything cached and only scans.
 *
 * Pipelining: the next batch's JPEGs are decoded (sharp, on libuv's thread pool) while the
 * current batch runs through the encoder on the main thread.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, decodeImage, silentLogger, type Logger } from '@smolrate/core';
import { imageTokenCount, pixelBatchTensor, type SmolVLMRegressor } from '@smolrate/model';
import { backboneHash } from './backbone-hash.js';
import type { FeatureCache } from './feature-cache.js';
import type { ShardDataset } from './shard-dataset.js';

export interface PrecomputeFeaturesOptions {
  model: SmolVLMRegressor;
  dataset: ShardDataset;
  cache: FeatureCache;
  /** This rank. Default 0. */
  rank?: number;
  /** Number of ranks. Default 1. */
  worldSize?: number;
  /** Images per encoder call. Default 8. */
  batchSize?: number;
  log?: Logger;
  /** Called after each encoded batch and after each shard scanned. */
  onProgress?: (progress: PrecomputeProgress) => void;
}

export interface PrecomputeProgress {
  /** Samples of this rank (global index mod W = rank). */
  samplesTotal: number;
  /** Of those, looked at so far. */
  samplesScanned: number;
  /** Distinct images among the scanned samples. */
  uniqueImages: number;
  /** Distinct images found already cached (by an earlier run or another rank). */
  alreadyCached: number;
  /** Distinct images encoded and stored by this call. */
  computed: number;
}

export interface PrecomputeReport extends PrecomputeProgress {
  seconds: number;
}

interface Pending {
  hash: string;
  image: Buffer;
}

function checkRankOptions(rank: number, worldSize: number, batchSize: number): void {
  if (!Number.isSafeInteger(worldSize) || worldSize < 1) throw new ConfigError(`precomputeFeatures: worldSize must be a positive integer, got ${worldSize}`);
  if (!Number.isSafeInteger(rank) || rank < 0 || rank >= worldSize) throw new ConfigError(`precomputeFeatures: rank must be in [0, ${worldSize}), got ${rank}`);
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new ConfigError(`precomputeFeatures: batchSize must be a positive integer, got ${batchSize}`);
}

/** Computes and stores the features of this rank's uncached images. */
export async function precomputeFeatures(options: PrecomputeFeaturesOptions): Promise<PrecomputeReport> {
  const { model, dataset, cache } = options;
  const rank = options.rank ?? 0;
  const worldSize = options.worldSize ?? 1;
  const batchSize = options.batchSize ?? 8;
  const log = options.log ?? silentLogger;
  checkRankOptions(rank, worldSize, batchSize);

  const tokens = imageTokenCount(model.config);
  const dim = model.config.text.hiddenSize;
  if (cache.tokens !== tokens || cache.dim !== dim) {
    throw new ConfigError(`feature cache entries are [${cache.tokens}, ${cache.dim}] but the model produces [${tokens}, ${dim}]`);
  }
  const hash = await backboneHash(model);
  if (cache.backboneHash !== hash) throw new ConfigError(`feature cache is for backbone ${cache.backboneHash}, the model's backbone is ${hash}`);

  const size = model.config.regression.imageSize;
  const entry = tokens * dim;
  const t0 = performance.now();
  const progress: PrecomputeProgress = {
    samplesTotal: Math.max(0, Math.ceil((dataset.numSamples - rank) / worldSize)),
    samplesScanned: 0,
    uniqueImages: 0,
    alreadyCached: 0,
    computed: 0,
  };
  const report = () => options.onProgress?.({ ...progress });
  log.info('precomputing image features', { rank, worldSize, samples: progress.samplesTotal, backbone: hash.slice(0, 12) });

  const seen = new Set<string>();
  async function* pendingBatches(): AsyncGenerator<Pending[], void, undefined> {
    let pending: Pending[] = [];
    for (let s = 0; s < dataset.shards.length; s++) {
      const { start, end } = dataset.shardRange(s);
      const first = start + ((((rank - start) % worldSize) + worldSize) % worldSize); // first index ≥ start with i mod W = rank
      if (first >= end) continue;
      const shard = await dataset.shard(s);
      for (let g = first; g < end; g += worldSize) {
        progress.samplesScanned++;
        const h = shard.meta[g - start].imageSha256;
        if (seen.has(h)) continue;
        seen.add(h);
        progress.uniqueImages++;
        if (await cache.has(h)) {
          progress.alreadyCached++;
          continue;
        }
        pending.push({ hash: h, image: shard.rows[g - start].image });
        if (pending.length === batchSize) {
          yield pending;
          pending = [];
        }
      }
      report();
    }
    if (pending.length > 0) yield pending;
  }

  const decode = (batch: Pending[]): Promise<Uint8Array[]> => {
    const p = Promise.all(batch.map(async (item) => (await decodeImage(item.image, { size })).data));
    p.catch(() => undefined); // awaited later; a failure surfaces there, not as an unhandled rejection
    return p;
  };

  const batches = pendingBatches();
  try {
    let current = await batches.next();
    let pixels = current.done ? null : decode(current.value);
    while (!current.done) {
      const rgb = await pixels!;
      const next = await batches.next();
      pixels = next.done ? null : decode(next.value); // decoded while this batch is encoded
      const features = tf.tidy(() => model.encodeImages(pixelBatchTensor(rgb, size))); // [B, N, D]
      let data: Float32Array;
      try {
        data = (await features.data()) as Float32Array;
      } finally {
        features.dispose();
      }
      await Promise.all(current.value.map((item, i) => cache.put(item.hash, data.subarray(i * entry, (i + 1) * entry))));
      progress.computed += current.value.length;
      report();
      current = next;
    }
  } finally {
    await batches.return(undefined);
  }

  const seconds = (performance.now() - t0) / 1000;
  log.info('image features ready', { ...progress, seconds: Number(seconds.toFixed(2)) });
  return { ...progress, seconds };
}

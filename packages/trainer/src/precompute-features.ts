/**
 * Fills the packed feature cache (feature-cache.ts) before training: the frozen vision encoder +
 * connector run once per image, not once per sample per epoch. The work is split by **shard**:
 * rank r takes the shards s with s mod W = r, so every file has exactly one writer. Run by every
 * rank, followed by a barrier (the caller's), after which every rank can read every file.
 *
 * A shard whose file is present is verified in full (header, size, every entry's crc32, the
 * SHA-256 sidecar) and skipped when good; a bad one (truncated, corrupted, another backbone or
 * dtype, an interrupted write) is logged with its name and the reason, and rebuilt. Within a
 * shard, rows sharing an image are encoded once; each row still gets its own entry.
 *
 * The old per-image layout (`<backbone>/<xx>/<imageHash>.f32`) is never read: if rank 0 finds
 * one, it says so once and everything is computed in the packed layout.
 *
 * Pipelining: the next batch's JPEGs are decoded (sharp, on libuv's thread pool) while the
 * current batch runs through the encoder on the main thread.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, decodeImage, silentLogger, type Logger } from '@smolrate/core';
import { imageTokenCount, pixelBatchTensor, type SmolVLMRegressor } from '@smolrate/model';
import { backboneHash } from './backbone-hash.js';
import type { FeatureCache, FeatureFileWriter } from './feature-cache.js';
import { imageSha256, type ShardDataset } from './shard-dataset.js';

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
  /** Called after each encoded batch and after each shard. */
  onProgress?: (progress: PrecomputeProgress) => void;
}

export interface PrecomputeProgress {
  /** Shards of this rank (shard position mod W = rank). */
  shardsTotal: number;
  /** Of those, done (verified good or written). */
  shardsDone: number;
  /** Shards whose file was present and verified good (skipped). */
  alreadyCached: number;
  /** Shards whose file was present but bad, and rebuilt. */
  rebuilt: number;
  /** Distinct images (per shard) encoded by this call. */
  computed: number;
}

export interface PrecomputeReport extends PrecomputeProgress {
  seconds: number;
}

interface Pending {
  hash: string;
  image: Buffer;
  /** The shard rows that get this image's features. */
  rows: number[];
}

function checkRankOptions(rank: number, worldSize: number, batchSize: number): void {
  if (!Number.isSafeInteger(worldSize) || worldSize < 1) throw new ConfigError(`precomputeFeatures: worldSize must be a positive integer, got ${worldSize}`);
  if (!Number.isSafeInteger(rank) || rank < 0 || rank >= worldSize) throw new ConfigError(`precomputeFeatures: rank must be in [0, ${worldSize}), got ${rank}`);
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new ConfigError(`precomputeFeatures: batchSize must be a positive integer, got ${batchSize}`);
}

const OLD_LAYOUT_FILE = /^[0-9a-f]{2}\/[0-9a-f]{64}\.f32$/;
/** Caches already probed for the old layout (train and val share one: one message per run). */
const probedForOldLayout = new WeakSet<FeatureCache>();

/** The first file of the old per-image layout under the backbone's folder, if any (256 small listings at most). */
async function findOldLayout(cache: FeatureCache): Promise<string | undefined> {
  for (let b = 0; b < 256; b++) {
    const sub = `${cache.backboneHash}/${b.toString(16).padStart(2, '0')}/`;
    const hit = (await cache.store.list(sub)).find((e) => OLD_LAYOUT_FILE.test(e.key.slice(cache.backboneHash.length + 1)));
    if (hit !== undefined) return cache.store.uriOf(hit.key);
  }
  return undefined;
}

/** Verifies this rank's shard files and computes the missing or bad ones. */
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
  const mine = dataset.shards.map((_, s) => s).filter((s) => s % worldSize === rank);
  const progress: PrecomputeProgress = { shardsTotal: mine.length, shardsDone: 0, alreadyCached: 0, rebuilt: 0, computed: 0 };
  const report = () => options.onProgress?.({ ...progress });
  log.info('precomputing image features', { rank, worldSize, split: dataset.split, shards: mine.length, dtype: cache.dtype, backbone: hash.slice(0, 12) });
  if (rank === 0 && !probedForOldLayout.has(cache)) {
    probedForOldLayout.add(cache);
    const old = await findOldLayout(cache);
    if (old !== undefined) log.warn(`old per-image feature cache at ${cache.store.uriOf(cache.backboneHash)} (e.g. ${old}); features are rebuilt in the packed layout; the old files can be deleted`);
  }

  const decode = (batch: Pending[]): Promise<Uint8Array[]> => {
    const p = Promise.all(batch.map(async (item) => (await decodeImage(item.image, { size })).data));
    p.catch(() => undefined); // awaited later; a failure surfaces there, not as an unhandled rejection
    return p;
  };

  for (const s of mine) {
    const info = dataset.shards[s];
    const status = await cache.verify(info);
    if (status.state === 'good') {
      progress.alreadyCached++;
      progress.shardsDone++;
      report();
      continue;
    }
    if (status.state === 'bad') {
      log.warn('feature file is bad; rebuilding it', { shard: info.file, reason: status.reason });
      progress.rebuilt++;
    }

    // Distinct images of the shard, in row order, each with the rows that use it.
    const { rows } = await dataset.shard(s);
    const byImage = new Map<string, Pending>();
    rows.forEach((row, j) => {
      const h = imageSha256(row.image);
      const p = byImage.get(h);
      if (p === undefined) byImage.set(h, { hash: h, image: row.image, rows: [j] });
      else p.rows.push(j);
    });
    const pending = [...byImage.values()];
    const batches = Array.from({ length: Math.ceil(pending.length / batchSize) }, (_, k) => pending.slice(k * batchSize, (k + 1) * batchSize));
    const writer: FeatureFileWriter = cache.writer(info);
    let pixels = batches.length > 0 ? decode(batches[0]) : null;
    for (let k = 0; k < batches.length; k++) {
      const rgb = await pixels!;
      pixels = k + 1 < batches.length ? decode(batches[k + 1]) : null; // decoded while this batch is encoded
      const features = tf.tidy(() => model.encodeImages(pixelBatchTensor(rgb, size))); // [B, N, D]
      let data: Float32Array;
      try {
        data = (await features.data()) as Float32Array;
      } finally {
        features.dispose();
      }
      batches[k].forEach((item, i) => {
        for (const j of item.rows) writer.set(j, item.hash, data.subarray(i * entry, (i + 1) * entry));
      });
      progress.computed += batches[k].length;
      report();
    }
    await cache.put(info.sha256, writer.finish());
    progress.shardsDone++;
    report();
  }

  const seconds = (performance.now() - t0) / 1000;
  log.info('image features ready', { ...progress, seconds: Number(seconds.toFixed(2)) });
  return { ...progress, seconds };
}

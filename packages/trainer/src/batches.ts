/**
 * Turns global sample indices into a model-ready batch: the paper's prompt ids of each row, kept
 * in the split's sample index (sample-index.ts) and right-padded here (model prompt.ts
 * packTokenRows — together the same bytes as encodeBatch on the rows' text), the cached image
 * features of each row (read by its location: shard and row, feature-cache.ts), and the targets.
 * Everything comes back as plain typed arrays; the training loop makes tensors of them inside its
 * tidy, so building a batch never touches tfjs and can run ahead (prefetcher.ts).
 *
 * Prompt fields: title, description, features and — for "Main Category: {category}" — the row's
 * own `main_category` (the store label the paper's template names), falling back to the source
 * file's `category` when the record has none (null or blank): promptItemOf, which the index is
 * built with. The returned `categories` are the source-file categories (the sampling strata), for
 * per-category metrics.
 */
import { ConfigError, DataError } from '@smolrate/core';
import { imageTokenCount, packTokenRows, type ModelConfig, type PromptItem } from '@smolrate/model';
import type { FeatureLocation, FeatureReader } from './feature-cache.js';
import type { SampleIndex } from './sample-index.js';
import type { SampleMeta } from './shard-dataset.js';

export interface BatchBuilderOptions {
  /** The model config (prompt variant, truncation L, image tokens N, hidden size D, pad id). */
  config: ModelConfig;
  /** The split's packed features (FeatureCache.reader(dataset.shards)). */
  cache: FeatureReader;
  /** Shard and row of a global index (ShardDataset.locate). */
  locate: (index: number) => FeatureLocation;
  /** The split's prompt ids, targets and categories, built for this config. */
  index: SampleIndex;
  /** Longest row in tokens: the index's rows are already cut there, so it must be the index's. Default the index's. */
  maxLength?: number;
  /** Pad every batch to maxLength (fixed shapes) instead of to its longest row. Default false. */
  padToMaxLength?: boolean;
}

/** One batch as plain arrays, row-major. */
export interface TrainingBatch {
  batchSize: number;
  seqLen: number;
  /** [B·seqLen] token ids, right-padded with config.text.padTokenId. */
  inputIds: Int32Array;
  /** [B] real tokens (image and text) per row. */
  lengths: Int32Array;
  /** [B·N] positions of each row's `<image>` tokens (model prompt.ts). */
  imagePositions: Int32Array;
  /** N: image tokens per row. */
  imageTokens: number;
  /** D: feature width. */
  featureDim: number;
  /** [B·N·D] cached connector outputs, row b at b·N·D. */
  imageFeatures: Float32Array;
  /** [B] average_rating. */
  targets: Float32Array;
  /** [B] global indices of the rows (dropout seeds use them). */
  globalIndices: Uint32Array;
  /** [B] source-file category of each row. */
  categories: string[];
  /**
   * Hands imageFeatures back to the builder for a later batch (call it once the features are in
   * a tensor and that tensor is disposed; the batch must not be used after). Optional: a batch
   * never released is garbage-collected as usual.
   */
  release(): void;
}

/** Feature buffers a builder keeps for reuse. */
const POOL_SIZE = 8;

/** The prompt fields of a sample (see the file comment for the category rule). */
export function promptItemOf(sample: Pick<SampleMeta, 'title' | 'description' | 'features' | 'main_category' | 'category'>): PromptItem {
  const main = sample.main_category;
  return {
    title: sample.title,
    description: sample.description,
    features: sample.features,
    category: main !== null && main.trim() !== '' ? main : sample.category,
  };
}

export class BatchBuilder {
  private readonly config: ModelConfig;
  private readonly cache: FeatureReader;
  private readonly locate: (index: number) => FeatureLocation;
  private readonly index: SampleIndex;
  private readonly seqLen: number | undefined;
  /** Released feature buffers, reused by later batches of the same size. */
  private readonly pool: Float32Array[] = [];

  constructor(options: BatchBuilderOptions) {
    this.config = options.config;
    this.cache = options.cache;
    this.locate = options.locate;
    this.index = options.index;
    const key = this.index.key;
    const n = imageTokenCount(this.config);
    const d = this.config.text.hiddenSize;
    const maxLength = options.maxLength ?? key.maxLength;
    const wanted = { prompt: this.config.regression.prompt, truncation: this.config.regression.truncation, imageTokens: n, imageTokenId: this.config.imageTokenId, maxLength };
    const differ = (Object.keys(wanted) as Array<keyof typeof wanted>).filter((k) => key[k] !== wanted[k]);
    if (differ.length > 0) {
      const what = differ.map((k) => `${k}: index ${JSON.stringify(key[k])}, builder ${JSON.stringify(wanted[k])}`);
      throw new ConfigError(`batch builder: the ${key.split} sample index was built for other settings (${what.join('; ')})`);
    }
    this.seqLen = options.padToMaxLength ? maxLength : undefined;
    if (this.cache.tokens !== n || this.cache.dim !== d) {
      throw new ConfigError(`batch builder: feature cache entries are [${this.cache.tokens}, ${this.cache.dim}] but the model config needs [${n}, ${d}]`);
    }
  }

  async build(indices: ArrayLike<number>): Promise<TrainingBatch> {
    if (indices.length === 0) throw new DataError('batch builder: empty batch');
    const index = this.index;
    const rows = Array.from(indices, (i) => index.row(i)); // range-checks before the Uint32 copy
    const globalIndices = Uint32Array.from(indices);
    const encoded = packTokenRows(this.config, rows, { seqLen: this.seqLen, imageTokens: this.cache.tokens });

    const size = globalIndices.length * this.cache.tokens * this.cache.dim;
    const k = this.pool.findIndex((b) => b.length === size);
    const buffer = k >= 0 ? this.pool.splice(k, 1)[0] : this.cache.allocateOutput(size);
    const imageFeatures = await this.cache.read(Array.from(globalIndices, (i) => this.locate(i)), buffer);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      if (this.pool.length < POOL_SIZE) this.pool.push(imageFeatures);
    };

    return {
      batchSize: encoded.batchSize,
      seqLen: encoded.seqLen,
      inputIds: encoded.inputIds,
      lengths: encoded.lengths,
      imagePositions: encoded.imagePositions,
      imageTokens: this.cache.tokens,
      featureDim: this.cache.dim,
      imageFeatures,
      targets: Float32Array.from(globalIndices, (i) => index.target(i)),
      globalIndices,
      categories: Array.from(globalIndices, (i) => index.category(i)),
      release,
    };
  }
}

/**
 * Turns global sample indices into a model-ready batch: the paper's prompt tokenised and
 * right-padded (model prompt.ts encodeBatch), the cached image features of each row (read by its
 * location: shard and row, feature-cache.ts), and the targets. Everything comes back as plain
 * typed arrays; the training loop makes tensors of them inside its tidy, so building a batch never
 * touches tfjs and can run ahead (prefetcher.ts).
 *
 * Prompt fields: title, description, features and — for "Main Category: {category}" — the row's
 * own `main_category` (the store label the paper's template names), falling back to the source
 * file's `category` when the record has none (null or blank). The returned `categories` are the
 * source-file categories (the sampling strata), for per-category metrics.
 */
import { ConfigError, DataError } from '@smolrate/core';
import { encodeBatch, imageTokenCount, type ModelConfig, type PromptItem, type TextTokenizer } from '@smolrate/model';
import type { FeatureLocation, FeatureReader } from './feature-cache.js';
import type { SampleMeta } from './shard-dataset.js';

/** Where sample metadata comes from (a ShardDataset). */
export interface SampleSource {
  meta(indices: ArrayLike<number>): Promise<SampleMeta[]>;
}

export interface BatchBuilderOptions {
  tokenizer: TextTokenizer;
  /** The model config (prompt variant, truncation L, image tokens N, hidden size D, pad id). */
  config: ModelConfig;
  /** The split's packed features (FeatureCache.reader(dataset.shards)). */
  cache: FeatureReader;
  /** Shard and row of a global index (ShardDataset.locate). */
  locate: (index: number) => FeatureLocation;
  dataset: SampleSource;
  /** Longest row in tokens; longer rows lose text from the end. Default config.text.maxPositionEmbeddings. */
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
}

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
  private readonly tokenizer: TextTokenizer;
  private readonly config: ModelConfig;
  private readonly cache: FeatureReader;
  private readonly locate: (index: number) => FeatureLocation;
  private readonly dataset: SampleSource;
  private readonly maxLength: number | undefined;
  private readonly padToMaxLength: boolean;

  constructor(options: BatchBuilderOptions) {
    this.tokenizer = options.tokenizer;
    this.config = options.config;
    this.cache = options.cache;
    this.locate = options.locate;
    this.dataset = options.dataset;
    this.maxLength = options.maxLength;
    this.padToMaxLength = options.padToMaxLength ?? false;
    if (this.padToMaxLength && this.maxLength === undefined) throw new ConfigError('batch builder: padToMaxLength needs maxLength');
    const n = imageTokenCount(this.config);
    const d = this.config.text.hiddenSize;
    if (this.cache.tokens !== n || this.cache.dim !== d) {
      throw new ConfigError(`batch builder: feature cache entries are [${this.cache.tokens}, ${this.cache.dim}] but the model config needs [${n}, ${d}]`);
    }
  }

  async build(indices: ArrayLike<number>): Promise<TrainingBatch> {
    if (indices.length === 0) throw new DataError('batch builder: empty batch');
    const samples = await this.dataset.meta(indices);
    const encoded = encodeBatch(this.tokenizer, this.config, samples.map(promptItemOf), { maxLength: this.maxLength, padToMaxLength: this.padToMaxLength });

    const imageFeatures = await this.cache.read(Array.from(indices, (i) => this.locate(i)));

    return {
      batchSize: encoded.batchSize,
      seqLen: encoded.seqLen,
      inputIds: encoded.inputIds,
      lengths: encoded.lengths,
      imagePositions: encoded.imagePositions,
      imageTokens: this.cache.tokens,
      featureDim: this.cache.dim,
      imageFeatures,
      targets: Float32Array.from(samples, (s) => s.average_rating),
      globalIndices: Uint32Array.from(samples, (s) => s.index),
      categories: samples.map((s) => s.category),
    };
  }
}

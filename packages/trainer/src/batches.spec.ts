import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, DataError, openStore, Rng } from '@smolrate/core';
import { encodeBatch, imageTokenCount, initBackend, loadTokenizer, presetConfig, SmolVLMRegressor, TINY_TOKENIZER_URL, type TextTokenizer } from '@smolrate/model';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFixtureShards, type ShardSet } from '@smolrate/core/testing';
import { BatchBuilder, promptItemOf, type TrainingBatch } from './batches.js';
import { FeatureCache, type FeatureReader } from './feature-cache.js';
import { Prefetcher } from './prefetcher.js';
import { buildSampleIndex, type SampleIndex } from './sample-index.js';
import { GlobalSampler } from './sampler.js';
import { imageSha256, ShardDataset } from './shard-dataset.js';

const cfg = presetConfig('tiny');
const N = imageTokenCount(cfg); // 36
const D = cfg.text.hiddenSize; // 64
// Samples 0 and 7 share an image.
const IMAGE_OF = [0, 1, 2, 3, 4, 5, 6, 0, 8];
const BACKBONE = createHash('sha256').update('made-up backbone').digest('hex');

let dir: string;
let tokenizer: TextTokenizer;
let build: ShardSet;
let dataset: ShardDataset;
let cache: FeatureReader;
let tokenizerSha256: string;
let index: SampleIndex;
/** The features stored for each image hash (made up: the builder only moves them). */
const stored = new Map<string, Float32Array>();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'smolrate-batches-'));
  const tokenizerJson = await readFile(TINY_TOKENIZER_URL, 'utf8');
  tokenizer = loadTokenizer(tokenizerJson);
  tokenizerSha256 = createHash('sha256').update(tokenizerJson).digest('hex');
  const store = openStore(join(dir, 'shards'));
  build = await writeFixtureShards(store, { root: 'ds', train: [4, 5], imageOf: (i) => IMAGE_OF[i] });
  dataset = await ShardDataset.open({ store, manifest: build.manifest, split: 'train', root: build.root });
  const packed = new FeatureCache({ dir: join(dir, 'features'), backboneHash: BACKBONE, tokens: N, dim: D, dtype: 'f32' });
  index = await buildSampleIndex({ dataset, tokenizer, tokenizerSha256, config: cfg });
  for (const [i, row] of build.rows.train.entries()) {
    const h = imageSha256(row.image);
    if (stored.has(h)) continue;
    const rng = new Rng(5, i);
    stored.set(h, Float32Array.from({ length: N * D }, () => rng.normal()));
  }
  for (const [s, info] of dataset.shards.entries()) {
    const w = packed.writer(info);
    const { start, end } = dataset.shardRange(s);
    for (let i = start; i < end; i++) w.set(i - start, imageSha256(build.rows.train[i].image), stored.get(imageSha256(build.rows.train[i].image))!);
    await packed.put(info.sha256, w.finish());
  }
  cache = packed.reader(dataset.shards);
});

const locate = (i: number) => dataset.locate(i);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function rowIds(batch: TrainingBatch, b: number): number[] {
  return [...batch.inputIds.subarray(b * batch.seqLen, b * batch.seqLen + batch.lengths[b])];
}

describe('promptItemOf', () => {
  it("uses the row's main_category for the template's Main Category, else the source category", () => {
    const base = { title: 't', description: 'd', features: ['f'], category: 'All_Beauty' };
    expect(promptItemOf({ ...base, main_category: 'Premium Beauty' }).category).toBe('Premium Beauty');
    expect(promptItemOf({ ...base, main_category: null }).category).toBe('All_Beauty');
    expect(promptItemOf({ ...base, main_category: '  ' }).category).toBe('All_Beauty');
  });
});

describe('BatchBuilder', () => {
  it('builds padded token ids with exactly N image tokens per row, the cached features and the targets', async () => {
    const builder = new BatchBuilder({ config: cfg, cache, locate, index });
    const indices = Uint32Array.from([7, 1, 3, 0, 2]);
    const batch = await builder.build(indices);
    const rows = [...indices].map((i) => build.rows.train[i]);

    expect(batch.batchSize).toBe(5);
    expect([batch.imageTokens, batch.featureDim]).toEqual([N, D]);
    expect(batch.inputIds).toHaveLength(5 * batch.seqLen);
    expect(batch.lengths).toHaveLength(5);
    expect(batch.imagePositions).toHaveLength(5 * N);
    expect(batch.imageFeatures).toHaveLength(5 * N * D);
    expect([...batch.globalIndices]).toEqual([...indices]);
    expect([...batch.targets]).toEqual(rows.map((r) => Math.fround(r.average_rating)));
    expect(batch.categories).toEqual(rows.map((r) => r.category));

    const lengths: number[] = [];
    for (let b = 0; b < 5; b++) {
      const ids = rowIds(batch, b);
      lengths.push(ids.length);
      expect(ids.filter((id) => id === cfg.imageTokenId)).toHaveLength(N);
      expect([...batch.imagePositions.subarray(b * N, (b + 1) * N)].every((t) => ids[t] === cfg.imageTokenId)).toBe(true);
      // Right padding: positions after the row's length hold the pad id.
      expect([...batch.inputIds.subarray(b * batch.seqLen + ids.length, (b + 1) * batch.seqLen)].every((id) => id === cfg.text.padTokenId)).toBe(true);
      const text = tokenizer.decode(ids, { skipSpecialTokens: true });
      const row = rows[b];
      expect(text).toContain(`Title: ${row.title}, `);
      const main = row.main_category !== null && row.main_category.trim() !== '' ? row.main_category : row.category;
      expect(text.endsWith(`Main Category: ${main}`)).toBe(true);
      // Features of this row are those cached for its image.
      expect(batch.imageFeatures.subarray(b * N * D, (b + 1) * N * D)).toEqual(stored.get(imageSha256(row.image)));
    }
    expect(batch.seqLen).toBe(Math.max(...lengths)); // padded to the longest row
    expect(new Set(lengths).size).toBeGreaterThan(1);
    // The fixture covers every category rule: a label, null and blank main_category.
    expect(rows.map((r) => r.main_category)).toEqual(expect.arrayContaining(['All Beauty', null, '']));
  });

  /** The batch of `indices` as the builder made it before the sample index: encodeBatch on the rows' text. */
  function textPathBatch(indices: number[], options: { maxLength?: number; padToMaxLength?: boolean }) {
    const rows = indices.map((i) => build.rows.train[i]);
    return {
      ...encodeBatch(tokenizer, cfg, rows.map(promptItemOf), options),
      targets: Float32Array.from(rows, (r) => r.average_rating),
      globalIndices: Uint32Array.from(indices),
      categories: rows.map((r) => r.category),
    };
  }
  const bytesOf = (a: Int32Array | Float32Array | Uint32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

  it('gives byte for byte the batches of encodeBatch on the same rows: whole, cut at maxLength, padded to it', async () => {
    const indices = [7, 1, 3, 0, 2, 8, 8, 5];
    const longest = Math.max(...indices.map((i) => index.row(i).length));
    const cutAt = longest - 4; // cuts the longest rows, never the image block
    const cutIndex = await buildSampleIndex({ dataset, tokenizer, tokenizerSha256, config: cfg, maxLength: cutAt });
    const cases = [
      { index, options: {} },
      { index, options: { maxLength: cfg.text.maxPositionEmbeddings, padToMaxLength: true } },
      { index: cutIndex, options: { maxLength: cutAt } },
      { index: cutIndex, options: { maxLength: cutAt, padToMaxLength: true } },
    ];
    for (const { index: idx, options } of cases) {
      const got = await new BatchBuilder({ config: cfg, cache, locate, index: idx, ...options }).build(indices);
      const want = textPathBatch(indices, options);
      expect([got.batchSize, got.seqLen]).toEqual([want.batchSize, want.seqLen]);
      for (const k of ['inputIds', 'lengths', 'imagePositions', 'targets', 'globalIndices'] as const) {
        expect(got[k].constructor).toBe(want[k].constructor);
        expect(bytesOf(got[k]).equals(bytesOf(want[k])), k).toBe(true);
      }
      expect(got.categories).toEqual(want.categories);
    }
    // The cut really cut something.
    expect(Math.max(...(await new BatchBuilder({ config: cfg, cache, locate, index: cutIndex }).build(indices)).lengths)).toBe(cutAt);
  });

  it('pads to a fixed length on request; refuses an index built for another length or prompt', async () => {
    const index200 = await buildSampleIndex({ dataset, tokenizer, tokenizerSha256, config: cfg, maxLength: 200 });
    const batch = await new BatchBuilder({ config: cfg, cache, locate, index: index200, padToMaxLength: true }).build([4, 5]);
    expect(batch.seqLen).toBe(200);
    expect(() => new BatchBuilder({ config: cfg, cache, locate, index, maxLength: 200 })).toThrow(`maxLength: index ${cfg.text.maxPositionEmbeddings}, builder 200`);
    const chat = { ...cfg, regression: { ...cfg.regression, prompt: 'chat' as const } };
    expect(() => new BatchBuilder({ config: chat, cache, locate, index })).toThrow(ConfigError);
    await expect(new BatchBuilder({ config: cfg, cache, locate, index }).build([dataset.numSamples])).rejects.toThrow(RangeError);
  });

  it('feeds the model: a forward pass on the built batch runs and leaks no tensor', async () => {
    await initBackend('wasm');
    const model = SmolVLMRegressor.fromSeed(cfg, 3);
    try {
      const batch = await new BatchBuilder({ config: cfg, cache, locate, index }).build([8, 6]);
      const numTensors = tf.memory().numTensors;
      const ratings = tf.tidy(() => {
        const out = model.forward({ tokens: batch, imageFeatures: tf.tensor3d(batch.imageFeatures, [batch.batchSize, batch.imageTokens, batch.featureDim]) });
        return out.rating.dataSync().slice();
      });
      expect(ratings).toHaveLength(2);
      expect([...ratings].every((r) => r > 1 && r < 5)).toBe(true);
      expect(tf.memory().numTensors).toBe(numTensors);
    } finally {
      model.dispose();
    }
  });

  it('refuses a sample whose shard has no feature file, and a cache of the wrong shape', async () => {
    const empty = new FeatureCache({ dir: join(dir, 'empty'), backboneHash: BACKBONE, tokens: N, dim: D, dtype: 'f32' }).reader(dataset.shards);
    const builder = new BatchBuilder({ config: cfg, cache: empty, locate, index });
    await expect(builder.build([2])).rejects.toThrow(DataError);
    await expect(builder.build([2])).rejects.toThrow(/feature file .* is missing: run precomputeFeatures/);
    const narrow = new FeatureCache({ dir: join(dir, 'empty'), backboneHash: BACKBONE, tokens: N, dim: D - 1 }).reader(dataset.shards);
    expect(() => new BatchBuilder({ config: cfg, cache: narrow, locate, index })).toThrow(ConfigError);
  });

  it("builds a rank's steps ahead through the prefetcher, in sampler order", async () => {
    const sampler = new GlobalSampler({ numSamples: dataset.numSamples, seed: 9, globalBatch: 4, worldSize: 2, rank: 1, microBatch: 2 });
    const builder = new BatchBuilder({ config: cfg, cache, locate, index });
    const prefetcher = new Prefetcher({ keys: sampler.steps({ epoch: 0, step: 0 }, 2), build: (s) => builder.build(s.indices), depth: 2 });
    const got: number[][] = [];
    for await (const batch of prefetcher) got.push([...batch.globalIndices]);
    const expected = [...sampler.steps({ epoch: 0, step: 0 }, 2)].map((s) => [...s.indices]);
    expect(got).toEqual(expected);
    expect(got).toHaveLength(2 * sampler.stepsPerEpoch);
  });
});

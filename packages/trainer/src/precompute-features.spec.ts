import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, decodeImage, openStore } from '@smolrate/core';
import { imageTokenCount, initBackend, pixelBatchTensor, presetConfig, SmolVLMRegressor } from '@smolrate/model';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { writeFixtureShards, type ShardSet } from '@smolrate/core/testing';
import { backboneHash } from './backbone-hash.js';
import { FeatureCache } from './feature-cache.js';
import { precomputeFeatures, type PrecomputeProgress } from './precompute-features.js';
import { imageSha256, ShardDataset } from './shard-dataset.js';

const cfg = presetConfig('tiny');
// 10 samples, 8 distinct images: sample 6 repeats sample 2's image (both on rank 0 of 2) and
// sample 9 repeats sample 4's (rank 1 and rank 0: shared across ranks).
const IMAGE_OF = [0, 1, 2, 3, 4, 5, 2, 6, 7, 4];

let dir: string;
let model: SmolVLMRegressor;
let build: ShardSet;
let dataset: ShardDataset;

beforeAll(async () => {
  await initBackend('wasm');
  dir = await mkdtemp(join(tmpdir(), 'smolrate-precompute-'));
  const store = openStore(join(dir, 'shards'));
  build = await writeFixtureShards(store, { root: 'ds', train: [4, 3, 3], val: [1], imageOf: (i) => IMAGE_OF[i] });
  dataset = await ShardDataset.open({ store, manifest: build.manifest, split: 'train', root: build.root });
  model = SmolVLMRegressor.fromSeed(cfg, 1);
});

afterAll(async () => {
  model.dispose();
  await rm(dir, { recursive: true, force: true });
});

describe('precomputeFeatures', () => {
  it('spreads the images over the ranks, computes each distinct image once, and the cache matches encodeImages bit-for-bit', async () => {
    const cache = await FeatureCache.forModel(model, { dir: join(dir, 'features') });
    expect(cache.backboneHash).toBe(await backboneHash(model));
    expect([cache.tokens, cache.dim]).toEqual([imageTokenCount(cfg), cfg.text.hiddenSize]);

    const puts = new Map<string, number>();
    const put = cache.put.bind(cache);
    vi.spyOn(cache, 'put').mockImplementation(async (h, data) => {
      puts.set(h, (puts.get(h) ?? 0) + 1);
      return put(h, data);
    });
    const encode = vi.spyOn(model, 'encodeImages');
    const numTensors = tf.memory().numTensors;

    const progress: PrecomputeProgress[] = [];
    const r0 = await precomputeFeatures({ model, dataset, cache, rank: 0, worldSize: 2, batchSize: 2, onProgress: (p) => progress.push(p) });
    const r1 = await precomputeFeatures({ model, dataset, cache, rank: 1, worldSize: 2, batchSize: 2 });

    expect(tf.memory().numTensors).toBe(numTensors);
    // Rank 0: samples 0,2,4,6,8 → images 0,2,4,(2),7: 4 distinct. Rank 1: samples 1,3,5,7,9 →
    // images 1,3,5,6,(4 — already cached by rank 0).
    expect(r0).toMatchObject({ samplesTotal: 5, samplesScanned: 5, uniqueImages: 4, alreadyCached: 0, computed: 4 });
    expect(r1).toMatchObject({ samplesTotal: 5, samplesScanned: 5, uniqueImages: 5, alreadyCached: 1, computed: 4 });
    expect(progress.at(-1)).toMatchObject({ computed: 4, samplesScanned: 5 });
    expect(encode.mock.calls.map(([px]) => px.shape[0])).toEqual([2, 2, 2, 2]); // batches of 2

    const distinct = new Set(build.rows.train.map((r) => imageSha256(r.image)));
    expect(distinct.size).toBe(8);
    expect([...puts.keys()].sort()).toEqual([...distinct].sort()); // the union covers every image…
    expect([...puts.values()].every((n) => n === 1)).toBe(true); // …each computed exactly once
    const stored = (await cache.store.list(cache.backboneHash)).map((e) => e.key.split('/').pop());
    expect(stored.sort()).toEqual([...distinct].map((h) => `${h}.f32`).sort());

    // Fresh encodes, one image per call, equal the cached features exactly.
    encode.mockRestore();
    const reader = await FeatureCache.forModel(model, { dir: join(dir, 'features'), memoryBytes: 0 });
    const seen = new Set<string>();
    for (const row of build.rows.train) {
      const h = imageSha256(row.image);
      if (seen.has(h)) continue;
      seen.add(h);
      const rgb = (await decodeImage(row.image, { size: cfg.regression.imageSize })).data;
      const fresh = tf.tidy(() => model.encodeImages(pixelBatchTensor([rgb], cfg.regression.imageSize)));
      const expected = (await fresh.data()) as Float32Array;
      fresh.dispose();
      const cached = (await reader.get(h))!;
      expect(cached).toBeDefined();
      expect(Buffer.compare(Buffer.from(cached.buffer, cached.byteOffset, cached.byteLength), Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength))).toBe(0);
    }
    expect(tf.memory().numTensors).toBe(numTensors);

    // A rerun (a later epoch or run) finds everything and computes nothing.
    const again = vi.spyOn(model, 'encodeImages');
    const rerun = await precomputeFeatures({ model, dataset, cache: reader, rank: 0, worldSize: 1, batchSize: 4 });
    expect(rerun).toMatchObject({ samplesTotal: 10, uniqueImages: 8, alreadyCached: 8, computed: 0 });
    expect(again).not.toHaveBeenCalled();
    again.mockRestore();
  });

  it('refuses a cache made for another backbone or shape', async () => {
    const other = new FeatureCache({ dir: join(dir, 'other'), backboneHash: 'a'.repeat(64), tokens: imageTokenCount(cfg), dim: cfg.text.hiddenSize });
    await expect(precomputeFeatures({ model, dataset, cache: other })).rejects.toThrow(ConfigError);
    const narrow = new FeatureCache({ dir: join(dir, 'other'), backboneHash: await backboneHash(model), tokens: imageTokenCount(cfg), dim: 3 });
    await expect(precomputeFeatures({ model, dataset, cache: narrow })).rejects.toThrow(`[${imageTokenCount(cfg)}, 3]`);
    const cache = await FeatureCache.forModel(model, { dir: join(dir, 'other') });
    await expect(precomputeFeatures({ model, dataset, cache, rank: 2, worldSize: 2 })).rejects.toThrow(ConfigError);
  });
});

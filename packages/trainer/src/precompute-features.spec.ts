import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, decodeImage, openStore, silentLogger, type Logger } from '@smolrate/core';
import { imageTokenCount, initBackend, pixelBatchTensor, presetConfig, SmolVLMRegressor } from '@smolrate/model';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { writeFixtureShards, type ShardSet } from '@smolrate/core/testing';
import { backboneHash } from './backbone-hash.js';
import { featureDataOffset, FeatureCache, type FeatureDtype } from './feature-cache.js';
import { fromBf16, toBf16 } from './grad-transport.js';
import { precomputeFeatures, type PrecomputeProgress } from './precompute-features.js';
import { ShardDataset } from './shard-dataset.js';

const cfg = presetConfig('tiny');
const N = imageTokenCount(cfg);
const D = cfg.text.hiddenSize;
// 10 samples in shards of 4, 3, 3; 8 distinct images: sample 6 repeats sample 2's image (shard 1
// and shard 0) and sample 3 repeats sample 1's (both in shard 0: encoded once there).
const IMAGE_OF = [0, 1, 2, 1, 4, 5, 2, 6, 7, 3];

let dir: string;
let model: SmolVLMRegressor;
let build: ShardSet;
let dataset: ShardDataset;
/** Fresh encodes, one image per call, of every train row: what the old per-image cache held, bit for bit. */
let fresh: Float32Array[];

function recordingLogger(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  return { ...silentLogger, warnings, warn: (msg: string, fields?: Record<string, unknown>) => void warnings.push(`${msg} ${JSON.stringify(fields ?? {})}`) };
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

beforeAll(async () => {
  await initBackend('wasm');
  dir = await mkdtemp(join(tmpdir(), 'smolrate-precompute-'));
  const store = openStore(join(dir, 'shards'));
  build = await writeFixtureShards(store, { root: 'ds', train: [4, 3, 3], val: [1], imageOf: (i) => IMAGE_OF[i] });
  dataset = await ShardDataset.open({ store, manifest: build.manifest, split: 'train', root: build.root });
  model = SmolVLMRegressor.fromSeed(cfg, 1);
  fresh = [];
  for (const row of build.rows.train) {
    const rgb = (await decodeImage(row.image, { size: cfg.regression.imageSize })).data;
    const t = tf.tidy(() => model.encodeImages(pixelBatchTensor([rgb], cfg.regression.imageSize)));
    fresh.push(((await t.data()) as Float32Array).slice());
    t.dispose();
  }
});

afterAll(async () => {
  model.dispose();
  await rm(dir, { recursive: true, force: true });
});

async function readAll(cache: FeatureCache): Promise<Float32Array> {
  const locations = Array.from({ length: dataset.numSamples }, (_, i) => dataset.locate(i));
  try {
    return await cache.reader(dataset.shards).read(locations);
  } finally {
    await cache.close();
  }
}

describe('precomputeFeatures', () => {
  it('splits the work by shard, encodes each image of a shard once, and f32 features equal a fresh encode bit for bit', async () => {
    const cache = await FeatureCache.forModel(model, { dir: join(dir, 'f32'), dtype: 'f32' });
    expect(cache.backboneHash).toBe(await backboneHash(model));
    const encode = vi.spyOn(model, 'encodeImages');
    const numTensors = tf.memory().numTensors;
    const progress: PrecomputeProgress[] = [];
    const r0 = await precomputeFeatures({ model, dataset, cache, rank: 0, worldSize: 2, batchSize: 2, onProgress: (p) => progress.push(p) });
    const r1 = await precomputeFeatures({ model, dataset, cache, rank: 1, worldSize: 2, batchSize: 2 });
    expect(tf.memory().numTensors).toBe(numTensors);
    // Rank 0: shards 0 and 2 → images {0, 1, 2} and {6, 7, 3}; rank 1: shard 1 → {4, 5, 2}.
    expect(r0).toMatchObject({ shardsTotal: 2, shardsDone: 2, alreadyCached: 0, rebuilt: 0, computed: 6 });
    expect(r1).toMatchObject({ shardsTotal: 1, shardsDone: 1, alreadyCached: 0, rebuilt: 0, computed: 3 });
    expect(progress.at(-1)).toMatchObject({ shardsDone: 2, computed: 6 });
    expect(encode.mock.calls.map(([px]) => px.shape[0])).toEqual([2, 1, 2, 1, 2, 1]); // per shard, batches of ≤ 2
    encode.mockRestore();

    const files = (await cache.store.list(cache.backboneHash)).map((e) => e.key.split('/').pop());
    expect(files.sort()).toEqual(dataset.shards.flatMap((s) => [`${s.sha256}.f32.srfp`, `${s.sha256}.f32.srfp.sha256`]).sort());
    const got = await readAll(new FeatureCache({ dir: join(dir, 'f32'), backboneHash: cache.backboneHash, tokens: N, dim: D, dtype: 'f32' }));
    for (let i = 0; i < fresh.length; i++) expect(sameBits(got.subarray(i * N * D, (i + 1) * N * D), fresh[i]), `sample ${i}`).toBe(true);

    // A rerun verifies every file and computes nothing.
    const again = vi.spyOn(model, 'encodeImages');
    const rerun = await precomputeFeatures({ model, dataset, cache, rank: 0, worldSize: 1 });
    expect(rerun).toMatchObject({ shardsTotal: 3, alreadyCached: 3, rebuilt: 0, computed: 0 });
    expect(again).not.toHaveBeenCalled();
    again.mockRestore();
  });

  it('bf16 features are toBf16 of a fresh encode', async () => {
    const cache = await FeatureCache.forModel(model, { dir: join(dir, 'bf16'), dtype: 'bf16' });
    expect(cache.dtype).toBe('bf16');
    await precomputeFeatures({ model, dataset, cache });
    const got = await readAll(cache);
    for (let i = 0; i < fresh.length; i++) {
      const expected = fromBf16(toBf16(fresh[i], new Uint16Array(N * D)), new Float32Array(N * D));
      expect(sameBits(got.subarray(i * N * D, (i + 1) * N * D), expected), `sample ${i}`).toBe(true);
    }
  });

  it('rebuilds a damaged file (naming it and the reason) and skips the good ones', async () => {
    const cacheDir = join(dir, 'damaged');
    const cache = await FeatureCache.forModel(model, { dir: cacheDir, dtype: 'f32' });
    await precomputeFeatures({ model, dataset, cache });
    const path = (s: number) => join(cacheDir, cache.keyOf(dataset.shards[s].sha256));
    const damage = async (s: number, fn: (b: Buffer) => Buffer) => writeFile(path(s), fn(await readFile(path(s))));
    const cases: Array<[string, (b: Buffer) => Buffer, RegExp]> = [
      ['truncated', (b) => b.subarray(0, b.length - 5), /truncated/],
      ['flipped entry byte', (b) => ((b[featureDataOffset(3) + 17] ^= 4), b), /entry 0 has checksum/],
      ['other backbone', (b) => (b.write('ab'.repeat(32), 40, 'hex'), b), /backbone hash/],
      ['other dtype', (b) => (b.writeUInt32LE(2, 8), b), /dtype code 2/],
    ];
    for (const [what, fn, reason] of cases) {
      await damage(1, fn);
      const log = recordingLogger();
      const r = await precomputeFeatures({ model, dataset, cache, log });
      expect(r, what).toMatchObject({ alreadyCached: 2, rebuilt: 1, computed: 3 });
      expect(log.warnings, what).toHaveLength(1);
      expect(log.warnings[0], what).toContain(path(1));
      expect(log.warnings[0], what).toMatch(reason);
      expect(await cache.verify(dataset.shards[1]), what).toEqual({ state: 'good' });
    }
    const got = await readAll(new FeatureCache({ dir: cacheDir, backboneHash: cache.backboneHash, tokens: N, dim: D, dtype: 'f32' }));
    for (let i = 0; i < fresh.length; i++) expect(sameBits(got.subarray(i * N * D, (i + 1) * N * D), fresh[i]), `sample ${i}`).toBe(true);
  });

  it('says once that an old per-image cache is there, never reads it, and computes the packed files', async () => {
    const cacheDir = join(dir, 'old');
    const cache = await FeatureCache.forModel(model, { dir: cacheDir, dtype: 'f32' });
    const old = `${cache.backboneHash}/3c/${'3c'.repeat(32)}.f32`;
    await cache.store.put(old, Buffer.alloc(80 + 4 * N * D));
    const log = recordingLogger();
    const r = await precomputeFeatures({ model, dataset, cache, log });
    expect(r).toMatchObject({ alreadyCached: 0, computed: 9 });
    expect(log.warnings).toHaveLength(1);
    expect(log.warnings[0]).toMatch(/old per-image feature cache at .*rebuilt in the packed layout; the old files can be deleted/);
    expect(log.warnings[0]).toContain(cache.store.uriOf(old));
    // One message per run: not again for the next split, nor from rank 1 of 2.
    const log1 = recordingLogger();
    await precomputeFeatures({ model, dataset, cache, log: log1 });
    await precomputeFeatures({ model, dataset, cache: await FeatureCache.forModel(model, { dir: cacheDir, dtype: 'f32' }), rank: 1, worldSize: 2, log: log1 });
    expect(log1.warnings).toEqual([]);
    // A new cache instance of rank 0 (a later run) says it again.
    const log2 = recordingLogger();
    await precomputeFeatures({ model, dataset, cache: await FeatureCache.forModel(model, { dir: cacheDir, dtype: 'f32' }), log: log2 });
    expect(log2.warnings).toHaveLength(1);
  });

  it('refuses a cache made for another backbone or shape', async () => {
    const other = new FeatureCache({ dir: join(dir, 'other'), backboneHash: 'a'.repeat(64), tokens: N, dim: D });
    await expect(precomputeFeatures({ model, dataset, cache: other })).rejects.toThrow(ConfigError);
    const narrow = new FeatureCache({ dir: join(dir, 'other'), backboneHash: await backboneHash(model), tokens: N, dim: 3 });
    await expect(precomputeFeatures({ model, dataset, cache: narrow })).rejects.toThrow(`[${N}, 3]`);
    const cache = await FeatureCache.forModel(model, { dir: join(dir, 'other'), dtype: 'f32' as FeatureDtype });
    await expect(precomputeFeatures({ model, dataset, cache, rank: 2, worldSize: 2 })).rejects.toThrow(ConfigError);
  });
});

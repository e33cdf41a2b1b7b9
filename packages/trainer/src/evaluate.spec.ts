import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { regressionMetrics, Rng } from '@smolrate/core';
import { fixtureRow } from '@smolrate/core/testing';
import { imageTokenCount, initBackend, loadTokenizer, presetConfig, SmolVLMRegressor, TINY_TOKENIZER_URL } from '@smolrate/model';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchBuilder } from './batches.js';
import { batchTensors, predictSplit, valMetrics } from './evaluate.js';
import { FeatureCache } from './feature-cache.js';
import { buildSampleIndex } from './sample-index.js';
import type { SampleMeta } from './shard-dataset.js';

describe('valMetrics', () => {
  it("is core's regressionMetrics as the trainer records it (targets first)", () => {
    const targets = [1, 2, 3, 4];
    const predictions = [1.5, 1.8, 3.6, 3.9];
    const m = regressionMetrics(targets, predictions);
    expect(valMetrics(targets, predictions)).toEqual({ rmse: m.rmse, plcc: m.plcc, srcc: m.srcc, samples: 4 });
    expect(valMetrics([1, 2], [1, 2])).toEqual({ rmse: 0, plcc: 1, srcc: 1, samples: 2 });
  });
  it('records undefined correlations as NaN (never an improvement) instead of stopping the run', () => {
    expect(valMetrics([1, 2, 3], [2, 2, 2])).toEqual({ rmse: Math.sqrt(2 / 3), plcc: NaN, srcc: NaN, samples: 3 });
    const diverged = valMetrics([1, 2, 3], [NaN, NaN, NaN]);
    expect(diverged.rmse).toBeNaN();
    expect(diverged.plcc).toBeNaN();
    expect(diverged.srcc).toBeNaN();
  });
});

const cfg = presetConfig('tiny');
const N = imageTokenCount(cfg);
const D = cfg.text.hiddenSize;
const hex = (s: string) => createHash('sha256').update(s).digest('hex');

/** Five val samples held in memory (fixtureRow text and ratings), each with its own made-up image features. */
const samples: SampleMeta[] = Array.from({ length: 5 }, (_, i) => {
  const { image: _image, ...row } = fixtureRow('val', i, Buffer.alloc(0));
  return { ...row, index: i, imageSha256: hex(`eval image ${i}`) };
});
/** The index lists the builder was asked for, in order. */
const requested: number[][] = [];

class RecordingBuilder extends BatchBuilder {
  override build(indices: ArrayLike<number>) {
    requested.push(Array.from(indices));
    return super.build(indices);
  }
}

/** A BatchBuilder over `samples`, their features cached under `dir`; it records what it is asked for. */
async function memoryBuilder(dir: string): Promise<BatchBuilder> {
  const cache = new FeatureCache({ dir, backboneHash: hex('made-up backbone'), tokens: N, dim: D, dtype: 'f32' });
  const shard = { sha256: hex('eval shard'), rows: samples.length };
  const w = cache.writer(shard);
  for (const s of samples) {
    const rng = new Rng(7, s.index);
    w.set(s.index, s.imageSha256, Float32Array.from({ length: N * D }, () => rng.normal()));
  }
  await cache.put(shard.sha256, w.finish());
  const json = await readFile(TINY_TOKENIZER_URL, 'utf8');
  const dataset = { split: 'val', shards: [{ file: 'memory', rows: 5, bytes: 1, sha256: hex('memory') }], numSamples: 5, shard: async () => ({ start: 0, meta: samples }) };
  const index = await buildSampleIndex({ dataset, tokenizer: loadTokenizer(json), tokenizerSha256: hex(json), config: cfg });
  return new RecordingBuilder({ config: cfg, cache: cache.reader([shard]), locate: (i) => ({ shard: 0, row: i }), index });
}

let dir: string;
let builder: BatchBuilder;
let model: SmolVLMRegressor;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'smolrate-evaluate-'));
  builder = await memoryBuilder(dir);
  await initBackend('wasm');
  model = SmolVLMRegressor.fromSeed(cfg, 3);
});

afterAll(async () => {
  model.dispose();
  await rm(dir, { recursive: true, force: true });
});

describe('batchTensors', () => {
  it('makes [B, N, D] features and [B] targets of a built batch, owned by the caller', async () => {
    const batch = await builder.build([3, 1]);
    const before = tf.memory().numTensors;
    const t = batchTensors(batch);
    try {
      expect(tf.memory().numTensors).toBe(before + 2);
      expect(t.imageFeatures.shape).toEqual([2, N, D]);
      expect(t.targets.shape).toEqual([2]);
      expect(await t.imageFeatures.data()).toEqual(batch.imageFeatures);
      expect([...(await t.targets.data())]).toEqual([samples[3], samples[1]].map((s) => Math.fround(s.average_rating)));
    } finally {
      tf.dispose([t.imageFeatures, t.targets]);
    }
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('predictSplit', () => {
  /** The eval-mode rating of sample i, predicted alone. */
  async function alone(i: number): Promise<number> {
    const batch = await builder.build([i]);
    return tf.tidy(() => {
      const out = model.forward({ tokens: batch, imageFeatures: tf.tensor3d(batch.imageFeatures, [1, N, D]) }, { training: false });
      return out.rating.dataSync()[0];
    });
  }

  it('predicts every sample in global-index order, batch by batch, with their targets and no leaked tensor', async () => {
    const expected = await Promise.all(samples.map((s) => alone(s.index)));
    // Far apart compared with the 5e-6 tolerance below, so a wrong order shows.
    const gaps = expected.flatMap((a, i) => expected.slice(i + 1).map((b) => Math.abs(a - b)));
    expect(Math.min(...gaps)).toBeGreaterThan(1e-4);

    requested.length = 0;
    const before = tf.memory().numTensors;
    const { predictions, targets } = await predictSplit(model, builder, 5, 2);
    expect(tf.memory().numTensors).toBe(before);
    expect(requested).toEqual([[0, 1], [2, 3], [4]]);
    expect([...targets]).toEqual(samples.map((s) => Math.fround(s.average_rating)));
    // Batching pads rows to the longest of their batch; masked, the prediction agrees within 5e-6.
    expect(predictions).toHaveLength(5);
    predictions.forEach((p, i) => expect(p).toBeCloseTo(expected[i], 5));

    // Eval mode has no dropout: another pass gives the same bits.
    expect(await predictSplit(model, builder, 5, 2)).toEqual({ predictions, targets });
  });

  it('stops at numSamples, with a last batch smaller than batchSize', async () => {
    requested.length = 0;
    const all = await predictSplit(model, builder, 5, 5);
    const first = await predictSplit(model, builder, 3, 4);
    expect(requested).toEqual([[0, 1, 2, 3, 4], [0, 1, 2]]);
    expect(first.predictions).toHaveLength(3);
    expect(first.targets).toEqual(all.targets.subarray(0, 3));
    [...first.predictions].forEach((p, i) => expect(p).toBeCloseTo(all.predictions[i], 5));
  });
});

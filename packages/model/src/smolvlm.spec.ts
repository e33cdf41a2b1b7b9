import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { CheckpointError, ConfigError, DataError, Rng, ShapeError } from '@smolrate/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { presetConfig } from './config.js';
import { initParameter, initStateDict } from './init.js';
import { totalParameters, expectedParameters } from './params.js';
import { packTokenRows } from './prompt.js';
import { imageMergeIndex, mergeImageFeatures, SmolVLMRegressor, type RegressorInputs, type TokenBatch } from './smolvlm.js';
import type { StateDict } from './state-dict.js';

const cfg = presetConfig('tiny');
const IMAGE = cfg.imageTokenId; // 1062
const FAKE = 1061; // <fake_token_around_image> in the tiny vocabulary
const GLOBAL = 1024; // <global-img>
const PAD = cfg.text.padTokenId;
const N = 36;
const BLOCK = [FAKE, GLOBAL, ...new Array<number>(N).fill(IMAGE), FAKE];

/** Right-padded batch of token rows (each prefixed with the image block). */
function batch(texts: number[][], length?: number): TokenBatch {
  return packTokenRows(cfg, texts.map((t) => [...BLOCK, ...t]), { seqLen: length, imageTokens: N });
}

function features(b: number, seed: number): tf.Tensor3D {
  return tf.tensor3d(Float32Array.from({ length: b * N * 64 }, (r => () => r.normal())(new Rng(seed))), [b, N, 64]);
}

const TEXT_A = [40, 41, 300, 17, 900, 5, 66];
const TEXT_B = [12, 500, 501, 502, 77, 78, 79, 80, 81, 3];

/** Bit-for-bit equality of two float arrays (fast, unlike a deep equal on big typed arrays). */
function sameBits(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

let model: SmolVLMRegressor;
let feats2: tf.Tensor3D;

beforeAll(async () => {
  await tf.setBackend('cpu');
  model = SmolVLMRegressor.fromSeed(cfg, 1);
  feats2 = features(2, 100);
});

afterAll(() => {
  feats2.dispose();
  model.dispose();
});

describe('image merge', () => {
  it('maps the k-th image position of each row to image row b·N + k', () => {
    // B=2, L=5, N=2, image id 9
    const tokens = { batchSize: 2, seqLen: 5, inputIds: Int32Array.of(1, 9, 9, 4, 5, 9, 3, 9, 0, 0), lengths: Int32Array.of(5, 4), imagePositions: Int32Array.of(1, 2, 0, 2) };
    expect([...imageMergeIndex(tokens, 9)]).toEqual([0, 10, 11, 3, 4, 12, 6, 13, 8, 9]);
    // out of order; not an <image> id; past the row's length
    for (const [positions, lengths] of [[[2, 1, 0, 2], [5, 4]], [[1, 2, 0, 1], [5, 4]], [[1, 2, 0, 2], [5, 2]]]) {
      expect(() => imageMergeIndex({ ...tokens, imagePositions: Int32Array.from(positions), lengths: Int32Array.from(lengths) }, 9)).toThrow(ShapeError);
    }
    const one = { batchSize: 1, seqLen: 3, inputIds: Int32Array.of(9, 5, 9), lengths: Int32Array.of(3), imagePositions: Int32Array.of(0, 2) };
    const merged = tf.tidy(() => mergeImageFeatures(tf.tensor3d([[[1], [2], [3]]]), tf.tensor3d([[[70], [80]]]), imageMergeIndex(one, 9)).arraySync());
    expect(merged).toEqual([[[70], [2], [80]]]);
  });

  it('replaces exactly the k-th <image> embedding by the k-th image row', () => {
    const tokens = batch([TEXT_A, TEXT_B]);
    const changed = tf.tidy(() => {
      const delta = tf.buffer([2, N, 64]);
      for (let d = 0; d < 64; d++) delta.set(1, 1, 10, d); // row 1, image row k = 10
      return tf.add(feats2, delta.toTensor()) as tf.Tensor3D;
    });
    const h0 = model.lastHiddenState({ imageFeatures: feats2, tokens });
    const h1 = model.lastHiddenState({ imageFeatures: changed, tokens });
    const [a, b] = [h0.arraySync(), h1.arraySync()];
    const pos = 2 + 10; // after <fake> <global-img>
    for (let t = 0; t < pos; t++) expect(maxAbsDiff(a[1][t], b[1][t])).toBe(0);
    expect(maxAbsDiff(a[1][pos], b[1][pos])).toBeGreaterThan(1e-3);
    for (let t = 0; t < a[0].length; t++) expect(maxAbsDiff(a[0][t], b[0][t])).toBe(0); // other row untouched
    tf.dispose([changed, h0, h1]);
  });

  it('rejects a batch whose image positions differ from the image rows given', () => {
    const tokens = batch([TEXT_A]);
    const f35 = tf.tidy(() => tf.slice(features(1, 1), [0, 0, 0], [1, N - 1, 64]) as tf.Tensor3D);
    expect(() => model.forward({ imageFeatures: f35, tokens })).toThrow(/36 <image> positions for 1 rows, but 35 image rows/);
    expect(() => model.forward({ tokens })).toThrow(ShapeError); // no images, yet image positions
    f35.dispose();
  });
});

describe('SmolVLMRegressor forward (tiny)', () => {
  it('encodes a 384² image to 36 rows and gives the same result from pixels as from cached features', () => {
    const pixels = tf.tidy(() => tf.randomUniform([1, 384, 384, 3], -1, 1, 'float32', 3) as tf.Tensor4D);
    const tokens = batch([TEXT_A]);
    const before = tf.memory().numTensors;
    const encoded = model.encodeImages(pixels);
    expect(encoded.shape).toEqual([1, 36, 64]);
    const fromFeatures = model.forward({ imageFeatures: encoded, tokens });
    const fromPixels = model.forward({ pixels, tokens });
    expect(fromPixels.pooled.dataSync()).toEqual(fromFeatures.pooled.dataSync());
    expect(fromPixels.rating.dataSync()).toEqual(fromFeatures.rating.dataSync());
    tf.dispose([encoded, fromFeatures.pooled, fromFeatures.logit, fromFeatures.rating, fromPixels.pooled, fromPixels.logit, fromPixels.rating]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([pixels]);
  });

  it('gives pooled [B, 64], logit [B], rating [B] = 1 + 4·sigmoid(logit) in (1, 5), without leaking', () => {
    const tokens = batch([TEXT_A, TEXT_B]);
    const before = tf.memory().numTensors;
    const out = model.forward({ imageFeatures: feats2, tokens });
    expect(out.pooled.shape).toEqual([2, 64]);
    expect(out.logit.shape).toEqual([2]);
    expect(out.rating.shape).toEqual([2]);
    const logit = out.logit.dataSync();
    const rating = out.rating.dataSync();
    rating.forEach((r, i) => {
      expect(r).toBeGreaterThan(1);
      expect(r).toBeLessThan(5);
      expect(r).toBeCloseTo(1 + 4 / (1 + Math.exp(-logit[i])), 6);
    });
    const hidden = model.lastHiddenState({ imageFeatures: feats2, tokens });
    expect(hidden.shape).toEqual([2, BLOCK.length + TEXT_B.length, 64]);
    tf.dispose([out.pooled, out.logit, out.rating, hidden]);
    expect(tf.memory().numTensors).toBe(before);
      });

  it('ignores padding: appended pad tokens and batching with a longer row leave the output unchanged', () => {
    const f1 = tf.tidy(() => tf.slice(feats2, [0, 0, 0], [1, N, 64]) as tf.Tensor3D);
    const run = (inputs: RegressorInputs, row = 0) => {
      const out = model.forward(inputs);
      const res = { pooled: out.pooled.arraySync()[row], rating: out.rating.arraySync()[row] };
      tf.dispose([out.pooled, out.logit, out.rating]);
      return res;
    };
    const alone = run({ imageFeatures: f1, tokens: batch([TEXT_A]) });
    const padded = run({ imageFeatures: f1, tokens: batch([TEXT_A], BLOCK.length + TEXT_A.length + 5) });
    const batched = run({ imageFeatures: feats2, tokens: batch([TEXT_A, TEXT_B]) });
    expect(maxAbsDiff(padded.pooled, alone.pooled)).toBeLessThan(1e-6);
    expect(maxAbsDiff(batched.pooled, alone.pooled)).toBeLessThan(1e-6);
    expect(Math.abs(padded.rating - alone.rating)).toBeLessThan(1e-6);
    expect(Math.abs(batched.rating - alone.rating)).toBeLessThan(1e-6);
    // ...while treating the same pad ids as real tokens does change it.
    const unmasked = run({ imageFeatures: f1, tokens: packTokenRows(cfg, [[...BLOCK, ...TEXT_A, PAD, PAD]], { imageTokens: N }) });
    expect(maxAbsDiff(unmasked.pooled, alone.pooled)).toBeGreaterThan(1e-4);
    f1.dispose();
  });

  it('validates its inputs', () => {
    const tokens = batch([TEXT_A, TEXT_B]);
    expect(() => model.forward({ imageFeatures: feats2, tokens: { ...tokens, seqLen: tokens.seqLen + 1 } })).toThrow(ShapeError);
    for (const lengths of [[0, tokens.seqLen], [tokens.seqLen + 1, tokens.seqLen]]) {
      expect(() => model.forward({ imageFeatures: feats2, tokens: { ...tokens, lengths: Int32Array.from(lengths) } })).toThrow(DataError);
    }
    const shifted = tokens.imagePositions.map((t) => t + 1);
    expect(() => model.forward({ imageFeatures: feats2, tokens: { ...tokens, imagePositions: shifted } })).toThrow(ShapeError);
    const f1 = features(1, 3);
    expect(() => model.forward({ imageFeatures: f1, tokens: packTokenRows(cfg, [[...BLOCK, 5000]], { imageTokens: N }) })).toThrow(DataError);
    const px = tf.zeros([2, 384, 384, 3]) as tf.Tensor4D;
    expect(() => model.forward({ imageFeatures: feats2, pixels: px, tokens })).toThrow(ShapeError);
    const wrongWidth = tf.zeros([2, N, 32]) as tf.Tensor3D;
    expect(() => model.forward({ imageFeatures: wrongWidth, tokens })).toThrow(ShapeError);
    tf.dispose([f1, px, wrongWidth]);
  });
});

describe('dropout', () => {
  it('is off in eval (head math by hand), seeded and reproducible in training', () => {
    const tokens = batch([TEXT_A, TEXT_B]);
    const inputs = { imageFeatures: feats2, tokens };
    const ratings = (opts: { training?: boolean; dropoutSeed?: number | number[] }) => {
      const out = model.forward(inputs, opts);
      const r = [...out.rating.dataSync()];
      const pooled = out.pooled.arraySync();
      tf.dispose([out.pooled, out.logit, out.rating]);
      return { r, pooled };
    };
    const evalA = ratings({});
    expect(ratings({ dropoutSeed: 5 }).r).toEqual(evalA.r); // seed ignored in eval
    // By hand, without dropout, from the state dict (PyTorch layouts).
    const sd = model.stateDict();
    const [w1, b1, w2, b2] = ['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias'].map((n) => sd.get(`regression_head.${n}`)!.data);
    evalA.pooled.forEach((p, row) => {
      const h = Array.from({ length: 32 }, (_, o) => Math.max(0, b1[o] + p.reduce((s, x, i) => s + w1[o * 64 + i] * x, 0)));
      const logit = b2[0] + h.reduce((s, x, o) => s + w2[o] * x, 0);
      expect(evalA.r[row]).toBeCloseTo(1 + 4 / (1 + Math.exp(-logit)), 5);
    });
    const t1 = ratings({ training: true, dropoutSeed: 1 });
    expect(ratings({ training: true, dropoutSeed: 1 }).r).toEqual(t1.r);
    expect(ratings({ training: true, dropoutSeed: 2 }).r).not.toEqual(t1.r);
    expect(t1.r).not.toEqual(evalA.r);
    expect(t1.pooled).toEqual(evalA.pooled); // dropout only in the head
    expect(() => model.forward(inputs, { training: true })).toThrow(ConfigError);
    // Per-row seeds: a row's rating depends on its own seed only.
    const perRow = ratings({ training: true, dropoutSeed: [21, 22] });
    const swapped = ratings({ training: true, dropoutSeed: [21, 99] });
    expect(swapped.r[0]).toBe(perRow.r[0]);
    expect(swapped.r[1]).not.toBe(perRow.r[1]);
      });
});

describe('state dict', () => {
  it('saves PyTorch layouts under the HF names, bit-identical to what was loaded', () => {
    const sd = model.stateDict();
    expect([...sd.keys()]).toEqual(expectedParameters(cfg).map((s) => s.name));
    const init = initStateDict(cfg, { seed: 1 });
    for (const [name, t] of init) {
      expect(sd.get(name)!.shape).toEqual(t.shape);
      expect(sameBits(sd.get(name)!.data, t.data)).toBe(true);
    }
  });

  it('collects missing, unexpected and mis-shaped names into one CheckpointError and changes nothing', () => {
    const sd = model.stateDict();
    const normBefore = sd.get('model.text_model.norm.weight')!.data;
    const bad: StateDict = new Map(sd);
    bad.delete('model.text_model.norm.weight');
    bad.set('model.extra.weight', { shape: [3], data: new Float32Array(3) });
    bad.set('model.text_model.layers.0.self_attn.k_proj.weight', { shape: [64, 64], data: new Float32Array(64 * 64) });
    bad.set('model.text_model.layers.1.input_layernorm.weight', { shape: [64], data: new Float32Array(64).fill(7) }); // valid, must not be applied
    let error: unknown;
    try {
      model.loadStateDict(bad);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(CheckpointError);
    const msg = (error as Error).message;
    expect(msg).toContain('3 problems');
    expect(msg).toContain('missing: model.text_model.norm.weight [64]');
    expect(msg).toContain('unexpected: model.extra.weight [3]');
    expect(msg).toContain('shape mismatch: model.text_model.layers.0.self_attn.k_proj.weight expected [32,64], got [64,64]');
    const after = model.stateDict();
    expect(sameBits(after.get('model.text_model.norm.weight')!.data, normBefore)).toBe(true);
    expect(sameBits(after.get('model.text_model.layers.1.input_layernorm.weight')!.data, sd.get('model.text_model.layers.1.input_layernorm.weight')!.data)).toBe(true);
  });

  it('accepts an HF checkpoint: lm_head ignored, absent regression head initialised with a warning', () => {
    const hf = initStateDict(cfg, { seed: 9, includeLmHead: true, includeHead: false });
    const warnings: string[] = [];
    const { model: m, report } = SmolVLMRegressor.fromStateDict(cfg, hf, { seed: 4, onWarning: (w) => warnings.push(w) });
    expect(report.ignored).toEqual(['lm_head.weight']);
    expect(report.initialized).toEqual(['regression_head.fc1.weight', 'regression_head.fc1.bias', 'regression_head.fc2.weight', 'regression_head.fc2.bias']);
    expect(warnings).toEqual(report.warnings);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/regression head was initialised from seed 4/);
    const spec = expectedParameters(cfg).find((s) => s.name === 'regression_head.fc1.weight')!;
    expect(sameBits(m.stateDict().get('regression_head.fc1.weight')!.data, initParameter(spec, 4).data)).toBe(true);
    m.dispose();

    const partial: StateDict = new Map(initStateDict(cfg, { seed: 9 }));
    partial.delete('regression_head.fc2.bias');
    expect(() => SmolVLMRegressor.fromStateDict(cfg, partial)).toThrow(/missing: regression_head.fc2.bias \[1\]/);
  });

  it('non-strict: ignores unexpected names and keeps current values of missing ones', () => {
    const m = SmolVLMRegressor.fromSeed(cfg, 2);
    const keep = m.stateDict().get('model.text_model.norm.weight')!.data;
    const dict: StateDict = new Map(initStateDict(cfg, { seed: 3 }));
    dict.delete('model.text_model.norm.weight');
    dict.set('something.else', { shape: [1], data: new Float32Array(1) });
    const warnings: string[] = [];
    const report = m.loadStateDict(dict, { strict: false, onWarning: (w) => warnings.push(w) });
    expect(report.ignored).toEqual(['something.else']);
    expect(report.initialized).toEqual([]);
    expect(warnings).toEqual(['ignored unexpected parameter something.else [1]']);
    const after = m.stateDict();
    expect(sameBits(after.get('model.text_model.norm.weight')!.data, keep)).toBe(true);
    expect(sameBits(after.get('model.text_model.layers.0.mlp.up_proj.weight')!.data, dict.get('model.text_model.layers.0.mlp.up_proj.weight')!.data)).toBe(true);
    m.dispose();
  });
});

describe('training', () => {
  it('exposes exactly the text model and the head as trainable variables, in order', () => {
    const vars = model.trainableVariables();
    const want = expectedParameters(cfg).filter((s) => s.trainable);
    expect(vars.map((v) => v.name)).toEqual(want.map((s) => s.name));
    expect(vars[0].name).toBe('model.text_model.embed_tokens.weight');
    expect(vars.at(-1)!.name).toBe('regression_head.fc2.bias');
    expect(vars.every((v) => v.variable instanceof tf.Variable && v.variable.trainable)).toBe(true);
    expect(vars.reduce((n, v) => n + v.variable.size, 0)).toBe(totalParameters(expectedParameters(cfg), { trainable: true }));
    expect(model.visionModel.embeddings.positionEmbedding.value).not.toBeInstanceOf(tf.Variable);
    expect(model.connector.modalityProjection.proj.weight.value).not.toBeInstanceOf(tf.Variable);
    expect(model.parameters().map((p) => p.name)).toEqual(expectedParameters(cfg).map((s) => s.name));
    expect(model.parameters()[0]).toBe(model.visionModel.embeddings.patchEmbedding.weight);
    const names = model.namedParameters();
    expect(names.filter((p) => !p.trainable).every((p) => p.name.startsWith('model.vision_model.') || p.name.startsWith('model.connector.'))).toBe(true);
  });

  it('computes the MSE and its gradients for the trainable variables only, without leaking', () => {
    const tokens = batch([TEXT_A, TEXT_B]);
    const inputs = { imageFeatures: feats2, tokens };
    const targets = tf.tensor1d([4.5, 1.5]);
    const before = tf.memory().numTensors;
    const { loss, grads } = model.lossAndGrads(inputs, targets, { dropoutSeed: 3 });
    const out = model.forward(inputs, { training: true, dropoutSeed: 3 });
    const r = out.rating.dataSync();
    expect(loss).toBeCloseTo(((r[0] - 4.5) ** 2 + (r[1] - 1.5) ** 2) / 2, 5);
    tf.dispose([out.pooled, out.logit, out.rating]);
    const vars = model.trainableVariables();
    expect([...grads.keys()]).toEqual(vars.map((v) => v.name));
    for (const v of vars) expect(grads.get(v.name)!.shape).toEqual(v.variable.shape);
    // The embedding row of <image> gets no gradient (its embedding is replaced); used text tokens do.
    const gEmb = grads.get('model.text_model.embed_tokens.weight')!.arraySync() as number[][];
    expect(gEmb[IMAGE].every((x) => x === 0)).toBe(true);
    expect(gEmb[TEXT_A[2]].some((x) => x !== 0)).toBe(true);
    expect(gEmb[7].every((x) => x === 0)).toBe(true); // unused token
    // d loss / d fc2.bias by central difference
    const gBias = grads.get('regression_head.fc2.bias')!.dataSync()[0];
    const biasVar = vars.find((v) => v.name === 'regression_head.fc2.bias')!.variable;
    const b0 = biasVar.dataSync()[0];
    const lossWithBias = (b: number) => {
      tf.tidy(() => biasVar.assign(tf.tensor1d([b])));
      const { loss: l, grads: g } = model.lossAndGrads(inputs, targets, { dropoutSeed: 3 });
      tf.dispose([...g.values()]);
      return l;
    };
    const numeric = (lossWithBias(b0 + 1e-2) - lossWithBias(b0 - 1e-2)) / 2e-2;
    tf.tidy(() => biasVar.assign(tf.tensor1d([b0])));
    expect(gBias).toBeCloseTo(numeric, 3);
    tf.dispose([...grads.values()]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([targets]);
  });

  it('decreases the loss over a few SGD steps on a fixed batch; save/load then reproduces outputs bit for bit', () => {
    const start = tf.memory().numTensors;
    const m = SmolVLMRegressor.fromSeed(cfg, 11);
    const tokens = batch([TEXT_A, TEXT_B]);
    const inputs = { imageFeatures: feats2, tokens };
    const targets = tf.tensor1d([4.8, 1.3]);
    const vars = new Map(m.trainableVariables().map((v) => [v.name, v.variable]));
    const before = tf.memory().numTensors;
    const losses: number[] = [];
    for (let step = 0; step < 5; step++) {
      const { loss, grads } = m.lossAndGrads(inputs, targets, { dropoutSeed: 77 });
      losses.push(loss);
      tf.tidy(() => {
        for (const [name, g] of grads) vars.get(name)!.assign(tf.sub(vars.get(name)!, tf.mul(g, 0.2)));
      });
      tf.dispose([...grads.values()]);
    }
    expect(tf.memory().numTensors).toBe(before);
    for (let i = 1; i < losses.length; i++) expect(losses[i]).toBeLessThan(losses[i - 1]);
    expect(losses.at(-1)!).toBeLessThan(losses[0] * 0.95);

    const { model: copy } = SmolVLMRegressor.fromStateDict(cfg, m.stateDict());
    const a = m.forward(inputs);
    const b = copy.forward(inputs);
    expect(sameBits(b.pooled.dataSync() as Float32Array, a.pooled.dataSync() as Float32Array)).toBe(true);
    expect(sameBits(b.rating.dataSync() as Float32Array, a.rating.dataSync() as Float32Array)).toBe(true);
    tf.dispose([a.pooled, a.logit, a.rating, b.pooled, b.logit, b.rating, targets]);
    copy.dispose();
    m.dispose();
    expect(tf.memory().numTensors).toBe(start); // dispose frees the parameters and the RoPE tables
  });
});

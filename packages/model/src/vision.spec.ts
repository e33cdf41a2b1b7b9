import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { Rng } from '@smolrate/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { presetConfig } from './config.js';
import { type Param, ParamScope } from './layers.js';
import { EncoderLayer, geluTanh, LayerNorm, VisionAttention, VisionEmbeddings, visionPositionIds, VisionTransformer } from './vision.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

/** n seeded normal(0, std) floats (core's Rng). */
const randn = (n: number, seed: number | Rng, std = 1) => {
  const rng = typeof seed === 'number' ? new Rng(seed) : seed;
  return Float32Array.from({ length: n }, () => std * rng.normal());
};

/** Loads every registered parameter with seeded normal(0, scale) data (PyTorch layout). */
function loadRandom(params: Param[], seed: number, scale = 0.2): void {
  const rng = new Rng(seed);
  for (const p of params) p.load({ shape: [...p.shape], data: randn(p.size, rng, scale) });
}

describe('visionPositionIds', () => {
  it('buckets a 24×24 grid (384²) into the 32×32 table as docs/reference/model.md lists', () => {
    const buckets = [0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 16, 17, 18, 20, 21, 22, 24, 25, 26, 28, 29, 30];
    const ids = visionPositionIds(24, 32);
    expect(ids).toHaveLength(576);
    expect([...ids.slice(0, 24)]).toEqual(buckets);
    for (let r = 0; r < 24; r++) for (let c = 0; c < 24; c++) expect(ids[r * 24 + c]).toBe(32 * buckets[r] + buckets[c]);
    expect(ids[24]).toBe(32);
    expect(ids[3 * 24]).toBe(128);
    expect(ids[575]).toBe(990);
  });

  it('is the identity at 512² (32×32 patches)', () => {
    expect([...visionPositionIds(32, 32)]).toEqual(Array.from({ length: 1024 }, (_, i) => i));
  });

  it('generalises to other grids: 8×8 table, 6×6 input', () => {
    // bucket(i) = ⌊8i/6⌋ = 0,1,2,4,5,6
    expect([...visionPositionIds(6, 8).slice(0, 6)]).toEqual([0, 1, 2, 4, 5, 6]);
    expect(visionPositionIds(6, 8)[6]).toBe(8);
  });
});

describe('geluTanh / LayerNorm', () => {
  it('geluTanh is the tanh form 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³)))', () => {
    const xs = [-3, -1, -0.5, 0, 0.3, 1, 2.5];
    const want = xs.map((x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))));
    const got = tf.tidy(() => [...geluTanh(tf.tensor1d(xs)).dataSync()]);
    got.forEach((g, i) => expect(g).toBeCloseTo(want[i], 6));
    // not the erf form: gelu_erf(1) = 0.841345, tanh form 0.841192
    expect(got[5]).toBeCloseTo(0.841192, 5);
  });

  it('LayerNorm normalises with the biased variance and eps', () => {
    const params: Param[] = [];
    const ln = new LayerNorm(ParamScope.root(params, 'ln', 'vision'), 4, 1e-6);
    ln.weight.load({ shape: [4], data: Float32Array.from([1, 2, 1, 1]) });
    ln.bias.load({ shape: [4], data: Float32Array.from([0, 0, 0, 1]) });
    const x = [1, 2, 3, 6];
    const mean = 3;
    const variance = (4 + 1 + 0 + 9) / 4;
    const want = x.map((v, i) => ((v - mean) / Math.sqrt(variance + 1e-6)) * [1, 2, 1, 1][i] + [0, 0, 0, 1][i]);
    const got = tf.tidy(() => [...ln.apply(tf.tensor2d([x])).dataSync()]);
    got.forEach((g, i) => expect(g).toBeCloseTo(want[i], 5));
    params.forEach((p) => p.dispose());
  });
});

describe('VisionEmbeddings', () => {
  it('conv patches are row-major (t = r·n + c) with PyTorch conv semantics plus bucketed positions', () => {
    const cfg = { ...presetConfig('tiny').vision, hiddenSize: 8 };
    const params: Param[] = [];
    const emb = new VisionEmbeddings(ParamScope.root(params, 'e', 'vision'), cfg, 32);
    loadRandom(params, 11);
    const S = 48; // n = 3 → buckets ⌊32i/3⌋ = 0, 10, 21
    const pixels = randn(S * S * 3, 12);
    const out = tf.tidy(() => emb.apply(tf.tensor4d(pixels, [1, S, S, 3])).arraySync())[0];
    expect(out).toHaveLength(9);
    const w = params[0].toState().data; // [D, 3, 16, 16]
    const b = params[1].toState().data;
    const pos = params[2].toState().data; // [1024, D]
    const bucket = [0, 10, 21];
    for (const [r, c] of [
      [0, 0],
      [1, 2],
      [2, 1],
    ]) {
      for (let d = 0; d < 8; d++) {
        let acc = b[d];
        for (let i = 0; i < 3; i++)
          for (let y = 0; y < 16; y++)
            for (let x = 0; x < 16; x++) acc += w[((d * 3 + i) * 16 + y) * 16 + x] * pixels[((r * 16 + y) * S + (c * 16 + x)) * 3 + i];
        acc += pos[(32 * bucket[r] + bucket[c]) * 8 + d];
        expect(out[r * 3 + c][d]).toBeCloseTo(acc, 4);
      }
    }
    params.forEach((p) => p.dispose());
  });
});

describe('VisionAttention', () => {
  it('matches a per-head reference softmax(q·kᵀ/√d)·v with biases, bidirectional', () => {
    const params: Param[] = [];
    const attn = new VisionAttention(ParamScope.root(params, 'a', 'vision'), 4, 2);
    loadRandom(params, 21, 0.5);
    const S = 3;
    const xData = randn(S * 4, 22);
    const got = tf.tidy(() => [...attn.apply(tf.tensor3d(xData, [1, S, 4])).dataSync()]);

    const lin = (name: string, x: number[]) => {
      const W = params.find((p) => p.name === `a.${name}.weight`)!.toState().data;
      const B = params.find((p) => p.name === `a.${name}.bias`)!.toState().data;
      return B.length ? [...B].map((bo, o) => bo + x.reduce((s, xi, i) => s + W[o * x.length + i] * xi, 0)) : [];
    };
    const rows = Array.from({ length: S }, (_, t) => [...xData.slice(t * 4, t * 4 + 4)]);
    const q = rows.map((r) => lin('q_proj', r));
    const k = rows.map((r) => lin('k_proj', r));
    const v = rows.map((r) => lin('v_proj', r));
    const ctx = rows.map(() => new Array(4).fill(0));
    for (let h = 0; h < 2; h++) {
      for (let i = 0; i < S; i++) {
        const scores = k.map((kj) => (q[i][2 * h] * kj[2 * h] + q[i][2 * h + 1] * kj[2 * h + 1]) / Math.sqrt(2));
        const mx = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - mx));
        const z = e.reduce((a, b) => a + b, 0);
        for (let j = 0; j < S; j++) for (let c = 0; c < 2; c++) ctx[i][2 * h + c] += (e[j] / z) * v[j][2 * h + c];
      }
    }
    const want = ctx.flatMap((c) => lin('out_proj', c));
    got.forEach((g, i) => expect(g).toBeCloseTo(want[i], 5));
    params.forEach((p) => p.dispose());
  });
});

describe('VisionTransformer (tiny)', () => {
  // 128² keeps the cpu-backend test fast (the 384² path runs once in smolvlm.spec.ts).
  it('keeps [B, n², D] through embeddings, layers and post_layernorm; encodes each image on its own', () => {
    const cfg = presetConfig('tiny').vision;
    const params: Param[] = [];
    const vit = new VisionTransformer(ParamScope.root(params, 'model.vision_model', 'vision'), cfg, 32);
    loadRandom(params, 31, 0.05);
    expect(params.filter((p) => p.name.includes('encoder.layers.1.')).length).toBe(16);
    expect(vit.layers[1]).toBeInstanceOf(EncoderLayer);
    const pixels = tf.tidy(() => tf.randomUniform([2, 128, 128, 3], -1, 1, 'float32', 5) as tf.Tensor4D);
    const before = tf.memory().numTensors;
    const out = tf.tidy(() => {
      const emb = vit.embeddings.apply(pixels);
      expect(emb.shape).toEqual([2, 64, 64]);
      expect(vit.layers[0].apply(emb).shape).toEqual([2, 64, 64]);
      return vit.apply(pixels);
    });
    expect(out.shape).toEqual([2, 64, 64]);
    const single = tf.tidy(() => vit.apply(tf.slice(pixels, [1, 0, 0, 0], [1, 128, 128, 3])));
    const a = tf.tidy(() => tf.slice(out, [1, 0, 0], [1, 64, 64]).dataSync());
    const b = single.dataSync();
    let maxDiff = 0;
    for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
    expect(maxDiff).toBeLessThan(1e-5);
    tf.dispose([out, single]);
    expect(tf.memory().numTensors).toBe(before);
    pixels.dispose();
    params.forEach((p) => p.dispose());
  });
});

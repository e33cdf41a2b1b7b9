import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { Rng } from '@smolrate/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { presetConfig } from './config.js';
import {
  applyRope,
  causalPaddingBias,
  DecoderAttention,
  groupedQueryAttention,
  MASK_VALUE,
  RMSNorm,
  ropeInvFreq,
  ropeTables,
  rotateHalf,
  TextModel,
} from './decoder.js';
import { type Param, ParamScope } from './layers.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

/** n seeded normal(0, std) floats (core's Rng). */
const randn = (n: number, seed: number | Rng, std = 1) => {
  const rng = typeof seed === 'number' ? new Rng(seed) : seed;
  return Float32Array.from({ length: n }, () => std * rng.normal());
};

describe('RoPE (half-split layout)', () => {
  it('inv_freq[i] = θ^(−2i/d)', () => {
    expect([...ropeInvFreq(4, 100)]).toEqual([1, Math.fround(0.1)]);
    const f = ropeInvFreq(64, 100000);
    expect(f).toHaveLength(32);
    expect(f[31]).toBeCloseTo(100000 ** (-62 / 64), 10);
  });

  it('rotate_half([a, b]) = [−b, a]', () => {
    expect(tf.tidy(() => [...rotateHalf(tf.tensor1d([1, 2, 3, 4])).dataSync()])).toEqual([-3, -4, 1, 2]);
  });

  it('rotates q = [1,2,3,4] at position 2 (d=4, θ=100) as computed by hand', () => {
    // inv_freq = [1, 0.1] → angles at pos 2: [2, 0.2] duplicated; pairs (0,2) and (1,3) rotate.
    const { cos, sin } = ropeTables(3, 4, 100);
    const q = tf.tensor4d([0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4], [1, 1, 3, 4]);
    const out = tf.tidy(() => applyRope(q, tf.tensor2d(cos, [3, 4]), tf.tensor2d(sin, [3, 4])).dataSync().slice(8));
    const [c1, s1, c2, s2] = [Math.cos(2), Math.sin(2), Math.cos(0.2), Math.sin(0.2)];
    const want = [1 * c1 - 3 * s1, 2 * c2 - 4 * s2, 3 * c1 + 1 * s1, 4 * c2 + 2 * s2];
    out.forEach((v, i) => expect(v).toBeCloseTo(want[i], 5));
    expect([...cos.slice(0, 4)]).toEqual([1, 1, 1, 1]); // position 0: identity
    q.dispose();
  });

  it('makes q·k depend only on the relative position', () => {
    const d = 8;
    const { cos, sin } = ropeTables(12, d, 10000);
    const qv = randn(d, 1);
    const kv = randn(d, 2);
    const dotAt = (pq: number, pk: number) =>
      tf.tidy(() => {
        const rot = (v: Float32Array, p: number) =>
          applyRope(tf.tensor4d(v, [1, 1, 1, d]), tf.tensor2d(cos.slice(p * d, p * d + d), [1, d]), tf.tensor2d(sin.slice(p * d, p * d + d), [1, d]));
        return tf.sum(tf.mul(rot(qv, pq), rot(kv, pk))).dataSync()[0];
      });
    expect(dotAt(5, 2)).toBeCloseTo(dotAt(11, 8), 4);
    expect(Math.abs(dotAt(5, 2) - dotAt(5, 3))).toBeGreaterThan(1e-3);
  });
});

describe('RMSNorm', () => {
  it('computes w · x / √(mean(x²) + eps)', () => {
    const params: Param[] = [];
    const norm = new RMSNorm(ParamScope.root(params, 'n', 'text'), 3, 1e-5);
    norm.weight.load({ shape: [3], data: Float32Array.from([1, 0.5, 2]) });
    const x = [1, -2, 2];
    const r = Math.sqrt((1 + 4 + 4) / 3 + 1e-5);
    const got = tf.tidy(() => [...norm.apply(tf.tensor2d([x])).dataSync()]);
    [1 / r, (-2 / r) * 0.5, (2 / r) * 2].forEach((w, i) => expect(got[i]).toBeCloseTo(w, 6));
    params.forEach((p) => p.dispose());
  });
});

describe('attention masks', () => {
  it('allows j ≤ i among non-padding keys only', () => {
    const bias = tf.tidy(() => causalPaddingBias(tf.tensor2d([[1, 1, 0]])).arraySync())[0][0];
    const M = MASK_VALUE;
    expect(bias).toEqual([
      [0, M, M],
      [0, 0, M],
      [0, 0, M],
    ]);
  });
});

/** Plain-JS reference: softmax(q_h·k_{kv(h)}ᵀ·scale + bias)·v_{kv(h)} for [H|KV, L, d] arrays (batch 1). */
function referenceAttention(q: number[][][], k: number[][][], v: number[][][], bias: number[][], scale: number, kvOf: (h: number) => number): number[][][] {
  return q.map((qh, h) =>
    qh.map((qi, i) => {
      const kh = k[kvOf(h)];
      const vh = v[kvOf(h)];
      const s = kh.map((kj, j) => qi.reduce((acc, x, c) => acc + x * kj[c], 0) * scale + bias[i][j]);
      const mx = Math.max(...s);
      const e = s.map((x) => Math.exp(x - mx));
      const z = e.reduce((a, b) => a + b, 0);
      return qi.map((_, c) => e.reduce((acc, w, j) => acc + (w / z) * vh[j][c], 0));
    }),
  );
}

describe('groupedQueryAttention', () => {
  it('query head h reads kv head ⌊h/(H/KV)⌋ (H=6, KV=2, causal)', () => {
    const [H, KV, L, d] = [6, 2, 4, 3];
    const q = tf.tensor4d(randn(H * L * d, 3), [1, H, L, d]);
    const k = tf.tensor4d(randn(KV * L * d, 4), [1, KV, L, d]);
    const v = tf.tensor4d(randn(KV * L * d, 5), [1, KV, L, d]);
    const maskT = tf.tensor2d([[1, 1, 1, 1]]);
    const biasT = causalPaddingBias(maskT);
    const got = tf.tidy(() => groupedQueryAttention(q, k, v, biasT, 0.5).arraySync())[0];
    const bias = (biasT.arraySync() as number[][][][])[0][0];
    const [qa, ka, va] = [q, k, v].map((t) => (t.arraySync() as number[][][][])[0]);
    const want = referenceAttention(qa, ka, va, bias, 0.5, (h) => Math.floor(h / (H / KV)));
    const wrong = referenceAttention(qa, ka, va, bias, 0.5, (h) => h % KV); // interleaved mapping
    let maxDiff = 0;
    let wrongDiff = 0;
    for (let h = 0; h < H; h++)
      for (let i = 0; i < L; i++)
        for (let c = 0; c < d; c++) {
          maxDiff = Math.max(maxDiff, Math.abs(got[h][i][c] - want[h][i][c]));
          wrongDiff = Math.max(wrongDiff, Math.abs(got[h][i][c] - wrong[h][i][c]));
        }
    expect(maxDiff).toBeLessThan(1e-5);
    expect(wrongDiff).toBeGreaterThan(1e-2);
    tf.dispose([q, k, v, maskT, biasT]);
  });
});

describe('DecoderAttention / TextModel (tiny)', () => {
  const cfg = presetConfig('tiny').text;

  it('registers Llama names and shapes, GQA 4 query / 2 kv heads of 16', () => {
    const params: Param[] = [];
    new DecoderAttention(ParamScope.root(params, 'a', 'text'), cfg);
    expect(params.map((p) => [p.name, p.shape])).toEqual([
      ['a.q_proj.weight', [64, 64]],
      ['a.k_proj.weight', [32, 64]],
      ['a.v_proj.weight', [32, 64]],
      ['a.o_proj.weight', [64, 64]],
    ]);
  });

  it('keeps [B, L, T] and is causal: a later token does not change earlier states', () => {
    const params: Param[] = [];
    const model = new TextModel(ParamScope.root(params, 'model.text_model', 'text'), cfg);
    const rng = new Rng(7);
    for (const p of params) {
      const noise = randn(p.size, rng, 0.1);
      p.load({ shape: [...p.shape], data: p.name.includes('norm') ? noise.map((x) => 1 + x) : noise });
    }
    const run = (ids: number[]) =>
      tf.tidy(() => {
        const idsT = tf.tensor2d([ids], [1, ids.length], 'int32');
        const h = model.apply(model.embed(idsT), tf.onesLike(idsT) as tf.Tensor2D);
        expect(h.shape).toEqual([1, ids.length, 64]);
        return h.arraySync()[0];
      });
    const a = run([5, 9, 200, 31, 7, 77]);
    const b = run([5, 9, 200, 31, 7, 1000]);
    const c = run([5, 9, 200, 999, 7, 77]);
    for (let t = 0; t < 5; t++) a[t].forEach((x, i) => expect(b[t][i]).toBe(x));
    for (let t = 0; t < 3; t++) a[t].forEach((x, i) => expect(c[t][i]).toBe(x));
    expect(Math.max(...a[5].map((x, i) => Math.abs(x - b[5][i])))).toBeGreaterThan(1e-3);
    expect(Math.max(...a[4].map((x, i) => Math.abs(x - c[4][i])))).toBeGreaterThan(1e-3);
    // RoPE: slices of the table built with the model, bit-equal to tables built for the length.
    const { cos, sin } = model.ropeFor(6);
    const want = ropeTables(6, cfg.headDim, cfg.ropeTheta);
    expect([cos.dataSync(), sin.dataSync()]).toEqual([want.cos, want.sin]);
    tf.dispose([cos, sin]);
    const before = tf.memory().numTensors;
    model.disposeRopeTables();
    expect(tf.memory().numTensors).toBe(before - 2);
    params.forEach((p) => p.dispose());
  });
});

/**
 * A forward + backward probe over the kernels the model's training step differentiates (the
 * trained Llama decoder and regression head; the vision encoder is frozen): one small case per
 * kernel plus a composite decoder block built from the model's own functions. It answers "can
 * this backend train the model, and does it agree with the reference backend?" — the
 * gradients and wasm-kernels specs run it against finite differences and against cpu.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Tensor } from '@tensorflow/tfjs-core';
import { applyRope, causalPaddingBias, groupedQueryAttention, ropeTables } from '../src/decoder.js';
import { maskedMeanPool } from '../src/head.js';

export interface OpCase {
  name: string;
  /** Shapes of the float32 inputs the loss is differentiated against. */
  shapes: number[][];
  /** Forward pass; may build its own int32 constants (ids, masks). */
  f: (...xs: Tensor[]) => Tensor;
  /** Piecewise-linear or otherwise kinked: finite differences need inputs away from the kinks. */
  kinked?: boolean;
}

const ids = (values: number[]) => tf.tensor1d(values, 'int32');

/** RMSNorm over the last axis (decoder). */
function rmsNorm(x: Tensor, w: Tensor): Tensor {
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), 1e-5))), w);
}

/**
 * One causal GQA decoder layer (2 query heads, 1 kv head of 4, the model's RoPE, attention and
 * padding mask) over an embedding lookup with repeated ids, then the pooled regression head.
 */
function miniDecoder(E: Tensor, wq: Tensor, wk: Tensor, wv: Tensor, wo: Tensor, wg: Tensor, wu: Tensor, wd: Tensor, wn: Tensor, w1: Tensor, w2: Tensor): Tensor {
  const L = 5;
  const h = tf.gather(E, ids([0, 3, 3, 7, 1])); // [L, 8]
  const z = rmsNorm(h, wn);
  const heads = (t: Tensor, n: number) => tf.transpose(tf.reshape(t, [1, L, n, 4]), [0, 2, 1, 3]) as tf.Tensor4D; // [1, n, L, 4]
  const tables = ropeTables(L, 4, 10);
  const [cos, sin] = [tf.tensor2d(tables.cos, [L, 4]), tf.tensor2d(tables.sin, [L, 4])];
  const q = applyRope(heads(tf.matMul(z, wq), 2), cos, sin) as tf.Tensor4D;
  const k = applyRope(heads(tf.matMul(z, wk), 1), cos, sin) as tf.Tensor4D;
  const mask = tf.tensor2d([[1, 1, 1, 1, 0]], [1, L], 'int32');
  const context = groupedQueryAttention(q, k, heads(tf.matMul(z, wv), 1), causalPaddingBias(mask), 0.5); // [1, 2, L, 4]
  const h2 = tf.add(h, tf.matMul(tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [L, 8]), wo));
  const z2 = rmsNorm(h2, wn);
  const gate = tf.matMul(z2, wg);
  const y = tf.add(h2, tf.matMul(tf.mul(tf.mul(gate, tf.sigmoid(gate)), tf.matMul(z2, wu)), wd));
  const pooled = maskedMeanPool(tf.reshape(y, [1, L, 8]) as tf.Tensor3D, mask); // [1, 8]
  const hidden = tf.relu(tf.matMul(pooled, w1));
  return tf.add(1, tf.mul(4, tf.sigmoid(tf.matMul(hidden, w2))));
}

export const OP_CASES: readonly OpCase[] = [
  { name: 'matMul', shapes: [[3, 4], [4, 5]], f: (a, b) => tf.matMul(a, b) },
  { name: 'matMul transposeB', shapes: [[3, 4], [5, 4]], f: (a, b) => tf.matMul(a, b, false, true) },
  { name: 'matMul transposeA', shapes: [[4, 3], [4, 5]], f: (a, b) => tf.matMul(a, b, true, false) },
  { name: 'matMul transposeA + B', shapes: [[4, 3], [5, 4]], f: (a, b) => tf.matMul(a, b, true, true) },
  { name: 'batchMatMul', shapes: [[2, 3, 4], [2, 4, 5]], f: (a, b) => tf.matMul(a, b) },
  { name: 'gather (embedding, repeated ids)', shapes: [[6, 4]], f: (e) => tf.gather(e, ids([0, 2, 2, 5, 0, 2])) },
  { name: 'gather 2-D ids (a [B, L] batch)', shapes: [[5, 3]], f: (e) => tf.gather(e, tf.tensor2d([[0, 2, 2], [4, 0, 1]], [2, 3], 'int32')) },
  { name: 'gather axis 1', shapes: [[3, 6, 4]], f: (a) => tf.gather(a, ids([1, 1, 3]), 1) },
  { name: 'reshape + transpose', shapes: [[2, 3, 4]], f: (a) => tf.transpose(tf.reshape(a, [6, 4]), [1, 0]) },
  { name: 'transpose rank 4', shapes: [[2, 3, 2, 2]], f: (a) => tf.transpose(a, [0, 2, 1, 3]) },
  { name: 'concat', shapes: [[2, 3], [2, 5]], f: (a, b) => tf.concat([a, b], 1) },
  { name: 'split', shapes: [[4, 6]], f: (a) => { const [x, y] = tf.split(a, [2, 4], 1); return tf.concat([tf.mul(y, 3), x], 1); } },
  { name: 'add / sub / mul / div (broadcast)', shapes: [[3, 4], [1, 4]], f: (a, b) => tf.div(tf.sub(tf.mul(a, b), tf.add(a, b)), tf.add(tf.square(b), 1)) },
  { name: 'broadcast mul', shapes: [[1, 3], [4, 1]], f: (a, b) => tf.mul(a, b) },
  { name: 'neg', shapes: [[3, 4]], f: (a) => tf.neg(a) },
  { name: 'rsqrt', shapes: [[3, 4]], f: (a) => tf.rsqrt(tf.add(tf.square(a), 0.5)) },
  { name: 'sigmoid', shapes: [[3, 4]], f: (a) => tf.sigmoid(a) },
  { name: 'relu', shapes: [[3, 4]], f: (a) => tf.relu(a), kinked: true },
  { name: 'softmax', shapes: [[3, 4]], f: (a) => tf.softmax(a) },
  { name: 'mean', shapes: [[3, 4]], f: (a) => tf.mean(a, -1, true) },
  { name: 'mean of all', shapes: [[3, 4]], f: (a) => tf.mean(a) },
  { name: 'sum', shapes: [[3, 4]], f: (a) => tf.sum(a, 0) },
  { name: 'sum over two axes, kept', shapes: [[2, 3, 2]], f: (a) => tf.sum(a, [0, 2], true) },
  { name: 'square', shapes: [[3, 4]], f: (a) => tf.square(a) },
  { name: 'decoder block (GQA, RoPE, SwiGLU, head)', shapes: [[10, 8], [8, 8], [8, 4], [8, 4], [8, 8], [8, 12], [8, 12], [12, 8], [8], [8, 3], [3, 1]], f: miniDecoder, kinked: true },
];

/**
 * Deterministic, well-spread inputs: a seeded permutation of an evenly spaced grid in (−1, 1),
 * shifted per input so two inputs never tie and no value sits on 0 (kinks stay ≥ 0.3/n away).
 */
export function probeInputs(c: OpCase): Float32Array[] {
  return c.shapes.map((shape, k) => {
    const n = shape.reduce((p, d) => p * d, 1);
    const perm = Array.from({ length: n }, (_, i) => i);
    let s = 0x9e3779b9 ^ (k * 0x85ebca6b) ^ n;
    for (let i = n - 1; i > 0; i--) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      const j = s % (i + 1);
      [perm[i], perm[j]] = [perm[j], perm[i]];
    }
    return Float32Array.from(perm, (p) => -1 + (2 * p + 1.3 + (k % 2)) / n);
  });
}

/** Fixed loss weights, so the loss Σ wᵢ·f(x)ᵢ gives each output its own gradient. */
function lossWeights(size: number): Float32Array {
  return Float32Array.from({ length: size }, (_, i) => Math.sin(1.7 * i + 0.3));
}

/** Σ w·f(x) on the active backend. */
export function probeLoss(c: OpCase, values: Float32Array[]): number {
  return tf.tidy(() => {
    const y = c.f(...values.map((v, i) => tf.tensor(v, c.shapes[i], 'float32')));
    return tf.sum(tf.mul(y, tf.tensor(lossWeights(y.size), y.shape, 'float32'))).dataSync()[0];
  });
}

/** Loss and the gradient with respect to every input on the active backend (no tensors kept). */
export function probeGradients(c: OpCase, values: Float32Array[] = probeInputs(c)): { loss: number; grads: Float32Array[] } {
  return tf.tidy(() => {
    const xs = values.map((v, i) => tf.tensor(v, c.shapes[i], 'float32'));
    const loss = (...inputs: Tensor[]) => {
      const y = c.f(...inputs);
      return tf.sum(tf.mul(y, tf.tensor(lossWeights(y.size), y.shape, 'float32')));
    };
    const { value, grads } = tf.valueAndGrads(loss)(xs);
    return { loss: value.dataSync()[0], grads: grads.map((g) => Float32Array.from(g.dataSync())) };
  });
}

/** max |a − b| / max |b|: the error relative to the gradient's scale (elementwise ratios blow up near 0). */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  if (a.length !== b.length) return Infinity;
  return den === 0 ? num : num / den;
}

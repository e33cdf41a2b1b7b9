/**
 * A forward + backward probe over the ops the model's training step uses (Llama decoder,
 * SigLIP encoder, regression head): one small case per op plus two composite blocks. It answers
 * "can this backend train the model, and does it agree with the reference backend?" — the
 * wasm-kernels and training-gradients specs run it against cpu and against finite differences;
 * it found the missing wasm kernels and gradients (the dtype checks in wasm-kernels.spec.ts found
 * the wrong ones).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Tensor } from '@tensorflow/tfjs-core';

export interface OpCase {
  name: string;
  /** Shapes of the float32 inputs the loss is differentiated against. */
  shapes: number[][];
  /** Forward pass; may build its own int32 / bool constants (ids, masks). */
  f: (...xs: Tensor[]) => Tensor;
  /** Piecewise-linear or otherwise kinked: finite differences need inputs away from the kinks. */
  kinked?: boolean;
}

const ids = (values: number[]) => tf.tensor1d(values, 'int32');

/** RMSNorm over the last axis (decoder). */
function rmsNorm(x: Tensor, w: Tensor): Tensor {
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), 1e-5))), w);
}

/** LayerNorm over the last axis (encoder). */
function layerNorm(x: Tensor, w: Tensor, b: Tensor): Tensor {
  const mu = tf.mean(x, -1, true);
  const xc = tf.sub(x, mu);
  return tf.add(tf.mul(tf.div(xc, tf.sqrt(tf.add(tf.mean(tf.square(xc), -1, true), 1e-6))), w), b);
}

function geluTanh(x: Tensor): Tensor {
  const inner = tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.pow(x, 3))));
  return tf.mul(tf.mul(0.5, x), tf.add(1, tf.tanh(inner)));
}

/** rotate_half on the last axis: [a, b] → [−b, a]. */
function rotateHalf(x: Tensor): Tensor {
  const half = x.shape[x.rank - 1] / 2;
  const [a, b] = tf.split(x, [half, half], -1);
  return tf.concat([tf.neg(b), a], -1);
}

/** A two-head causal GQA decoder layer over an embedding lookup with repeated ids, then the pooled regression head. */
function miniDecoder(E: Tensor, wq: Tensor, wk: Tensor, wv: Tensor, wo: Tensor, wg: Tensor, wu: Tensor, wd: Tensor, wn: Tensor, w1: Tensor, w2: Tensor): Tensor {
  const L = 5;
  const h = tf.gather(E, ids([0, 3, 3, 7, 1])); // [L, 8]
  const z = rmsNorm(h, wn);
  const heads = (t: Tensor, n: number) => tf.transpose(tf.reshape(t, [L, n, 4]), [1, 0, 2]); // [n, L, 4]
  const pos = tf.range(0, L);
  const angles = tf.mul(tf.reshape(pos, [L, 1]), tf.tensor1d([1, 0.1, 1, 0.1])); // [L, 4] (inv_freq duplicated)
  const rope = (t: Tensor) => tf.add(tf.mul(t, tf.cos(angles)), tf.mul(rotateHalf(t), tf.sin(angles)));
  const q = rope(heads(tf.matMul(z, wq), 2));
  const kv = rope(heads(tf.matMul(z, wk), 1));
  const k = tf.tile(kv, [2, 1, 1]); // the kv head serves both query heads
  const v = tf.tile(heads(tf.matMul(z, wv), 1), [2, 1, 1]);
  const row = tf.reshape(pos, [L, 1]);
  const col = tf.reshape(pos, [1, L]);
  const scores = tf.where(tf.lessEqual(col, row), tf.div(tf.matMul(q, k, false, true), 2), tf.fill([2, L, L], -1e9));
  const attn = tf.reshape(tf.transpose(tf.matMul(tf.softmax(scores), v), [1, 0, 2]), [L, 8]);
  const h2 = tf.add(h, tf.matMul(attn, wo));
  const z2 = rmsNorm(h2, wn);
  const gate = tf.matMul(z2, wg);
  const mlp = tf.matMul(tf.mul(tf.mul(gate, tf.sigmoid(gate)), tf.matMul(z2, wu)), wd);
  const y = tf.add(h2, mlp);
  const mask = tf.cast(tf.greater(tf.tensor1d([1, 1, 1, 1, 0]), 0), 'float32');
  const pooled = tf.div(tf.sum(tf.mul(y, tf.reshape(mask, [L, 1])), 0, true), tf.sum(mask)); // [1, 8]
  const hidden = tf.relu(tf.matMul(pooled, w1));
  return tf.add(1, tf.mul(4, tf.sigmoid(tf.matMul(hidden, w2))));
}

/** Patch conv + position gather + one pre-LN encoder layer + pixel shuffle + projection. */
function miniEncoder(img: Tensor, filter: Tensor, pos: Tensor, lw: Tensor, lb: Tensor, w1: Tensor, w2: Tensor, proj: Tensor): Tensor {
  // Linear layers on 2-D views, as the model's own Linear does: a rank-3 × rank-2 matMul
  // broadcasts, and BatchMatMul's gradient (gradients.ts, like upstream) does not reduce it.
  const patches = tf.reshape(tf.conv2d(img as tf.Tensor4D, filter as tf.Tensor4D, 2, 'valid'), [16, 4]); // 4×4 grid, 4 ch
  const x = tf.add(patches, tf.gather(pos, ids([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15])));
  const z = layerNorm(x, lw, lb);
  const att = tf.softmax(tf.div(tf.matMul(z, z, false, true), 2));
  const h = tf.add(x, tf.matMul(att, z));
  const y = tf.add(h, tf.matMul(geluTanh(tf.matMul(layerNorm(h, lw, lb), w1)), w2));
  // pixel shuffle s=2 on the 4×4 grid: [1, 2, 2, 2, 2, 4] → [1, 4, 16]
  const shuffled = tf.reshape(tf.transpose(tf.reshape(y, [1, 2, 2, 2, 2, 4]), [0, 1, 3, 2, 4, 5]), [1, 4, 16]);
  return tf.matMul(tf.reshape(shuffled, [4, 16]), proj);
}

export const OP_CASES: readonly OpCase[] = [
  { name: 'matMul', shapes: [[3, 4], [4, 5]], f: (a, b) => tf.matMul(a, b) },
  { name: 'matMul transposeB', shapes: [[3, 4], [5, 4]], f: (a, b) => tf.matMul(a, b, false, true) },
  { name: 'matMul transposeA', shapes: [[4, 3], [4, 5]], f: (a, b) => tf.matMul(a, b, true, false) },
  { name: 'batchMatMul', shapes: [[2, 3, 4], [2, 4, 5]], f: (a, b) => tf.matMul(a, b) },
  { name: 'gather (embedding, repeated ids)', shapes: [[6, 4]], f: (e) => tf.gather(e, ids([0, 2, 2, 5, 0, 2])) },
  { name: 'gather axis 1', shapes: [[3, 6, 4]], f: (a) => tf.gather(a, ids([1, 1, 3]), 1) },
  { name: 'reshape + transpose', shapes: [[2, 3, 4]], f: (a) => tf.transpose(tf.reshape(a, [6, 4]), [1, 0]) },
  { name: 'transpose rank 4', shapes: [[2, 3, 2, 2]], f: (a) => tf.transpose(a, [0, 2, 1, 3]) },
  { name: 'concat', shapes: [[2, 3], [2, 5]], f: (a, b) => tf.concat([a, b], 1) },
  { name: 'slice', shapes: [[4, 5]], f: (a) => tf.slice(a, [1, 1], [2, 3]) },
  { name: 'stridedSlice', shapes: [[4, 6]], f: (a) => tf.stridedSlice(a, [0, 1], [4, 6], [1, 2]) },
  { name: 'stridedSlice reversed', shapes: [[4, 6]], f: (a) => tf.stridedSlice(a, [3, 5], [0, 0], [-1, -2]) },
  { name: 'stridedSlice shrink + new axis', shapes: [[4, 6]], f: (a) => tf.stridedSlice(a, [1, 0, 2], [2, 0, 6], [1, 1, 1], 0, 0, 0, 2, 1) },
  { name: 'split', shapes: [[4, 6]], f: (a) => { const [x, y] = tf.split(a, [2, 4], 1); return tf.concat([tf.mul(tf.slice(y, [0, 0], [4, 2]), x), y], 1); } },
  { name: 'stack / unstack', shapes: [[3, 4], [3, 4]], f: (a, b) => tf.mul(tf.stack([a, b], 1), tf.unstack(a)[1]) },
  { name: 'add / sub / mul / div (broadcast)', shapes: [[3, 4], [1, 4]], f: (a, b) => tf.div(tf.sub(tf.mul(a, b), tf.add(a, b)), tf.add(tf.square(b), 1)) },
  { name: 'neg', shapes: [[3, 4]], f: (a) => tf.neg(a) },
  { name: 'exp', shapes: [[3, 4]], f: (a) => tf.exp(a) },
  { name: 'log', shapes: [[3, 4]], f: (a) => tf.log(tf.add(tf.square(a), 0.5)) },
  { name: 'sqrt', shapes: [[3, 4]], f: (a) => tf.sqrt(tf.add(tf.square(a), 0.5)) },
  { name: 'rsqrt', shapes: [[3, 4]], f: (a) => tf.rsqrt(tf.add(tf.square(a), 0.5)) },
  { name: 'tanh', shapes: [[3, 4]], f: (a) => tf.tanh(a) },
  { name: 'sigmoid', shapes: [[3, 4]], f: (a) => tf.sigmoid(a) },
  { name: 'relu', shapes: [[3, 4]], f: (a) => tf.relu(a), kinked: true },
  { name: 'softmax', shapes: [[3, 4]], f: (a) => tf.softmax(a) },
  { name: 'logSoftmax', shapes: [[3, 4]], f: (a) => tf.logSoftmax(a) },
  { name: 'mean', shapes: [[3, 4]], f: (a) => tf.mean(a, -1, true) },
  { name: 'sum', shapes: [[3, 4]], f: (a) => tf.sum(a, 0) },
  { name: 'max', shapes: [[3, 4]], f: (a) => tf.max(a, -1), kinked: true },
  { name: 'square', shapes: [[3, 4]], f: (a) => tf.square(a) },
  { name: 'pow (scalar exponent)', shapes: [[3, 4]], f: (a) => tf.pow(tf.add(tf.square(a), 0.5), 3) },
  { name: 'pow (tensor exponent)', shapes: [[3, 4], [3, 4]], f: (a, b) => tf.pow(tf.add(tf.square(a), 0.5), b) },
  { name: 'where / greater', shapes: [[3, 4], [3, 4]], f: (a, b) => tf.where(tf.greater(a, b), a, tf.mul(b, 2)), kinked: true },
  { name: 'where / less', shapes: [[3, 4], [3, 4]], f: (a, b) => tf.where(tf.less(a, b), tf.exp(a), b), kinked: true },
  { name: 'cast (bool mask)', shapes: [[3, 4]], f: (a) => tf.mul(tf.cast(tf.greater(a, 0), 'float32'), a), kinked: true },
  { name: 'onesLike / zerosLike', shapes: [[3, 4]], f: (a) => tf.add(tf.mul(tf.onesLike(a), a), tf.zerosLike(a)) },
  { name: 'tile', shapes: [[2, 3]], f: (a) => tf.tile(a, [2, 3]) },
  { name: 'tile rank 5', shapes: [[1, 2, 1, 2, 1]], f: (a) => tf.tile(a, [2, 1, 3, 1, 2]) },
  { name: 'broadcast mul', shapes: [[1, 3], [4, 1]], f: (a, b) => tf.mul(a, b) },
  { name: 'conv2d (patch embedding)', shapes: [[1, 8, 8, 3], [4, 4, 3, 5]], f: (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 4, 'valid') },
  { name: 'conv2d same padding', shapes: [[2, 5, 5, 2], [3, 3, 2, 2]], f: (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 'same') },
  { name: 'pad', shapes: [[3, 4]], f: (a) => tf.pad(a, [[1, 0], [0, 2]]) },
  { name: 'expandDims / squeeze', shapes: [[3, 4]], f: (a) => tf.squeeze(tf.mul(tf.expandDims(a, 1), 2)) },
  { name: 'maximum / minimum', shapes: [[3, 4], [3, 4]], f: (a, b) => tf.maximum(tf.minimum(a, b), -0.5), kinked: true },
  { name: 'abs', shapes: [[3, 4]], f: (a) => tf.abs(a), kinked: true },
  { name: 'clipByValue', shapes: [[3, 4]], f: (a) => tf.clipByValue(a, -0.3, 0.3), kinked: true },
  { name: 'erf', shapes: [[3, 4]], f: (a) => tf.erf(a) },
  { name: 'softplus', shapes: [[3, 4]], f: (a) => tf.softplus(a) },
  { name: 'sin / cos', shapes: [[3, 4]], f: (a) => tf.add(tf.sin(a), tf.cos(a)) },
  { name: 'reciprocal', shapes: [[3, 4]], f: (a) => tf.reciprocal(tf.add(tf.square(a), 1)) },
  { name: 'squaredDifference', shapes: [[3, 4], [3, 4]], f: (a, b) => tf.squaredDifference(a, b) },
  { name: 'cumsum', shapes: [[3, 4]], f: (a) => tf.cumsum(a, 1) },
  { name: 'prod', shapes: [[3, 4]], f: (a) => tf.prod(a, 1) },
  { name: 'min', shapes: [[3, 4]], f: (a) => tf.min(a, 1), kinked: true },
  { name: 'reverse', shapes: [[3, 4]], f: (a) => tf.mul(tf.reverse(a, 1), a) },
  { name: 'fused matMul + bias + relu', shapes: [[3, 4], [4, 5], [5]], f: (a, b, c) => tf.fused.matMul({ a: a as tf.Tensor2D, b: b as tf.Tensor2D, bias: c, activation: 'relu' }), kinked: true },
  { name: 'unsortedSegmentSum', shapes: [[5, 3]], f: (a) => tf.unsortedSegmentSum(a, ids([0, 2, 2, 1, 0]), 4) },
  { name: 'decoder block (GQA, RoPE, SwiGLU, head)', shapes: [[10, 8], [8, 8], [8, 4], [8, 4], [8, 8], [8, 12], [8, 12], [12, 8], [8], [8, 3], [3, 1]], f: miniDecoder, kinked: true },
  { name: 'encoder block (conv, LayerNorm, gelu_tanh, pixel shuffle)', shapes: [[1, 8, 8, 3], [2, 2, 3, 4], [16, 4], [4], [4], [4, 6], [6, 4], [16, 3]], f: miniEncoder },
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

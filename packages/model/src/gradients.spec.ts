import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { Rng } from '@smolrate/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { MODEL_GRADIENTS, registerModelGradients } from './gradients.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
  registerModelGradients();
});

interface Input {
  shape: number[];
  /** Values; default seeded normals. */
  data?: number[];
}

/**
 * Compares tf.grads of L(xs) = Σ fn(xs) ⊙ R (R fixed random) with central differences computed
 * in float64 around float32 evaluations.
 */
function checkGradients(fn: (...xs: tf.Tensor[]) => tf.Tensor, inputs: Input[], seed = 1, eps = 1e-2, tol = 2e-3): void {
  const rng = new Rng(seed);
  const values = inputs.map((inp) => Float32Array.from(inp.data ?? Array.from({ length: inp.shape.reduce((a, b) => a * b, 1) }, () => rng.normal())));
  const outShape = tf.tidy(() => fn(...values.map((v, i) => tf.tensor(v, inputs[i].shape))).shape);
  const r = tf.tensor(Array.from({ length: outShape.reduce((a, b) => a * b, 1) }, () => rng.normal()), outShape);
  const loss = (...xs: tf.Tensor[]) => tf.sum(tf.mul(fn(...xs), r));
  const lossAt = (vals: Float32Array[]) => tf.tidy(() => loss(...vals.map((v, i) => tf.tensor(v, inputs[i].shape))).dataSync()[0]);

  const analytic = tf.tidy(() => tf.grads(loss)(values.map((v, i) => tf.tensor(v, inputs[i].shape))).map((g) => g.dataSync()));
  values.forEach((v, i) => {
    expect(analytic[i].length).toBe(v.length);
    for (let j = 0; j < v.length; j++) {
      const plus = values.map((x) => x.slice());
      const minus = values.map((x) => x.slice());
      plus[i][j] += eps;
      minus[i][j] -= eps;
      const numeric = (lossAt(plus) - lossAt(minus)) / (2 * eps);
      expect(Math.abs(analytic[i][j] - numeric)).toBeLessThan(tol * Math.max(1, Math.abs(numeric)));
    }
  });
  r.dispose();
}

describe('registerModelGradients', () => {
  it('registers every config, once', () => {
    for (const c of MODEL_GRADIENTS) expect(tf.getGradient(c.kernelName)).not.toBeNull();
    const before = MODEL_GRADIENTS.map((c) => tf.getGradient(c.kernelName));
    registerModelGradients();
    expect(MODEL_GRADIENTS.map((c) => tf.getGradient(c.kernelName))).toEqual(before);
  });
});

describe('gradients match finite differences', () => {
  it('Add / Sub / Multiply / RealDiv with broadcasting', () => {
    checkGradients((a, b) => tf.add(a, b), [{ shape: [2, 3] }, { shape: [3] }]);
    checkGradients((a, b) => tf.sub(a, b), [{ shape: [2, 1, 3] }, { shape: [4, 1] }]);
    checkGradients((a, b) => tf.mul(a, b), [{ shape: [2, 3] }, { shape: [2, 1] }]);
    checkGradients((a, b) => tf.div(a, b), [{ shape: [2, 3] }, { shape: [2, 1], data: [1.5, -2] }]);
  });

  it('Neg / Cast / Square / Rsqrt / Sigmoid / Tanh / Relu', () => {
    checkGradients((x) => tf.neg(x), [{ shape: [4] }]);
    checkGradients((x) => tf.cast(x, 'float32'), [{ shape: [4] }]);
    checkGradients((x) => tf.square(x), [{ shape: [5] }]);
    checkGradients((x) => tf.rsqrt(x), [{ shape: [3], data: [0.5, 1, 3] }]);
    checkGradients((x) => tf.sigmoid(x), [{ shape: [5] }]);
    checkGradients((x) => tf.tanh(x), [{ shape: [5] }]);
    checkGradients((x) => tf.relu(x), [{ shape: [4], data: [-1, -0.3, 0.4, 2] }]);
  });

  it('Softmax over the last axis', () => {
    checkGradients((x) => tf.softmax(x), [{ shape: [2, 2, 4] }]);
  });

  it('BatchMatMul in all four transpose combinations, batched', () => {
    checkGradients((a, b) => tf.matMul(a, b), [{ shape: [2, 2, 3] }, { shape: [2, 3, 2] }]);
    checkGradients((a, b) => tf.matMul(a, b, false, true), [{ shape: [2, 2, 3] }, { shape: [2, 4, 3] }]);
    checkGradients((a, b) => tf.matMul(a, b, true, false), [{ shape: [3, 2] }, { shape: [3, 4] }]);
    checkGradients((a, b) => tf.matMul(a, b, true, true), [{ shape: [3, 2] }, { shape: [4, 3] }]);
  });

  it('Reshape / Transpose / Concat / SplitV', () => {
    checkGradients((x) => tf.reshape(x, [3, 4]), [{ shape: [2, 6] }]);
    checkGradients((x) => tf.transpose(x, [2, 0, 1]), [{ shape: [2, 3, 2] }]);
    checkGradients((a, b) => tf.concat([a, b], 1), [{ shape: [2, 1] }, { shape: [2, 3] }]);
    checkGradients((x) => {
      const [a, b] = tf.split(x, 2, -1);
      return tf.concat([tf.mul(b, 3), a], -1);
    }, [{ shape: [2, 4] }]);
  });

  it('Sum / Mean over some axes', () => {
    checkGradients((x) => tf.sum(x, 1), [{ shape: [2, 3, 2] }]);
    checkGradients((x) => tf.sum(x, [0, 2], true), [{ shape: [2, 3, 2] }]);
    checkGradients((x) => tf.mean(x, -1, true), [{ shape: [2, 3] }]);
    checkGradients((x) => tf.mean(x), [{ shape: [2, 3] }]);
  });

  it('GatherV2 with repeated indices (embedding lookup), axis 0 and 1', () => {
    const idx = tf.tensor2d([[0, 2, 2], [3, 0, 1]], [2, 3], 'int32');
    checkGradients((x) => tf.gather(x, idx), [{ shape: [4, 2] }]);
    const idx1 = tf.tensor1d([1, 1, 0], 'int32');
    checkGradients((x) => tf.gather(x, idx1, 1), [{ shape: [2, 3, 2] }]);
    tf.dispose([idx, idx1]);
  });
});

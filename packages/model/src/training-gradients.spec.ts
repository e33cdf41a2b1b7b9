import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { registerCpuKernelOverrides } from './cpu-kernels.js';
import { MODEL_GRADIENTS } from './gradients.js';
import { OP_CASES, probeGradients, probeInputs, probeLoss, relativeError } from './op-probe.js';
import { registerTrainingGradients, TRAINING_GRADIENT_KERNELS } from './training-gradients.js';

let firstCall: string[] = [];
let sumGradientBefore: unknown;

beforeAll(async () => {
  await tf.setBackend('cpu');
  registerCpuKernelOverrides();
  sumGradientBefore = tf.getGradient('Sum');
  firstCall = registerTrainingGradients();
});

describe('registerTrainingGradients', () => {
  it('is needed: tfjs-core alone registers no gradients', () => {
    expect(sumGradientBefore).toBeUndefined();
  });

  it('registers every kernel of this file and of MODEL_GRADIENTS, once', () => {
    expect(new Set(firstCall)).toEqual(new Set(TRAINING_GRADIENT_KERNELS));
    for (const name of [...TRAINING_GRADIENT_KERNELS, ...MODEL_GRADIENTS.map((c) => c.kernelName)]) expect(tf.getGradient(name), name).toBeDefined();
    expect(registerTrainingGradients()).toEqual([]);
  });

  it('never replaces a gradient registered before it', () => {
    const mine = { kernelName: 'Erf', gradFunc: (dy: tf.Tensor | tf.Tensor[]) => ({ x: () => tf.zerosLike(dy as tf.Tensor) }) };
    tf.unregisterGradient('Erf');
    tf.registerGradient(mine);
    expect(registerTrainingGradients()).toEqual([]);
    expect(tf.getGradient('Erf')).toBe(mine);
    tf.unregisterGradient('Erf');
    expect(registerTrainingGradients()).toEqual(['Erf']);
  });
});

/**
 * Central differences of the probe loss in float32 (eps 3e-3; kinked cases have inputs ≥ 0.3/n
 * from their kinks), on up to 12 evenly spread elements per input. Float32 rounding of the loss
 * bounds the agreement at ~1e-3 of the gradient's scale; a wrong formula is off by O(1).
 */
function finiteDifferenceError(c: (typeof OP_CASES)[number], grads: Float32Array[]): number {
  const x = probeInputs(c);
  const eps = 3e-3;
  let worst = 0;
  x.forEach((values, k) => {
    const step = Math.max(1, Math.floor(values.length / 12));
    const fd: number[] = [];
    const an: number[] = [];
    for (let j = 0; j < values.length; j += step) {
      const plus = x.map((v) => v.slice());
      const minus = x.map((v) => v.slice());
      plus[k][j] += eps;
      minus[k][j] -= eps;
      fd.push((probeLoss(c, plus) - probeLoss(c, minus)) / (2 * eps));
      an.push(grads[k][j]);
    }
    worst = Math.max(worst, relativeError(fd, an));
  });
  return worst;
}

describe('gradients of the probe ops match finite differences (cpu)', () => {
  for (const c of OP_CASES) {
    it(c.name, () => {
      const before = tf.memory().numTensors;
      const { grads } = probeGradients(c);
      expect(tf.memory().numTensors).toBe(before);
      expect(grads.length).toBe(c.shapes.length);
      expect(finiteDifferenceError(c, grads)).toBeLessThan(5e-3);
    });
  }
});

describe('what upstream lacks', () => {
  it('StridedSlice: negative strides and shrink / new-axis masks scatter back to the right places', () => {
    const g = tf.tidy(() =>
      tf.grad((x: tf.Tensor) => tf.sum(tf.mul(tf.stridedSlice(x, [3, 5], [0, 0], [-1, -2]), tf.reshape(tf.range(1, 10), [3, 3]))))(tf.zeros([4, 6])).arraySync(),
    );
    // rows 3,2,1 × cols 5,3,1 get 1..9 in reading order; everything else 0
    expect(g).toEqual([
      [0, 0, 0, 0, 0, 0],
      [0, 9, 0, 8, 0, 7],
      [0, 6, 0, 5, 0, 4],
      [0, 3, 0, 2, 0, 1],
    ]);
  });

  it('Tile beyond rank 4 and comparisons on the tape', () => {
    const g = tf.tidy(() => tf.grad((x: tf.Tensor) => tf.sum(tf.tile(x, [2, 1, 3, 1, 2])))(tf.ones([1, 2, 1, 2, 1])).dataSync());
    expect(Array.from(g)).toEqual([12, 12, 12, 12]);
    const h = tf.tidy(() => tf.grad((x: tf.Tensor) => tf.sum(tf.where(tf.greater(x, 0), x, tf.mul(x, 0.1))))(tf.tensor1d([-2, 3])).dataSync());
    expect(Array.from(h)).toEqual([Math.fround(0.1), 1]);
  });
});

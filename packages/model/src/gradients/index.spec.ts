import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { OP_CASES, probeGradients, probeInputs, probeLoss, relativeError } from '../../tests/op-probe.js';
import { presetConfig } from '../config.js';
import { packTokenRows } from '../prompt.js';
import { SmolVLMRegressor } from '../smolvlm.js';
import { MODEL_GRADIENTS, registerModelGradients } from './index.js';

let firstCall: string[] = [];
let sumGradientBefore: unknown;

beforeAll(async () => {
  await tf.setBackend('cpu');
  sumGradientBefore = tf.getGradient('Sum');
  firstCall = registerModelGradients();
});

describe('registerModelGradients', () => {
  it('is needed: tfjs-core alone registers no gradients', () => {
    expect(sumGradientBefore).toBeUndefined();
  });

  it('registers every config, once', () => {
    expect(firstCall).toEqual(MODEL_GRADIENTS.map((c) => c.kernelName));
    for (const c of MODEL_GRADIENTS) expect(tf.getGradient(c.kernelName), c.kernelName).toBe(c);
    expect(registerModelGradients()).toEqual([]);
  });

  it('never replaces a gradient registered before it', () => {
    const ours = tf.getGradient(tf.Neg)!;
    const mine = { kernelName: tf.Neg, gradFunc: (dy: tf.Tensor | tf.Tensor[]) => ({ x: () => tf.zerosLike(dy as tf.Tensor) }) };
    tf.unregisterGradient(tf.Neg);
    tf.registerGradient(mine);
    expect(registerModelGradients()).toEqual([]);
    expect(tf.getGradient(tf.Neg)).toBe(mine);
    tf.unregisterGradient(tf.Neg);
    expect(registerModelGradients()).toEqual([tf.Neg]);
    expect(tf.getGradient(tf.Neg)).toBe(ours);
  });

  it('registers only what the training step uses: each of them is called by lossAndGrads', () => {
    const cfg = presetConfig('tiny');
    const model = SmolVLMRegressor.fromSeed(cfg, 1);
    const n = 9; // tiny's image rows at its 192² training size
    const block = [1061, 1024, ...new Array<number>(n).fill(cfg.imageTokenId), 1061];
    const tokens = packTokenRows(cfg, [[...block, 40, 41, 300], [...block, 12, 500]]);
    const features = tf.randomNormal([2, n, cfg.text.hiddenSize], 0, 1, 'float32', 1) as tf.Tensor3D;
    const targets = tf.tensor1d([4.5, 1.5]);
    const step = () => tf.dispose([...model.lossAndGrads({ imageFeatures: features, tokens }, targets, { dropoutSeed: [1, 2] }).grads.values()]);
    for (const config of MODEL_GRADIENTS) {
      // A gradient registered first is kept (see above): this one throws when backprop reaches it.
      tf.unregisterGradient(config.kernelName);
      tf.registerGradient({ kernelName: config.kernelName, gradFunc: () => { throw new Error(`used: ${config.kernelName}`); } });
      expect(step, config.kernelName).toThrow(`used: ${config.kernelName}`);
      tf.unregisterGradient(config.kernelName);
      tf.registerGradient(config);
    }
    step(); // and with all of them it runs
    tf.dispose([features, targets]);
    model.dispose();
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

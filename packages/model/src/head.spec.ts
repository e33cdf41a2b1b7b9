import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { dropoutMask, dropoutScale, maskedMeanPool, RegressionHead } from './head.js';
import { type Param, ParamScope } from './layers.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('maskedMeanPool', () => {
  it('averages only the unmasked positions: Σ mᵢhᵢ / Σ mᵢ', () => {
    const h = tf.tensor3d(
      [
        [[1, 2], [3, 4], [100, 100]],
        [[1, 1], [2, 2], [6, 9]],
      ],
    );
    const m = tf.tensor2d([[1, 1, 0], [1, 1, 1]], [2, 3], 'int32');
    expect(tf.tidy(() => maskedMeanPool(h, m).arraySync())).toEqual([[2, 3], [3, 4]]);
    tf.dispose([h, m]);
  });
});

describe('dropoutScale', () => {
  it('is a seeded inverted-dropout mask: 0 or 1/(1−p), about p zeros', () => {
    const a = dropoutScale(5, 20000, 0.1);
    expect(dropoutScale(5, 20000, 0.1)).toEqual(a);
    expect(dropoutScale(6, 20000, 0.1)).not.toEqual(a);
    const keep = 1 / 0.9;
    expect([...a].every((v) => v === 0 || v === Math.fround(keep))).toBe(true);
    const zeros = a.filter((v) => v === 0).length / a.length;
    expect(zeros).toBeGreaterThan(0.09);
    expect(zeros).toBeLessThan(0.11);
    expect([...dropoutScale(1, 100, 0)].every((v) => v === 1)).toBe(true);
    expect(() => dropoutScale(1, 4, 1)).toThrow(RangeError);
  });
});

describe('dropoutMask', () => {
  it('draws a batch from one seed, or each row from its own seed independent of the batch', () => {
    expect(dropoutMask(3, 2, 8, 0.5)).toEqual(dropoutScale(3, 16, 0.5));
    const rows = dropoutMask([11, 12, 13], 3, 8, 0.5);
    expect(rows.slice(8, 16)).toEqual(dropoutMask([12], 1, 8, 0.5));
    expect(rows.slice(0, 8)).toEqual(dropoutScale(11, 8, 0.5));
    expect(() => dropoutMask([1, 2], 3, 8, 0.5)).toThrow(RangeError);
  });
});

describe('RegressionHead', () => {
  it('computes 1 + 4·sigmoid(fc2(relu(fc1 x))) and applies a dropout mask after the ReLU', () => {
    const params: Param[] = [];
    const head = new RegressionHead(ParamScope.root(params, 'regression_head', 'head'), 2, 3, 0.1);
    expect(params.map((p) => [p.name, p.shape])).toEqual([
      ['regression_head.fc1.weight', [3, 2]],
      ['regression_head.fc1.bias', [3]],
      ['regression_head.fc2.weight', [1, 3]],
      ['regression_head.fc2.bias', [1]],
    ]);
    params[0].load({ shape: [3, 2], data: Float32Array.from([1, 0, 0, 1, -1, -1]) });
    params[1].load({ shape: [3], data: Float32Array.from([0, 0.5, 0]) });
    params[2].load({ shape: [1, 3], data: Float32Array.from([0.5, -1, 2]) });
    params[3].load({ shape: [1], data: Float32Array.from([0.25]) });
    const x = tf.tensor2d([[1, 2]]);
    // fc1: [1, 2.5, −3] → relu [1, 2.5, 0] → fc2: 0.5 − 2.5 + 0.25 = −1.75
    const out = tf.tidy(() => {
      const { logit, rating } = head.apply(x);
      return [logit.arraySync(), rating.arraySync()];
    });
    expect(out[0][0]).toBeCloseTo(-1.75, 6);
    expect(out[1][0]).toBeCloseTo(1 + 4 / (1 + Math.exp(1.75)), 6);
    // dropping unit 0 and doubling unit 1: 2·(−2.5) + 0.25
    const dropped = tf.tidy(() => head.apply(x, tf.tensor2d([[0, 2, 2]])).logit.arraySync());
    expect(dropped[0]).toBeCloseTo(-4.75, 6);
    x.dispose();
    params.forEach((p) => p.dispose());
  });
});

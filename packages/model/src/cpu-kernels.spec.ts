import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { CPU_UNSORTED_SEGMENT_SUM, registerCpuKernelOverrides } from './cpu-kernels.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const x = () => tf.tensor2d(Float32Array.from({ length: 9 * 5 }, (_, i) => Math.sin(0.7 * i) * 3), [9, 5]);
const ids = () => tf.tensor1d([4, 0, 4, 2, -1, 0, 4, 6, 2], 'int32');

describe('registerCpuKernelOverrides', () => {
  it('replaces the stock UnsortedSegmentSum with one that gives the same sums', async () => {
    const stock = tf.getKernel('UnsortedSegmentSum', 'cpu');
    expect(stock?.kernelFunc).not.toBe(CPU_UNSORTED_SEGMENT_SUM.kernelFunc);
    const expected = tf.tidy(() => tf.unsortedSegmentSum(x(), ids(), 7).arraySync());

    expect(registerCpuKernelOverrides()).toBe(true);
    expect(registerCpuKernelOverrides()).toBe(false);
    expect(tf.getKernel('UnsortedSegmentSum', 'cpu')?.kernelFunc).toBe(CPU_UNSORTED_SEGMENT_SUM.kernelFunc);

    const before = tf.memory().numTensors;
    const got = tf.tidy(() => tf.unsortedSegmentSum(x(), ids(), 7).arraySync());
    expect(tf.memory().numTensors).toBe(before);
    const flatGot = (got as number[][]).flat();
    const flatExpected = (expected as number[][]).flat();
    flatExpected.forEach((v, i) => expect(flatGot[i]).toBeCloseTo(v, 5));
    expect((got as number[][])[5]).toEqual([0, 0, 0, 0, 0]);
  });

  it('makes the embedding gradient of the full vocabulary cheap (O(size), not O(vocab · size))', () => {
    registerCpuKernelOverrides();
    const t0 = performance.now();
    const rowSum = tf.tidy(() => {
      const dy = tf.ones([200, 576]);
      const segIds = tf.tensor1d(Array.from({ length: 200 }, (_, i) => (i * 7919) % 49280), 'int32');
      const g = tf.unsortedSegmentSum(dy, segIds, 49280);
      expect(g.shape).toEqual([49280, 576]);
      return tf.sum(g).dataSync()[0];
    });
    expect(rowSum).toBe(200 * 576);
    // The stock kernel needs ~35 ms per segment here (≈ 30 min for 49,280 segments).
    expect(performance.now() - t0).toBeLessThan(10_000);
  });
});

import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { ShapeError } from '@smolrate/core';
import { normalizePixels, pixelBatchTensor } from './pixels.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('normalizePixels', () => {
  it('maps uint8 to x/127.5 − 1 (mean 0.5, std 0.5)', () => {
    const rgb = new Uint8Array([0, 255, 128, 1, 127, 254, 64, 191, 200, 10, 20, 30]);
    const out = normalizePixels(rgb, 2);
    expect(out).toBeInstanceOf(Float32Array);
    expect(out[0]).toBe(-1);
    expect(out[1]).toBe(1);
    for (let i = 0; i < rgb.length; i++) expect(out[i]).toBeCloseTo((rgb[i] / 255 - 0.5) / 0.5, 6);
  });

  it('rejects a buffer of the wrong size', () => {
    expect(() => normalizePixels(new Uint8Array(11), 2)).toThrow(ShapeError);
    expect(() => normalizePixels(new Uint8Array(12), 0)).toThrow(ShapeError);
  });
});

describe('pixelBatchTensor', () => {
  it('stacks images into [B, H, W, 3] float32 (NHWC) without leaking', () => {
    const before = tf.memory().numTensors;
    const a = new Uint8Array(2 * 2 * 3).fill(255);
    const b = new Uint8Array(2 * 2 * 3);
    b[3] = 51; // pixel (0,1), red
    const t = pixelBatchTensor([a, b], 2);
    expect(t.shape).toEqual([2, 2, 2, 3]);
    expect(t.dtype).toBe('float32');
    const v = t.arraySync();
    expect(v[0][1][1]).toEqual([1, 1, 1]);
    expect(v[1][0][1][0]).toBeCloseTo(51 / 127.5 - 1, 6);
    expect(v[1][0][0]).toEqual([-1, -1, -1]);
    t.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('checks every image', () => {
    expect(() => pixelBatchTensor([], 2)).toThrow(ShapeError);
    expect(() => pixelBatchTensor([new Uint8Array(12), new Uint8Array(13)], 2)).toThrow(/image 1/);
  });
});

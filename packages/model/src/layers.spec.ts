import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { CheckpointError, Rng, ShapeError } from '@smolrate/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { Linear, Param, ParamScope, tfjsShape, toTfjsLayout, toTorchLayout } from './layers.js';

/** n seeded normal(0, std) floats (core's Rng). */
const randn = (n: number, seed: number | Rng, std = 1) => {
  const rng = typeof seed === 'number' ? new Rng(seed) : seed;
  return Float32Array.from({ length: n }, () => std * rng.normal());
};

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('PyTorch ↔ tfjs layouts', () => {
  it('transposes Linear [out,in] to [in,out] and back', () => {
    const w = Float32Array.from([1, 2, 3, 4, 5, 6]); // [[1,2,3],[4,5,6]]: out=2, in=3
    expect(tfjsShape([2, 3], 'linear')).toEqual([3, 2]);
    expect([...toTfjsLayout(w, [2, 3], 'linear')]).toEqual([1, 4, 2, 5, 3, 6]);
    expect(toTorchLayout(toTfjsLayout(w, [2, 3], 'linear'), [2, 3], 'linear')).toEqual(w);
  });

  it('maps a Conv2d weight to the tfjs filter of transpose [2,3,1,0], and back', () => {
    const shape = [4, 3, 2, 5];
    const w = randn(4 * 3 * 2 * 5, 1);
    const viaTf = tf.tidy(() => tf.transpose(tf.tensor4d(w, shape as [number, number, number, number]), [2, 3, 1, 0]).dataSync());
    expect(tfjsShape(shape, 'conv')).toEqual([2, 5, 3, 4]);
    expect(toTfjsLayout(w, shape, 'conv')).toEqual(new Float32Array(viaTf));
    expect(toTorchLayout(toTfjsLayout(w, shape, 'conv'), shape, 'conv')).toEqual(w);
  });
});

describe('Param / Linear', () => {
  it('computes y = x·Wᵀ + b from PyTorch-layout weights', () => {
    const params: Param[] = [];
    const lin = new Linear(ParamScope.root(params, 'model.m', 'text').child('proj'), 3, 2, { bias: true });
    expect(params.map((p) => p.name)).toEqual(['model.m.proj.weight', 'model.m.proj.bias']);
    lin.weight.load({ shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) });
    lin.bias!.load({ shape: [2], data: Float32Array.from([0.5, -1]) });
    const y = tf.tidy(() => lin.apply(tf.tensor3d([1, 0, -1, 2, 1, 0], [1, 2, 3])).arraySync());
    // row 1: [1·1+2·0+3·(−1)+0.5, 4·1+5·0+6·(−1)−1]; row 2: [2+2+0.5, 8+5−1]
    expect(y).toEqual([[[-1.5, -3], [4.5, 12]]]);
    expect(lin.weight.toState()).toEqual({ shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) });
    expect(lin.weight.variable).toBeInstanceOf(tf.Variable);
    for (const p of params) p.dispose();
  });

  it('rejects a wrong shape, reports an unloaded value, keeps memory flat on reload', () => {
    const p = new Param('x.weight', [2, 2], 'linear', 'normal', 'text');
    expect(() => p.value).toThrow(CheckpointError);
    expect(() => p.load({ shape: [2, 3], data: new Float32Array(6) })).toThrow(ShapeError);
    expect(() => p.load({ shape: [2, 2], data: new Float32Array(3) })).toThrow(ShapeError);
    p.load({ shape: [2, 2], data: new Float32Array(4) });
    const frozen = new Param('y.weight', [2], 'plain', 'ones', 'vision');
    frozen.load({ shape: [2], data: new Float32Array(2) });
    const before = tf.memory().numTensors;
    p.load({ shape: [2, 2], data: Float32Array.from([1, 2, 3, 4]) });
    frozen.load({ shape: [2], data: Float32Array.from([5, 6]) });
    expect(tf.memory().numTensors).toBe(before);
    expect([...p.value.dataSync()]).toEqual([1, 3, 2, 4]);
    expect(() => frozen.variable).toThrow(TypeError);
    p.dispose();
    frozen.dispose();
    expect(tf.memory().numTensors).toBe(before - 2);
  });

  it('copies the caller data on load (later mutation does not leak in)', () => {
    const data = Float32Array.from([1, 2]);
    const p = new Param('z', [2], 'plain', 'zeros', 'vision');
    p.load({ shape: [2], data });
    data[0] = 99;
    expect([...p.value.dataSync()]).toEqual([1, 2]);
    const out = p.toState();
    out.data[1] = 77;
    expect([...p.value.dataSync()]).toEqual([1, 2]);
    p.dispose();
  });
});

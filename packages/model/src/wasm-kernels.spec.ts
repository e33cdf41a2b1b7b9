import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from './backend.js';
import { OP_CASES, probeGradients, relativeError } from '../tests/op-probe.js';
import { registerWasmKernels, WASM_KERNELS, WASM_PATCHES } from './wasm-kernels.js';

/** Runs `f` on `backend` and returns plain arrays (no tensor outlives the call). */
async function on<T>(backend: 'cpu' | 'wasm', f: () => T): Promise<T> {
  await initBackend(backend);
  const before = tf.memory().numTensors;
  const out = f();
  expect(tf.memory().numTensors, `tensors leaked on ${backend}`).toBe(before);
  return out;
}

const data = (t: tf.Tensor) => Array.from(t.dataSync());

beforeAll(async () => {
  await initBackend('cpu');
  await initBackend('wasm');
});

describe('registerWasmKernels', () => {
  it('has installed the missing kernels and patches, and is idempotent', () => {
    for (const k of WASM_KERNELS) expect(tf.getKernel(k.kernelName, 'wasm'), k.kernelName).toBeDefined();
    for (const p of WASM_PATCHES) expect(tf.getKernel(p.kernelName, 'wasm'), p.kernelName).toBeDefined();
    expect(registerWasmKernels()).toEqual([]);
  });
});

describe('embedding gradient (gather → UnsortedSegmentSum) on wasm', () => {
  // 2-D ids [batch 2, length 7] with repeats, one row never used, dy fixed.
  const ids = [3, 0, 3, 3, 9, 1, 0, 11, 3, 2, 2, 0, 5, 3];
  const vocab = 12;
  const dim = 16;
  const dy = Float32Array.from({ length: ids.length * dim }, (_, i) => Math.sin(0.37 * i) * (1 + (i % 5)));
  const embedGrad = () =>
    tf.tidy(() => {
      const table = tf.zeros([vocab, dim]);
      const loss = (e: tf.Tensor) => tf.sum(tf.mul(tf.gather(e, tf.tensor2d(ids, [2, 7], 'int32')), tf.tensor(dy, [2, 7, dim])));
      return data(tf.grad(loss)(table));
    });

  it('equals cpu within 1e-6 relative, and the one-hot reference', async () => {
    const wasm = await on('wasm', embedGrad);
    const cpu = await on('cpu', embedGrad);
    const reference = await on('cpu', () =>
      tf.tidy(() => data(tf.matMul(tf.oneHot(tf.tensor1d(ids, 'int32'), vocab), tf.tensor(dy, [ids.length, dim]), true, false))),
    );
    expect(relativeError(wasm, cpu)).toBeLessThan(1e-6);
    expect(relativeError(wasm, reference)).toBeLessThan(1e-6);
    // row 3 collects five lookups; row 4 none
    expect(wasm.slice(4 * dim, 5 * dim).every((v) => v === 0)).toBe(true);
    expect(Math.abs(wasm[3 * dim])).toBeGreaterThan(0);
  });

  it('UnsortedSegmentSum: int32 values, prefix-shaped ids, dropped out-of-range ids', async () => {
    const run = () =>
      tf.tidy(() => {
        const x = tf.reshape(tf.range(0, 24, 1, 'int32'), [2, 3, 4]);
        const out = tf.unsortedSegmentSum(x, tf.tensor2d([[1, -1, 1], [0, 7, 1]], [2, 3], 'int32') as unknown as tf.Tensor1D, 3);
        return { dtype: out.dtype, shape: out.shape, values: data(out) };
      });
    const wasm = await on('wasm', run);
    expect(wasm).toEqual(await on('cpu', run));
    // rows (0,0), (0,2), (1,2) → segment 1; (1,0) → 0; ids −1 and 7 dropped
    expect(wasm).toEqual({ dtype: 'int32', shape: [3, 4], values: [12, 13, 14, 15, 28, 31, 34, 37, 0, 0, 0, 0] });
  });
});

describe('Conv2DBackpropFilter on wasm equals cpu within 1e-6 relative', () => {
  const geometries: Array<{ name: string; x: number[]; filter: [number, number, number, number]; strides: number; pad: 'valid' | 'same'; dataFormat: 'NHWC' | 'NCHW' }> = [
    { name: 'patch embedding (16×16 stride 16)', x: [1, 32, 48, 3], filter: [16, 16, 3, 8], strides: 16, pad: 'valid', dataFormat: 'NHWC' },
    { name: '3×3 same, batch 2', x: [2, 7, 6, 3], filter: [3, 3, 3, 5], strides: 1, pad: 'same', dataFormat: 'NHWC' },
    { name: '3×3 same stride 2, odd size', x: [1, 9, 9, 2], filter: [3, 3, 2, 4], strides: 2, pad: 'same', dataFormat: 'NHWC' },
  ];
  for (const g of geometries) {
    it(g.name, async () => {
      const run = () =>
        tf.tidy(() => {
          const x = tf.tensor(Float32Array.from({ length: g.x.reduce((p, c) => p * c, 1) }, (_, i) => Math.cos(0.11 * i)), g.x);
          const w = tf.tensor(Float32Array.from({ length: g.filter.reduce((p, c) => p * c, 1) }, (_, i) => Math.sin(0.07 * i)), g.filter);
          const y = tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, g.strides, g.pad);
          const dy = tf.tensor(Float32Array.from({ length: y.size }, (_, i) => Math.sin(0.3 * i + 1)), y.shape);
          const dw = tf.engine().runKernel<tf.Tensor>('Conv2DBackpropFilter', { x, dy }, {
            strides: g.strides, pad: g.pad, dataFormat: g.dataFormat, filterShape: g.filter,
          } as unknown as tf.NamedAttrMap);
          return data(dw);
        });
      const wasm = await on('wasm', run);
      const cpu = await on('cpu', run);
      expect(wasm.length).toBe(g.filter.reduce((p, c) => p * c, 1));
      expect(relativeError(wasm, cpu)).toBeLessThan(1e-6);
    });
  }
});

describe('patched wasm kernels agree with cpu', () => {
  const cases: Record<string, () => { dtype: string; shape: number[]; values: number[] }> = {
    'cast int32 → bool': () => summary(tf.cast(tf.tensor1d([0, 1, 2, -3, 256], 'int32'), 'bool')),
    'cast float32 → bool': () => summary(tf.cast(tf.tensor1d([0, 0.5, -1, 2, NaN]), 'bool')),
    'stridedSlice int32': () => summary(tf.stridedSlice(tf.reshape(tf.range(0, 24, 1, 'int32'), [4, 6]), [3, 5], [0, 0], [-1, -2])),
    'stridedSlice bool, shrink': () => summary(tf.stridedSlice(tf.greater(tf.reshape(tf.range(0, 24), [4, 6]), 10), [1, 0], [2, 6], [1, 2], 0, 0, 0, 0, 1)),
    'reverse bool': () => summary(tf.reverse(tf.greater(tf.reshape(tf.range(0, 12), [3, 4]), 5), 1)),
    'stridedSlice float32 (original kernel)': () => summary(tf.stridedSlice(tf.reshape(tf.range(0, 24), [4, 6]), [0, 1], [4, 6], [1, 2])),
  };
  function summary(t: tf.Tensor) {
    return { dtype: t.dtype, shape: t.shape, values: data(t) };
  }
  for (const [name, f] of Object.entries(cases)) {
    it(name, async () => {
      const wasm = await on('wasm', () => tf.tidy(f));
      expect(wasm).toEqual(await on('cpu', () => tf.tidy(f)));
    });
  }
});

describe('forward + backward probe: wasm gradients equal cpu', () => {
  // XNNPACK accumulates matMul / conv in another order than the JS kernels: agreement is
  // ~1e-7 of the gradient's scale per op, ~1e-6 through the composite blocks.
  for (const c of OP_CASES) {
    it(c.name, async () => {
      const wasm = await on('wasm', () => probeGradients(c));
      const cpu = await on('cpu', () => probeGradients(c));
      expect(Math.abs(wasm.loss - cpu.loss)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(cpu.loss)));
      cpu.grads.forEach((g, i) => expect(relativeError(wasm.grads[i], g), `input ${i}`).toBeLessThan(1e-5));
    });
  }
});

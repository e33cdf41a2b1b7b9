import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from './backend.js';
import { OP_CASES, probeGradients, relativeError } from '../tests/op-probe.js';
import { registerWasmKernels, WASM_PATCHES } from './wasm-kernels.js';

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
  it('has installed the patches, and is idempotent', () => {
    for (const p of WASM_PATCHES) expect(tf.getKernel(p.kernelName, 'wasm'), p.kernelName).toBeDefined();
    expect(registerWasmKernels()).toEqual([]);
  });
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

import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from './backend.js';
import { relativeError } from '../tests/op-probe.js';
import { matMulPlan } from './wasm-matmul.js';

interface Case {
  name: string;
  a: number[];
  b: number[];
  transposeA?: boolean;
  transposeB?: boolean;
}

// Every route of the kernel: 2-D with each transpose, shared right operand, per-slice batches
// (rank 3 and 4, with transposes), a batch-1 left operand, and a product too small to reroute.
const CASES: Case[] = [
  { name: '2-D plain (already fast)', a: [37, 24], b: [24, 19] },
  { name: '2-D transposeA (dW = Xᵀ·dY)', a: [53, 24], b: [53, 40], transposeA: true },
  { name: '2-D transposeB (dX = dY·Wᵀ)', a: [53, 40], b: [24, 40], transposeB: true },
  { name: '2-D both transposed', a: [24, 53], b: [40, 24], transposeA: true, transposeB: true },
  { name: 'batched, shared right operand', a: [3, 29, 24], b: [24, 17] },
  { name: 'batched, shared right operand, transposeB', a: [3, 29, 24], b: [1, 17, 24], transposeB: true },
  { name: 'attention scores Q·Kᵀ', a: [6, 36, 16], b: [6, 18, 16], transposeB: true },
  { name: 'attention context P·V', a: [6, 36, 18], b: [6, 18, 16] },
  { name: 'attention backward Pᵀ·dC', a: [6, 36, 18], b: [6, 36, 16], transposeA: true },
  { name: 'rank 4 heads', a: [2, 3, 20, 16], b: [2, 3, 16, 20] },
  { name: 'left operand without batch', a: [1, 20, 16], b: [4, 16, 30] },
  { name: 'tiny (original kernel)', a: [2, 3, 4], b: [2, 4, 5] },
];

function operands(c: Case): [tf.Tensor, tf.Tensor] {
  const fill = (shape: number[], phase: number) =>
    tf.tensor(Float32Array.from({ length: shape.reduce((p, d) => p * d, 1) }, (_, i) => Math.sin(0.37 * i + phase) * (1 + (i % 3))), shape);
  return [fill(c.a, 0.1), fill(c.b, 1.3)];
}

async function product(backend: 'cpu' | 'wasm', c: Case): Promise<{ shape: number[]; values: Float32Array; leaked: number }> {
  await initBackend(backend);
  const before = tf.memory().numTensors;
  const [a, b] = operands(c);
  const y = tf.matMul(a, b, c.transposeA ?? false, c.transposeB ?? false);
  const out = { shape: y.shape, values: y.dataSync() as Float32Array };
  tf.dispose([a, b, y]);
  return { ...out, leaked: tf.memory().numTensors - before };
}

beforeAll(async () => {
  await initBackend('cpu');
  await initBackend('wasm');
});

describe('fast BatchMatMul on wasm', () => {
  for (const c of CASES) {
    it(`${c.name}: ${JSON.stringify(c.a)} × ${JSON.stringify(c.b)} equals cpu`, async () => {
      const cpu = await product('cpu', c);
      const wasm = await product('wasm', c);
      expect(wasm.shape).toEqual(cpu.shape);
      expect(relativeError(Array.from(wasm.values), Array.from(cpu.values))).toBeLessThan(1e-6);
      expect(wasm.leaked).toBe(0);
    });
  }

  it('gradients through rerouted products equal cpu', async () => {
    const grads = async (backend: 'cpu' | 'wasm') => {
      await initBackend(backend);
      return tf.tidy(() => {
        const [q, k] = operands({ name: '', a: [4, 30, 16], b: [4, 30, 16] });
        const f = (x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.square(tf.matMul(tf.softmax(tf.matMul(x, y, false, true)), y)));
        const [dq, dk] = tf.grads(f)([q, k]);
        return [...dq!.dataSync(), ...dk!.dataSync()];
      });
    };
    expect(relativeError(await grads('wasm'), await grads('cpu'))).toBeLessThan(1e-5);
  });

  it('heap growth between slices does not corrupt results (many large slices)', async () => {
    const c: Case = { name: '', a: [24, 96, 64], b: [24, 96, 64], transposeB: true };
    const cpu = await product('cpu', c);
    const wasm = await product('wasm', c);
    expect(relativeError(Array.from(wasm.values), Array.from(cpu.values))).toBeLessThan(1e-6);
  });
});

describe('matMulPlan', () => {
  it('reads M, K, N and the output shape under transposes', () => {
    expect(matMulPlan([6, 36, 16], [6, 18, 16], { transposeA: false, transposeB: true })).toEqual({ batchA: 6, batchB: 6, m: 36, k: 16, n: 18, outShape: [6, 36, 18] });
    expect(matMulPlan([53, 24], [53, 40], { transposeA: true, transposeB: false })).toMatchObject({ m: 24, k: 53, n: 40, outShape: [24, 40] });
    expect(matMulPlan([1, 20, 16], [4, 16, 30], { transposeA: false, transposeB: false })).toMatchObject({ batchA: 1, batchB: 4, outShape: [4, 20, 30] });
  });

  it('declines what it does not handle: mismatched inner dims, general broadcasting, rank 1', () => {
    expect(matMulPlan([3, 4], [5, 6], { transposeA: false, transposeB: false })).toBeNull();
    expect(matMulPlan([2, 3, 4, 5], [3, 2, 5, 6], { transposeA: false, transposeB: false })).toBeNull();
    expect(matMulPlan([4], [4, 2], { transposeA: false, transposeB: false })).toBeNull();
  });
});

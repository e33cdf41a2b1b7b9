/**
 * A faster BatchMatMul for the WebAssembly backend.
 *
 * tfjs-backend-wasm 4.22 sends a product to XNNPACK's packed GEMM only when it is a single 2-D
 * product without transposes; everything else — every batched product (attention) and every
 * transposed one (dX = dY·Wᵀ and dW = Xᵀ·dY in each backward pass) — goes to a scalar blocked
 * loop that runs 10–25× slower. This kernel routes those calls through the fast path:
 *
 *  - transposed operands are first transposed by the backend's Transpose kernel (memory-bound,
 *    a small fraction of the product's cost), and a right operand used as-is is copied: XNNPACK
 *    keeps a packed copy of the right operand for as long as that tensor lives;
 *  - a batched product whose right operand is shared (batch 1) is one 2-D product over the
 *    stacked rows of the left operand;
 *  - any other batched product is computed one 2-D slice at a time, each slice copied into its
 *    own heap tensor and multiplied on the fast path, the result copied into place.
 *
 * Products too small to gain (fewer than MIN_FAST_MACS multiply-adds per slice) and anything
 * this file does not handle (non-float32, broadcasting other than batch 1) keep the original
 * kernel. Results equal the original's up to float32 summation order (the spec bounds it).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

/** Below this many multiply-adds per 2-D slice the slow kernel's lack of setup cost wins. */
const MIN_FAST_MACS = 4096;

interface MatMulAttrs {
  transposeA: boolean;
  transposeB: boolean;
}

const size = (shape: readonly number[]): number => shape.reduce((p, c) => p * c, 1);

/** How a call decomposes: batch counts of each side and the [M, K] × [K, N] slice shape. */
export interface MatMulPlan {
  batchA: number;
  batchB: number;
  m: number;
  k: number;
  n: number;
  outShape: number[];
}

export function matMulPlan(aShape: readonly number[], bShape: readonly number[], attrs: MatMulAttrs): MatMulPlan | null {
  const ra = aShape.length;
  const rb = bShape.length;
  if (ra < 2 || rb < 2) return null;
  const m = attrs.transposeA ? aShape[ra - 1]! : aShape[ra - 2]!;
  const k = attrs.transposeA ? aShape[ra - 2]! : aShape[ra - 1]!;
  const kb = attrs.transposeB ? bShape[rb - 1]! : bShape[rb - 2]!;
  const n = attrs.transposeB ? bShape[rb - 2]! : bShape[rb - 1]!;
  if (k !== kb) return null;
  const outerA = aShape.slice(0, -2);
  const outerB = bShape.slice(0, -2);
  const batchA = size(outerA);
  const batchB = size(outerB);
  // Equal outer dims, or one side without batch (all ones): no general broadcasting here.
  let outer: number[];
  if (batchB === 1) outer = outerA.length >= outerB.length ? outerA : outerB;
  else if (batchA === 1) outer = outerB.length >= outerA.length ? outerB : outerA;
  else if (outerA.length === outerB.length && outerA.every((d, i) => d === outerB[i])) outer = outerA;
  else return null;
  return { batchA, batchB, m, k, n, outShape: [...outer, m, n] };
}

/** Wraps the package's BatchMatMul kernel config; returns the replacement config. */
export function fastBatchMatMulConfig(original: KernelConfig): KernelConfig {
  const slow = original.kernelFunc;
  let transpose: KernelFunc | null = null;

  const kernelFunc: KernelFunc = (args) => {
    const wasm = args.backend as BackendWasm;
    const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
    const attrs = args.attrs as unknown as MatMulAttrs;
    const plan = a.dtype === 'float32' && b.dtype === 'float32' ? matMulPlan(a.shape, b.shape, attrs) : null;
    const fastAlready = plan !== null && !attrs.transposeA && !attrs.transposeB && plan.batchA === 1 && plan.batchB === 1;
    if (plan === null || fastAlready || plan.m * plan.k * plan.n < MIN_FAST_MACS) return slow(args);
    transpose ??= tf.getKernel('Transpose', 'wasm')!.kernelFunc;

    const temps: TensorInfo[] = [];
    const keep = (t: TensorInfo): TensorInfo => (temps.push(t), t);
    // Operands as [batch, M, K] and [batch, K, N] without transposes.
    const lastTwo = (t: TensorInfo): TensorInfo => {
      const r = t.shape.length;
      const perm = [...Array(r).keys()];
      [perm[r - 2], perm[r - 1]] = [perm[r - 1]!, perm[r - 2]!];
      return keep(transpose!({ inputs: { x: t }, backend: wasm, attrs: { perm } }) as TensorInfo);
    };
    // XNNPACK packs the right operand into an operator cached until that tensor is disposed. The
    // right operands here are activations and gradients, which tfjs keeps until the end of the
    // whole backward pass; packing a private copy instead frees the packed copy with the copy.
    const copyOf = (t: TensorInfo): TensorInfo => keep(keepSlice(wasm, t, 0, t.shape));
    try {
      const aN = attrs.transposeA ? lastTwo(a) : a;
      const bN = attrs.transposeB ? lastTwo(b) : plan.batchB === 1 ? copyOf(b) : b;
      const { batchA, batchB, m, k, n } = plan;
      const noTranspose = { transposeA: false, transposeB: false };

      if (batchB === 1) {
        // Shared right operand: one product over all the rows of A.
        const a2 = { ...aN, shape: [batchA * m, k] };
        const b2 = { ...bN, shape: [k, n] };
        const out = slow({ inputs: { a: a2, b: b2 }, backend: wasm, attrs: noTranspose }) as TensorInfo;
        return { ...out, shape: plan.outShape };
      }

      const batch = Math.max(batchA, batchB);
      const out = wasm.makeOutput(plan.outShape, 'float32');
      for (let i = 0; i < batch; i++) {
        const aI = batchA === 1 ? { ...aN, shape: [m, k] } : keepSlice(wasm, aN, i * m * k, [m, k]);
        const bI = keepSlice(wasm, bN, i * k * n, [k, n]);
        const oI = slow({ inputs: { a: aI, b: bI }, backend: wasm, attrs: noTranspose }) as TensorInfo;
        // Views after every allocation: a malloc may grow the heap and detach older views.
        (wasm.typedArrayFromHeap(out) as Float32Array).set(wasm.typedArrayFromHeap(oI) as Float32Array, i * m * n);
        wasm.disposeData(oI.dataId);
        if (aI !== aN && batchA !== 1) wasm.disposeData(aI.dataId);
        wasm.disposeData(bI.dataId);
      }
      return out;
    } finally {
      for (const t of temps) wasm.disposeData(t.dataId);
    }
  };
  return { ...original, kernelFunc };
}

/** A fresh heap tensor holding `count = size(shape)` floats of `src` from element `offset`. */
function keepSlice(wasm: BackendWasm, src: TensorInfo, offset: number, shape: number[]): TensorInfo {
  const t = wasm.makeOutput(shape, 'float32');
  const from = wasm.typedArrayFromHeap(src) as Float32Array;
  (wasm.typedArrayFromHeap(t) as Float32Array).set(from.subarray(offset, offset + size(shape)));
  return t;
}

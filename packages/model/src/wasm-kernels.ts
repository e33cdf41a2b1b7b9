/**
 * Fixes to the WebAssembly backend (tfjs-backend-wasm 4.22) that training needs, found by
 * running the model's ops on wasm against cpu for float32, int32 and bool (wasm-kernels.spec.ts).
 *
 * Slow products, rerouted: batched and transposed BatchMatMul calls (wasm-matmul.ts).
 * Wrong results, patched (float32 paths are left to the original kernels):
 *  - Cast to bool copies values (`Uint8Array.set`): 2 → 2, 0.5 → 0, −1 → 255. Now x ≠ 0.
 *  - StridedSlice of int32 / bool takes the float path: garbage, labelled float32.
 *  - Reverse of bool writes out of bounds and aborts the wasm module.
 * All run in JS over the wasm heap: inputs are read through `typedArrayFromHeap` views and
 * results written into memory from `makeOutput`.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { stridedGatherInto } from './kernel-loops.js';
import { fastBatchMatMulConfig } from './wasm-matmul.js';

type HeapArray = Float32Array | Int32Array | Uint8Array;

const castToBool: KernelFunc = ({ inputs, backend }) => {
  const wasm = backend as BackendWasm;
  const { x } = inputs as { x: TensorInfo };
  const out = wasm.makeOutput(x.shape, 'bool');
  const dst = wasm.typedArrayFromHeap(out) as Uint8Array;
  const src = wasm.typedArrayFromHeap(x);
  for (let i = 0; i < src.length; i++) dst[i] = src[i] !== 0 ? 1 : 0;
  return out;
};

type StridedSliceAttrs = {
  begin: number[];
  end: number[];
  strides: number[];
  beginMask: number;
  endMask: number;
  ellipsisMask: number;
  newAxisMask: number;
  shrinkAxisMask: number;
};

const stridedSliceJs: KernelFunc = ({ inputs, backend, attrs }) => {
  const wasm = backend as BackendWasm;
  const { x } = inputs as { x: TensorInfo };
  const a = attrs as unknown as StridedSliceAttrs;
  const info = tf.slice_util.sliceInfo(x.shape, a.begin, a.end, a.strides, a.beginMask, a.endMask, a.ellipsisMask, a.newAxisMask, a.shrinkAxisMask);
  // begin/end/strides are dense (one per axis of x); finalShape adds new axes and drops shrunk ones.
  const dense = tf.slice_util.computeOutShape(info.begin, info.end, info.strides).map((d) => Math.max(d, 0));
  const out = wasm.makeOutput(info.finalShape, x.dtype);
  stridedGatherInto(wasm.typedArrayFromHeap(out) as HeapArray, wasm.typedArrayFromHeap(x) as HeapArray, x.shape, info.begin, info.strides, dense);
  return out;
};

const reverseJs: KernelFunc = ({ inputs, backend, attrs }) => {
  const wasm = backend as BackendWasm;
  const { x } = inputs as { x: TensorInfo };
  const axes = new Set(tf.util.parseAxisParam((attrs as unknown as { dims: number | number[] }).dims, x.shape));
  const begin = x.shape.map((d, i) => (axes.has(i) ? d - 1 : 0));
  const strides = x.shape.map((_, i) => (axes.has(i) ? -1 : 1));
  const out = wasm.makeOutput(x.shape, x.dtype);
  stridedGatherInto(wasm.typedArrayFromHeap(out) as HeapArray, wasm.typedArrayFromHeap(x) as HeapArray, x.shape, begin, strides, x.shape);
  return out;
};

interface KernelPatch {
  kernelName: string;
  /** True when the JS replacement handles this call; otherwise the original kernel runs. */
  applies(x: TensorInfo, attrs: NamedAttrMap): boolean;
  replacement: KernelFunc;
}

export const WASM_PATCHES: readonly KernelPatch[] = [
  { kernelName: 'Cast', applies: (x, attrs) => attrs.dtype === 'bool' && x.dtype !== 'bool', replacement: castToBool },
  { kernelName: 'StridedSlice', applies: (x) => x.dtype !== 'float32', replacement: stridedSliceJs },
  { kernelName: 'Reverse', applies: (x) => x.dtype === 'bool', replacement: reverseJs },
];

const installedPatches = new WeakSet<KernelFunc>();

function patch(p: KernelPatch): boolean {
  const original = tf.getKernel(p.kernelName, 'wasm');
  // Not loaded yet: patching now would leave the package's own registration to be refused later.
  if (original == null || installedPatches.has(original.kernelFunc)) return false;
  const kernelFunc: KernelFunc = (args) => {
    const x = (args.inputs as { x: TensorInfo }).x;
    return p.applies(x, args.attrs ?? {}) ? p.replacement(args) : original.kernelFunc(args);
  };
  installedPatches.add(kernelFunc);
  tf.unregisterKernel(p.kernelName, 'wasm');
  // Keep the original setup/dispose: they bind the C++ entry points the original kernel calls.
  tf.registerKernel({ ...original, kernelFunc });
  return true;
}

/** Routes batched and transposed products to XNNPACK's fast path (wasm-matmul.ts). */
function patchBatchMatMul(): boolean {
  const original = tf.getKernel('BatchMatMul', 'wasm');
  if (original == null || installedPatches.has(original.kernelFunc)) return false;
  const replacement = fastBatchMatMulConfig(original);
  installedPatches.add(replacement.kernelFunc);
  tf.unregisterKernel('BatchMatMul', 'wasm');
  tf.registerKernel(replacement);
  return true;
}

/**
 * Patches the wrong and slow kernels of 'wasm' (idempotent). Call it after importing
 * `@tensorflow/tfjs-backend-wasm` (initBackend does): patches wrap the package's kernels.
 * Returns the kernel names changed.
 */
export function registerWasmKernels(): string[] {
  const changed: string[] = [];
  for (const p of WASM_PATCHES) if (patch(p)) changed.push(p.kernelName);
  // SMOLRATE_WASM_FAST_MATMUL=0 keeps the package's BatchMatMul (an escape hatch and an A/B switch).
  if (process.env.SMOLRATE_WASM_FAST_MATMUL !== '0' && patchBatchMatMul()) changed.push('BatchMatMul');
  return changed;
}

/**
 * Fixes to the WebAssembly backend (tfjs-backend-wasm 4.22) that training needs, found by the
 * forward + backward probe in wasm-kernels.spec.ts (the ops a Llama / SigLIP model uses, on
 * wasm against cpu, for float32, int32 and bool).
 *
 * Missing kernels, added:
 *  - UnsortedSegmentSum: the gradient of gather, i.e. of the token-embedding lookup.
 *  - Conv2DBackpropFilter: the filter gradient of conv2d (the patch embedding; frozen in
 *    smolrate's recipe, but a full fine-tune or a gradient check goes through it).
 * Slow products, rerouted: batched and transposed BatchMatMul calls (wasm-matmul.ts).
 * Wrong results, patched (float32 paths are left to the original kernels):
 *  - Cast to bool copies values (`Uint8Array.set`): 2 → 2, 0.5 → 0, −1 → 255. Now x ≠ 0.
 *  - StridedSlice of int32 / bool takes the float path: garbage, labelled float32.
 *  - Reverse of bool writes out of bounds and aborts the wasm module.
 * All run in JS over the wasm heap: inputs are read through `typedArrayFromHeap` views and
 * results written into memory from `makeOutput`.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { KernelConfig, KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { conv2dFilterGradInto, segmentSumInto, stridedGatherInto, type ConvGeometry } from './kernel-loops.js';
import { fastBatchMatMulConfig } from './wasm-matmul.js';

type HeapArray = Float32Array | Int32Array | Uint8Array;

type Conv2DAttrs = {
  strides: number | [number, number];
  pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dataFormat: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  filterShape: [number, number, number, number];
};

/** Conv geometry of x ⋆ filter, with tfjs's own padding and output-size rules. */
function convGeometry(xShape: number[], attrs: Conv2DAttrs): ConvGeometry {
  const info = tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    attrs.filterShape,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    tf.backend_util.convertConv2DDataFormat(attrs.dataFormat),
  );
  return {
    batchSize: info.batchSize,
    inHeight: info.inHeight,
    inWidth: info.inWidth,
    inChannels: info.inChannels,
    outHeight: info.outHeight,
    outWidth: info.outWidth,
    outChannels: info.outChannels,
    filterHeight: info.filterHeight,
    filterWidth: info.filterWidth,
    strideHeight: info.strideHeight,
    strideWidth: info.strideWidth,
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
    channelsLast: info.dataFormat === 'channelsLast',
  };
}

/**
 * Shapes of a segment sum: the ids' shape must be a prefix of x's (TF's rule); each id selects a
 * row of `inner` values and the output is [numSegments, ...x.shape after that prefix].
 */
export function segmentSumShapes(xShape: number[], idsShape: number[], numSegments: number): { inner: number; outShape: number[] } {
  if (idsShape.length > xShape.length || idsShape.some((d, i) => d !== xShape[i])) {
    throw new Error(`unsortedSegmentSum: segmentIds shape [${idsShape}] must be a prefix of x shape [${xShape}]`);
  }
  const rest = xShape.slice(idsShape.length);
  return { inner: rest.reduce((p, c) => p * c, 1), outShape: [numSegments, ...rest] };
}

const wasmUnsortedSegmentSum: KernelFunc = ({ inputs, backend, attrs }) => {
  const wasm = backend as BackendWasm;
  const { x, segmentIds } = inputs as { x: TensorInfo; segmentIds: TensorInfo };
  const { numSegments } = attrs as unknown as { numSegments: number };
  const { inner, outShape } = segmentSumShapes(x.shape, segmentIds.shape, numSegments);
  const out = wasm.makeOutput(outShape, x.dtype);
  // Views only after makeOutput: its malloc may grow the heap and detach older views.
  const outView = wasm.typedArrayFromHeap(out) as Float32Array | Int32Array;
  outView.fill(0);
  segmentSumInto(outView, wasm.typedArrayFromHeap(x) as Float32Array | Int32Array, wasm.typedArrayFromHeap(segmentIds) as Int32Array, inner, numSegments);
  return out;
};

const wasmConv2DBackpropFilter: KernelFunc = ({ inputs, backend, attrs }) => {
  const wasm = backend as BackendWasm;
  const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
  const a = attrs as unknown as Conv2DAttrs;
  const acc = new Float64Array(a.filterShape.reduce((p, c) => p * c, 1));
  conv2dFilterGradInto(acc, wasm.typedArrayFromHeap(x) as Float32Array, wasm.typedArrayFromHeap(dy) as Float32Array, convGeometry(x.shape, a));
  const out = wasm.makeOutput(a.filterShape, 'float32');
  (wasm.typedArrayFromHeap(out) as Float32Array).set(acc);
  return out;
};

export const WASM_KERNELS: readonly KernelConfig[] = [
  { kernelName: 'UnsortedSegmentSum', backendName: 'wasm', kernelFunc: wasmUnsortedSegmentSum },
  { kernelName: 'Conv2DBackpropFilter', backendName: 'wasm', kernelFunc: wasmConv2DBackpropFilter },
];

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
 * Adds the missing kernels and patches the wrong ones for 'wasm' (idempotent; never replaces a
 * kernel someone else registered under an added name). Call it after importing
 * `@tensorflow/tfjs-backend-wasm` (initBackend does): patches wrap the package's kernels.
 * Returns the kernel names changed.
 */
export function registerWasmKernels(): string[] {
  const changed: string[] = [];
  for (const k of WASM_KERNELS) {
    if (tf.getKernel(k.kernelName, k.backendName) != null) continue;
    tf.registerKernel(k);
    changed.push(k.kernelName);
  }
  for (const p of WASM_PATCHES) if (patch(p)) changed.push(p.kernelName);
  // SMOLRATE_WASM_FAST_MATMUL=0 keeps the package's BatchMatMul (an escape hatch and an A/B switch).
  if (process.env.SMOLRATE_WASM_FAST_MATMUL !== '0' && patchBatchMatMul()) changed.push('BatchMatMul');
  return changed;
}

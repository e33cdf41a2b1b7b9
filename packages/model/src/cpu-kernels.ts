/**
 * A replacement for tfjs-backend-cpu's UnsortedSegmentSum. The stock kernel loops over the
 * segments and runs equal / cast / multiply / sum over all of x for each one — O(numSegments ·
 * size(x)) with five temporary tensors per segment — so the embedding gradient (49,280
 * segments) takes minutes per step. This one is the O(size(x)) scatter-add that TF runs.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { segmentSumInto } from './kernel-loops.js';
import { segmentSumShapes } from './wasm-kernels.js';

const cpuUnsortedSegmentSum: KernelFunc = ({ inputs, backend, attrs }) => {
  const cpu = backend as MathBackendCPU;
  const { x, segmentIds } = inputs as { x: TensorInfo; segmentIds: TensorInfo };
  const { numSegments } = attrs as unknown as { numSegments: number };
  const { inner, outShape } = segmentSumShapes(x.shape, segmentIds.shape, numSegments);
  const xv = cpu.data.get(x.dataId).values as Float32Array | Int32Array;
  const ids = cpu.data.get(segmentIds.dataId).values as Int32Array;
  const out = x.dtype === 'int32' ? new Int32Array(numSegments * inner) : new Float32Array(numSegments * inner);
  segmentSumInto(out, xv, ids, inner, numSegments);
  return cpu.makeTensorInfo(outShape, x.dtype, out);
};

export const CPU_UNSORTED_SEGMENT_SUM: KernelConfig = { kernelName: 'UnsortedSegmentSum', backendName: 'cpu', kernelFunc: cpuUnsortedSegmentSum };

/** Installs the replacement (idempotent). Returns true when it replaced the stock kernel on this call. */
export function registerCpuKernelOverrides(): boolean {
  const current = tf.getKernel('UnsortedSegmentSum', 'cpu');
  if (current?.kernelFunc === cpuUnsortedSegmentSum) return false;
  if (current != null) tf.unregisterKernel('UnsortedSegmentSum', 'cpu');
  tf.registerKernel(CPU_UNSORTED_SEGMENT_SUM);
  return true;
}

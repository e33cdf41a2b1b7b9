/**
 * Gradient functions for the kernels on the trained path of the model (decoder + head).
 *
 * `@tensorflow/tfjs-core`'s Node entry (`tf-core.node.js`) registers no gradients: the union
 * package `@tensorflow/tfjs` does, by importing `tfjs-core/dist/register_all_gradients`, which
 * Node cannot load on its own (extensionless ESM). smolrate depends on tfjs-core + backends only,
 * so the few gradients it needs are registered here, as small config objects in one place. They
 * are ports of tfjs-core 4.22's own configs (Apache-2.0, © Google LLC), registered only for kernels
 * that have none yet, so loading the union package (or tfjs-node) first takes precedence.
 */
import * as tf from '@tensorflow/tfjs-core';

const { assertAndGetBroadcastShape, getReductionAxes } = tf.broadcast_util;
const { getUndoAxesPermutation, computeOutAndReduceShapes } = tf.backend_util;
const { parseAxisParam, sizeFromShape } = tf.util;

type GradFunc = tf.GradConfig['gradFunc'];

/** Sums a broadcast gradient back down to `shape`. */
function unbroadcast(grad: tf.Tensor, shape: number[], outShape: number[]): tf.Tensor {
  const axes = getReductionAxes(shape, outShape);
  return tf.reshape(axes.length > 0 ? tf.sum(grad, axes) : grad, shape);
}

function unary(kernelName: string, save: 'x' | 'y' | 'none', der: (dy: tf.Tensor, saved: tf.Tensor) => tf.Tensor): tf.GradConfig {
  return {
    kernelName,
    ...(save === 'x' ? { inputsToSave: ['x'] } : save === 'y' ? { outputsToSave: [true] } : {}),
    gradFunc: ((dy: tf.Tensor, saved: tf.Tensor[]) => ({ x: () => der(dy, saved[0]) })) as GradFunc,
  };
}

const f32 = (t: tf.Tensor) => tf.cast(t, 'float32');

export const MODEL_GRADIENTS: tf.GradConfig[] = [
  {
    kernelName: tf.Add,
    inputsToSave: ['a', 'b'],
    gradFunc: ((dy: tf.Tensor, [a, b]: tf.Tensor[]) => {
      const out = assertAndGetBroadcastShape(a.shape, b.shape);
      return { a: () => unbroadcast(dy, a.shape, out), b: () => unbroadcast(dy, b.shape, out) };
    }) as GradFunc,
  },
  {
    kernelName: tf.Sub,
    inputsToSave: ['a', 'b'],
    gradFunc: ((dy: tf.Tensor, [a, b]: tf.Tensor[]) => {
      const out = assertAndGetBroadcastShape(a.shape, b.shape);
      return { a: () => unbroadcast(dy, a.shape, out), b: () => tf.neg(unbroadcast(dy, b.shape, out)) };
    }) as GradFunc,
  },
  {
    kernelName: tf.Multiply,
    inputsToSave: ['a', 'b'],
    gradFunc: ((dy: tf.Tensor, [a, b]: tf.Tensor[]) => {
      const out = assertAndGetBroadcastShape(a.shape, b.shape);
      return { a: () => unbroadcast(tf.mul(dy, f32(b)), a.shape, out), b: () => unbroadcast(tf.mul(dy, f32(a)), b.shape, out) };
    }) as GradFunc,
  },
  {
    kernelName: tf.RealDiv,
    inputsToSave: ['a', 'b'],
    gradFunc: ((dy: tf.Tensor, [a, b]: tf.Tensor[]) => {
      const out = assertAndGetBroadcastShape(a.shape, b.shape);
      return {
        a: () => unbroadcast(tf.div(dy, f32(b)), a.shape, out),
        b: () => tf.neg(tf.div(unbroadcast(tf.mul(dy, f32(a)), b.shape, out), f32(tf.square(b)))),
      };
    }) as GradFunc,
  },
  unary(tf.Neg, 'none', (dy) => tf.neg(dy)),
  unary(tf.Cast, 'none', (dy) => tf.clone(dy)),
  unary(tf.Square, 'x', (dy, x) => tf.mul(dy, tf.mul(f32(x), 2))),
  unary(tf.Rsqrt, 'x', (dy, x) => tf.neg(tf.div(dy, tf.mul(tf.pow(x, 1.5), 2)))),
  unary(tf.Sigmoid, 'y', (dy, y) => tf.mul(dy, tf.mul(y, tf.sub(tf.scalar(1), y)))),
  unary(tf.Tanh, 'y', (dy, y) => tf.mul(tf.sub(tf.scalar(1), tf.square(y)), dy)),
  unary(tf.Relu, 'x', (dy, x) => tf.mul(dy, f32(tf.step(x)))),
  {
    kernelName: tf.Softmax,
    outputsToSave: [true],
    gradFunc: ((dy: tf.Tensor, [y]: tf.Tensor[], attrs: tf.NamedAttrMap) => {
      const dim = attrs.dim as number;
      const dyTimesY = tf.mul(dy, y);
      return { logits: () => tf.sub(dyTimesY, tf.mul(tf.sum(dyTimesY, [dim], true), y)) };
    }) as GradFunc,
  },
  {
    kernelName: tf.BatchMatMul,
    inputsToSave: ['a', 'b'],
    gradFunc: ((dy: tf.Tensor, [a, b]: tf.Tensor[], attrs: tf.NamedAttrMap) => {
      const { transposeA, transposeB } = attrs as { transposeA: boolean; transposeB: boolean };
      if (!transposeA && !transposeB) return { a: () => tf.matMul(dy, b, false, true), b: () => tf.matMul(a, dy, true, false) };
      if (!transposeA && transposeB) return { a: () => tf.matMul(dy, b, false, false), b: () => tf.matMul(dy, a, true, false) };
      if (transposeA && !transposeB) return { a: () => tf.matMul(b, dy, false, true), b: () => tf.matMul(a, dy, false, false) };
      return { a: () => tf.matMul(b, dy, true, true), b: () => tf.matMul(dy, a, true, true) };
    }) as GradFunc,
  },
  {
    kernelName: tf.Reshape,
    inputsToSave: ['x'],
    gradFunc: ((dy: tf.Tensor, [x]: tf.Tensor[]) => ({ x: () => tf.reshape(dy, x.shape) })) as GradFunc,
  },
  {
    kernelName: tf.Transpose,
    gradFunc: ((dy: tf.Tensor, _saved: tf.Tensor[], attrs: tf.NamedAttrMap) => ({
      x: () => tf.transpose(dy, getUndoAxesPermutation(attrs.perm as number[])),
    })) as GradFunc,
  },
  {
    kernelName: tf.Concat,
    saveAllInputs: true,
    gradFunc: ((dy: tf.Tensor, saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
      const axis = parseAxisParam(attrs.axis as number, saved[0].shape)[0];
      const parts = tf.split(dy, saved.map((t) => t.shape[axis]), axis);
      return parts.map((t) => () => t);
    }) as unknown as GradFunc,
  },
  {
    kernelName: tf.SplitV,
    gradFunc: ((dy: tf.Tensor[], _saved: tf.Tensor[], attrs: tf.NamedAttrMap) => ({
      x: () => tf.concat(dy, attrs.axis as number),
    })) as unknown as GradFunc,
  },
  {
    kernelName: tf.Sum,
    inputsToSave: ['x'],
    gradFunc: ((dy: tf.Tensor, [x]: tf.Tensor[], attrs: tf.NamedAttrMap) => {
      const expanded = x.shape.slice();
      for (const axis of parseAxisParam(attrs.axis as number | number[], x.shape)) expanded[axis] = 1;
      return { x: () => tf.mul(tf.reshape(dy, expanded), tf.ones(x.shape, 'float32')) };
    }) as GradFunc,
  },
  {
    kernelName: tf.Mean,
    inputsToSave: ['x'],
    gradFunc: ((dy: tf.Tensor, [x]: tf.Tensor[], attrs: tf.NamedAttrMap) => {
      const axes = parseAxisParam(attrs.axis as number | number[], x.shape);
      const reduceSize = sizeFromShape(computeOutAndReduceShapes(x.shape, axes)[1]);
      const expanded = x.shape.slice();
      for (const axis of axes) expanded[axis] = 1;
      return { x: () => tf.div(tf.mul(tf.reshape(dy, expanded), tf.ones(x.shape, 'float32')), reduceSize) };
    }) as GradFunc,
  },
  {
    // Embedding lookups and the image merge: add dy back into the gathered rows (batchDims 0).
    // tfjs scatters with unsortedSegmentSum, which the cpu backend runs as one masked sum per
    // segment (O(vocab · tokens) — minutes for a 49k vocabulary); scatterND sums duplicate
    // indices in one pass on every backend.
    kernelName: tf.GatherV2,
    inputsToSave: ['x', 'indices'],
    gradFunc: ((dy: tf.Tensor, [x, indices]: tf.Tensor[], attrs: tf.NamedAttrMap) => {
      const { batchDims } = attrs as { batchDims: number };
      if (batchDims !== 0) throw new Error('gather gradient: batchDims > 0 is not supported');
      const axis = parseAxisParam(attrs.axis as number, x.shape)[0];
      return {
        x: () => {
          const outer = x.shape.slice(0, axis);
          const inner = x.shape.slice(axis + 1);
          const values = tf.reshape(dy, [...outer, indices.size, ...inner]);
          // Bring the gathered axis to the front: [n, ...outer, ...inner].
          const perm = [outer.length, ...outer.map((_, i) => i), ...inner.map((_, i) => outer.length + 1 + i)];
          // Axis 0 (every embedding lookup) needs no transposes; an identity transpose is still a
          // full copy on wasm — of a vocabulary-sized table here (113 MB for the 256M model).
          const identity = axis === 0;
          const updates = identity ? values : tf.transpose(values, perm);
          const scattered = tf.scatterND(tf.reshape(indices, [indices.size, 1]), updates, [x.shape[axis], ...outer, ...inner]);
          return identity ? scattered : tf.transpose(scattered, getUndoAxesPermutation(perm));
        },
        indices: () => indices,
      };
    }) as GradFunc,
  },
];

/**
 * Registers MODEL_GRADIENTS for every kernel that has no gradient yet. Idempotent; called by the
 * model before it computes gradients.
 */
export function registerModelGradients(): void {
  for (const config of MODEL_GRADIENTS) {
    if (tf.getGradient(config.kernelName) == null) tf.registerGradient(config);
  }
}

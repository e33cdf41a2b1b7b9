/** Gradient of GatherV2: the token-embedding lookup and the image merge. */
import * as tf from '@tensorflow/tfjs-core';

const { getUndoAxesPermutation } = tf.backend_util;

export const GATHER_GRADIENTS: tf.GradConfig[] = [
  {
    // Adds dy back into the gathered rows (batchDims 0). tfjs scatters with unsortedSegmentSum,
    // which the cpu backend runs as one masked sum per segment (O(vocab · tokens) — minutes for a
    // 49k vocabulary); scatterND sums duplicate indices in one pass on every backend.
    kernelName: tf.GatherV2,
    inputsToSave: ['x', 'indices'],
    gradFunc: ((dy: tf.Tensor, [x, indices]: tf.Tensor[], attrs: tf.NamedAttrMap) => {
      const { batchDims } = attrs as { batchDims: number };
      if (batchDims !== 0) throw new Error('gather gradient: batchDims > 0 is not supported');
      const axis = tf.util.parseAxisParam(attrs.axis as number, x.shape)[0];
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
    }) as tf.GradConfig['gradFunc'],
  },
];

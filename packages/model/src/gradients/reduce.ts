/** Gradients of the reductions (Sum, Mean) and of Softmax. */
import * as tf from '@tensorflow/tfjs-core';

const { computeOutAndReduceShapes } = tf.backend_util;
const { parseAxisParam, sizeFromShape } = tf.util;

type GradFunc = tf.GradConfig['gradFunc'];

/** x's shape with the reduced axes kept as 1. */
function keptShape(x: tf.Tensor, axes: number[]): number[] {
  const expanded = x.shape.slice();
  for (const axis of axes) expanded[axis] = 1;
  return expanded;
}

export const REDUCE_GRADIENTS: tf.GradConfig[] = [
  {
    kernelName: tf.Sum,
    inputsToSave: ['x'],
    gradFunc: ((dy: tf.Tensor, [x]: tf.Tensor[], attrs: tf.NamedAttrMap) => {
      const expanded = keptShape(x, parseAxisParam(attrs.axis as number | number[], x.shape));
      return { x: () => tf.mul(tf.reshape(dy, expanded), tf.ones(x.shape, 'float32')) };
    }) as GradFunc,
  },
  {
    kernelName: tf.Mean,
    inputsToSave: ['x'],
    gradFunc: ((dy: tf.Tensor, [x]: tf.Tensor[], attrs: tf.NamedAttrMap) => {
      const axes = parseAxisParam(attrs.axis as number | number[], x.shape);
      const reduceSize = sizeFromShape(computeOutAndReduceShapes(x.shape, axes)[1]);
      return { x: () => tf.div(tf.mul(tf.reshape(dy, keptShape(x, axes)), tf.ones(x.shape, 'float32')), reduceSize) };
    }) as GradFunc,
  },
  {
    kernelName: tf.Softmax,
    outputsToSave: [true],
    gradFunc: ((dy: tf.Tensor, [y]: tf.Tensor[], attrs: tf.NamedAttrMap) => {
      const dim = attrs.dim as number;
      const dyTimesY = tf.mul(dy, y);
      return { logits: () => tf.sub(dyTimesY, tf.mul(tf.sum(dyTimesY, [dim], true), y)) };
    }) as GradFunc,
  },
];

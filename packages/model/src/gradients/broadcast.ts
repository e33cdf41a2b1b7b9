/** Gradients of the element-wise binary kernels, summed back over the axes broadcasting expanded. */
import * as tf from '@tensorflow/tfjs-core';

const { assertAndGetBroadcastShape, getReductionAxes } = tf.broadcast_util;

/** Sums a broadcast gradient back down to `shape`. */
function unbroadcast(grad: tf.Tensor, shape: number[], outShape: number[]): tf.Tensor {
  const axes = getReductionAxes(shape, outShape);
  return tf.reshape(axes.length > 0 ? tf.sum(grad, axes) : grad, shape);
}

const f32 = (t: tf.Tensor) => tf.cast(t, 'float32');

function binary(kernelName: string, grads: (dy: tf.Tensor, a: tf.Tensor, b: tf.Tensor, out: number[]) => { a: () => tf.Tensor; b: () => tf.Tensor }): tf.GradConfig {
  return {
    kernelName,
    inputsToSave: ['a', 'b'],
    gradFunc: ((dy: tf.Tensor, [a, b]: tf.Tensor[]) => grads(dy, a, b, assertAndGetBroadcastShape(a.shape, b.shape))) as tf.GradConfig['gradFunc'],
  };
}

export const BROADCAST_GRADIENTS: tf.GradConfig[] = [
  binary(tf.Add, (dy, a, b, out) => ({ a: () => unbroadcast(dy, a.shape, out), b: () => unbroadcast(dy, b.shape, out) })),
  binary(tf.Sub, (dy, a, b, out) => ({ a: () => unbroadcast(dy, a.shape, out), b: () => tf.neg(unbroadcast(dy, b.shape, out)) })),
  binary(tf.Multiply, (dy, a, b, out) => ({ a: () => unbroadcast(tf.mul(dy, f32(b)), a.shape, out), b: () => unbroadcast(tf.mul(dy, f32(a)), b.shape, out) })),
  binary(tf.RealDiv, (dy, a, b, out) => ({
    a: () => unbroadcast(tf.div(dy, f32(b)), a.shape, out),
    b: () => tf.neg(tf.div(unbroadcast(tf.mul(dy, f32(a)), b.shape, out), f32(tf.square(b)))),
  })),
];

/** Gradients of the element-wise unary kernels on the trained path (RMSNorm, SwiGLU, head). */
import * as tf from '@tensorflow/tfjs-core';

function unary(kernelName: string, save: 'x' | 'y' | 'none', der: (dy: tf.Tensor, saved: tf.Tensor) => tf.Tensor): tf.GradConfig {
  return {
    kernelName,
    ...(save === 'x' ? { inputsToSave: ['x'] } : save === 'y' ? { outputsToSave: [true] } : {}),
    gradFunc: ((dy: tf.Tensor, saved: tf.Tensor[]) => ({ x: () => der(dy, saved[0]) })) as tf.GradConfig['gradFunc'],
  };
}

const f32 = (t: tf.Tensor) => tf.cast(t, 'float32');

export const UNARY_GRADIENTS: tf.GradConfig[] = [
  unary(tf.Neg, 'none', (dy) => tf.neg(dy)),
  unary(tf.Square, 'x', (dy, x) => tf.mul(dy, tf.mul(f32(x), 2))),
  unary(tf.Rsqrt, 'x', (dy, x) => tf.neg(tf.div(dy, tf.mul(tf.pow(x, 1.5), 2)))),
  unary(tf.Sigmoid, 'y', (dy, y) => tf.mul(dy, tf.mul(y, tf.sub(tf.scalar(1), y)))),
  unary(tf.Relu, 'x', (dy, x) => tf.mul(dy, f32(tf.step(x)))),
];

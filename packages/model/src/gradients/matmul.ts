/** Gradient of BatchMatMul (every Linear and both attention products), all transpose combinations. */
import * as tf from '@tensorflow/tfjs-core';

export const MATMUL_GRADIENTS: tf.GradConfig[] = [
  {
    kernelName: tf.BatchMatMul,
    inputsToSave: ['a', 'b'],
    gradFunc: ((dy: tf.Tensor, [a, b]: tf.Tensor[], attrs: tf.NamedAttrMap) => {
      const { transposeA, transposeB } = attrs as { transposeA: boolean; transposeB: boolean };
      if (!transposeA && !transposeB) return { a: () => tf.matMul(dy, b, false, true), b: () => tf.matMul(a, dy, true, false) };
      if (!transposeA && transposeB) return { a: () => tf.matMul(dy, b, false, false), b: () => tf.matMul(dy, a, true, false) };
      if (transposeA && !transposeB) return { a: () => tf.matMul(b, dy, false, true), b: () => tf.matMul(a, dy, false, false) };
      return { a: () => tf.matMul(b, dy, true, true), b: () => tf.matMul(dy, a, true, true) };
    }) as tf.GradConfig['gradFunc'],
  },
];

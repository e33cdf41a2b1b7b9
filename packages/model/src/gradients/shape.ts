/** Gradients of the layout kernels: Reshape, Transpose, Concat, SplitV. */
import * as tf from '@tensorflow/tfjs-core';

const { getUndoAxesPermutation } = tf.backend_util;

type GradFunc = tf.GradConfig['gradFunc'];

export const SHAPE_GRADIENTS: tf.GradConfig[] = [
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
      const axis = tf.util.parseAxisParam(attrs.axis as number, saved[0].shape)[0];
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
];

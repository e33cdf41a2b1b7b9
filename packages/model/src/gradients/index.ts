/**
 * Gradient functions for exactly the kernels the training step differentiates: the trained
 * decoder and head, from the token embeddings (and the merged image rows) to the loss. The frozen
 * vision encoder and connector are off the tape's path from the variables, so they need none.
 *
 * `@tensorflow/tfjs-core`'s Node entry (`tf-core.node.js`) registers no gradients: the union
 * package `@tensorflow/tfjs` does, by importing `tfjs-core/dist/register_all_gradients`, which
 * Node cannot load on its own (extensionless ESM). smolrate depends on tfjs-core + backends only,
 * so the gradients it needs are registered here, as small config objects grouped by kernel kind.
 * They are ports of tfjs-core 4.22's own configs (Apache-2.0, © Google LLC), registered only for
 * kernels that have none yet, so loading the union package (or tfjs-node) first takes precedence.
 */
import * as tf from '@tensorflow/tfjs-core';
import { BROADCAST_GRADIENTS } from './broadcast.js';
import { GATHER_GRADIENTS } from './gather.js';
import { MATMUL_GRADIENTS } from './matmul.js';
import { REDUCE_GRADIENTS } from './reduce.js';
import { SHAPE_GRADIENTS } from './shape.js';
import { UNARY_GRADIENTS } from './unary.js';

export const MODEL_GRADIENTS: readonly tf.GradConfig[] = [
  ...BROADCAST_GRADIENTS,
  ...UNARY_GRADIENTS,
  ...REDUCE_GRADIENTS,
  ...MATMUL_GRADIENTS,
  ...SHAPE_GRADIENTS,
  ...GATHER_GRADIENTS,
];

/**
 * Registers MODEL_GRADIENTS for every kernel that has no gradient yet. Idempotent; called by
 * initBackend and by the model before it computes gradients. Returns the kernel names it registered.
 */
export function registerModelGradients(): string[] {
  const added: string[] = [];
  for (const config of MODEL_GRADIENTS) {
    if (tf.getGradient(config.kernelName) != null) continue;
    tf.registerGradient(config);
    added.push(config.kernelName);
  }
  return added;
}

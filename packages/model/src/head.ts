/**
 * smolrate's regression head (docs/reference/model.md step 11; paper §3): mask-aware mean pooling of the
 * decoder's last hidden states → Linear → ReLU → Dropout → Linear → 1 + 4·sigmoid, a rating in
 * (1, 5). Dropout masks come from an explicit seed, never from tfjs's global RNG.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '@smolrate/core';
import { Linear, type ParamScope } from './layers.js';

/** pooled = Σᵢ mᵢhᵢ / Σᵢ mᵢ: hidden [B, L, D], mask [B, L] (1 = token, 0 = padding) → [B, D]. */
export function maskedMeanPool(hidden: tf.Tensor3D, attentionMask: tf.Tensor2D): tf.Tensor2D {
  const m = tf.expandDims(tf.cast(attentionMask, 'float32'), 2); // [B, L, 1]
  return tf.div(tf.sum(tf.mul(hidden, m), 1), tf.sum(m, 1)); // [B, D] / [B, 1]
}

/**
 * Inverted-dropout multipliers for `count` activations: 0 with probability `rate`, else
 * 1/(1 − rate) (PyTorch's scaling), drawn in row-major order from `seed`.
 */
export function dropoutScale(seed: number, count: number, rate: number): Float32Array {
  if (!(rate >= 0 && rate < 1)) throw new RangeError(`dropout rate must be in [0, 1), got ${rate}`);
  const rng = new Rng(seed, 'dropout');
  const keep = 1 / (1 - rate);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = rng.next() < rate ? 0 : keep;
  return out;
}

/**
 * Dropout multipliers for a [rows, width] activation. One seed draws the whole batch row-major;
 * one seed per row draws each row from its own seed, so a sample's mask does not depend on which
 * batch (or which data-parallel worker's slice) it is in — e.g. core's
 * `seedFrom(seed, 'dropout', step, globalSampleIndex)`.
 */
export function dropoutMask(seed: number | readonly number[], rows: number, width: number, rate: number): Float32Array {
  if (typeof seed === 'number') return dropoutScale(seed, rows * width, rate);
  if (seed.length !== rows) throw new RangeError(`dropout: ${seed.length} row seeds for ${rows} rows`);
  const out = new Float32Array(rows * width);
  seed.forEach((s, b) => out.set(dropoutScale(s, width, rate), b * width));
  return out;
}

export class RegressionHead {
  readonly fc1: Linear;
  readonly fc2: Linear;

  constructor(
    scope: ParamScope,
    textHidden: number,
    readonly hidden: number,
    readonly dropout: number,
  ) {
    this.fc1 = new Linear(scope.child('fc1'), textHidden, hidden, { bias: true });
    this.fc2 = new Linear(scope.child('fc2'), hidden, 1, { bias: true });
  }

  /**
   * pooled [B, D] → logit [B] and rating = 1 + 4·sigmoid(logit) [B]. `dropoutScale` [B, hidden]
   * (see dropoutScale) is applied after the ReLU when given, i.e. in training only.
   */
  apply(pooled: tf.Tensor2D, dropoutScale?: tf.Tensor2D): { logit: tf.Tensor1D; rating: tf.Tensor1D } {
    let h = tf.relu(this.fc1.apply(pooled)); // [B, hidden]
    if (dropoutScale) h = tf.mul(h, dropoutScale);
    const logit = tf.squeeze<tf.Tensor1D>(this.fc2.apply(h), [1]); // [B]
    const rating = tf.add<tf.Tensor1D>(tf.mul(tf.sigmoid(logit), 4), 1);
    return { logit, rating };
  }
}

/**
 * Validation in eval mode (no dropout): predictions for every sample of a split, in global-index
 * order, from cached image features, and their metrics (core's regressionMetrics).
 */
import * as tf from '@tensorflow/tfjs-core';
import { regressionMetrics } from '@smolrate/core';
import type { SmolVLMRegressor } from '@smolrate/model';
import type { BatchBuilder, TrainingBatch } from './batches.js';

/** The cached image features of a built batch, [B, N, D] (the caller disposes it). */
function featureTensor(b: TrainingBatch): tf.Tensor3D {
  return tf.tensor3d(b.imageFeatures, [b.batchSize, b.imageTokens, b.featureDim]);
}

/** Tensors of a built batch (the caller disposes them); the tokens stay host arrays (the model's TokenBatch is `b`). */
export function batchTensors(b: TrainingBatch): { imageFeatures: tf.Tensor3D; targets: tf.Tensor1D } {
  return { imageFeatures: featureTensor(b), targets: tf.tensor1d(b.targets) };
}

export interface Predictions {
  predictions: Float32Array;
  targets: Float32Array;
}

export async function predictSplit(model: SmolVLMRegressor, builder: BatchBuilder, numSamples: number, batchSize: number): Promise<Predictions> {
  const predictions = new Float32Array(numSamples);
  const targets = new Float32Array(numSamples);
  for (let start = 0; start < numSamples; start += batchSize) {
    const indices = Array.from({ length: Math.min(batchSize, numSamples - start) }, (_, i) => start + i);
    const batch = await builder.build(indices);
    const imageFeatures = featureTensor(batch); // the targets stay on the host: no loss here
    try {
      const out = model.forward({ tokens: batch, imageFeatures }, { training: false });
      try {
        predictions.set((await out.rating.data()) as Float32Array, start);
      } finally {
        tf.dispose([out.pooled, out.logit, out.rating]);
      }
    } finally {
      imageFeatures.dispose();
    }
    targets.set(batch.targets, start);
    batch.release();
  }
  return { predictions, targets };
}

/** What a validation records (metrics.jsonl, trainer-state.json) and early stopping watches (plcc). */
export interface ValMetrics {
  rmse: number;
  plcc: number;
  srcc: number;
  samples: number;
}

/**
 * The trainer's view of regressionMetrics: a validation never stops a run, so undefined
 * correlations (constant or non-finite predictions) are recorded as NaN, which never improves.
 */
export function valMetrics(targets: ArrayLike<number>, predictions: ArrayLike<number>): ValMetrics {
  const m = regressionMetrics(targets, predictions);
  return { rmse: m.rmse, plcc: m.plcc ?? NaN, srcc: m.srcc ?? NaN, samples: m.n };
}

export async function evaluate(model: SmolVLMRegressor, builder: BatchBuilder, numSamples: number, batchSize: number): Promise<ValMetrics> {
  const { predictions, targets } = await predictSplit(model, builder, numSamples, batchSize);
  return valMetrics(targets, predictions);
}

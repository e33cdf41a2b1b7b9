/**
 * The Idefics3 connector (docs/reference/model.md steps 6–7): pixel shuffle with scale s, then a bias-free
 * Linear (s²·D_vision → D_text). Frozen in smolrate.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ShapeError } from '@smolrate/core';
import { Linear, type ParamScope } from './layers.js';

/**
 * [B, n², D] → [B, (n/s)², s²·D]: the n×n grid is cut into s×s blocks in row-major block order;
 * each block becomes one token whose features are its s² patches in (row-in-block, col-in-block)
 * order, each contributing its D channels — i.e. docs/reference/model.md's
 * `reshape([B, n/s, s, n/s, s, D]) → transpose([0,1,3,2,4,5]) → reshape(...)`, written with the
 * adjacent axes merged (B with n/s, col-in-block with D) so the transpose is rank 4, which every
 * backend supports. Same result as transformers' `Idefics3Connector.pixel_shuffle`.
 */
export function pixelShuffle(x: tf.Tensor3D, s: number): tf.Tensor3D {
  const [B, seq, D] = x.shape;
  const n = Math.round(Math.sqrt(seq));
  if (n * n !== seq || n % s !== 0) {
    throw new ShapeError(`pixel shuffle: ${seq} patches is not an n×n grid with n a multiple of ${s}`);
  }
  const m = n / s;
  const grid = tf.reshape(x, [B * m, s, m, s * D]); // [B·blockRow, rowInBlock, blockCol, colInBlock·D]
  const blocks = tf.transpose(grid, [0, 2, 1, 3]); // [B·blockRow, blockCol, rowInBlock, colInBlock·D]
  return tf.reshape(blocks, [B, m * m, s * s * D]); // [B, (n/s)², s²·D]
}

/** `model.connector`: pixel shuffle → modality_projection.proj (no bias). */
export class Connector {
  readonly modalityProjection: { proj: Linear };

  constructor(
    scope: ParamScope,
    visionHidden: number,
    textHidden: number,
    readonly scaleFactor: number,
  ) {
    this.modalityProjection = {
      proj: new Linear(scope.child('modality_projection').child('proj'), visionHidden * scaleFactor ** 2, textHidden, { bias: false }),
    };
  }

  /** Vision hidden states [B, n², D_vision] → image features [B, (n/s)², D_text]. */
  apply(visionHidden: tf.Tensor3D): tf.Tensor3D {
    return this.modalityProjection.proj.apply(pixelShuffle(visionHidden, this.scaleFactor)) as tf.Tensor3D;
  }
}

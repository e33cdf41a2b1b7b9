/**
 * Pixel normalisation (docs/reference/model.md forward pass step 1): RGB uint8 → x/127.5 − 1, i.e. SmolVLM's
 * image processor with mean 0.5, std 0.5 after rescaling by 1/255. Decoding and resizing happen
 * in @smolrate/core (sharp stays out of this package); this file only sees raw RGB bytes.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ShapeError } from '@smolrate/core';

function checkLength(rgb: Uint8Array, size: number, what: string): void {
  if (!Number.isInteger(size) || size < 1) throw new ShapeError(`${what}: size must be a positive integer, got ${size}`);
  const expected = size * size * 3;
  if (rgb.length !== expected) {
    throw new ShapeError(`${what}: expected ${size}×${size}×3 = ${expected} bytes of RGB, got ${rgb.length}`);
  }
}

function normalizeInto(rgb: Uint8Array, out: Float32Array, offset: number): void {
  for (let i = 0; i < rgb.length; i++) out[offset + i] = rgb[i] / 127.5 - 1;
}

/** [size, size, 3] uint8 RGB (HWC) → Float32Array of x/127.5 − 1, in [−1, 1]. */
export function normalizePixels(rgb: Uint8Array, size: number): Float32Array {
  checkLength(rgb, size, 'normalizePixels');
  const out = new Float32Array(rgb.length);
  normalizeInto(rgb, out, 0);
  return out;
}

/**
 * A batch of decoded images → pixel tensor [B, size, size, 3] float32 (NHWC, tfjs layout).
 * The caller owns the returned tensor.
 */
export function pixelBatchTensor(images: readonly Uint8Array[], size: number): tf.Tensor4D {
  if (images.length === 0) throw new ShapeError('pixelBatchTensor: empty batch');
  const per = size * size * 3;
  const data = new Float32Array(images.length * per);
  images.forEach((rgb, i) => {
    checkLength(rgb, size, `pixelBatchTensor: image ${i}`);
    normalizeInto(rgb, data, i * per);
  });
  return tf.tensor4d(data, [images.length, size, size, 3], 'float32'); // [B, H, W, 3]
}

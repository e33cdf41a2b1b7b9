/**
 * The checkpoint-side view of the model's weights: HF parameter names → float32 data in the
 * PyTorch layouts (Linear weight [out, in], Conv2d weight [out, in, kh, kw]), exactly what a
 * `model.safetensors` file holds. safetensors.ts reads and writes this type; the model converts
 * to tfjs layouts once, at load, and back, at save.
 */
import { ShapeError } from '@smolrate/core';

export interface StateTensor {
  shape: number[];
  data: Float32Array;
}

export type StateDict = Map<string, StateTensor>;

/** Number of elements of a shape (1 for a scalar shape `[]`). */
export function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Checks that `data.length` matches the product of `shape`. */
export function assertStateTensor(name: string, t: StateTensor): void {
  const n = shapeSize(t.shape);
  if (t.data.length !== n) {
    throw new ShapeError(`${name}: shape ${formatShape(t.shape)} holds ${n} values but data has ${t.data.length}`);
  }
}

/**
 * The trainable parameters of one replica as host Float32Arrays in trainableVariables() order,
 * and the flat gradient buffer the collective reduces (DESIGN.md "Training topology" steps 3–5).
 *
 * The host copies are the source of truth for the optimizer: AdamW updates them in place and
 * they are written back into the tfjs variables, so the weights never take a device round trip
 * per step. Layouts are tfjs layouts throughout (the gradients' and the variables' own).
 */
import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs-core';
import { ShapeError } from '@smolrate/core';
import type { NamedVariable, SmolVLMRegressor } from '@smolrate/model';

export interface ReplicaParam {
  name: string;
  variable: tf.Variable;
  /** Host copy (tfjs layout). */
  data: Float32Array;
  /** Offset of this parameter in the flat gradient buffer. */
  offset: number;
}

export class Replica {
  readonly params: ReplicaParam[];
  /** Σ sizes of the trainable parameters. */
  readonly size: number;

  private constructor(vars: NamedVariable[]) {
    let offset = 0;
    this.params = vars.map(({ name, variable }) => {
      const data = Float32Array.from(variable.dataSync() as Float32Array);
      const p = { name, variable, data, offset };
      offset += data.length;
      return p;
    });
    this.size = offset;
  }

  static of(model: SmolVLMRegressor): Replica {
    return new Replica(model.trainableVariables());
  }

  /**
   * Adds `weight · grad` of every parameter into `flat` (length ≥ size), in order. Disposes the
   * gradient tensors.
   */
  async accumulate(flat: Float32Array, grads: Map<string, tf.Tensor>, weight: number): Promise<void> {
    try {
      for (const p of this.params) {
        const g = grads.get(p.name);
        if (g === undefined || g.size !== p.data.length) {
          throw new ShapeError(`gradient of ${p.name}: expected ${p.data.length} values, got ${g === undefined ? 'none' : g.size}`);
        }
        const gd = (await g.data()) as Float32Array;
        const dst = flat.subarray(p.offset, p.offset + gd.length);
        for (let i = 0; i < gd.length; i++) dst[i] += weight * gd[i];
      }
    } finally {
      for (const g of grads.values()) g.dispose();
    }
  }

  /** Writes the host copies back into the tfjs variables. */
  upload(): void {
    for (const p of this.params) {
      const t = tf.tensor(p.data, p.variable.shape, 'float32');
      p.variable.assign(t);
      t.dispose();
    }
  }

  /** SHA-256 of every parameter's bytes, in order: equal on all ranks iff the replicas are identical. */
  hash(): string {
    const h = createHash('sha256');
    for (const p of this.params) h.update(new Uint8Array(p.data.buffer, p.data.byteOffset, p.data.byteLength));
    return h.digest('hex');
  }
}

/** L2 norm of the first `n` values, in float64. */
export function l2Norm(x: Float32Array, n = x.length): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += x[i] * x[i];
  return Math.sqrt(s);
}

/**
 * The trainable parameters of one replica as host Float32Arrays in trainableVariables() order,
 * and the flat gradient buffer the collective reduces (docs/reference/design.md "Training topology" steps 3–5).
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

  /**
   * Every parameter's host copy, contiguous in order (each `data` is a view of it): what the
   * ZeRO-1 all-gather fills.
   */
  readonly weights: Float32Array;

  private constructor(vars: NamedVariable[]) {
    let offset = 0;
    const layout = vars.map(({ name, variable }) => {
      const p = { name, variable, offset };
      offset += variable.size;
      return p;
    });
    this.size = offset;
    this.weights = new Float32Array(offset);
    this.params = layout.map(({ name, variable, offset: at }) => {
      const data = this.weights.subarray(at, at + variable.size);
      data.set(variable.dataSync() as Float32Array);
      return { name, variable, data, offset: at };
    });
  }

  static of(model: SmolVLMRegressor): Replica {
    return new Replica(model.trainableVariables());
  }

  /**
   * Adds `weight · grad` of every parameter into `flat` (length ≥ size), in order; `done(end)`
   * after each parameter (everything before `end` is added — the bucketing watermark). Disposes
   * the gradient tensors.
   */
  async accumulate(flat: Float32Array, grads: Map<string, tf.Tensor>, weight: number, done?: (end: number) => void): Promise<void> {
    try {
      for (const p of this.params) {
        const g = grads.get(p.name);
        if (g === undefined || g.size !== p.data.length) {
          throw new ShapeError(`gradient of ${p.name}: expected ${p.data.length} values, got ${g === undefined ? 'none' : g.size}`);
        }
        const gd = (await g.data()) as Float32Array;
        const dst = flat.subarray(p.offset, p.offset + gd.length);
        for (let i = 0; i < gd.length; i++) dst[i] += weight * gd[i];
        done?.(p.offset + gd.length);
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

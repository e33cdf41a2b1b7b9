/**
 * The non-compute half of a data-parallel step (docs/training.md, "The step"), shared by the
 * trainer (train-worker.ts) and the scaling benchmark (bench-step.ts), so that what is measured
 * is what trains:
 *
 *   exchange: the flat buffer [grads…, loss] is reduced — ZeRO-1 (default with > 1 rank): a
 *   reduce-scatter of the mean, rank s keeps segment s; ZeRO-0: an all-reduce — bucket by bucket
 *   as the watermark passes them;
 *   apply: the global L2 norm (float64 partial sums added in rank order), optional clipping,
 *   AdamW on this rank's segment only, then the all-gather of the updated weights. (Overlapping
 *   the all-gather with AdamW was tried and measured no faster: a rank is one thread, and its
 *   socket copies run on that thread too.)
 *
 * The segments come from zero-shards.ts (cuts on optimizer-block boundaries), so the sharded
 * update gives the same bytes as the unsharded one; the loss (last element) belongs to the last
 * rank's segment.
 */
import type { Collective } from './collective.js';
import type { GradDtype, Watermark } from './grad-transport.js';
import { sumSquaresKernel } from './reduce-kernel.js';
import { ownedSlices, planZeroShards, type ShardPart, type ZeroPlan } from './zero-shards.js';
import type { TensorSlice } from './adamw-base.js';

/** A trainable parameter's host copy: a view of `weights` at `offset`. */
export interface HostParam {
  name: string;
  offset: number;
  data: Float32Array;
}

/** What the update needs of an optimizer (AdamW8bit, AdamW32). */
export interface SliceOptimizer {
  stepSlice(name: string, param: Float32Array, grad: Float32Array, slice: TensorSlice, lr?: number): void;
}

export interface UpdateOptions {
  collective: Collective;
  /** Host copies in flat order, contiguous from 0, each a view of `weights`. */
  params: readonly HostParam[];
  weights: Float32Array;
  /** 1: ZeRO-1 when there is more than one rank; 0: every rank steps everything. */
  zero: number;
  /** The optimizer's block size: segment cuts inside a parameter fall on its multiples. */
  blockSize: number;
  gradDtype: GradDtype;
  /** Clip the global norm to this (0: no clipping). */
  gradClip: number;
}

export interface UpdateResult {
  loss: number;
  gradNorm: number;
  /** Waiting for the exchange after the compute, plus the norm's exchange. */
  reduceMs: number;
  optimizerMs: number;
  gatherMs: number;
}

export class DataParallelUpdate {
  readonly sharded: boolean;
  readonly plan: ZeroPlan;
  /** This rank's parts of the parameters (all of them without ZeRO). */
  readonly owned: readonly ShardPart[];
  /** [grads…, loss]: what the compute fills and the exchange reduces. */
  readonly flat: Float32Array;
  private readonly o: UpdateOptions;
  private readonly size: number;
  private readonly gradBounds: number[];
  private readonly segLo: number;
  private readonly segHi: number;
  private readonly byName: Map<string, HostParam>;

  constructor(o: UpdateOptions) {
    this.o = o;
    const c = o.collective;
    this.size = o.weights.length;
    this.sharded = o.zero === 1 && c.worldSize > 1;
    this.plan = planZeroShards(o.params.map((p) => ({ name: p.name, offset: p.offset, length: p.data.length })), this.sharded ? c.worldSize : 1, o.blockSize);
    const segment = this.sharded ? c.rank : 0;
    this.owned = this.plan.parts[segment];
    [this.segLo, this.segHi] = [this.plan.bounds[segment], this.plan.bounds[segment + 1]];
    this.gradBounds = [...this.plan.bounds.slice(0, -1), this.size + 1];
    this.flat = new Float32Array(this.size + 1);
    this.byName = new Map(o.params.map((p) => [p.name, p]));
  }

  /** The slices this rank's optimizer holds (null: all of every parameter). */
  ownedSlices(): Map<string, { offset: number; length: number }> | null {
    return this.sharded ? ownedSlices(this.plan, this.o.collective.rank) : null;
  }

  /**
   * Starts the exchange of `flat`; with `ready`, a bucket leaves once the watermark passed it.
   * The promise is guarded against being unhandled while the caller computes: await it in `apply`.
   */
  exchange(ready?: Watermark): Promise<Float32Array> {
    const c = this.o.collective;
    const opts = { dtype: this.o.gradDtype, ready };
    const p = this.sharded ? c.reduceScatterMean(this.flat, this.gradBounds, 'grads', opts) : c.allReduceMean(this.flat, 'grads', opts);
    p.catch(() => undefined);
    return p;
  }

  /** Waits for the exchange, then norm, clipping, AdamW on the owned segment and the all-gather. */
  async apply(exchange: Promise<Float32Array>, optimizer: SliceOptimizer, lr: number, step: number): Promise<UpdateResult> {
    const c = this.o.collective;
    const flat = this.flat;
    const tReduce = performance.now();
    await exchange;
    // Global L2 norm in float64: each rank's running sum over its segment, added in rank order.
    let gradNorm: number;
    let loss: number;
    if (this.sharded) {
      const parts = await c.allGatherJson([sumSquaresKernel(flat, this.segLo, this.segHi), c.rank === c.worldSize - 1 ? flat[this.size]! : 0], `norm-${step}`);
      gradNorm = Math.sqrt(parts.reduce((a, p) => a + p[0], 0));
      loss = parts[c.worldSize - 1][1];
    } else {
      gradNorm = Math.sqrt(sumSquaresKernel(flat, 0, this.size));
      loss = flat[this.size]!;
    }
    const reduceMs = performance.now() - tReduce;
    if (this.o.gradClip > 0 && gradNorm > this.o.gradClip) {
      const k = this.o.gradClip / gradNorm;
      for (let i = this.segLo; i < this.segHi; i++) flat[i] *= k;
    }
    const tOpt = performance.now();
    for (const part of this.owned) {
      const p = this.byName.get(part.name)!;
      const n = part.flatEnd - part.flatStart;
      optimizer.stepSlice(part.name, p.data.subarray(part.offset, part.offset + n), flat.subarray(part.flatStart, part.flatEnd), { offset: part.offset, total: part.total }, lr);
    }
    const optimizerMs = performance.now() - tOpt;
    const tGather = performance.now();
    if (this.sharded) await c.allGather(this.o.weights, this.plan.bounds, 'weights');
    const gatherMs = performance.now() - tGather;
    return { loss, gradNorm, reduceMs, optimizerMs, gatherMs };
  }
}

/**
 * The collective every training worker talks to (docs/reference/design.md, "Training topology"): barriers,
 * broadcasts and the gradient all-reduce. Two implementations:
 *  - `LocalCollective`: one worker, every operation is the identity (no Redis needed, `--gpus 1`);
 *  - `RedisCollective` (redis-collective.ts): N workers coordinated through Redis.
 *
 * As with NCCL / torch.distributed, every rank must issue the same collectives in the same order
 * (sequence numbers pair the calls up), one at a time: a call must be awaited before the next.
 * After a failed call the collective is unusable (every later call throws the same error):
 * the launcher restarts all workers from the latest checkpoint.
 */
import { CollectiveError } from '@smolrate/core';
import { checkBounds, checkRoot, jsonRoundTrip } from './collective-checks.js';
import { roundToBf16InPlace, type GradDtype, type Watermark } from './grad-transport.js';

/** Per-call options. */
export interface CollectiveCallOptions {
  /**
   * Bound on each wait of this call (ms without progress), instead of the collective's
   * `timeoutMs` — e.g. a rank waiting in `broadcastJson` while rank 0 evaluates for minutes.
   */
  timeoutMs?: number;
}

/** Options of the reducing calls. */
export interface ReduceCallOptions extends CollectiveCallOptions {
  /** Wire type of the contributions (grad-transport.ts); the sum is float32 either way. Default f32. */
  dtype?: GradDtype;
  /** When given, parts of `data` may be sent only once the watermark has passed them (bucketing). */
  ready?: Watermark;
}

export interface Collective {
  readonly rank: number;
  readonly worldSize: number;
  /** Returns once every rank has called `barrier` with the same tag. */
  barrier(tag: string, options?: CollectiveCallOptions): Promise<void>;
  /**
   * `root`'s bytes, on every rank. Non-root ranks pass `null` (anything else is ignored); the
   * root gets its own array back.
   */
  broadcast(data: Uint8Array | null, root: number, tag: string, options?: CollectiveCallOptions): Promise<Uint8Array>;
  /** `root`'s value as JSON, on every rank (the root too receives the JSON round trip). */
  broadcastJson<T>(value: T | null, root: number, tag: string, options?: CollectiveCallOptions): Promise<T>;
  /**
   * Element-wise mean over the ranks, in place: `data` is overwritten and returned. The sum is
   * accumulated in float32 in rank order 0..N−1 and then divided by N, so the result is the
   * same bytes on every rank and in every run. All ranks must pass the same length.
   */
  allReduceMean(data: Float32Array, tag?: string, options?: ReduceCallOptions): Promise<Float32Array>;
  /**
   * Reduce-scatter of the mean (ZeRO-1): `bounds` (N + 1 non-decreasing offsets from 0 to
   * data.length, the same on every rank) cut `data` into segments; rank s ends with segment s of
   * the mean (the same bytes `allReduceMean` gives there). The rest of `data` is unspecified.
   */
  reduceScatterMean(data: Float32Array, bounds: readonly number[], tag: string, options?: ReduceCallOptions): Promise<Float32Array>;
  /** All-gather: segment s of `data` (as cut by `bounds`) is copied from rank s to every rank, in place. */
  allGather(data: Float32Array, bounds: readonly number[], tag: string, options?: CollectiveCallOptions): Promise<Float32Array>;
  /** Every rank's bytes, indexed by rank, on `root`; null on the other ranks. */
  gather(data: Uint8Array, root: number, tag: string, options?: CollectiveCallOptions): Promise<Uint8Array[] | null>;
  /** Every rank's value (JSON round trip), indexed by rank. */
  allGatherJson<T>(value: T, tag: string, options?: CollectiveCallOptions): Promise<T[]>;
  /** Leaves the collective and releases its resources. Idempotent. */
  close(): Promise<void>;
}

/** The collective of a single worker: rank 0 of 1, every operation the identity. */
export class LocalCollective implements Collective {
  readonly rank = 0;
  readonly worldSize = 1;
  private closed = false;

  private check(what: string): void {
    if (this.closed) throw new CollectiveError(`${what}: the collective is closed`);
  }

  async barrier(tag: string): Promise<void> {
    this.check(`barrier '${tag}'`);
  }

  async broadcast(data: Uint8Array | null, root: number, tag: string): Promise<Uint8Array> {
    const what = `broadcast '${tag}'`;
    this.check(what);
    checkRoot(root, 1, what);
    if (data === null) throw new CollectiveError(`${what}: the root (rank 0) passed no data`);
    return data;
  }

  async broadcastJson<T>(value: T | null, root: number, tag: string): Promise<T> {
    const what = `broadcastJson '${tag}'`;
    this.check(what);
    checkRoot(root, 1, what);
    if (value === null) throw new CollectiveError(`${what}: the root (rank 0) passed no value`);
    return jsonRoundTrip(value, what);
  }

  async allReduceMean(data: Float32Array, tag = 'allReduceMean', options?: ReduceCallOptions): Promise<Float32Array> {
    this.check(`allReduceMean '${tag}'`);
    if (options?.ready) await options.ready.reached(data.length);
    // The mean of one contribution is itself (x / 1 is exact, NaN stays NaN), after the wire rounding.
    return options?.dtype === 'bf16' ? roundToBf16InPlace(data) : data;
  }

  async reduceScatterMean(data: Float32Array, bounds: readonly number[], tag: string, options?: ReduceCallOptions): Promise<Float32Array> {
    const what = `reduceScatterMean '${tag}'`;
    this.check(what);
    checkBounds(bounds, 1, data.length, what);
    if (options?.ready) await options.ready.reached(data.length);
    return options?.dtype === 'bf16' ? roundToBf16InPlace(data) : data;
  }

  async allGather(data: Float32Array, bounds: readonly number[], tag: string): Promise<Float32Array> {
    const what = `allGather '${tag}'`;
    this.check(what);
    checkBounds(bounds, 1, data.length, what);
    return data;
  }

  async gather(data: Uint8Array, root: number, tag: string): Promise<Uint8Array[]> {
    const what = `gather '${tag}'`;
    this.check(what);
    checkRoot(root, 1, what);
    return [data];
  }

  async allGatherJson<T>(value: T, tag: string): Promise<T[]> {
    const what = `allGatherJson '${tag}'`;
    this.check(what);
    return [jsonRoundTrip(value, what)];
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

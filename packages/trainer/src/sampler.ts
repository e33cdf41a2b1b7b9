/**
 * The resumable, deterministic global sampler (docs/reference/design.md "Training topology" step 2; docs/reference/optimizer.md
 * "Sharded datasets"). Like MosaicML Streaming, the sample order is a pure function of
 * (seed, epoch, number of samples), so every rank computes it without reading any data:
 *
 * * a sample's **global index** is its position in the manifest's split order (shards in manifest
 *   order, rows in shard order) — the same on every rank and for every world size;
 * * the order of epoch e is `permutation(numSamples, seed, 'epoch', e)` (core rng.ts); with
 *   `sampleBlock` K > 1 it is a permutation of **blocks** of K consecutive global indices
 *   (`permutation(ceil(N / K), seed, 'epoch-blocks', e)`, each block kept in order; the last
 *   block may be shorter). A rank's slice then holds runs of up to K adjacent rows of a shard, which
 *   the feature cache reads as one range: at the paper's scale the cache (680 GB) lives on disk,
 *   and a disk gives far more bytes per second in K-entry reads than in single 40 KB ones. The
 *   price: the K samples of a block share every batch they are in (shards keep the source order,
 *   so they are neighbours of one category). K = 1, the default, is the plain global shuffle;
 * * optimizer step s of an epoch consumes positions [s·G, (s+1)·G) of that order (G = global
 *   batch); rank r takes the contiguous slice [r·G/W, (r+1)·G/W), which the training loop splits
 *   into G/(W·micro) accumulation chunks of `microBatch` samples;
 * * `stepsPerEpoch = floor(numSamples / G)`: the last partial global batch of an epoch is
 *   **dropped**, so every rank runs the same number of steps with full batches and no padding or
 *   duplicated samples. At most G − 1 samples sit out an epoch, and since the order changes every
 *   epoch they are different samples each time.
 *
 * The global batches do not depend on the world size: W = 1, 2 or 4 compute the same steps, only
 * split differently. Dropout masks are seeded per sample by global position and global step
 * (`dropoutSeeds`), so the computed gradients do not depend on W either.
 *
 * The cursor `{ epoch, step }` names the next step to run; it is saved in trainer-state.json in
 * the same atomic checkpoint as the weights (docs/reference/design.md "Checkpoints"), and `resume(state)` continues
 * exactly there.
 */
import { CheckpointError, ConfigError, permutation, seedFrom } from '@smolrate/core';

export interface GlobalSamplerOptions {
  /** Samples in the split (the manifest's `splits.<split>.rows`). */
  numSamples: number;
  /** Run seed. */
  seed: number;
  /** Samples per optimizer step over all ranks (the paper: 64). */
  globalBatch: number;
  /** Number of ranks W. Default 1. */
  worldSize?: number;
  /** This rank, 0 ≤ rank < W. Default 0. */
  rank?: number;
  /** Samples per forward/backward pass on one rank (gradient accumulation chunk). Default globalBatch / worldSize. */
  microBatch?: number;
  /** Consecutive global indices shuffled as one block (see the file comment). Default 1: every sample on its own. */
  sampleBlock?: number;
}

/** Position in the run: the next optimizer step to run is `step` (0-based, within `epoch`). */
export interface SamplerCursor {
  epoch: number;
  step: number;
}

/** What a checkpoint stores about the sampler (trainer-state.json `sampler`). */
export interface SamplerState extends SamplerCursor {
  /** Samples consumed by the whole run before the cursor, over all ranks (docs/reference/optimizer.md's cursor). */
  samplesConsumed: number;
  seed: number;
  numSamples: number;
  globalBatch: number;
  /** Written only when not 1 (absent: 1). */
  sampleBlock?: number;
}

/** One optimizer step of this rank. */
export interface SamplerStep {
  /** Where this step is. */
  cursor: SamplerCursor;
  /** Optimizer steps of the run before this one (epoch · stepsPerEpoch + step). */
  globalStep: number;
  /** This rank's global indices (rankSlice). */
  indices: Uint32Array;
}

function positiveInteger(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 1) throw new ConfigError(`sampler: ${name} must be a positive integer, got ${String(v)}`);
  return v;
}

export class GlobalSampler {
  readonly numSamples: number;
  readonly seed: number;
  readonly globalBatchSize: number;
  readonly worldSize: number;
  readonly rank: number;
  readonly microBatch: number;
  /** globalBatch / worldSize: samples per rank per optimizer step. */
  readonly rankBatchSize: number;
  /** rankBatchSize / microBatch: forward/backward passes per optimizer step on each rank. */
  readonly accumulationSteps: number;
  /** floor(numSamples / globalBatch): the same on every rank. */
  readonly stepsPerEpoch: number;
  /** Samples left out of each epoch (numSamples mod globalBatch). */
  readonly droppedPerEpoch: number;
  readonly sampleBlock: number;
  private cached: { epoch: number; order: Uint32Array } | null = null;

  constructor(options: GlobalSamplerOptions) {
    this.numSamples = positiveInteger('numSamples', options.numSamples);
    if (!Number.isSafeInteger(options.seed)) throw new ConfigError(`sampler: seed must be an integer, got ${String(options.seed)}`);
    this.seed = options.seed;
    this.globalBatchSize = positiveInteger('globalBatch', options.globalBatch);
    this.worldSize = positiveInteger('worldSize', options.worldSize ?? 1);
    const rank = options.rank ?? 0;
    if (!Number.isSafeInteger(rank) || rank < 0 || rank >= this.worldSize) {
      throw new ConfigError(`sampler: rank must be an integer in [0, ${this.worldSize}) for worldSize ${this.worldSize}, got ${String(rank)}`);
    }
    this.rank = rank;
    if (this.globalBatchSize % this.worldSize !== 0) {
      throw new ConfigError(`globalBatch (${this.globalBatchSize}) must be divisible by worldSize (${this.worldSize})`);
    }
    this.microBatch = positiveInteger('microBatch', options.microBatch ?? this.globalBatchSize / this.worldSize);
    const per = this.worldSize * this.microBatch;
    if (this.globalBatchSize % per !== 0) {
      throw new ConfigError(
        `globalBatch (${this.globalBatchSize}) must be divisible by worldSize × microBatch (${this.worldSize} × ${this.microBatch} = ${per})`,
      );
    }
    if (this.numSamples < this.globalBatchSize) {
      throw new ConfigError(`globalBatch (${this.globalBatchSize}) is larger than the split (${this.numSamples} samples): an epoch would have no step`);
    }
    this.sampleBlock = positiveInteger('sampleBlock', options.sampleBlock ?? 1);
    this.rankBatchSize = this.globalBatchSize / this.worldSize;
    this.accumulationSteps = this.rankBatchSize / this.microBatch;
    this.stepsPerEpoch = Math.floor(this.numSamples / this.globalBatchSize);
    this.droppedPerEpoch = this.numSamples - this.stepsPerEpoch * this.globalBatchSize;
  }

  /** The whole order of an epoch (all numSamples indices; the tail past stepsPerEpoch·G is dropped). */
  epochOrder(epoch: number): Uint32Array {
    checkEpoch(epoch);
    if (this.cached?.epoch !== epoch) this.cached = { epoch, order: this.makeOrder(epoch) };
    return this.cached.order;
  }

  private makeOrder(epoch: number): Uint32Array {
    const k = this.sampleBlock;
    if (k === 1) return permutation(this.numSamples, this.seed, 'epoch', epoch);
    const n = this.numSamples;
    const blocks = permutation(Math.ceil(n / k), this.seed, 'epoch-blocks', epoch);
    const order = new Uint32Array(n);
    let at = 0;
    for (const b of blocks) for (let i = b * k; i < Math.min(n, (b + 1) * k); i++) order[at++] = i;
    return order;
  }

  /** All global indices of optimizer step `step` of `epoch`, in order (a fresh array). */
  globalBatch(epoch: number, step: number): Uint32Array {
    this.checkStep(step);
    const g = this.globalBatchSize;
    return this.epochOrder(epoch).slice(step * g, (step + 1) * g);
  }

  /** This rank's contiguous slice of the global batch: rankBatchSize indices (a fresh array). */
  rankSlice(epoch: number, step: number): Uint32Array {
    this.checkStep(step);
    const start = step * this.globalBatchSize + this.rank * this.rankBatchSize;
    return this.epochOrder(epoch).slice(start, start + this.rankBatchSize);
  }

  /** The rank slice cut into accumulationSteps chunks of microBatch indices (views of one array). */
  microBatches(epoch: number, step: number): Uint32Array[] {
    const slice = this.rankSlice(epoch, step);
    const m = this.microBatch;
    return Array.from({ length: this.accumulationSteps }, (_, i) => slice.subarray(i * m, (i + 1) * m));
  }

  /** Optimizer steps before `cursor`, over the whole run. */
  globalStep(cursor: SamplerCursor): number {
    this.checkCursor(cursor);
    return cursor.epoch * this.stepsPerEpoch + cursor.step;
  }

  /** The cursor of the `globalStep`-th optimizer step of the run. */
  cursorAt(globalStep: number): SamplerCursor {
    if (!Number.isSafeInteger(globalStep) || globalStep < 0) throw new RangeError(`sampler: globalStep must be a non-negative integer, got ${globalStep}`);
    return { epoch: Math.floor(globalStep / this.stepsPerEpoch), step: globalStep % this.stepsPerEpoch };
  }

  /** The cursor after running the step at `cursor` (rolls over into the next epoch). */
  advance(cursor: SamplerCursor): SamplerCursor {
    this.checkCursor(cursor);
    return cursor.step + 1 < this.stepsPerEpoch ? { epoch: cursor.epoch, step: cursor.step + 1 } : { epoch: cursor.epoch + 1, step: 0 };
  }

  /**
   * This rank's steps from `from` (inclusive) up to the start of epoch `endEpoch` (exclusive;
   * default: no end). Lazily generated, so it can feed a Prefetcher.
   */
  *steps(from: SamplerCursor = { epoch: 0, step: 0 }, endEpoch = Infinity): Generator<SamplerStep, void, undefined> {
    let cursor = { ...from };
    this.checkCursor(cursor);
    while (cursor.epoch < endEpoch) {
      yield { cursor, globalStep: this.globalStep(cursor), indices: this.rankSlice(cursor.epoch, cursor.step) };
      cursor = this.advance(cursor);
    }
  }

  /** The checkpointable state at `cursor` (JSON-serialisable). */
  state(cursor: SamplerCursor): SamplerState {
    const samplesConsumed = this.globalStep(cursor) * this.globalBatchSize;
    const state: SamplerState = { epoch: cursor.epoch, step: cursor.step, samplesConsumed, seed: this.seed, numSamples: this.numSamples, globalBatch: this.globalBatchSize };
    if (this.sampleBlock !== 1) state.sampleBlock = this.sampleBlock; // default runs keep the state they always had
    return state;
  }

  /**
   * The cursor to continue from a saved state. The seed, split size and global batch must match
   * the saved ones (they define the order); the world size and micro-batch may differ, since
   * global batches do not depend on them. A mismatch or a malformed state is a CheckpointError.
   */
  resume(state: unknown): SamplerCursor {
    const s = state as Partial<Record<keyof SamplerState, unknown>> | null;
    if (typeof s !== 'object' || s === null) throw new CheckpointError('sampler state: expected an object');
    const int = (k: keyof SamplerState): number => {
      const v = s[k];
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new CheckpointError(`sampler state: ${k} must be a non-negative integer, got ${JSON.stringify(v)}`);
      return v;
    };
    const saved = { epoch: int('epoch'), step: int('step'), samplesConsumed: int('samplesConsumed'), numSamples: int('numSamples'), globalBatch: int('globalBatch') };
    if (typeof s.seed !== 'number' || !Number.isSafeInteger(s.seed)) throw new CheckpointError(`sampler state: seed must be an integer, got ${JSON.stringify(s.seed)}`);
    const mismatches: string[] = [];
    if (s.seed !== this.seed) mismatches.push(`seed: checkpoint ${s.seed}, now ${this.seed}`);
    if (saved.numSamples !== this.numSamples) mismatches.push(`numSamples: checkpoint ${saved.numSamples}, now ${this.numSamples}`);
    if (saved.globalBatch !== this.globalBatchSize) mismatches.push(`globalBatch: checkpoint ${saved.globalBatch}, now ${this.globalBatchSize}`);
    const block = s.sampleBlock ?? 1;
    if (block !== this.sampleBlock) mismatches.push(`sampleBlock: checkpoint ${JSON.stringify(block)}, now ${this.sampleBlock}`);
    if (mismatches.length > 0) throw new CheckpointError(`sampler state does not match this run (the sample order would differ): ${mismatches.join('; ')}`);
    if (saved.step >= this.stepsPerEpoch) {
      throw new CheckpointError(`sampler state: step ${saved.step} is outside an epoch of ${this.stepsPerEpoch} steps`);
    }
    const cursor = { epoch: saved.epoch, step: saved.step };
    const expected = this.globalStep(cursor) * this.globalBatchSize;
    if (saved.samplesConsumed !== expected) {
      throw new CheckpointError(`sampler state: samplesConsumed ${saved.samplesConsumed} ≠ ${expected} implied by epoch ${saved.epoch}, step ${saved.step}`);
    }
    return cursor;
  }

  private checkStep(step: number): void {
    if (!Number.isSafeInteger(step) || step < 0 || step >= this.stepsPerEpoch) {
      throw new RangeError(`sampler: step must be an integer in [0, ${this.stepsPerEpoch}), got ${step}`);
    }
  }

  private checkCursor(cursor: SamplerCursor): void {
    checkEpoch(cursor.epoch);
    this.checkStep(cursor.step);
  }
}

function checkEpoch(epoch: number): void {
  if (!Number.isSafeInteger(epoch) || epoch < 0) throw new RangeError(`sampler: epoch must be a non-negative integer, got ${epoch}`);
}

/**
 * Per-sample dropout seeds for a micro-batch: `seedFrom(seed, 'dropout', globalStep, globalIndex)`
 * — a sample's mask depends on what it is and when, never on which rank or micro-batch holds it.
 * Pass the result as `dropoutSeed` of SmolVLMRegressor.lossAndGrads.
 */
export function dropoutSeeds(seed: number, globalStep: number, indices: ArrayLike<number>): number[] {
  return Array.from(indices, (i) => seedFrom(seed, 'dropout', globalStep, i));
}

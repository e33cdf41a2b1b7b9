/**
 * Linear warm-up then linear decay (the paper: peak 4e-4, 3 % warm-up, decay to 0; the shape of
 * transformers' `get_linear_schedule_with_warmup`).
 *
 * Step indexes count optimizer updates from 0 (the first update is step 0). With W warm-up steps
 * and T total steps:
 *
 *   warm-up  s < W:        lr = peak · (s + 1) / W     first update peak/W, update W−1 reaches peak
 *   decay    W ≤ s < T:    lr = minLr + (peak − minLr) · (T − s) / (T − W)     (peak at s = W)
 *   after    s ≥ T:        lr = minLr                  (= 0 at s = T by default)
 *
 * Unlike transformers' version (whose first update gets lr 0 because it evaluates the warm-up at
 * s/W), no update is wasted: the warm-up starts at peak/W, and the last update (s = T−1) still
 * has (peak − minLr)/(T − W) above minLr. W = warmupSteps, else ceil(warmupFraction · T).
 */
import { ConfigError } from '@smolrate/core';

export interface LinearWarmupDecayOptions {
  peakLr: number;
  /** Number of optimizer updates in the run. */
  totalSteps: number;
  /** Fraction of totalSteps spent warming up, rounded up. Default 0.03. Ignored with warmupSteps. */
  warmupFraction?: number;
  /** Warm-up length in updates; overrides warmupFraction. */
  warmupSteps?: number;
  /** Floor reached at totalSteps. Default 0. */
  minLr?: number;
}

/** A schedule: lr for a 0-based update index, plus its resolved settings (for logs / checkpoints). */
export interface LrSchedule {
  (step: number): number;
  readonly peakLr: number;
  readonly totalSteps: number;
  readonly warmupSteps: number;
  readonly minLr: number;
}

/** ceil(fraction · total), immune to binary noise such as 0.03 · 100 = 3.0000000000000004. */
export function warmupStepsFor(totalSteps: number, warmupFraction: number): number {
  return Math.ceil(Math.round(warmupFraction * totalSteps * 1e9) / 1e9);
}

export function linearWarmupDecay(opts: LinearWarmupDecayOptions): LrSchedule {
  const { peakLr, totalSteps } = opts;
  const warmupFraction = opts.warmupFraction ?? 0.03;
  const minLr = opts.minLr ?? 0;
  if (typeof peakLr !== 'number' || !(peakLr > 0 && Number.isFinite(peakLr))) {
    throw new ConfigError(`lr schedule: peakLr must be a finite number > 0, got ${peakLr}`);
  }
  if (!Number.isSafeInteger(totalSteps) || totalSteps < 1) {
    throw new ConfigError(`lr schedule: totalSteps must be a positive integer, got ${totalSteps}`);
  }
  if (typeof warmupFraction !== 'number' || !(warmupFraction >= 0 && warmupFraction <= 1)) {
    throw new ConfigError(`lr schedule: warmupFraction must be in [0, 1], got ${warmupFraction}`);
  }
  if (typeof minLr !== 'number' || !(minLr >= 0 && minLr <= peakLr)) {
    throw new ConfigError(`lr schedule: minLr must be in [0, peakLr = ${peakLr}], got ${minLr}`);
  }
  const warmupSteps = opts.warmupSteps ?? warmupStepsFor(totalSteps, warmupFraction);
  if (!Number.isSafeInteger(warmupSteps) || warmupSteps < 0 || warmupSteps > totalSteps) {
    throw new ConfigError(`lr schedule: warmupSteps must be an integer in [0, totalSteps = ${totalSteps}], got ${warmupSteps}`);
  }
  const decaySteps = totalSteps - warmupSteps;
  const lrAt = (step: number): number => {
    if (!Number.isSafeInteger(step) || step < 0) throw new RangeError(`lr schedule: step must be an integer >= 0, got ${step}`);
    if (step < warmupSteps) return (peakLr * (step + 1)) / warmupSteps;
    if (step >= totalSteps) return minLr;
    return minLr + ((peakLr - minLr) * (totalSteps - step)) / decaySteps;
  };
  return Object.assign(lrAt, { peakLr, totalSteps, warmupSteps, minLr });
}

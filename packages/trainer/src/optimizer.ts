/**
 * The optimizer a rank trains with, from the trainer config — one construction for the trainer
 * (train-worker.ts) and the simulated step of bench-scaling (bench-step.ts).
 */
import { AdamW32 } from './adamw32.js';
import { AdamW8bit } from './adamw8bit.js';
import type { TrainerConfig } from './config.js';
import { decodeOptimizerState, sliceOptimizerState, type OptimizerName } from './optimizer-state-file.js';

export type Optimizer = AdamW8bit | AdamW32;

export type OptimizerConfig = Pick<TrainerConfig, 'optimizer' | 'peakLr' | 'weightDecay' | 'fp32EmbeddingState'>;

export const optimizerName = (cfg: Pick<TrainerConfig, 'optimizer'>): OptimizerName => (cfg.optimizer === 'adamw32' ? 'AdamW32' : 'AdamW8bit');

/**
 * The optimizer of this rank: fresh, or from a checkpoint's (unsharded) `optimizer.bin`, cut to
 * the parameter slices this rank owns (all of them without ZeRO) — any world size can resume.
 */
export function makeOptimizer(cfg: OptimizerConfig, bytes: Buffer | null, owned: ReadonlyMap<string, { offset: number; length: number }> | null): Optimizer {
  const fp32StateFor = cfg.fp32EmbeddingState ? (n: string) => n.endsWith('embed_tokens.weight') : undefined;
  const opt = cfg.optimizer === 'adamw32' ? new AdamW32({ lr: cfg.peakLr, weightDecay: cfg.weightDecay }) : new AdamW8bit({ lr: cfg.peakLr, weightDecay: cfg.weightDecay, fp32StateFor });
  if (bytes !== null) {
    const full = decodeOptimizerState(bytes);
    opt.importState(owned === null ? full : sliceOptimizerState(full, optimizerName(cfg), owned));
  }
  return opt;
}

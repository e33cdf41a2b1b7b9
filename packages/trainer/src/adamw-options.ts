import { ConfigError } from '@smolrate/core';

/** Options of AdamW8bit (and, minus the 8-bit ones, AdamW32). Defaults as in docs/reference/optimizer.md. */
export interface AdamWOptions {
  /** Learning rate used when `step` is not given one. Default 1e-3 (the paper's peak: 4e-4). */
  lr?: number;
  /** Default [0.9, 0.999]. */
  betas?: [number, number];
  /** Default 1e-8. */
  eps?: number;
  /** Decoupled weight decay (AdamW). Default 1e-2. */
  weightDecay?: number;
  /** Elements per absmax block of the 8-bit states. Default 256 (older bitsandbytes: 2048). */
  blockSize?: number;
  /** Tensors with fewer elements keep fp32 m and v. Default 4096. */
  minElements8bit?: number;
  /**
   * Parameters for which m and v stay fp32 whatever their size (bitsandbytes' "stable embedding"
   * keeps embedding state in 32 bits). Decided at a parameter's first step. Default: none.
   */
  fp32StateFor?: (name: string) => boolean;
}

/** The JSON-able hyper-parameters saved with the optimizer state. */
export interface AdamWHyper {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  blockSize: number;
  minElements8bit: number;
}

export const ADAMW_DEFAULTS: Readonly<AdamWHyper> = Object.freeze({
  lr: 1e-3,
  betas: [0.9, 0.999] as [number, number],
  eps: 1e-8,
  weightDecay: 1e-2,
  blockSize: 256,
  minElements8bit: 4096,
});

/** A learning rate must be finite and ≥ 0 (0 is legal: the first warm-up step may use it). */
export function checkLr(lr: number, what = 'lr'): number {
  if (typeof lr !== 'number' || !Number.isFinite(lr) || lr < 0) {
    throw new ConfigError(`optimizer ${what} must be a finite number >= 0, got ${lr}`);
  }
  return lr;
}

/** Applies defaults and validates; every error names the option and the value. */
export function resolveAdamWHyper(opts: Partial<AdamWHyper> = {}): AdamWHyper {
  const h: AdamWHyper = {
    lr: opts.lr ?? ADAMW_DEFAULTS.lr,
    betas: opts.betas ? [opts.betas[0], opts.betas[1]] : [ADAMW_DEFAULTS.betas[0], ADAMW_DEFAULTS.betas[1]],
    eps: opts.eps ?? ADAMW_DEFAULTS.eps,
    weightDecay: opts.weightDecay ?? ADAMW_DEFAULTS.weightDecay,
    blockSize: opts.blockSize ?? ADAMW_DEFAULTS.blockSize,
    minElements8bit: opts.minElements8bit ?? ADAMW_DEFAULTS.minElements8bit,
  };
  checkLr(h.lr);
  for (const [i, b] of h.betas.entries()) {
    if (typeof b !== 'number' || !(b >= 0 && b < 1)) {
      throw new ConfigError(`optimizer betas[${i}] must be in [0, 1), got ${b}`);
    }
  }
  if (typeof h.eps !== 'number' || !(h.eps > 0 && Number.isFinite(h.eps))) {
    throw new ConfigError(`optimizer eps must be a finite number > 0, got ${h.eps}`);
  }
  if (typeof h.weightDecay !== 'number' || !(h.weightDecay >= 0 && Number.isFinite(h.weightDecay))) {
    throw new ConfigError(`optimizer weightDecay must be a finite number >= 0, got ${h.weightDecay}`);
  }
  if (!Number.isSafeInteger(h.blockSize) || h.blockSize < 1) {
    throw new ConfigError(`optimizer blockSize must be a positive integer, got ${h.blockSize}`);
  }
  if (!Number.isSafeInteger(h.minElements8bit) || h.minElements8bit < 0) {
    throw new ConfigError(`optimizer minElements8bit must be an integer >= 0, got ${h.minElements8bit}`);
  }
  return h;
}

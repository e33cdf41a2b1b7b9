/**
 * Seeded random initialisation for any config: Linear / Conv / Embedding weights ~ normal(0, 0.02)
 * (transformers' `initializer_range`), LayerNorm / RMSNorm weights 1, biases 0. Each parameter
 * draws from its own stream (core's Rng seeded by (seed, 'init', name)), so a parameter's initial value does not
 * depend on which other parameters are initialised with it (initialising only the regression head
 * gives the same head as a full init with the same seed).
 */
import { Rng } from '@smolrate/core';
import type { ModelConfig } from './config.js';
import { expectedParameters, type ExpectedParametersOptions, type ParamSpec } from './params.js';
import { shapeSize, type StateDict, type StateTensor } from './state-dict.js';

export const INIT_STD = 0.02;

/** Initial value of one parameter, in its PyTorch layout. */
export function initParameter(spec: Pick<ParamSpec, 'name' | 'shape' | 'init'>, seed: number): StateTensor {
  const data = new Float32Array(shapeSize(spec.shape));
  if (spec.init === 'ones') data.fill(1);
  else if (spec.init === 'normal') {
    const rng = new Rng(seed, 'init', spec.name);
    for (let i = 0; i < data.length; i++) data[i] = INIT_STD * rng.normal();
  }
  return { shape: [...spec.shape], data };
}

export interface InitOptions extends ExpectedParametersOptions {
  seed: number;
}

/** A complete, seeded state dict (PyTorch layouts) for `cfg`. */
export function initStateDict(cfg: ModelConfig, options: InitOptions): StateDict {
  const dict: StateDict = new Map();
  for (const spec of expectedParameters(cfg, options)) dict.set(spec.name, initParameter(spec, options.seed));
  return dict;
}

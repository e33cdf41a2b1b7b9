/**
 * Early stopping on a validation metric (the paper: validation PLCC, mode 'max'), decided on rank 0
 * and saved in `trainer-state.json` so a resumed run keeps counting where it stopped.
 *
 * A value improves when it beats the best so far by more than `minDelta` (strictly: > best +
 * minDelta in 'max' mode, < best − minDelta in 'min' mode); the first finite value always improves.
 * A non-finite value (e.g. PLCC of constant predictions is NaN) never improves. After `patience`
 * consecutive evaluations without improvement, `stop` is true (Keras / Lightning semantics).
 */
import { CheckpointError, ConfigError } from '@smolrate/core';

export interface EarlyStoppingOptions {
  /** Evaluations without improvement tolerated before stopping (≥ 1). */
  patience: number;
  /** Minimum change that counts as an improvement. Default 0. */
  minDelta?: number;
  /** 'max' for PLCC / SRCC, 'min' for losses. Default 'max'. */
  mode?: 'max' | 'min';
}

/** JSON-able state (best is null before the first finite value). */
export interface EarlyStoppingState {
  patience: number;
  minDelta: number;
  mode: 'max' | 'min';
  best: number | null;
  /** Index (0-based, counting `update` calls) of the best value; -1 before it. */
  bestIndex: number;
  /** Consecutive evaluations without improvement. */
  badCount: number;
  /** `update` calls so far. */
  updates: number;
}

export interface EarlyStoppingDecision {
  improved: boolean;
  stop: boolean;
}

export class EarlyStopping {
  private s: EarlyStoppingState;

  constructor(opts: EarlyStoppingOptions) {
    const { patience } = opts;
    const minDelta = opts.minDelta ?? 0;
    const mode = opts.mode ?? 'max';
    if (!Number.isSafeInteger(patience) || patience < 1) {
      throw new ConfigError(`early stopping: patience must be an integer >= 1, got ${patience}`);
    }
    if (typeof minDelta !== 'number' || !(minDelta >= 0 && Number.isFinite(minDelta))) {
      throw new ConfigError(`early stopping: minDelta must be a finite number >= 0, got ${minDelta}`);
    }
    if (mode !== 'max' && mode !== 'min') throw new ConfigError(`early stopping: mode must be 'max' or 'min', got ${String(mode)}`);
    this.s = { patience, minDelta, mode, best: null, bestIndex: -1, badCount: 0, updates: 0 };
  }

  /** Records one evaluation. */
  update(metric: number): EarlyStoppingDecision {
    const s = this.s;
    const improved =
      Number.isFinite(metric) &&
      (s.best === null || (s.mode === 'max' ? metric > s.best + s.minDelta : metric < s.best - s.minDelta));
    if (improved) {
      s.best = metric;
      s.bestIndex = s.updates;
      s.badCount = 0;
    } else {
      s.badCount += 1;
    }
    s.updates += 1;
    return { improved, stop: s.badCount >= s.patience };
  }

  get best(): number | null {
    return this.s.best;
  }

  get shouldStop(): boolean {
    return this.s.badCount >= this.s.patience;
  }

  /** A copy of the state, for `trainer-state.json`. */
  state(): EarlyStoppingState {
    return { ...this.s };
  }

  toJSON(): EarlyStoppingState {
    return this.state();
  }

  /** Restores a saved state; anything malformed is a CheckpointError. */
  static fromState(state: EarlyStoppingState): EarlyStopping {
    const bad = (why: string): never => {
      throw new CheckpointError(`early stopping state: ${why} in ${JSON.stringify(state)}`);
    };
    if (typeof state !== 'object' || state === null) bad('not an object');
    let es: EarlyStopping;
    try {
      es = new EarlyStopping({ patience: state.patience, minDelta: state.minDelta, mode: state.mode });
    } catch (e) {
      throw new CheckpointError(`early stopping state: ${(e as Error).message}`, { cause: e });
    }
    const { best, bestIndex, badCount, updates } = state;
    if (best !== null && !(typeof best === 'number' && Number.isFinite(best))) bad('best is not a finite number or null');
    for (const [k, v] of Object.entries({ bestIndex, badCount, updates })) {
      if (!Number.isSafeInteger(v)) bad(`${k} is not an integer`);
    }
    if (updates < 0 || badCount < 0 || badCount > updates) bad('counts out of range');
    if (best === null ? bestIndex !== -1 || badCount !== updates : bestIndex < 0 || bestIndex + badCount + 1 !== updates) {
      bad('best, bestIndex and counts disagree');
    }
    es.s = { ...es.s, best, bestIndex, badCount, updates };
    return es;
  }
}

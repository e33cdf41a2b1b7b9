/**
 * Textbook fp32 AdamW (Loshchilov & Hutter, arXiv 1711.05101), written as `torch.optim.AdamW`
 * computes it (single-tensor path): decoupled decay first, then the bias-corrected update,
 *
 *   p ← p·(1 − lr·wd);  m ← lerp(m, g, 1 − β1);  v ← β2·v + (1 − β2)·g²
 *   p ← p − (lr / (1 − β1^t)) · m / (sqrt(v) / sqrt(1 − β2^t) + eps)
 *
 * with every tensor operation and every scalar in float32 (torch computes the scalars in double;
 * here 1 − β2 is rounded as AdamW8bit rounds it, else v alone would differ by 1e-5). It is the
 * reference AdamW8bit is tested against (docs/reference/optimizer.md "Testing"), and an fp32 option for the trainer,
 * with the same API. Differences from AdamW8bit's fp32-state path are only rounding and the order of
 * the decay (bitsandbytes decays after the update): |Δp| ≤ lr·wd·|update| per step.
 *
 * Non-finite gradient elements follow AdamW8bit's rule (m = v = 0, parameter untouched) instead of
 * spreading NaN as torch would, so either optimizer can be swapped into the trainer.
 */
import { ShapeError } from '@smolrate/core';
import { AdamWBase, fp32State, type Fp32ParamState, type MomentState, type NewParamMeta, type ParamState, type TensorSlice } from './adamw-base.js';
import type { AdamWOptions } from './adamw-options.js';
import { decodeOptimizerState } from './optimizer-state-file.js';

const f = Math.fround;

export type AdamW32Options = Pick<AdamWOptions, 'lr' | 'betas' | 'eps' | 'weightDecay'>;

export class AdamW32 extends AdamWBase {
  /** blockSize / minElements8bit keep their defaults (saved with the state, unused here). */
  constructor(opts: AdamW32Options = {}) {
    super('AdamW32', { lr: opts.lr, betas: opts.betas, eps: opts.eps, weightDecay: opts.weightDecay });
  }

  static deserialize(buf: Uint8Array): AdamW32 {
    const opt = new AdamW32();
    opt.load(decodeOptimizerState(buf), false);
    return opt;
  }

  /**
   * Sets a parameter's moments and step count (copied), creating its state if needed — e.g. from
   * `AdamW8bit.dequantizedState` to re-sync a reference run.
   */
  setState(name: string, state: MomentState, slice?: TensorSlice): void {
    if (state.m.length !== state.v.length) {
      throw new ShapeError(`AdamW32 ${name}: m has ${state.m.length} elements, v ${state.v.length}`);
    }
    if (!Number.isSafeInteger(state.step) || state.step < 0) {
      throw new RangeError(`AdamW32 ${name}: step must be an integer >= 0, got ${state.step}`);
    }
    const st = this.stateFor(name, state.m.length, slice ?? { offset: 0, total: state.m.length }) as Fp32ParamState;
    st.m.set(state.m);
    st.v.set(state.v);
    st.step = state.step;
  }

  protected newState(meta: NewParamMeta): ParamState {
    return fp32State(meta);
  }

  /** Element-wise, so any slice boundaries work. Its state is fp32 only (readOptimizerState checks loaded state). */
  protected update(st: ParamState, param: Float32Array, grad: Float32Array, lr: number): void {
    const t = st.step;
    // Every scalar in float32 too (as in an all-float32 program, and as AdamW8bit computes them),
    // so the two differ by rounding and decay order only, not by how 1 − β2 was rounded.
    const lrF = f(lr);
    const beta1 = f(this.hyper.betas[0]);
    const beta2 = f(this.hyper.betas[1]);
    const decay = f(1 - f(lrF * f(this.hyper.weightDecay)));
    const weight1 = f(1 - beta1);
    const oneMinusBeta2 = f(1 - beta2);
    const stepSize = f(lrF / f(1 - f(Math.pow(beta1, t))));
    const bc2Sqrt = f(Math.sqrt(f(1 - f(Math.pow(beta2, t)))));
    const eps = f(this.hyper.eps);
    const { m: mState, v: vState } = st as Fp32ParamState;
    for (let j = 0; j < param.length; j++) {
      const g = grad[j];
      if (g - g !== 0) {
        mState[j] = 0;
        vState[j] = 0;
        continue;
      }
      const p = f(param[j] * decay);
      const m = f(mState[j] + f(weight1 * f(g - mState[j]))); // torch lerp, weight < 0.5
      const v = f(f(vState[j] * beta2) + f(f(oneMinusBeta2 * g) * g));
      mState[j] = m;
      vState[j] = v;
      const denom = f(f(f(Math.sqrt(v)) / bc2Sqrt) + eps);
      param[j] = f(p + f(f(-stepSize * m) / denom)); // addcdiv: p + value·m / denom
    }
  }
}

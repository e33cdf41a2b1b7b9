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
import { checkLr, resolveAdamWHyper, type AdamWHyper, type AdamWOptions } from './adamw-options.js';
import type { MomentState, TensorSlice } from './adamw8bit.js';
import {
  decodeOptimizerState,
  encodeOptimizerState,
  readOptimizerState,
  type OptimizerParamMeta,
  type OptimizerState,
  type OptimizerStateBuffer,
} from './optimizer-state-file.js';

const f = Math.fround;

export type AdamW32Options = Pick<AdamWOptions, 'lr' | 'betas' | 'eps' | 'weightDecay'>;

interface Fp32ParamState extends OptimizerParamMeta {
  kind: 'fp32';
  m: Float32Array;
  v: Float32Array;
}

export class AdamW32 {
  private hyper: AdamWHyper;
  private readonly states = new Map<string, Fp32ParamState>();

  constructor(opts: AdamW32Options = {}) {
    this.hyper = resolveAdamWHyper({
      lr: opts.lr,
      betas: opts.betas,
      eps: opts.eps,
      weightDecay: opts.weightDecay,
    });
  }

  /** Hyper-parameters (a copy). blockSize / minElements8bit are unused here. */
  get options(): AdamWHyper {
    return { ...this.hyper, betas: [this.hyper.betas[0], this.hyper.betas[1]] };
  }

  get lr(): number {
    return this.hyper.lr;
  }

  setLr(lr: number): void {
    this.hyper.lr = checkLr(lr);
  }

  step(name: string, param: Float32Array, grad: Float32Array, lr?: number): void {
    this.stepSlice(name, param, grad, { offset: 0, total: param.length }, lr);
  }

  /** As AdamW8bit.stepSlice; element-wise, so any slice boundaries work. */
  stepSlice(name: string, param: Float32Array, grad: Float32Array, slice: TensorSlice, lr?: number): void {
    const rate = lr === undefined ? this.hyper.lr : checkLr(lr, 'step lr');
    if (grad.length !== param.length) {
      throw new ShapeError(`AdamW32 ${name}: gradient has ${grad.length} elements, parameter ${param.length}`);
    }
    const st = this.stateFor(name, param.length, slice);
    st.step += 1;
    const t = st.step;
    // Every scalar in float32 too (as in an all-float32 program, and as AdamW8bit computes them),
    // so the two differ by rounding and decay order only, not by how 1 − β2 was rounded.
    const lrF = f(rate);
    const beta1 = f(this.hyper.betas[0]);
    const beta2 = f(this.hyper.betas[1]);
    const decay = f(1 - f(lrF * f(this.hyper.weightDecay)));
    const weight1 = f(1 - beta1);
    const oneMinusBeta2 = f(1 - beta2);
    const stepSize = f(lrF / f(1 - f(Math.pow(beta1, t))));
    const bc2Sqrt = f(Math.sqrt(f(1 - f(Math.pow(beta2, t)))));
    const eps = f(this.hyper.eps);
    const { m: mState, v: vState } = st;
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

  /** Copies of m and v, plus the step count (same shape as AdamW8bit's). */
  dequantizedState(name: string): MomentState {
    const st = this.states.get(name);
    if (!st) throw new RangeError(`AdamW32: no state for parameter ${name}`);
    return { m: st.m.slice(), v: st.v.slice(), step: st.step };
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
    const st = this.stateFor(name, state.m.length, slice ?? { offset: 0, total: state.m.length });
    st.m.set(state.m);
    st.v.set(state.v);
    st.step = state.step;
  }

  names(): string[] {
    return [...this.states.keys()];
  }

  stateBytes(): number {
    let bytes = 0;
    for (const st of this.states.values()) bytes += st.m.byteLength + st.v.byteLength;
    return bytes;
  }

  exportState(): OptimizerState {
    return this.collect(true);
  }

  importState(state: OptimizerState): void {
    this.load(state, true);
  }

  serialize(): Buffer {
    return encodeOptimizerState(this.collect(false));
  }

  static deserialize(buf: Uint8Array): AdamW32 {
    const opt = new AdamW32();
    opt.load(decodeOptimizerState(buf), false);
    return opt;
  }

  private load(state: OptimizerState, copy: boolean): void {
    const { hyper, params } = readOptimizerState(state, 'AdamW32');
    const states = new Map<string, Fp32ParamState>();
    for (const [name, { meta, buffers }] of params) {
      const m = buffers.m as Float32Array;
      const v = buffers.v as Float32Array;
      states.set(name, { ...meta, kind: 'fp32', m: copy ? m.slice() : m, v: copy ? v.slice() : v });
    }
    this.hyper = hyper;
    this.states.clear();
    for (const [k, st] of states) this.states.set(k, st);
  }

  private collect(copy: boolean): OptimizerState {
    const params: OptimizerParamMeta[] = [];
    const buffers: OptimizerStateBuffer[] = [];
    for (const name of [...this.states.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
      const st = this.states.get(name)!;
      params.push({ name, kind: 'fp32', length: st.length, step: st.step, offset: st.offset, total: st.total });
      buffers.push(
        { name, kind: 'm', data: copy ? st.m.slice() : st.m },
        { name, kind: 'v', data: copy ? st.v.slice() : st.v },
      );
    }
    return { meta: { optimizer: 'AdamW32', hyper: this.options, params }, buffers };
  }

  private stateFor(name: string, length: number, slice: TensorSlice): Fp32ParamState {
    const { offset, total } = slice;
    const existing = this.states.get(name);
    if (existing) {
      if (existing.length !== length || existing.offset !== offset || existing.total !== total) {
        throw new ShapeError(
          `AdamW32 ${name}: state is for ${existing.length} elements at ${existing.offset} of ${existing.total}, ` +
            `got ${length} at ${offset} of ${total}`,
        );
      }
      return existing;
    }
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(total) || offset < 0 || offset + length > total) {
      throw new ShapeError(`AdamW32 ${name}: slice [${offset}, ${offset + length}) is not inside a tensor of ${total} elements`);
    }
    const st: Fp32ParamState = {
      name,
      kind: 'fp32',
      length,
      step: 0,
      offset,
      total,
      m: new Float32Array(length),
      v: new Float32Array(length),
    };
    this.states.set(name, st);
    return st;
  }
}


/**
 * The bookkeeping AdamW8bit and AdamW32 share: per-parameter state by name (fp32 m and v, or
 * block-wise 8-bit codes and absmax), one step count per parameter (bias correction), the learning
 * rate, ZeRO-1 slices, and the state's snapshots and `optimizer.bin` bytes. A subclass supplies a
 * new parameter's state and the element-wise update of one parameter.
 */
import { compareKeys, ShapeError } from '@smolrate/core';
import { checkLr, resolveAdamWHyper, type AdamWHyper } from './adamw-options.js';
import type { Q8State } from './adamw-kernel.js';
import { dequantize, SIGNED_CODE, UNSIGNED_CODE } from './quant-tables.js';
import {
  encodeOptimizerState,
  readOptimizerState,
  type OptimizerName,
  type OptimizerParamMeta,
  type OptimizerState,
  type OptimizerStateBuffer,
  type StateKind,
} from './optimizer-state-file.js';

/** Which part of a full tensor a `stepSlice` call holds. */
export interface TensorSlice {
  /** First element of the slice in the full tensor; a multiple of blockSize for AdamW8bit. */
  offset: number;
  /** Elements of the full tensor. */
  total: number;
}

/** Dequantised (or copied) moments of one parameter. */
export interface MomentState {
  m: Float32Array;
  v: Float32Array;
  /** Updates applied so far. */
  step: number;
}

export interface Fp32ParamState extends OptimizerParamMeta {
  kind: 'fp32';
  m: Float32Array;
  v: Float32Array;
}

export interface Q8ParamState extends OptimizerParamMeta, Q8State {
  kind: '8bit';
}

export type ParamState = Fp32ParamState | Q8ParamState;

/** A fresh parameter's name, length and slice (step 0). */
export type NewParamMeta = Omit<OptimizerParamMeta, 'kind'>;

export abstract class AdamWBase {
  protected hyper: AdamWHyper;
  private readonly states = new Map<string, ParamState>();

  constructor(
    private readonly optimizer: OptimizerName,
    opts: Partial<AdamWHyper>,
  ) {
    this.hyper = resolveAdamWHyper(opts);
  }

  /** The zeroed state of a parameter at its first step (the slice is inside the tensor). */
  protected abstract newState(meta: NewParamMeta): ParamState;

  /** One update of `param` (in place) from `grad` at learning rate `lr`; `st.step` already counts it. */
  protected abstract update(st: ParamState, param: Float32Array, grad: Float32Array, lr: number): void;

  /** Hyper-parameters (a copy); `lr` is the current default learning rate. */
  get options(): AdamWHyper {
    return { ...this.hyper, betas: [this.hyper.betas[0], this.hyper.betas[1]] };
  }

  get lr(): number {
    return this.hyper.lr;
  }

  /** Sets the learning rate used by later `step` calls that do not pass one. */
  setLr(lr: number): void {
    this.hyper.lr = checkLr(lr);
  }

  /** One AdamW update of the whole tensor `param` (in place) with gradient `grad`. */
  step(name: string, param: Float32Array, grad: Float32Array, lr?: number): void {
    this.stepSlice(name, param, grad, { offset: 0, total: param.length }, lr);
  }

  /**
   * One update of a slice of a tensor (ZeRO-1: this rank owns `param` = full[offset, offset +
   * param.length)). Each name must always be stepped with the same slice.
   */
  stepSlice(name: string, param: Float32Array, grad: Float32Array, slice: TensorSlice, lr?: number): void {
    const rate = lr === undefined ? this.hyper.lr : checkLr(lr, 'step lr');
    if (grad.length !== param.length) {
      throw new ShapeError(`${this.optimizer} ${name}: gradient has ${grad.length} elements, parameter ${param.length}`);
    }
    const st = this.stateFor(name, param.length, slice);
    st.step += 1;
    this.update(st, param, grad, rate);
  }

  /** m and v of a parameter as float32 (copies; 8-bit states dequantised), plus its step count. */
  dequantizedState(name: string): MomentState {
    const st = this.states.get(name);
    if (!st) throw new RangeError(`${this.optimizer}: no state for parameter ${name}`);
    if (st.kind === 'fp32') return { m: st.m.slice(), v: st.v.slice(), step: st.step };
    const bs = this.hyper.blockSize;
    return {
      m: dequantize(SIGNED_CODE, st.mCodes, st.mAbsmax, bs),
      v: dequantize(UNSIGNED_CODE, st.vCodes, st.vAbsmax, bs),
      step: st.step,
    };
  }

  /** Names with state, in first-step order. */
  names(): string[] {
    return [...this.states.keys()];
  }

  /** How a parameter's state is stored, or undefined before its first step. */
  stateKind(name: string): StateKind | undefined {
    return this.states.get(name)?.kind;
  }

  /** Bytes held by optimizer state (codes, absmax, fp32 moments). */
  stateBytes(): number {
    let bytes = 0;
    for (const b of this.collect(false).buffers) bytes += b.data.byteLength;
    return bytes;
  }

  /** A snapshot (copies) of the whole state: JSON-able meta plus raw buffers. */
  exportState(): OptimizerState {
    return this.collect(true);
  }

  /**
   * Replaces all state, hyper-parameters (lr included) and step counts with `state`'s (copied).
   * Inconsistent input is a CheckpointError and leaves this optimizer unchanged.
   */
  importState(state: OptimizerState): void {
    this.load(state, true);
  }

  /** The `optimizer.bin` bytes (format: optimizer-state-file.ts). */
  serialize(): Buffer {
    return encodeOptimizerState(this.collect(false));
  }

  protected load(state: OptimizerState, copy: boolean): void {
    const { hyper, params } = readOptimizerState(state, this.optimizer);
    const cp = <T extends Uint8Array | Float32Array>(a: T | undefined): T => (copy ? (a!.slice() as T) : a!);
    const states = new Map<string, ParamState>();
    for (const [name, { meta, buffers }] of params) {
      states.set(
        name,
        meta.kind === 'fp32'
          ? { ...meta, kind: 'fp32', m: cp(buffers.m as Float32Array), v: cp(buffers.v as Float32Array) }
          : {
              ...meta,
              kind: '8bit',
              mCodes: cp(buffers['m.codes'] as Uint8Array),
              mAbsmax: cp(buffers['m.absmax'] as Float32Array),
              vCodes: cp(buffers['v.codes'] as Uint8Array),
              vAbsmax: cp(buffers['v.absmax'] as Float32Array),
            },
      );
    }
    this.hyper = hyper;
    this.states.clear();
    for (const [k, v] of states) this.states.set(k, v);
  }

  private collect(copy: boolean): OptimizerState {
    const cp = <T extends Uint8Array | Float32Array>(a: T): T => (copy ? (a.slice() as T) : a);
    const params: OptimizerParamMeta[] = [];
    const buffers: OptimizerStateBuffer[] = [];
    for (const name of [...this.states.keys()].sort(compareKeys)) {
      const st = this.states.get(name)!;
      params.push({ name, kind: st.kind, length: st.length, step: st.step, offset: st.offset, total: st.total });
      if (st.kind === 'fp32') {
        buffers.push({ name, kind: 'm', data: cp(st.m) }, { name, kind: 'v', data: cp(st.v) });
      } else {
        buffers.push(
          { name, kind: 'm.codes', data: cp(st.mCodes) },
          { name, kind: 'm.absmax', data: cp(st.mAbsmax) },
          { name, kind: 'v.codes', data: cp(st.vCodes) },
          { name, kind: 'v.absmax', data: cp(st.vAbsmax) },
        );
      }
    }
    return { meta: { optimizer: this.optimizer, hyper: this.options, params }, buffers };
  }

  /** A parameter's state, created (by `newState`) at its first step. */
  protected stateFor(name: string, length: number, slice: TensorSlice): ParamState {
    const { offset, total } = slice;
    const existing = this.states.get(name);
    if (existing) {
      if (existing.length !== length || existing.offset !== offset || existing.total !== total) {
        throw new ShapeError(
          `${this.optimizer} ${name}: state is for ${existing.length} elements at ${existing.offset} of ${existing.total}, ` +
            `got ${length} at ${offset} of ${total}`,
        );
      }
      return existing;
    }
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(total) || offset < 0 || offset + length > total) {
      throw new ShapeError(`${this.optimizer} ${name}: slice [${offset}, ${offset + length}) is not inside a tensor of ${total} elements`);
    }
    const st = this.newState({ name, length, step: 0, offset, total });
    this.states.set(name, st);
    return st;
  }
}

/** Zeroed fp32 moments. */
export const fp32State = (meta: NewParamMeta): Fp32ParamState => ({ ...meta, kind: 'fp32', m: new Float32Array(meta.length), v: new Float32Array(meta.length) });

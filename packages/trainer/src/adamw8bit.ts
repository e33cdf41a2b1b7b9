/**
 * Block-wise 8-bit AdamW (bitsandbytes `AdamW8bit`, Dettmers et al., arXiv 2110.02861), following
 * docs/reference/optimizer.md's pseudo-code line by line, all arithmetic in IEEE float32, so results are identical on
 * every host — replicas stay bit-identical. The update loops run as a WebAssembly SIMD kernel
 * (adamw-kernel.ts), byte-identical to the plain-JS float32 loops (Math.fround after every
 * operation) kept as its reference in tests/adamw-reference.ts.
 *
 * Per parameter (by name) with ≥ `minElements8bit` elements: m as signed dynamic codes, v as
 * unsigned dynamic codes, one float32 absmax each per block of `blockSize` consecutive elements —
 * ≈ 2.03 bytes/element instead of 8. Smaller tensors, and those picked by `fp32StateFor`, keep fp32
 * m and v and take the same update (bitsandbytes' 32-bit kernel).
 *
 * ZeRO-1 sharding: blocks always start at element 0 of the array handed to `stepSlice`, so a rank
 * that owns `[offset, offset + length)` of a tensor reproduces the unsharded update bit for bit as
 * long as `offset` is a multiple of `blockSize` and the slice ends on a multiple of `blockSize` or at
 * the end of the tensor (checked). The 8-bit / fp32 choice uses the full tensor's size.
 */
import { ShapeError } from '@smolrate/core';
import { checkLr, resolveAdamWHyper, type AdamWHyper, type AdamWOptions } from './adamw-options.js';
import { dequantize, SIGNED_CODE, UNSIGNED_CODE } from './quant-tables.js';
import { step8bitKernel, stepFp32Kernel, stepScalars, type StepScalars } from './adamw-kernel.js';
import {
  decodeOptimizerState,
  encodeOptimizerState,
  readOptimizerState,
  type OptimizerParamMeta,
  type OptimizerState,
  type OptimizerStateBuffer,
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

interface Fp32ParamState extends OptimizerParamMeta {
  kind: 'fp32';
  m: Float32Array;
  v: Float32Array;
}

interface Q8ParamState extends OptimizerParamMeta {
  kind: '8bit';
  mCodes: Uint8Array;
  mAbsmax: Float32Array;
  vCodes: Uint8Array;
  vAbsmax: Float32Array;
}

type ParamState = Fp32ParamState | Q8ParamState;

export class AdamW8bit {
  private hyper: AdamWHyper;
  private readonly fp32StateFor: (name: string) => boolean;
  private readonly states = new Map<string, ParamState>();

  constructor(opts: AdamWOptions = {}) {
    this.hyper = resolveAdamWHyper(opts);
    this.fp32StateFor = opts.fp32StateFor ?? (() => false);
  }

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
      throw new ShapeError(`AdamW8bit ${name}: gradient has ${grad.length} elements, parameter ${param.length}`);
    }
    const st = this.stateFor(name, param.length, slice);
    st.step += 1;
    const sc = this.scalars(st.step, rate);
    // The wasm kernels (adamw-kernel.ts): bitsandbytes `kOptimizerStatic8bit2StateBlockwise` —
    // new moments from the codes dequantised with the previous absmax, the new absmax, the
    // parameter update, then requantisation with the new absmax — or, for fp32 state,
    // `kOptimizer32bit2State` (the same arithmetic without the quantisation). A non-finite
    // gradient element zeroes m and v and leaves the parameter untouched (docs/reference/optimizer.md).
    if (st.kind === '8bit') {
      step8bitKernel(param, grad, st, this.hyper.blockSize, sc);
    } else {
      stepFp32Kernel(param, grad, st.m, st.v, sc);
    }
  }

  /** m and v of a parameter as float32 (8-bit states dequantised), plus its step count. */
  dequantizedState(name: string): MomentState {
    const st = this.get(name);
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
  stateKind(name: string): '8bit' | 'fp32' | undefined {
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
   * `fp32StateFor` is kept: it only decides for parameters that have no state yet.
   * Inconsistent input is a CheckpointError and leaves this optimizer unchanged.
   */
  importState(state: OptimizerState): void {
    this.load(state, true);
  }

  /** The `optimizer.bin` bytes (format: optimizer-state-file.ts). */
  serialize(): Buffer {
    return encodeOptimizerState(this.collect(false));
  }

  /** An optimizer restored from `serialize()` bytes; throws CheckpointError on bad input. */
  static deserialize(buf: Uint8Array, opts: Pick<AdamWOptions, 'fp32StateFor'> = {}): AdamW8bit {
    const opt = new AdamW8bit(opts);
    opt.load(decodeOptimizerState(buf), false);
    return opt;
  }

  private load(state: OptimizerState, copy: boolean): void {
    const { hyper, params } = readOptimizerState(state, 'AdamW8bit');
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
    for (const name of [...this.states.keys()].sort(byCodePoint)) {
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
    return { meta: { optimizer: 'AdamW8bit', hyper: this.options, params }, buffers };
  }

  private get(name: string): ParamState {
    const st = this.states.get(name);
    if (!st) throw new RangeError(`AdamW8bit: no state for parameter ${name}`);
    return st;
  }

  private stateFor(name: string, length: number, slice: TensorSlice): ParamState {
    const { offset, total } = slice;
    const existing = this.states.get(name);
    if (existing) {
      if (existing.length !== length || existing.offset !== offset || existing.total !== total) {
        throw new ShapeError(
          `AdamW8bit ${name}: state is for ${existing.length} elements at ${existing.offset} of ${existing.total}, ` +
            `got ${length} at ${offset} of ${total}`,
        );
      }
      return existing;
    }
    const bs = this.hyper.blockSize;
    const end = offset + length;
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(total) || offset < 0 || end > total) {
      throw new ShapeError(`AdamW8bit ${name}: slice [${offset}, ${end}) is not inside a tensor of ${total} elements`);
    }
    if (offset % bs !== 0 || (end !== total && end % bs !== 0)) {
      throw new ShapeError(
        `AdamW8bit ${name}: slice [${offset}, ${end}) of ${total} must start and end on multiples of blockSize ${bs} ` +
          `(or end at the tensor's end)`,
      );
    }
    const meta = { name, length, step: 0, offset, total };
    let st: ParamState;
    if (total < this.hyper.minElements8bit || this.fp32StateFor(name)) {
      st = { ...meta, kind: 'fp32', m: new Float32Array(length), v: new Float32Array(length) };
    } else {
      const blocks = Math.ceil(length / bs);
      st = {
        ...meta,
        kind: '8bit',
        // Zero codes with absmax 0: the state starts at exactly m = v = 0.
        mCodes: new Uint8Array(length).fill(SIGNED_CODE.zeroCode),
        mAbsmax: new Float32Array(blocks),
        vCodes: new Uint8Array(length).fill(UNSIGNED_CODE.zeroCode),
        vAbsmax: new Float32Array(blocks),
      };
    }
    this.states.set(name, st);
    return st;
  }

  private scalars(t: number, lr: number): StepScalars {
    return stepScalars(t, lr, this.hyper);
  }

}

const byCodePoint = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Block-wise 8-bit AdamW (bitsandbytes `AdamW8bit`, Dettmers et al., arXiv 2110.02861), following
 * OPTIM.md's pseudo-code line by line, all arithmetic in float32 (Math.fround after every
 * operation, so results are IEEE float32 and identical on every host — replicas stay bit-identical).
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
import { dequantize, lookupCode, SIGNED_CODE, UNSIGNED_CODE } from './quant-tables.js';
import {
  decodeOptimizerState,
  encodeOptimizerState,
  readOptimizerState,
  type OptimizerParamMeta,
  type OptimizerState,
  type OptimizerStateBuffer,
} from './optimizer-state-file.js';

const f = Math.fround;

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

/** The float32 scalars of one update (OPTIM.md "One step"). */
interface StepScalars {
  beta1: number;
  beta2: number;
  oneMinusBeta1: number;
  oneMinusBeta2: number;
  /** −lr · c2 / c1 */
  stepSize: number;
  /** eps · c2 */
  epsC2: number;
  /** 1 − lr · weightDecay */
  decay: number;
}

export class AdamW8bit {
  private hyper: AdamWHyper;
  private readonly fp32StateFor: (name: string) => boolean;
  private readonly states = new Map<string, ParamState>();
  /** Per-block scratch for the new m and v (never allocated in the hot loop). */
  private mScratch: Float32Array;
  private vScratch: Float32Array;

  constructor(opts: AdamWOptions = {}) {
    this.hyper = resolveAdamWHyper(opts);
    this.fp32StateFor = opts.fp32StateFor ?? (() => false);
    this.mScratch = new Float32Array(this.hyper.blockSize);
    this.vScratch = new Float32Array(this.hyper.blockSize);
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
    if (st.kind === '8bit') {
      step8bit(param, grad, st, this.hyper.blockSize, sc, this.mScratch, this.vScratch);
    } else {
      stepFp32(param, grad, st.m, st.v, sc);
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
    this.mScratch = new Float32Array(hyper.blockSize);
    this.vScratch = new Float32Array(hyper.blockSize);
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
    const beta1 = f(this.hyper.betas[0]);
    const beta2 = f(this.hyper.betas[1]);
    const lrF = f(lr);
    const c1 = f(1 - f(Math.pow(beta1, t)));
    const c2 = f(Math.sqrt(f(1 - f(Math.pow(beta2, t)))));
    return {
      beta1,
      beta2,
      oneMinusBeta1: f(1 - beta1),
      oneMinusBeta2: f(1 - beta2),
      stepSize: f(f(-lrF * c2) / c1),
      epsC2: f(f(this.hyper.eps) * c2),
      decay: f(1 - f(lrF * f(this.hyper.weightDecay))),
    };
  }
}

const byCodePoint = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The update with fp32 moments (bitsandbytes `kOptimizer32bit2State`, ADAM branch): the same
 * arithmetic as the 8-bit kernel without the quantisation.
 */
function stepFp32(param: Float32Array, grad: Float32Array, mState: Float32Array, vState: Float32Array, sc: StepScalars): void {
  const { beta1, beta2, oneMinusBeta1, oneMinusBeta2, stepSize, epsC2, decay } = sc;
  for (let j = 0; j < param.length; j++) {
    const g = grad[j];
    if (g - g !== 0) {
      // NaN or ±Inf: moments reset, parameter untouched (OPTIM.md).
      mState[j] = 0;
      vState[j] = 0;
      continue;
    }
    const v = f(f(beta2 * vState[j]) + f(f(oneMinusBeta2 * g) * g));
    const m = f(f(beta1 * mState[j]) + f(oneMinusBeta1 * g));
    vState[j] = v;
    mState[j] = m;
    const p = f(param[j] + f(stepSize * f(m / f(f(Math.sqrt(v)) + epsC2))));
    param[j] = f(p * decay);
  }
}

/**
 * The 8-bit update (bitsandbytes `kOptimizerStatic8bit2StateBlockwise`), block by block: new
 * moments from the codes dequantised with the previous absmax, the new absmax, the parameter
 * update, then requantisation with the new absmax.
 */
function step8bit(
  param: Float32Array,
  grad: Float32Array,
  st: Q8ParamState,
  blockSize: number,
  sc: StepScalars,
  mNew: Float32Array,
  vNew: Float32Array,
): void {
  const { beta1, beta2, oneMinusBeta1, oneMinusBeta2, stepSize, epsC2, decay } = sc;
  const { mCodes, vCodes, mAbsmax, vAbsmax } = st;
  const mTable = SIGNED_CODE.table;
  const vTable = UNSIGNED_CODE.table;
  const mMids = SIGNED_CODE.midpoints;
  const vMids = UNSIGNED_CODE.midpoints;
  const mBuckets = SIGNED_CODE.bucketStart;
  const vBuckets = UNSIGNED_CODE.bucketStart;
  const mZero = SIGNED_CODE.zeroCode;
  const vZero = UNSIGNED_CODE.zeroCode;
  const n = param.length;
  for (let b = 0, start = 0; start < n; b++, start += blockSize) {
    const len = Math.min(blockSize, n - start);
    const mScale = mAbsmax[b];
    const vScale = vAbsmax[b];
    let mMax = 0;
    let vMax = 0;
    for (let i = 0; i < len; i++) {
      const j = start + i;
      const g = grad[j];
      let m = 0;
      let v = 0;
      if (g - g === 0) {
        v = f(f(beta2 * f(vTable[vCodes[j]] * vScale)) + f(f(oneMinusBeta2 * g) * g));
        m = f(f(beta1 * f(mTable[mCodes[j]] * mScale)) + f(oneMinusBeta1 * g));
      }
      mNew[i] = m;
      vNew[i] = v;
      const a = Math.abs(m);
      if (a > mMax) mMax = a;
      if (v > vMax) vMax = v;
    }
    mAbsmax[b] = mMax;
    vAbsmax[b] = vMax;
    for (let i = 0; i < len; i++) {
      const j = start + i;
      const g = grad[j];
      const m = mNew[i];
      const v = vNew[i];
      if (g - g === 0) {
        const p = f(param[j] + f(stepSize * f(m / f(f(Math.sqrt(v)) + epsC2))));
        param[j] = f(p * decay);
      }
      if (mMax === 0) {
        mCodes[j] = mZero;
      } else {
        let c = lookupCode(mBuckets, mMids, f(m / mMax));
        // Keep the sign of m: a tiny negative moment that rounded to the zero code (or any code of
        // the other sign) moves one code towards its sign (bitsandbytes does the same).
        if (m < 0 ? c >= mZero : m > 0 && c < mZero) c += m < 0 ? -1 : 1;
        mCodes[j] = c;
      }
      vCodes[j] = vMax === 0 ? vZero : lookupCode(vBuckets, vMids, f(v / vMax));
    }
  }
}

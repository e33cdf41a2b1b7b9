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
import { AdamWBase, fp32State, type NewParamMeta, type ParamState } from './adamw-base.js';
import type { AdamWOptions } from './adamw-options.js';
import { SIGNED_CODE, UNSIGNED_CODE } from './quant-tables.js';
import { step8bitKernel, stepFp32Kernel, stepScalars } from './adamw-kernel.js';
import { decodeOptimizerState } from './optimizer-state-file.js';

export class AdamW8bit extends AdamWBase {
  private readonly fp32StateFor: (name: string) => boolean;

  /** `fp32StateFor` only decides for parameters without state: `importState` keeps it. */
  constructor(opts: AdamWOptions = {}) {
    super('AdamW8bit', opts);
    this.fp32StateFor = opts.fp32StateFor ?? (() => false);
  }

  /** An optimizer restored from `serialize()` bytes; throws CheckpointError on bad input. */
  static deserialize(buf: Uint8Array, opts: Pick<AdamWOptions, 'fp32StateFor'> = {}): AdamW8bit {
    const opt = new AdamW8bit(opts);
    opt.load(decodeOptimizerState(buf), false);
    return opt;
  }

  protected update(st: ParamState, param: Float32Array, grad: Float32Array, lr: number): void {
    const sc = stepScalars(st.step, lr, this.hyper);
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

  protected newState(meta: NewParamMeta): ParamState {
    const { name, length, offset, total } = meta;
    const bs = this.hyper.blockSize;
    const end = offset + length;
    if (offset % bs !== 0 || (end !== total && end % bs !== 0)) {
      throw new ShapeError(
        `AdamW8bit ${name}: slice [${offset}, ${end}) of ${total} must start and end on multiples of blockSize ${bs} ` +
          `(or end at the tensor's end)`,
      );
    }
    if (total < this.hyper.minElements8bit || this.fp32StateFor(name)) return fp32State(meta);
    const blocks = Math.ceil(length / bs);
    return {
      ...meta,
      kind: '8bit',
      // Zero codes with absmax 0: the state starts at exactly m = v = 0.
      mCodes: new Uint8Array(length).fill(SIGNED_CODE.zeroCode),
      mAbsmax: new Float32Array(blocks),
      vCodes: new Uint8Array(length).fill(UNSIGNED_CODE.zeroCode),
      vAbsmax: new Float32Array(blocks),
    };
  }
}

/**
 * The AdamW8bit update kernels in WebAssembly (source: ../assembly/adamw-kernel.ts, binary:
 * ../wasm/adamw-kernel.wasm, rebuilt by `npm run build:wasm`; the kernel source header explains
 * why its results are bit-identical to the float32 JS loops kept in tests/adamw-reference.ts).
 *
 * The tensors stay in JS Float32Arrays / Uint8Arrays; each call streams them through the kernel's
 * linear memory in chunks of whole blocks (copy in, run, copy out). The code tables of
 * quant-tables.ts are copied into that memory once, when this module is loaded.
 */
import { SIGNED_CODE, UNSIGNED_CODE, type QuantCode } from './quant-tables.js';
import { WasmKernel, type WasmGlobal } from './wasm-kernel.js';

/** The float32 scalars of one update (OPTIM.md "One step"). */
export interface StepScalars {
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

/** The float32 scalars of AdamW step `t` (1-based) at learning rate `lr`. */
export function stepScalars(t: number, lr: number, hyper: { betas: readonly [number, number]; eps: number; weightDecay: number }): StepScalars {
  const f = Math.fround;
  const beta1 = f(hyper.betas[0]);
  const beta2 = f(hyper.betas[1]);
  const lrF = f(lr);
  const c1 = f(1 - f(Math.pow(beta1, t)));
  const c2 = f(Math.sqrt(f(1 - f(Math.pow(beta2, t)))));
  return {
    beta1,
    beta2,
    oneMinusBeta1: f(1 - beta1),
    oneMinusBeta2: f(1 - beta2),
    stepSize: f(f(-lrF * c2) / c1),
    epsC2: f(f(hyper.eps) * c2),
    decay: f(1 - f(lrF * f(hyper.weightDecay))),
  };
}

/** Block-wise 8-bit moments of one tensor (updated in place). */
export interface Q8State {
  mCodes: Uint8Array;
  vCodes: Uint8Array;
  mAbsmax: Float32Array;
  vAbsmax: Float32Array;
}

interface KernelExports {
  M_TABLE: WasmGlobal;
  V_TABLE: WasmGlobal;
  M_PACK: WasmGlobal;
  V_PACK: WasmGlobal;
  TABLES_END: WasmGlobal;
  step8bit(
    param: number,
    grad: number,
    mCodes: number,
    vCodes: number,
    mAbsmax: number,
    vAbsmax: number,
    n: number,
    blockSize: number,
    mScratch: number,
    vScratch: number,
    beta1: number,
    beta2: number,
    oneMinusBeta1: number,
    oneMinusBeta2: number,
    stepSize: number,
    epsC2: number,
    decay: number,
  ): void;
  stepFp32(
    param: number,
    grad: number,
    mState: number,
    vState: number,
    n: number,
    beta1: number,
    beta2: number,
    oneMinusBeta1: number,
    oneMinusBeta2: number,
    stepSize: number,
    epsC2: number,
    decay: number,
  ): void;
}

/** Elements per chunk (rounded down to whole blocks, at least one block): ≈ 640 KiB of buffers. */
export const KERNEL_CHUNK_ELEMENTS = 65536;

const align = (x: number) => Math.ceil(x / 64) * 64;


const k = new WasmKernel<KernelExports>('adamw-kernel');
const kernel = k.exports;
const addr = (g: WasmGlobal) => g.value as number;
const TABLES_END = addr(kernel.TABLES_END);
const ensureBytes = (bytes: number) => k.ensureBytes(bytes);

// Order-preserving uint32 key of a float32's bits (as in quant-tables.ts).
const keyF32 = new Float32Array(1);
const keyU32 = new Uint32Array(keyF32.buffer);
function orderKeyOf(x: number): number {
  keyF32[0] = x;
  const bits = keyU32[0];
  return (bits ^ ((bits >> 31) | 0x80000000)) >>> 0;
}

/**
 * The kernel's packed lookup of a code: per 16-bit bucket, `bucketStart | thrLow << 16` with
 * thrLow the low 16 key bits of midpoints[bucketStart] when that midpoint lies inside the bucket,
 * else 0xFFFF. Equal to `nearestCode` only because no bucket holds two midpoints — checked here, so
 * a change of the tables cannot silently break the kernel.
 */
export function packedLookup(code: QuantCode): Uint32Array {
  const { bucketStart, midpoints } = code;
  const out = new Uint32Array(65536);
  for (let b = 0; b < 65536; b++) {
    const s = bucketStart[b];
    let thrLow = 0xffff;
    if (s < 255) {
      const k = orderKeyOf(midpoints[s]);
      if (k >>> 16 === b) thrLow = k & 0xffff;
      const next = s + 1 < 255 ? orderKeyOf(midpoints[s + 1]) : 0xffffffff;
      // Keys of non-NaN float32 values: [key(-Inf), key(+Inf)] = [0x007FFFFF, 0xFF800000].
      const lowest = b * 65536;
      const hasNumbers = lowest + 0xffff >= 0x007fffff && lowest <= 0xff800000;
      const lowestIsNumber = lowest >= 0x007fffff && lowest <= 0xff800000;
      if ((hasNumbers && next >>> 16 === b) || (lowestIsNumber && k >>> 16 < b)) {
        throw new Error(`adamw kernel: bucket ${b} of the ${code.signed ? 'signed' : 'unsigned'} code does not fit the packed lookup`);
      }
    }
    out[b] = s | (thrLow << 16);
  }
  return out;
}

function loadTables(): void {
  if (SIGNED_CODE.zeroCode !== 127 || UNSIGNED_CODE.zeroCode !== 0) throw new Error('adamw kernel: unexpected zero codes');
  ensureBytes(TABLES_END);
  k.f32.set(SIGNED_CODE.table, addr(kernel.M_TABLE) / 4);
  k.f32.set(UNSIGNED_CODE.table, addr(kernel.V_TABLE) / 4);
  new Uint32Array(k.buffer, addr(kernel.M_PACK), 65536).set(packedLookup(SIGNED_CODE));
  new Uint32Array(k.buffer, addr(kernel.V_PACK), 65536).set(packedLookup(UNSIGNED_CODE));
}
loadTables();

const NO_SCALARS: StepScalars = { beta1: 0, beta2: 0, oneMinusBeta1: 0, oneMinusBeta2: 0, stepSize: 0, epsC2: 0, decay: 0 };

/**
 * One block-wise 8-bit AdamW step of `param` (in place) with `grad`, blocks of `blockSize` from
 * element 0 (the last one may be short); `st` holds the old codes/absmax and receives the new.
 */
export function step8bitKernel(param: Float32Array, grad: Float32Array, st: Q8State, blockSize: number, sc: StepScalars): void {
  run8bit(param, grad, st, blockSize, sc, true);
}

/**
 * For benchmarks: exactly the copies `step8bitKernel` makes (every chunk into wasm memory and
 * back), without running the kernel — the copy overhead of the step. Leaves the data unchanged.
 */
export function copyThrough8bit(param: Float32Array, grad: Float32Array, st: Q8State, blockSize: number): void {
  run8bit(param, grad, st, blockSize, null, false);
}

function run8bit(param: Float32Array, grad: Float32Array, st: Q8State, blockSize: number, sc: StepScalars | null, compute: boolean): void {
  const n = param.length;
  const { mCodes, vCodes, mAbsmax, vAbsmax } = st;
  const blocks = Math.ceil(n / blockSize);
  if (grad.length !== n || mCodes.length !== n || vCodes.length !== n || mAbsmax.length !== blocks || vAbsmax.length !== blocks) {
    throw new RangeError(`step8bitKernel: ${n} elements in blocks of ${blockSize} need ${blocks} absmax values and equal lengths`);
  }
  if (n === 0) return;
  const chunkBlocks = Math.max(1, Math.floor(KERNEL_CHUNK_ELEMENTS / blockSize));
  const chunk = Math.min(chunkBlocks * blockSize, n);
  const nb = Math.ceil(chunk / blockSize);
  const P = align(TABLES_END);
  const G = align(P + 4 * chunk);
  const MC = align(G + 4 * chunk);
  const VC = align(MC + chunk);
  const MA = align(VC + chunk);
  const VA = align(MA + 4 * nb);
  // A block longer than the chunk is the whole chunk (chunk = min(blockSize, n) then): the
  // kernel gets the same blocks with a block size that fits an i32.
  const kernelBlock = Math.min(blockSize, chunk);
  const SM = align(VA + 4 * nb);
  const SV = align(SM + 4 * kernelBlock);
  ensureBytes(SV + 4 * kernelBlock);
  const f32 = k.f32;
  const u8 = k.u8;
  const { beta1, beta2, oneMinusBeta1, oneMinusBeta2, stepSize, epsC2, decay } = sc ?? NO_SCALARS;
  for (let off = 0; off < n; off += chunk) {
    const len = Math.min(chunk, n - off);
    const b0 = off / blockSize;
    const bl = Math.ceil(len / blockSize);
    f32.set(param.subarray(off, off + len), P >>> 2);
    f32.set(grad.subarray(off, off + len), G >>> 2);
    u8.set(mCodes.subarray(off, off + len), MC);
    u8.set(vCodes.subarray(off, off + len), VC);
    f32.set(mAbsmax.subarray(b0, b0 + bl), MA >>> 2);
    f32.set(vAbsmax.subarray(b0, b0 + bl), VA >>> 2);
    if (compute) kernel.step8bit(P, G, MC, VC, MA, VA, len, kernelBlock, SM, SV, beta1, beta2, oneMinusBeta1, oneMinusBeta2, stepSize, epsC2, decay);
    param.set(f32.subarray(P >>> 2, (P >>> 2) + len), off);
    mCodes.set(u8.subarray(MC, MC + len), off);
    vCodes.set(u8.subarray(VC, VC + len), off);
    mAbsmax.set(f32.subarray(MA >>> 2, (MA >>> 2) + bl), b0);
    vAbsmax.set(f32.subarray(VA >>> 2, (VA >>> 2) + bl), b0);
  }
}

/** One AdamW step with fp32 moments `m`, `v` (all updated in place). */
export function stepFp32Kernel(param: Float32Array, grad: Float32Array, m: Float32Array, v: Float32Array, sc: StepScalars): void {
  runFp32(param, grad, m, v, sc, true);
}

/** For benchmarks: the copies of `stepFp32Kernel` alone (see `copyThrough8bit`). */
export function copyThroughFp32(param: Float32Array, grad: Float32Array, m: Float32Array, v: Float32Array): void {
  runFp32(param, grad, m, v, null, false);
}

function runFp32(param: Float32Array, grad: Float32Array, m: Float32Array, v: Float32Array, sc: StepScalars | null, compute: boolean): void {
  const n = param.length;
  if (grad.length !== n || m.length !== n || v.length !== n) {
    throw new RangeError(`stepFp32Kernel: lengths differ (param ${n}, grad ${grad.length}, m ${m.length}, v ${v.length})`);
  }
  if (n === 0) return;
  const chunk = Math.min(KERNEL_CHUNK_ELEMENTS, n);
  const P = align(TABLES_END);
  const G = align(P + 4 * chunk);
  const M = align(G + 4 * chunk);
  const V = align(M + 4 * chunk);
  ensureBytes(V + 4 * chunk);
  const f32 = k.f32;
  const { beta1, beta2, oneMinusBeta1, oneMinusBeta2, stepSize, epsC2, decay } = sc ?? NO_SCALARS;
  for (let off = 0; off < n; off += chunk) {
    const len = Math.min(chunk, n - off);
    f32.set(param.subarray(off, off + len), P >>> 2);
    f32.set(grad.subarray(off, off + len), G >>> 2);
    f32.set(m.subarray(off, off + len), M >>> 2);
    f32.set(v.subarray(off, off + len), V >>> 2);
    if (compute) kernel.stepFp32(P, G, M, V, len, beta1, beta2, oneMinusBeta1, oneMinusBeta2, stepSize, epsC2, decay);
    param.set(f32.subarray(P >>> 2, (P >>> 2) + len), off);
    m.set(f32.subarray(M >>> 2, (M >>> 2) + len), off);
    v.set(f32.subarray(V >>> 2, (V >>> 2) + len), off);
  }
}

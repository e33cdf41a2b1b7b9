/**
 * The AdamW8bit update kernels in WebAssembly (source: ../assembly/adamw-kernel.ts, binary:
 * ../wasm/adamw-kernel.wasm, rebuilt by `npm run build:wasm`; the kernel source header explains
 * why its results are bit-identical to the float32 JS loops kept in tests/adamw-reference.ts).
 *
 * The tensors stay in JS Float32Arrays / Uint8Arrays; each call streams them through the kernel's
 * linear memory in chunks of whole blocks (copy in, run, copy out). The code tables of
 * quant-tables.ts are copied into that memory once, when this module is loaded.
 */
import { orderKey, SIGNED_CODE, UNSIGNED_CODE, type QuantCode } from './quant-tables.js';
import { WasmKernel, type WasmGlobal } from './wasm-kernel.js';

/** The float32 scalars of one update (docs/reference/optimizer.md "One step"). */
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
  setScalars(beta1: number, beta2: number, oneMinusBeta1: number, oneMinusBeta2: number, stepSize: number, epsC2: number, decay: number): void;
  step8bit(param: number, grad: number, mCodes: number, vCodes: number, mAbsmax: number, vAbsmax: number, n: number, blockSize: number, mScratch: number, vScratch: number): void;
  stepFp32(param: number, grad: number, mState: number, vState: number, n: number): void;
}

/** Elements per chunk (rounded down to whole blocks, at least one block): ≈ 640 KiB of buffers. */
export const KERNEL_CHUNK_ELEMENTS = 65536;

const align = (x: number) => Math.ceil(x / 64) * 64;

const k = new WasmKernel<KernelExports>('adamw-kernel');
const kernel = k.exports;
const addr = (g: WasmGlobal) => g.value as number;
const TABLES_END = addr(kernel.TABLES_END);
const ensureBytes = (bytes: number) => k.ensureBytes(bytes);

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
      const k = orderKey(midpoints[s]);
      if (k >>> 16 === b) thrLow = k & 0xffff;
      const next = s + 1 < 255 ? orderKey(midpoints[s + 1]) : 0xffffffff;
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

/**
 * One block-wise 8-bit AdamW step of `param` (in place) with `grad`, blocks of `blockSize` from
 * element 0 (the last one may be short); `st` holds the old codes/absmax and receives the new.
 * With `sc` null, only the copies the step makes (for benchmarks: its copy overhead; the data is
 * unchanged).
 */
export function step8bitKernel(param: Float32Array, grad: Float32Array, st: Q8State, blockSize: number, sc: StepScalars | null): void {
  const n = param.length;
  const { mCodes, vCodes, mAbsmax, vAbsmax } = st;
  const blocks = Math.ceil(n / blockSize);
  if (grad.length !== n || mCodes.length !== n || vCodes.length !== n || mAbsmax.length !== blocks || vAbsmax.length !== blocks) {
    throw new RangeError(`step8bitKernel: ${n} elements in blocks of ${blockSize} need ${blocks} absmax values and equal lengths`);
  }
  const arrays = [param, grad, mCodes, vCodes, mAbsmax, vAbsmax].map((data, i) => ({ data, perBlock: i >= 4, readOnly: i === 1 }));
  stream(n, blockSize, arrays, 2, sc, ([P, G, MC, VC, MA, VA, SM, SV], len, kernelBlock) => kernel.step8bit(P, G, MC, VC, MA, VA, len, kernelBlock, SM, SV));
}

/** One AdamW step with fp32 moments `m`, `v` (all updated in place); `sc` null as in `step8bitKernel`. */
export function stepFp32Kernel(param: Float32Array, grad: Float32Array, m: Float32Array, v: Float32Array, sc: StepScalars | null): void {
  const n = param.length;
  if (grad.length !== n || m.length !== n || v.length !== n) {
    throw new RangeError(`stepFp32Kernel: lengths differ (param ${n}, grad ${grad.length}, m ${m.length}, v ${v.length})`);
  }
  const arrays = [param, grad, m, v].map((data, i) => ({ data, perBlock: false, readOnly: i === 1 }));
  stream(n, 1, arrays, 0, sc, ([P, G, M, V], len) => kernel.stepFp32(P, G, M, V, len));
}

/** One array of a step: an element per tensor element, or (`perBlock`) per block. */
interface Streamed {
  data: Float32Array | Uint8Array;
  perBlock: boolean;
  /** Not copied back (the gradient). */
  readOnly: boolean;
}

const viewOf = (a: Float32Array | Uint8Array) => (a instanceof Float32Array ? k.f32 : k.u8);

/**
 * Streams a step over `n` elements through the kernel's memory in chunks of whole blocks: each
 * chunk's part of every array is copied in (the arrays in order after the tables, 64-byte aligned,
 * then `scratch` float32 buffers of one block), `run` gets their addresses (skipped when `sc` is
 * null), and all arrays but the read-only ones are copied back.
 */
function stream(
  n: number,
  blockSize: number,
  arrays: Streamed[],
  scratch: number,
  sc: StepScalars | null,
  run: (at: number[], len: number, kernelBlock: number) => void,
): void {
  if (n === 0) return;
  const chunkBlocks = Math.max(1, Math.floor(KERNEL_CHUNK_ELEMENTS / blockSize));
  const chunk = Math.min(chunkBlocks * blockSize, n);
  // A block longer than the chunk is the whole chunk (chunk = min(blockSize, n) then): the
  // kernel gets the same blocks with a block size that fits an i32.
  const kernelBlock = Math.min(blockSize, chunk);
  const at: number[] = [];
  let end = TABLES_END;
  const place = (bytes: number) => {
    const addr = align(end);
    at.push(addr);
    end = addr + bytes;
  };
  for (const a of arrays) place(a.data.BYTES_PER_ELEMENT * (a.perBlock ? Math.ceil(chunk / blockSize) : chunk));
  for (let i = 0; i < scratch; i++) place(4 * kernelBlock);
  ensureBytes(end);
  if (sc) kernel.setScalars(sc.beta1, sc.beta2, sc.oneMinusBeta1, sc.oneMinusBeta2, sc.stepSize, sc.epsC2, sc.decay);
  for (let off = 0; off < n; off += chunk) {
    const len = Math.min(chunk, n - off);
    const lo = (a: Streamed) => (a.perBlock ? off / blockSize : off);
    const count = (a: Streamed) => (a.perBlock ? Math.ceil(len / blockSize) : len);
    arrays.forEach((a, i) => viewOf(a.data).set(a.data.subarray(lo(a), lo(a) + count(a)), at[i] / a.data.BYTES_PER_ELEMENT));
    if (sc) run(at, len, kernelBlock);
    arrays.forEach((a, i) => {
      const start = at[i] / a.data.BYTES_PER_ELEMENT;
      if (!a.readOnly) a.data.set(viewOf(a.data).subarray(start, start + count(a)), lo(a));
    });
  }
}

/**
 * The collective's rank-order float32 mean through the WebAssembly SIMD kernel
 * (../assembly/reduce-kernel.ts, which explains why its bytes equal the float32 JS definition).
 * and the sum of squares of the gradient norm. The arrays are streamed through the kernel's memory
 * in pieces small enough to stay in cache (copy in, run, copy out): measured 3.5× (mean of two
 * parts) and 4× (sum of squares) the speed of the JS loops, which were the data plane's and the
 * norm's bottlenecks (docs/training.md, "The step").
 */
import { WasmKernel } from './wasm-kernel.js';

interface ReduceExports {
  meanInRankOrder(parts: number, n: number, len: number, out: number): void;
  sumSquaresAdd(ptr: number, len: number): void;
  sumSquaresReset(): void;
  sumSquaresResult(): number;
}

/** Elements per piece: 64 KiB per part (a multiple of 4: the SIMD lanes continue across pieces). */
const PIECE = 16384;

let kernel: WasmKernel<ReduceExports> | null = null;
const load = () => (kernel ??= new WasmKernel<ReduceExports>('reduce-kernel', 1));

/** out[i] = (((p0[i] + p1[i]) + p2[i]) + …) / n in float32; `out` may be one of the parts. */
export function meanInRankOrderKernel(parts: readonly Float32Array[], out: Float32Array): void {
  const n = parts.length;
  const len = out.length;
  const k = load();
  k.ensureBytes(n * PIECE * 4 + 64);
  const heap = k.f32;
  for (let lo = 0; lo < len; lo += PIECE) {
    const m = Math.min(PIECE, len - lo);
    for (let p = 0; p < n; p++) heap.set(parts[p].subarray(lo, lo + m), p * m);
    k.exports.meanInRankOrder(0, n, m, 0);
    out.set(heap.subarray(0, m), lo);
  }
}

/**
 * Σ x[i]² over [lo, hi) in float64, in four interleaved running sums (element lo + j goes to sum
 * j mod 4; a tail of fewer than 4 to the first) added as (s0 + s1) + (s2 + s3): the same bytes
 * for the same values wherever they sit, on every rank and run.
 */
export function sumSquaresKernel(x: Float32Array, lo = 0, hi = x.length): number {
  const k = load();
  k.ensureBytes(PIECE * 4 + 64);
  k.exports.sumSquaresReset();
  for (let a = lo; a < hi; a += PIECE) {
    const m = Math.min(PIECE, hi - a);
    k.f32.set(x.subarray(a, a + m), 0);
    k.exports.sumSquaresAdd(0, m);
  }
  return k.exports.sumSquaresResult();
}

/**
 * Plain typed-array loops behind the kernels smolrate patches into tfjs backends
 * (wasm-kernels.ts). They know nothing about backends: callers hand in input views and an output.
 */

/**
 * out[i₀, …, i_{r−1}] = x[begin₀ + i₀·stride₀, …] over `outShape` (one entry per axis of x;
 * strides may be negative). Covers strided slicing and reversal for any element type.
 */
export function stridedGatherInto(
  out: Float32Array | Int32Array | Uint8Array,
  x: Float32Array | Int32Array | Uint8Array,
  xShape: number[],
  begin: number[],
  strides: number[],
  outShape: number[],
): void {
  const rank = xShape.length;
  const xStrides = new Array<number>(rank);
  for (let d = rank - 1, s = 1; d >= 0; d--) {
    xStrides[d] = s;
    s *= xShape[d];
  }
  const size = outShape.reduce((p, c) => p * Math.max(c, 0), 1);
  const idx = new Array<number>(rank).fill(0);
  for (let o = 0; o < size; o++) {
    let off = 0;
    for (let d = 0; d < rank; d++) off += (begin[d] + idx[d] * strides[d]) * xStrides[d];
    out[o] = x[off];
    for (let d = rank - 1; d >= 0; d--) {
      if (++idx[d] < outShape[d]) break;
      idx[d] = 0;
    }
  }
}

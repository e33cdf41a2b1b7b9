/**
 * Plain typed-array loops behind the kernels smolrate adds to tfjs backends (wasm-kernels.ts,
 * cpu-kernels.ts). They know nothing about backends: callers hand in input views and a
 * zero-filled output.
 */

export type NumericArray = Float32Array | Int32Array;

/**
 * out[ids[i], :] += x[i, :] for rows of `inner` values (TF's UnsortedSegmentSum with 1-D ids).
 * Ids outside [0, numSegments) are dropped, as TF drops negative ids. O(size(x)).
 */
export function segmentSumInto(out: NumericArray, x: NumericArray, ids: Int32Array, inner: number, numSegments: number): void {
  for (let i = 0; i < ids.length; i++) {
    const s = ids[i];
    if (s < 0 || s >= numSegments) continue;
    const src = i * inner;
    const dst = s * inner;
    for (let j = 0; j < inner; j++) out[dst + j] += x[src + j];
  }
}

/** The geometry of one conv2d, as tfjs's backend_util.computeConv2DInfo gives it. */
export interface ConvGeometry {
  batchSize: number;
  inHeight: number;
  inWidth: number;
  inChannels: number;
  outHeight: number;
  outWidth: number;
  outChannels: number;
  filterHeight: number;
  filterWidth: number;
  strideHeight: number;
  strideWidth: number;
  padTop: number;
  padLeft: number;
  channelsLast: boolean;
}

/**
 * dW[fh, fw, ci, co] = Σ_{b, oy, ox} x[b, oy·sh + fh − top, ox·sw + fw − left, ci] · dy[b, oy, ox, co]
 * (filter gradient of conv2d, no dilation). `out` is the [fh, fw, ci, co] accumulator, float64 so
 * the long sums round once, like tfjs's cpu kernel. Iterates dy positions outermost so the
 * innermost loop runs over contiguous output channels.
 */
export function conv2dFilterGradInto(out: Float64Array, x: Float32Array, dy: Float32Array, g: ConvGeometry): void {
  const { batchSize, inHeight, inWidth, inChannels: ci, outHeight, outWidth, outChannels: co, filterHeight, filterWidth } = g;
  // Element strides for NHWC / NCHW.
  const xs = g.channelsLast
    ? { b: inHeight * inWidth * ci, r: inWidth * ci, c: ci, ch: 1 }
    : { b: ci * inHeight * inWidth, r: inWidth, c: 1, ch: inHeight * inWidth };
  const ds = g.channelsLast
    ? { b: outHeight * outWidth * co, r: outWidth * co, c: co, ch: 1 }
    : { b: co * outHeight * outWidth, r: outWidth, c: 1, ch: outHeight * outWidth };
  const dyRow = new Float64Array(co);
  for (let b = 0; b < batchSize; b++) {
    for (let oy = 0; oy < outHeight; oy++) {
      for (let ox = 0; ox < outWidth; ox++) {
        const dBase = b * ds.b + oy * ds.r + ox * ds.c;
        for (let k = 0; k < co; k++) dyRow[k] = dy[dBase + k * ds.ch];
        for (let fh = 0; fh < filterHeight; fh++) {
          const xr = oy * g.strideHeight + fh - g.padTop;
          if (xr < 0 || xr >= inHeight) continue;
          for (let fw = 0; fw < filterWidth; fw++) {
            const xc = ox * g.strideWidth + fw - g.padLeft;
            if (xc < 0 || xc >= inWidth) continue;
            const xBase = b * xs.b + xr * xs.r + xc * xs.c;
            const wBase = (fh * filterWidth + fw) * ci * co;
            for (let c = 0; c < ci; c++) {
              const xv = x[xBase + c * xs.ch];
              if (xv === 0) continue;
              const w = wBase + c * co;
              for (let k = 0; k < co; k++) out[w + k] += xv * dyRow[k];
            }
          }
        }
      }
    }
  }
}

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

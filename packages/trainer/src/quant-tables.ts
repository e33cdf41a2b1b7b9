/**
 * The 8-bit "dynamic" code tables of bitsandbytes (`create_dynamic_map`, Dettmers et al.,
 * arXiv 2110.02861 §2) and block-wise quantisation against them (docs/reference/optimizer.md, "Code tables").
 *
 * A table holds 256 float32 values sorted ascending. Per decade k = 0..6 (scale 10^(k−6)) it takes
 * n points linearly spaced in [0.1, 1], keeps the n−1 midpoints of consecutive points and scales
 * them: n = 2^k + 1 for the signed table (each value also negated), n = 2^(k+1) + 1 for the unsigned
 * one; then 0 and 1.0 are added. Signed: 127 + 127 + 2 = 256, index 127 is 0, index 255 is +1.0 and
 * there is no −1.0. Unsigned: 254 + 2, index 0 is 0.
 *
 * Every value is computed in float32 (Math.fround after each operation) the way the upstream torch
 * code does: `torch.linspace` in float32 by its scalar formula (start + step·i for the first half,
 * end − step·(n−1−i) for the second half, step = (end − start)/(n − 1)), midpoints
 * (a + b)/2 in float32, and the decade scale cast to float32 before the multiplication. (torch's
 * vectorised linspace path can differ from the scalar formula by one ulp on some CPUs; these tables
 * are pinned by golden tests instead.)
 */

export interface QuantCode {
  /** 256 float32 values, sorted ascending. */
  readonly table: Float32Array;
  /** The 255 float32 midpoints between consecutive table values (binary-search keys). */
  readonly midpoints: Float32Array;
  /**
   * Search accelerator: for each of the 65,536 buckets of float32 values that share their top 16
   * bits of order-preserving key (sign, exponent, 7 mantissa bits), the number of midpoints below
   * the bucket's lowest value. See `nearestCode`.
   */
  readonly bucketStart: Uint8Array;
  /** The code whose value is 0: 127 (signed) or 0 (unsigned). */
  readonly zeroCode: number;
  readonly signed: boolean;
}

const f = Math.fround;

/** Decade scales 10^(k−6), k = 0..6, written as literals so no pow() rounding enters. */
const DECADES = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1];

/** float32 `torch.linspace(start, end, n)` by its scalar kernel formula. */
function linspaceF32(start: number, end: number, n: number): Float32Array {
  const s = f(start);
  const e = f(end);
  const step = f(f(e - s) / (n - 1));
  const half = Math.floor(n / 2);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = i < half ? f(s + f(step * i)) : f(e - f(step * (n - 1 - i)));
  return out;
}

function buildTable(signed: boolean): Float32Array {
  const values: number[] = [];
  for (let k = 0; k < DECADES.length; k++) {
    const n = (signed ? 2 ** k : 2 ** (k + 1)) + 1;
    const points = linspaceF32(0.1, 1, n);
    const scale = f(DECADES[k]);
    for (let i = 0; i + 1 < n; i++) {
      const mean = f(f(points[i] + points[i + 1]) / 2);
      const v = f(scale * mean);
      values.push(v);
      if (signed) values.push(-v);
    }
  }
  values.push(0, 1);
  if (values.length !== 256) throw new Error(`quant-tables: built ${values.length} values, expected 256`);
  return Float32Array.from(values).sort();
}

/** The 255 float32 midpoints `(t[i] + t[i+1]) / 2` of a sorted 256-entry table. */
export function tableMidpoints(table: Float32Array): Float32Array {
  const mids = new Float32Array(table.length - 1);
  for (let i = 0; i < mids.length; i++) mids[i] = f(f(table[i] + table[i + 1]) * 0.5);
  return mids;
}

// Shared scratch to read a float32's bit pattern (single-threaded; never escapes a call).
const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** float32 `x` → a uint32 key of its bits in the same order as the values: negatives flipped, sign bit set on positives. */
export function orderKey(x: number): number {
  scratchF32[0] = x;
  const bits = scratchU32[0];
  return (bits ^ ((bits >> 31) | 0x80000000)) >>> 0;
}

/** The float32 whose `orderKey` is `key`. */
export function fromOrderKey(key: number): number {
  scratchU32[0] = key >= 0x80000000 ? key ^ 0x80000000 : ~key >>> 0;
  return scratchF32[0];
}

function buildBucketStart(midpoints: Float32Array): Uint8Array {
  const starts = new Uint8Array(65536);
  for (let b = 0; b < 65536; b++) {
    // The bucket's lowest value; NaN bit patterns at the extremes count 0 midpoints.
    starts[b] = Math.min(countBelow(midpoints, fromOrderKey(b * 65536)), 255);
  }
  return starts;
}

function makeCode(signed: boolean): QuantCode {
  const table = buildTable(signed);
  const midpoints = tableMidpoints(table);
  return { table, midpoints, bucketStart: buildBucketStart(midpoints), zeroCode: signed ? 127 : 0, signed };
}

/** Signed dynamic code (first moments). Shared; do not mutate its arrays. */
export const SIGNED_CODE: QuantCode = makeCode(true);
/** Unsigned dynamic code (second moments). Shared; do not mutate its arrays. */
export const UNSIGNED_CODE: QuantCode = makeCode(false);

/**
 * The number of midpoints strictly below `x` by binary search over the 255 midpoints (8
 * comparisons) — i.e. the index of the nearest table value, a value exactly on a midpoint going to
 * the lower code, values beyond the ends clamping to 0 / 255. The reference for `nearestCode`.
 */
export function countBelow(midpoints: Float32Array, x: number): number {
  let lo = 0;
  let hi = 255;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (midpoints[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Index of the table value nearest to `x` (already divided by absmax): exactly
 * `countBelow(code.midpoints, x)`, found by starting from the count for the bucket of
 * fround(x) (a 64 KiB table keyed by its top 16 bits) and stepping past the few midpoints inside
 * the bucket — about 1 comparison instead of 8 unpredictable ones. A quiet NaN `x` gives 0.
 */
export function nearestCode(code: QuantCode, x: number): number {
  const { bucketStart, midpoints } = code;
  let c = bucketStart[orderKey(x) >>> 16];
  while (c < 255 && midpoints[c] < x) c++;
  return c;
}

/**
 * Quantises one block: absmax = the largest |x| (the largest x for the unsigned code, whose values
 * are ≥ 0), then each element to `nearestCode(x / absmax)` (the division in float32) written to
 * `out[outOffset + i]`; an all-zero block (absmax 0) gets the zero code everywhere. With the signed
 * code a nonzero element keeps its sign: if its nearest code is the zero code or one of the other
 * sign, it moves one code towards its own sign (bitsandbytes' 8-bit optimizers do this to the first
 * moment). Returns absmax. This is AdamW8bit's requantisation (tests/adamw-reference.ts).
 */
export function quantizeBlock(code: QuantCode, x: Float32Array, out: Uint8Array, outOffset = 0): number {
  const { zeroCode, signed } = code;
  let absmax = 0;
  for (let i = 0; i < x.length; i++) {
    const a = signed ? Math.abs(x[i]) : x[i];
    if (a > absmax) absmax = a;
  }
  if (absmax === 0) {
    out.fill(zeroCode, outOffset, outOffset + x.length);
    return 0;
  }
  for (let i = 0; i < x.length; i++) {
    const xi = x[i];
    let c = nearestCode(code, f(xi / absmax));
    if (signed && (xi < 0 ? c >= zeroCode : xi > 0 && c < zeroCode)) c += xi < 0 ? -1 : 1;
    out[outOffset + i] = c;
  }
  return absmax;
}

/**
 * Block-wise quantisation of a whole array: blocks of `blockSize` consecutive elements starting at
 * index 0 (the last block may be short), one float32 absmax per block.
 */
export function quantizeBlockwise(
  code: QuantCode,
  x: Float32Array,
  blockSize: number,
): { codes: Uint8Array; absmax: Float32Array } {
  const codes = new Uint8Array(x.length);
  const absmax = new Float32Array(Math.ceil(x.length / blockSize));
  for (let b = 0; b < absmax.length; b++) {
    const start = b * blockSize;
    absmax[b] = quantizeBlock(code, x.subarray(start, Math.min(start + blockSize, x.length)), codes, start);
  }
  return { codes, absmax };
}

/** `table[codes[i]] · absmax[floor(i / blockSize)]` in float32, into `out` (allocated if omitted). */
export function dequantize(
  code: QuantCode,
  codes: Uint8Array,
  absmax: Float32Array,
  blockSize: number,
  out: Float32Array = new Float32Array(codes.length),
): Float32Array {
  if (absmax.length !== Math.ceil(codes.length / blockSize) || out.length !== codes.length) {
    throw new RangeError(
      `dequantize: ${codes.length} codes need ${Math.ceil(codes.length / blockSize)} absmax values and an output of ` +
        `${codes.length}, got ${absmax.length} and ${out.length}`,
    );
  }
  const table = code.table;
  for (let b = 0; b < absmax.length; b++) {
    const am = absmax[b];
    const end = Math.min((b + 1) * blockSize, codes.length);
    for (let i = b * blockSize; i < end; i++) out[i] = table[codes[i]] * am;
  }
  return out;
}

/**
 * AdamW8bit's two hot loops as a WebAssembly kernel (AssemblyScript, 128-bit SIMD). Built by
 * `npm run build:wasm` (tools/build-wasm.mjs) into packages/trainer/wasm/adamw-kernel.wasm; loaded
 * and driven chunk by chunk by src/adamw-kernel.ts. The JS loops this replaces are kept as the
 * oracle in tests/adamw-reference.ts, and the specs compare the two byte for byte.
 *
 * Why the results are bit-identical to the JS reference (float32 with Math.fround after every
 * operation):
 *
 * - Arithmetic. Every JS step is `fround(a op b)` on float32 inputs for op in + − × ÷ and
 *   `fround(sqrt(a))`: the exact result rounded to double and then to float32. Double has more
 *   than 2·24 + 2 significand bits, so that double rounding equals a single rounding to float32,
 *   which is exactly what wasm `f32.add/sub/mul/div/sqrt` (and their f32x4 lanes) compute
 *   (IEEE 754 round-to-nearest-even, no flush-to-zero: wasm keeps subnormals). No FMA, no
 *   reciprocal approximation, no reassociation: every expression below has the JS operand order,
 *   e.g. v = (β2·(table[code]·scale)) + ((1−β2)·g)·g. The scalars (β1, β2, 1−β1, 1−β2,
 *   stepSize, eps·c2, decay) are computed by the JS side in float32 and set once per step (`setScalars`).
 * - Non-finite gradients. JS tests `g - g === 0`; the kernel computes the same `f32x4.eq(g − g, 0)`
 *   lane mask. Moments are computed for every lane and then ANDed with the mask, so a NaN/±Inf
 *   lane gets m = v = +0 (the bits of JS's literal 0). The parameter is written with
 *   `v128.bitselect(new, old, mask)`: a masked lane keeps its old bits untouched (JS does not write
 *   it at all). Loads/stores/bitselect are bit-preserving, NaN payloads included.
 * - Block maxima. JS: `a = |m|; if (a > mMax) mMax = a` from mMax = +0 (and the same for v).
 *   `f32x4.abs` clears the sign bit like Math.abs, and `f32x4.pmax(acc, a)` is defined as
 *   `acc < a ? a : acc` — the same strict comparison, so NaN lanes and −0 never replace the
 *   running maximum (f32x4.max would propagate NaN and order −0 < +0; it is not used). Each lane
 *   starts at +0; the lane maxima are combined with the same strict `>`, and the maximum of a set
 *   of non-NaN values under that rule does not depend on the order (the only equal-but-different
 *   pair, ±0, cannot occur: a maximum that is zero is the initial +0).
 * - Requantisation. JS's `nearestCode` counts the midpoints below x: it starts at
 *   bucketStart[key >>> 16] (key = the order-preserving uint32 of x's bits) and steps while
 *   `midpoints[c] < x`. For the two dynamic tables no bucket holds more than one midpoint (checked
 *   exhaustively by the loader at start-up), so the scan is at most one step and its test
 *   `midpoints[c] < x` equals `keyLow > thrLow` on the low 16 bits of the keys, where thrLow is
 *   the low half of the key of midpoints[bucketStart] if that midpoint lies inside the bucket, and
 *   0xFFFF (never exceeded) otherwise — in particular for c = 255 and for NaN buckets. The
 *   loader packs `bucketStart | thrLow << 16` into one u32 per bucket, so a lookup is one
 *   gather. NaN x: every quiet NaN (all arithmetic NaNs are quiet) lies in a bucket whose lowest
 *   value is NaN, where JS gives 0 (bucketStart 0, `midpoints[0] < NaN` false) and so does the
 *   packed entry (start 0, thrLow 0xFFFF). No midpoint is ±0, so key order (which puts −0 below
 *   +0) and float order (−0 == +0) agree for every comparison made.
 * - Sign nudge: `if (m < 0 ? c >= 127 : m > 0 && c < 127) c += m < 0 ? −1 : 1` becomes two lane
 *   masks (m < 0 and c ≥ 127 → −1; m > 0 and c < 127 → +1); NaN m is neither < 0 nor > 0.
 * - All-zero blocks: absmax 0 gives the zero code (127 / 0) for the whole block, as in JS.
 * - NaN payloads (the parameter and the fp32 moments can become NaN, and their bits must match
 *   too). A NaN result carries the (quietened) payload of its NaN operand, or the host's default
 *   NaN when the operation creates one (0·Inf, Inf − Inf, sqrt of a negative) — the same hardware
 *   instruction in JS and wasm. Which operand wins when BOTH are NaN is up to the compiler's
 *   operand order, which neither Binaryen nor V8 promise to keep for commutative ops. Two spots of
 *   the formula can see two NaNs: `m / (sqrt(v) + eps)` (V8's JS result is m's NaN: division is
 *   not commutative, the first operand wins) and `param + stepSize·q` (V8's JS result is the
 *   update's NaN). The kernel does not rely on operand order there: it selects the winning NaN
 *   explicitly (`bitselect(m, m / d, m != m)`, `bitselect(u, param + u, u != u)`; m and u are
 *   arithmetic results, hence already quiet). Every other operation has at most one NaN operand
 *   (β, 1−β, stepSize, eps·c2 and decay are finite; g is finite on the lanes that matter).
 *
 * Memory (imported as env.memory, laid out by the loader): the code tables at fixed offsets below,
 * then the chunk buffers whose addresses are passed to each call.
 */

/** f32[256] signed code values (first moments). */
export const M_TABLE: usize = 0;
/** f32[256] unsigned code values (second moments). */
export const V_TABLE: usize = 1024;
/** u32[65536] packed lookup for the signed code: bucketStart | thrLow << 16. */
export const M_PACK: usize = 2048;
/** u32[65536] packed lookup for the unsigned code. */
export const V_PACK: usize = 2048 + 262144;
/** First byte after the tables. */
export const TABLES_END: usize = 2048 + 2 * 262144;

const M_ZERO: i32 = 127;
const V_ZERO: i32 = 0;

// The float32 scalars of the current step, in all four lanes (set by `setScalars`).
let BETA1 = f32x4(0, 0, 0, 0);
let BETA2 = f32x4(0, 0, 0, 0);
let ONE_MINUS_BETA1 = f32x4(0, 0, 0, 0);
let ONE_MINUS_BETA2 = f32x4(0, 0, 0, 0);
let STEP_SIZE = f32x4(0, 0, 0, 0);
let EPS_C2 = f32x4(0, 0, 0, 0);
let DECAY = f32x4(0, 0, 0, 0);

/** Sets the scalars of the next `step8bit` / `stepFp32` calls (computed by the JS side in float32). */
export function setScalars(beta1: f32, beta2: f32, oneMinusBeta1: f32, oneMinusBeta2: f32, stepSize: f32, epsC2: f32, decay: f32): void {
  BETA1 = f32x4.splat(beta1);
  BETA2 = f32x4.splat(beta2);
  ONE_MINUS_BETA1 = f32x4.splat(oneMinusBeta1);
  ONE_MINUS_BETA2 = f32x4.splat(oneMinusBeta2);
  STEP_SIZE = f32x4.splat(stepSize);
  EPS_C2 = f32x4.splat(epsC2);
  DECAY = f32x4.splat(decay);
}

/** Lane 0 of a scalar (the tails' scalar arithmetic). */
// @ts-ignore: decorator
@inline
function lane0(x: v128): f32 {
  return f32x4.extract_lane(x, 0);
}

/** New moments of 4 lanes from the old ones; a lane whose gradient is not finite (`fin` clear) gets +0. */
// @ts-ignore: decorator
@inline
function newV4(vOld: v128, gv: v128, fin: v128): v128 {
  return v128.and(f32x4.add(f32x4.mul(BETA2, vOld), f32x4.mul(f32x4.mul(ONE_MINUS_BETA2, gv), gv)), fin);
}

// @ts-ignore: decorator
@inline
function newM4(mOld: v128, gv: v128, fin: v128): v128 {
  return v128.and(f32x4.add(f32x4.mul(BETA1, mOld), f32x4.mul(ONE_MINUS_BETA1, gv)), fin);
}

/** Scalar `newV4` / `newM4` for a finite gradient. */
// @ts-ignore: decorator
@inline
function newV1(vOld: f32, g: f32): f32 {
  return lane0(BETA2) * vOld + lane0(ONE_MINUS_BETA2) * g * g;
}

// @ts-ignore: decorator
@inline
function newM1(mOld: f32, g: f32): f32 {
  return lane0(BETA1) * mOld + lane0(ONE_MINUS_BETA1) * g;
}

/** The requantisation lookup of 4 lanes of x (see the header): codes as i32x4. */
// @ts-ignore: decorator
@inline
function lookup4(x: v128, pack: usize): v128 {
  const key = v128.xor(x, v128.or(i32x4.shr_s(x, 31), i32x4.splat(i32.MIN_VALUE)));
  const idx = v128.and(i32x4.shr_u(key, 14), i32x4.splat(0x3fffc));
  let e = v128.load32_zero(pack + <usize>i32x4.extract_lane(idx, 0));
  e = v128.load32_lane(pack + <usize>i32x4.extract_lane(idx, 1), e, 1);
  e = v128.load32_lane(pack + <usize>i32x4.extract_lane(idx, 2), e, 2);
  e = v128.load32_lane(pack + <usize>i32x4.extract_lane(idx, 3), e, 3);
  const start = v128.and(e, i32x4.splat(255));
  const thr = i32x4.shr_u(e, 16);
  const low = v128.and(key, i32x4.splat(0xffff));
  return i32x4.sub(start, i32x4.gt_s(low, thr));
}

/** Scalar `lookup4`. */
// @ts-ignore: decorator
@inline
function lookup1(x: f32, pack: usize): i32 {
  const bits = reinterpret<i32>(x);
  const key = <u32>(bits ^ ((bits >> 31) | i32.MIN_VALUE));
  const e = load<u32>(pack + (<usize>(key >>> 16) << 2));
  return <i32>(e & 255) + <i32>((key & 0xffff) > e >>> 16);
}

/** First-moment codes of 4 lanes: lookup of m / mMax, then the sign nudge. */
// @ts-ignore: decorator
@inline
function mCodes4(m: v128, mMax: v128): v128 {
  const c = lookup4(f32x4.div(m, mMax), M_PACK);
  const zero = f32x4.splat(0);
  const hi = i32x4.gt_s(c, i32x4.splat(M_ZERO - 1)); // c >= 127
  const down = v128.and(f32x4.lt(m, zero), hi); // m < 0 && c >= 127: -1
  const up = v128.andnot(f32x4.gt(m, zero), hi); // m > 0 && c < 127: +1
  return i32x4.sub(i32x4.add(c, down), up);
}

/** 16 i32 lanes (0..255) → 16 bytes. */
// @ts-ignore: decorator
@inline
function pack16(a: v128, b: v128, c: v128, d: v128): v128 {
  return i8x16.narrow_i16x8_u(i16x8.narrow_i32x4_u(a, b), i16x8.narrow_i32x4_u(c, d));
}

// @ts-ignore: decorator
@inline
function hmax(v: v128, init: f32): f32 {
  let r = init;
  const a = f32x4.extract_lane(v, 0);
  if (a > r) r = a;
  const b = f32x4.extract_lane(v, 1);
  if (b > r) r = b;
  const c = f32x4.extract_lane(v, 2);
  if (c > r) r = c;
  const d = f32x4.extract_lane(v, 3);
  if (d > r) r = d;
  return r;
}

/**
 * The parameter update of 4 lanes: p = (p + stepSize·(m / (sqrt(v) + epsC2)))·decay where the
 * gradient is finite, else the old bits.
 */
// @ts-ignore: decorator
@inline
function param4(pp: usize, gv: v128, m: v128, v: v128): void {
  const fin = f32x4.eq(f32x4.sub(gv, gv), f32x4.splat(0));
  const old = v128.load(pp);
  // Two-NaN operands: m wins the division, the update wins the sum (see the header).
  const q = v128.bitselect(m, f32x4.div(m, f32x4.add(f32x4.sqrt(v), EPS_C2)), f32x4.ne(m, m));
  const u = f32x4.mul(STEP_SIZE, q);
  const p = f32x4.mul(v128.bitselect(u, f32x4.add(old, u), f32x4.ne(u, u)), DECAY);
  v128.store(pp, v128.bitselect(p, old, fin));
}

/** Scalar `param4` for a finite gradient. */
// @ts-ignore: decorator
@inline
function param1(old: f32, m: f32, v: f32): f32 {
  const d = m / (sqrt<f32>(v) + lane0(EPS_C2));
  const u = lane0(STEP_SIZE) * (m != m ? m : d);
  const s = old + u;
  return (u != u ? u : s) * lane0(DECAY);
}

/**
 * One block-wise 8-bit AdamW step over `n` elements in blocks of `bs` (the last may be short).
 * Pointers are byte addresses: param/grad f32[n], codes u8[n], absmax f32[ceil(n / bs)] (read as
 * the old scales, overwritten with the new ones), scratch: two f32[min(bs, n)] for a block's new
 * m and v.
 */
export function step8bit(
  param: usize,
  grad: usize,
  mCodes: usize,
  vCodes: usize,
  mAbsmax: usize,
  vAbsmax: usize,
  n: i32,
  bs: i32,
  mNew: usize,
  vNew: usize,
): void {
  const zero = f32x4.splat(0);
  for (let b = 0, start = 0; start < n; b++, start += bs) {
    const len = min(bs, n - start);
    const pB = param + (<usize>start << 2);
    const gB = grad + (<usize>start << 2);
    const mcB = mCodes + <usize>start;
    const vcB = vCodes + <usize>start;
    const mScale = load<f32>(mAbsmax + (<usize>b << 2));
    const vScale = load<f32>(vAbsmax + (<usize>b << 2));
    const mS = f32x4.splat(mScale);
    const vS = f32x4.splat(vScale);

    // Pass 1: new moments (dequantised with the old scales) and the block maxima.
    let mMaxV = zero;
    let vMaxV = zero;
    let i = 0;
    for (; i + 4 <= len; i += 4) {
      const o = <usize>i;
      const gv = v128.load(gB + (o << 2));
      const fin = f32x4.eq(f32x4.sub(gv, gv), zero);
      let mt = v128.load32_zero(M_TABLE + (<usize>load<u8>(mcB + o) << 2));
      mt = v128.load32_lane(M_TABLE + (<usize>load<u8>(mcB + o, 1) << 2), mt, 1);
      mt = v128.load32_lane(M_TABLE + (<usize>load<u8>(mcB + o, 2) << 2), mt, 2);
      mt = v128.load32_lane(M_TABLE + (<usize>load<u8>(mcB + o, 3) << 2), mt, 3);
      let vt = v128.load32_zero(V_TABLE + (<usize>load<u8>(vcB + o) << 2));
      vt = v128.load32_lane(V_TABLE + (<usize>load<u8>(vcB + o, 1) << 2), vt, 1);
      vt = v128.load32_lane(V_TABLE + (<usize>load<u8>(vcB + o, 2) << 2), vt, 2);
      vt = v128.load32_lane(V_TABLE + (<usize>load<u8>(vcB + o, 3) << 2), vt, 3);
      const v = newV4(f32x4.mul(vt, vS), gv, fin);
      const m = newM4(f32x4.mul(mt, mS), gv, fin);
      v128.store(mNew + (o << 2), m);
      v128.store(vNew + (o << 2), v);
      mMaxV = f32x4.pmax(mMaxV, f32x4.abs(m));
      vMaxV = f32x4.pmax(vMaxV, v);
    }
    let mMax = hmax(mMaxV, 0);
    let vMax = hmax(vMaxV, 0);
    for (; i < len; i++) {
      const o = <usize>i;
      const g = load<f32>(gB + (o << 2));
      let m: f32 = 0;
      let v: f32 = 0;
      if (g - g == 0) {
        v = newV1(load<f32>(V_TABLE + (<usize>load<u8>(vcB + o) << 2)) * vScale, g);
        m = newM1(load<f32>(M_TABLE + (<usize>load<u8>(mcB + o) << 2)) * mScale, g);
      }
      store<f32>(mNew + (o << 2), m);
      store<f32>(vNew + (o << 2), v);
      const a = abs<f32>(m);
      if (a > mMax) mMax = a;
      if (v > vMax) vMax = v;
    }
    store<f32>(mAbsmax + (<usize>b << 2), mMax);
    store<f32>(vAbsmax + (<usize>b << 2), vMax);

    // Pass 2: parameter update and requantisation with the new scales, 16 lanes at a time.
    const mM = f32x4.splat(mMax);
    const vM = f32x4.splat(vMax);
    i = 0;
    for (; i + 16 <= len; i += 16) {
      const o = <usize>i << 2;
      const m0 = v128.load(mNew + o);
      const m1 = v128.load(mNew + o, 16);
      const m2 = v128.load(mNew + o, 32);
      const m3 = v128.load(mNew + o, 48);
      const v0 = v128.load(vNew + o);
      const v1 = v128.load(vNew + o, 16);
      const v2 = v128.load(vNew + o, 32);
      const v3 = v128.load(vNew + o, 48);
      param4(pB + o, v128.load(gB + o), m0, v0);
      param4(pB + o + 16, v128.load(gB + o, 16), m1, v1);
      param4(pB + o + 32, v128.load(gB + o, 32), m2, v2);
      param4(pB + o + 48, v128.load(gB + o, 48), m3, v3);
      v128.store(mcB + <usize>i, pack16(mCodes4(m0, mM), mCodes4(m1, mM), mCodes4(m2, mM), mCodes4(m3, mM)));
      v128.store(
        vcB + <usize>i,
        pack16(
          lookup4(f32x4.div(v0, vM), V_PACK),
          lookup4(f32x4.div(v1, vM), V_PACK),
          lookup4(f32x4.div(v2, vM), V_PACK),
          lookup4(f32x4.div(v3, vM), V_PACK),
        ),
      );
    }
    for (; i < len; i++) {
      const o = <usize>i;
      const g = load<f32>(gB + (o << 2));
      const m = load<f32>(mNew + (o << 2));
      const v = load<f32>(vNew + (o << 2));
      if (g - g == 0) store<f32>(pB + (o << 2), param1(load<f32>(pB + (o << 2)), m, v));
      let c = lookup1(m / mMax, M_PACK);
      if (m < 0 ? c >= M_ZERO : m > 0 && c < M_ZERO) c += m < 0 ? -1 : 1;
      store<u8>(mcB + o, <u8>c);
      store<u8>(vcB + o, <u8>lookup1(v / vMax, V_PACK));
    }
    // An all-zero block (absmax 0) takes the zero code everywhere (the lookups above of 0/0 are
    // overwritten).
    if (mMax == 0) memory.fill(mcB, <u8>M_ZERO, <usize>len);
    if (vMax == 0) memory.fill(vcB, <u8>V_ZERO, <usize>len);
  }
}

/** One AdamW step with fp32 moments over `n` elements (param, grad, m, v: f32[n]). */
export function stepFp32(
  param: usize,
  grad: usize,
  mState: usize,
  vState: usize,
  n: i32,
): void {
  const zero = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const gv = v128.load(grad + o);
    const fin = f32x4.eq(f32x4.sub(gv, gv), zero);
    const v = newV4(v128.load(vState + o), gv, fin);
    const m = newM4(v128.load(mState + o), gv, fin);
    v128.store(vState + o, v);
    v128.store(mState + o, m);
    param4(param + o, gv, m, v);
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    const g = load<f32>(grad + o);
    if (g - g != 0) {
      store<f32>(mState + o, 0);
      store<f32>(vState + o, 0);
      continue;
    }
    const v = newV1(load<f32>(vState + o), g);
    const m = newM1(load<f32>(mState + o), g);
    store<f32>(vState + o, v);
    store<f32>(mState + o, m);
    store<f32>(param + o, param1(load<f32>(param + o), m, v));
  }
}

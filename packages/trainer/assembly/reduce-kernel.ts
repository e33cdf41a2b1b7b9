/**
 * The collective's float32 mean in rank order as a WebAssembly kernel (AssemblyScript, 128-bit
 * SIMD). Built by `npm run build:wasm` (tools/build-wasm.mjs) into
 * packages/trainer/wasm/reduce-kernel.wasm; driven piece by piece by src/reduce-kernel.ts.
 *
 * out[i] = ((p0[i] + p1[i]) + p2[i] + …) / n, every operation in float32, left to right.
 *
 * Why the bytes equal the JS definition (`fround(fround(a + b) + c) / n` stored to a
 * Float32Array): each JS step is the exact result rounded to double and then to float32; double
 * has more than 2·24 + 2 significand bits, so that equals one rounding to float32, which is what
 * wasm f32.add / f32.div and their f32x4 lanes compute (round to nearest even, subnormals kept,
 * no FMA, no reassociation). Loads and stores are bit-preserving.
 */

/**
 * `n` arrays of `len` float32 lie one after the other from `parts` (part k at parts + 4·k·len);
 * their rank-order mean goes to `out` (which may be any of them).
 */
export function meanInRankOrder(parts: usize, n: i32, len: i32, out: usize): void {
  const stride = (<usize>len) << 2;
  const vn = f32x4.splat(<f32>n);
  const fn = <f32>n;
  const end4 = ((<usize>len) & ~(<usize>3)) << 2;
  let i: usize = 0;
  if (n == 2) {
    const b = parts + stride;
    for (; i < end4; i += 16) v128.store(out + i, f32x4.div(f32x4.add(v128.load(parts + i), v128.load(b + i)), vn));
  } else {
    for (; i < end4; i += 16) {
      let acc = v128.load(parts + i);
      for (let k = 1; k < n; k++) acc = f32x4.add(acc, v128.load(parts + (<usize>k) * stride + i));
      v128.store(out + i, f32x4.div(acc, vn));
    }
  }
  for (; i < stride; i += 4) {
    let a = load<f32>(parts + i);
    for (let k = 1; k < n; k++) a = a + load<f32>(parts + (<usize>k) * stride + i);
    store<f32>(out + i, a / fn);
  }
}

// The four running sums of sumSquares, kept across calls (pieces) until sumSquaresResult.
let s0: f64 = 0;
let s1: f64 = 0;
let s2: f64 = 0;
let s3: f64 = 0;

/**
 * Adds x[i]² (x float32 at `ptr`, `len` of them, squared exactly in float64) to four running
 * sums: element i to sum i mod 4 (counted from the first element of the first call since
 * sumSquaresReset). `len` must be a multiple of 4 except in the last call, whose tail goes to the
 * first sum — the JS loop `s0 += a·a; s1 += b·b; …` then `s0 += x·x` for the tail, exactly.
 */
export function sumSquaresAdd(ptr: usize, len: i32): void {
  let a = f64x2.replace_lane(f64x2.splat(0), 0, s0);
  a = f64x2.replace_lane(a, 1, s1);
  let b = f64x2.replace_lane(f64x2.splat(0), 0, s2);
  b = f64x2.replace_lane(b, 1, s3);
  const end4 = ((<usize>len) & ~(<usize>3)) << 2;
  let i: usize = 0;
  for (; i < end4; i += 16) {
    const v = v128.load(ptr + i);
    const lo = f64x2.promote_low_f32x4(v);
    const hi = f64x2.promote_low_f32x4(v128.shuffle<u32>(v, v, 2, 3, 0, 1));
    a = f64x2.add(a, f64x2.mul(lo, lo));
    b = f64x2.add(b, f64x2.mul(hi, hi));
  }
  s0 = f64x2.extract_lane(a, 0);
  s1 = f64x2.extract_lane(a, 1);
  s2 = f64x2.extract_lane(b, 0);
  s3 = f64x2.extract_lane(b, 1);
  const stride = (<usize>len) << 2;
  for (; i < stride; i += 4) {
    const x = <f64>load<f32>(ptr + i);
    s0 += x * x;
  }
}

export function sumSquaresReset(): void {
  s0 = 0;
  s1 = 0;
  s2 = 0;
  s3 = 0;
}

/** (s0 + s1) + (s2 + s3). */
export function sumSquaresResult(): f64 {
  return s0 + s1 + (s2 + s3);
}

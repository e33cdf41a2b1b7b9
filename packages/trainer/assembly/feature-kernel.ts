/**
 * The feature cache's entry check and decode as a WebAssembly kernel (AssemblyScript, 128-bit
 * SIMD). Built by `npm run build:wasm` (tools/build-wasm.mjs) into
 * packages/trainer/wasm/feature-kernel.wasm; driven by src/feature-kernel.ts, whose JS
 * definitions (`entryChecksumReference`, grad-transport.ts fromBf16, tests/f16-reference.ts fromF16) the spec checks it
 * against.
 *
 * One pass over an entry's stored bytes both checks and decodes them:
 *
 *  - checksum: the bytes, zero-padded to a multiple of 16, as little-endian u32 words; word
 *    4k + l goes to lane l (l = 0‥3), a_l += w, b_l += a_l, all modulo 2³² (a Fletcher sum in
 *    four lanes: a changed word changes a, a moved word changes b). The eight sums fold to 32 bits
 *    with FNV-1a over the words a0‥a3, b0‥b3: h = (h ^ x) · 16777619 from h = 2166136261.
 *  - decode to float32: bf16 (the word is the float's high half), IEEE half (exact: normals,
 *    subnormals, ±0, ±Inf; NaN stays NaN), or f32 (a copy).
 */

const DTYPE_BF16: i32 = 2;
const DTYPE_F16: i32 = 3;

let sumA: v128 = i32x4.splat(0);
let sumB: v128 = i32x4.splat(0);

@inline
function addChunk(w: v128): void {
  sumA = i32x4.add(sumA, w);
  sumB = i32x4.add(sumB, sumA);
}

@inline
function fnv(h: u32, x: u32): u32 {
  return (h ^ x) * 16777619;
}

function fold(): u32 {
  let h: u32 = 2166136261;
  h = fnv(h, i32x4.extract_lane(sumA, 0));
  h = fnv(h, i32x4.extract_lane(sumA, 1));
  h = fnv(h, i32x4.extract_lane(sumA, 2));
  h = fnv(h, i32x4.extract_lane(sumA, 3));
  h = fnv(h, i32x4.extract_lane(sumB, 0));
  h = fnv(h, i32x4.extract_lane(sumB, 1));
  h = fnv(h, i32x4.extract_lane(sumB, 2));
  h = fnv(h, i32x4.extract_lane(sumB, 3));
  return h;
}

// 16 bytes of scratch at address 0 (the JS side keeps its buffers from 64 on).
const SCRATCH: usize = 0;

/** The last partial chunk (fewer than 16 bytes from `p`), zero-padded. */
function tailChunk(p: usize, n: usize): v128 {
  v128.store(SCRATCH, i32x4.splat(0));
  for (let i: usize = 0; i < n; i++) store<u8>(SCRATCH + i, load<u8>(p + i));
  return v128.load(SCRATCH);
}

/** IEEE half → float32 bits for four halves (zero-extended into the u32 lanes of `h`). */
@inline
function halfToFloat(h: v128): v128 {
  const shiftedExp = i32x4.splat(0x7c00 << 13);
  let o = i32x4.shl(v128.and(h, i32x4.splat(0x7fff)), 13);
  const exp = v128.and(o, shiftedExp);
  o = i32x4.add(o, i32x4.splat((127 - 15) << 23));
  // Inf / NaN: the exponent field to 255.
  o = i32x4.add(o, v128.and(i32x4.eq(exp, shiftedExp), i32x4.splat((128 - 16) << 23)));
  // Zero / subnormal: renormalise through the float unit, exactly (2⁻¹⁴ · (1 + m/1024) − 2⁻¹⁴ = m · 2⁻²⁴).
  const den = f32x4.sub(i32x4.add(o, i32x4.splat(1 << 23)), i32x4.splat(113 << 23));
  o = v128.bitselect(den, o, i32x4.eq(exp, i32x4.splat(0)));
  return v128.or(o, i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16));
}

/**
 * Checks and decodes one entry: `bytes` stored bytes at `src` (bf16/f16: 2 per value; f32: 4),
 * float32 values to `out` (not overlapping `src`). Returns the checksum of the stored bytes.
 * (The sums live in locals inside the loops, in the globals between them.)
 */
export function decodeEntry(src: usize, bytes: i32, dtype: i32, out: usize): u32 {
  const n = <usize>bytes;
  const end16 = n & ~(<usize>15);
  let a = i32x4.splat(0);
  let b = i32x4.splat(0);
  let i: usize = 0;
  if (dtype == DTYPE_BF16) {
    for (; i < end16; i += 16) {
      const w = v128.load(src + i);
      a = i32x4.add(a, w);
      b = i32x4.add(b, a);
      v128.store(out + 2 * i, i32x4.shl(i32x4.extend_low_i16x8_u(w), 16));
      v128.store(out + 2 * i, i32x4.shl(i32x4.extend_high_i16x8_u(w), 16), 16);
    }
    for (let k = i; k + 1 < n; k += 2) store<u32>(out + 2 * k, (<u32>load<u16>(src + k)) << 16);
  } else if (dtype == DTYPE_F16) {
    for (; i < end16; i += 16) {
      const w = v128.load(src + i);
      a = i32x4.add(a, w);
      b = i32x4.add(b, a);
      v128.store(out + 2 * i, halfToFloat(i32x4.extend_low_i16x8_u(w)));
      v128.store(out + 2 * i, halfToFloat(i32x4.extend_high_i16x8_u(w)), 16);
    }
    for (let k = i; k + 1 < n; k += 2) {
      const f = halfToFloat(i32x4.splat(<i32>load<u16>(src + k)));
      store<u32>(out + 2 * k, i32x4.extract_lane(f, 0));
    }
  } else {
    for (; i < end16; i += 16) {
      const w = v128.load(src + i);
      a = i32x4.add(a, w);
      b = i32x4.add(b, a);
      v128.store(out + i, w);
    }
    for (let k = i; k + 3 < n; k += 4) store<u32>(out + k, load<u32>(src + k));
  }
  sumA = a;
  sumB = b;
  if (i < n) addChunk(tailChunk(src + i, n - i));
  return fold();
}

/** The checksum alone (what decodeEntry returns), for writers. */
export function entryChecksum(src: usize, bytes: i32): u32 {
  const n = <usize>bytes;
  const end16 = n & ~(<usize>15);
  let a = i32x4.splat(0);
  let b = i32x4.splat(0);
  let i: usize = 0;
  for (; i < end16; i += 16) {
    a = i32x4.add(a, v128.load(src + i));
    b = i32x4.add(b, a);
  }
  sumA = a;
  sumB = b;
  if (i < n) addChunk(tailChunk(src + i, n - i));
  return fold();
}

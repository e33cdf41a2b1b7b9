/**
 * IEEE half precision widened to float32 by its definition (a table of the 65,536 values built
 * from sign, exponent and mantissa): the reference the feature kernel's f16 decode
 * (assembly/feature-kernel.ts) and grad-transport.ts toF16 are checked against.
 */
let table: Float32Array | undefined;

/** IEEE half-precision words widened to float32 (exact) into `out` (same length). */
export function fromF16(src: Uint16Array, out: Float32Array): Float32Array {
  if (table === undefined) {
    table = new Float32Array(0x10000);
    for (let h = 0; h < 0x10000; h++) {
      const sign = h & 0x8000 ? -1 : 1;
      const exp = (h >>> 10) & 0x1f;
      const mant = h & 0x3ff;
      table[h] = exp === 0 ? sign * mant * 2 ** -24 : exp === 0x1f ? (mant === 0 ? sign * Infinity : NaN) : sign * (1 + mant / 1024) * 2 ** (exp - 15);
    }
  }
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]];
  return out;
}

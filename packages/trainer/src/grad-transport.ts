/**
 * What the gradient all-reduce puts on the wire, and when a part of the buffer may be sent.
 *
 * bf16 transport (`--grad-dtype bf16`): every contribution is rounded float32 → bfloat16
 * (round to nearest, ties to even; NaN stays NaN, ±Inf stays ±Inf), sent as 2 bytes, widened back
 * to float32 exactly and summed in float32 in rank order. The owner rounds its own contribution
 * too, so the mean is that of the N rounded contributions whichever transport carried them — the
 * Redis data plane and a single worker apply the same rounding locally and give the same bytes.
 *
 * `Watermark`: how far a buffer is final. The trainer advances it while it copies the last
 * micro-batch's gradients to the host, parameter by parameter; the TCP data plane sends each
 * bucket as soon as the watermark has passed its end (DDP-style bucketing), so communication
 * overlaps the rest of the copy.
 */

export type GradDtype = 'f32' | 'bf16';

/** src[i] rounded to bfloat16, as 16-bit words into `out` (same length). */
export function toBf16(src: Float32Array, out: Uint16Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) {
    const b = bits[i];
    out[i] = (b & 0x7f800000) === 0x7f800000 && (b & 0x007fffff) !== 0 ? (b >>> 16) | 0x0040 : (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return out;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** bfloat16 words widened to float32 (exact) into `out` (same length). */
export function fromBf16(src: Uint16Array, out: Float32Array): Float32Array {
  const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  let i = 0;
  if (src.byteOffset % 4 === 0 && LITTLE_ENDIAN) {
    // Two words per 32-bit load: the low word is element 2k, the high word element 2k + 1.
    const pairs = new Uint32Array(src.buffer, src.byteOffset, src.length >>> 1);
    for (let k = 0; k < pairs.length; k++) {
      const w = pairs[k];
      bits[2 * k] = w << 16;
      bits[2 * k + 1] = w & 0xffff0000;
    }
    i = 2 * pairs.length;
  }
  for (; i < src.length; i++) bits[i] = src[i] << 16;
  return out;
}

/** src[i] rounded to IEEE half precision (nearest even; beyond ±65504 → ±Inf; NaN stays NaN) into `out`. */
export function toF16(src: Float32Array, out: Uint16Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) {
    const x = bits[i];
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    const mant = x & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0);
      continue;
    }
    const e = exp - 112; // rebias 127 → 15
    let h: number;
    let rem: number;
    let halfway: number;
    if (e >= 0x1f) {
      out[i] = sign | 0x7c00;
      continue;
    } else if (e <= 0) {
      if (e < -10) {
        out[i] = sign; // below half the smallest subnormal: ±0
        continue;
      }
      const m = mant | 0x800000;
      const shift = 14 - e;
      h = m >>> shift;
      rem = m & ((1 << shift) - 1);
      halfway = 1 << (shift - 1);
    } else {
      h = (e << 10) | (mant >>> 13);
      rem = mant & 0x1fff;
      halfway = 0x1000;
    }
    if (rem > halfway || (rem === halfway && (h & 1) === 1)) h++; // a carry rounds up into the exponent (or to Inf)
    out[i] = sign | h;
  }
  return out;
}

/** Rounds `x` to bfloat16 precision in place (what a bf16 round trip over the wire does). */
export function roundToBf16InPlace(x: Float32Array): Float32Array {
  const bits = new Uint32Array(x.buffer, x.byteOffset, x.length);
  for (let i = 0; i < x.length; i++) {
    const b = bits[i];
    bits[i] = (b & 0x7f800000) === 0x7f800000 && (b & 0x007fffff) !== 0 ? (b | 0x00400000) & 0xffff0000 : ((b + 0x7fff + ((b >>> 16) & 1)) & 0xffff0000) >>> 0;
  }
  return x;
}

/** A monotone "final up to element n" mark with waiters (single-threaded; no locking). */
export class Watermark {
  private value: number;
  private waiters: Array<{ n: number; resolve: () => void }> = [];

  constructor(initial = 0) {
    this.value = initial;
  }

  get current(): number {
    return this.value;
  }

  /** Everything before `n` is final. Values below the current mark are ignored. */
  advance(n: number): void {
    if (n <= this.value) return;
    this.value = n;
    const still: typeof this.waiters = [];
    for (const w of this.waiters) {
      if (w.n <= n) w.resolve();
      else still.push(w);
    }
    this.waiters = still;
  }

  /** Resolves once everything before `n` is final. */
  reached(n: number): Promise<void> {
    if (n <= this.value) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ n, resolve }));
  }
}

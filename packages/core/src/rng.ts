/**
 * Seeded, splittable randomness. Everything that affects results (shuffles, dropout masks, init,
 * sampling) derives its stream from `seedFrom(seed, ...keys)` — e.g. (seed, 'dropout', step,
 * globalSampleIndex) — never from the rank or a global generator, so the number of workers does
 * not change what is computed. The generator is xoshiro128** (Blackman & Vigna) with a state of
 * four uint32 words that can be saved into a checkpoint and restored exactly.
 */

/** 32-bit mixing (murmur3 finaliser). */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Deterministic uint32 from a seed and any number of keys (numbers or strings). */
export function seedFrom(seed: number, ...keys: Array<number | string>): number {
  let h = fmix32((seed >>> 0) ^ 0x9e3779b9);
  // High bits of large integer seeds/indices count too.
  h = fmix32(h ^ Math.floor(seed / 2 ** 32));
  for (const k of keys) {
    if (typeof k === 'number') {
      h = fmix32(h ^ fmix32((k >>> 0) + 0x7f4a7c15));
      h = fmix32(h ^ Math.floor(k / 2 ** 32));
    } else {
      for (let i = 0; i < k.length; i++) h = fmix32(Math.imul(h ^ k.charCodeAt(i), 0x01000193));
      h = fmix32(h ^ k.length);
    }
  }
  return h;
}

export type RngState = [number, number, number, number];

export class Rng {
  private s: Uint32Array;
  private spareNormal: number | null = null;

  constructor(seed: number, ...keys: Array<number | string>) {
    this.s = new Uint32Array(4);
    let x = seedFrom(seed, ...keys);
    // splitmix32 to fill the state; never all zero.
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      this.s[i] = fmix32(x);
    }
    if ((this.s[0] | this.s[1] | this.s[2] | this.s[3]) === 0) this.s[0] = 1;
  }

  static fromState(state: RngState): Rng {
    const r = new Rng(0);
    r.s.set(state);
    return r;
  }

  state(): RngState {
    return [this.s[0], this.s[1], this.s[2], this.s[3]];
  }

  /** Uniform uint32. */
  nextU32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  next(): number {
    const hi = this.nextU32() >>> 5; // 27 bits
    const lo = this.nextU32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform integer in [0, n) without modulo bias. */
  int(n: number): number {
    if (!(n > 0) || !Number.isInteger(n)) throw new RangeError(`Rng.int: n must be a positive integer, got ${n}`);
    if (n <= 2 ** 32) {
      const limit = 2 ** 32 - (2 ** 32 % n);
      let x: number;
      do x = this.nextU32();
      while (x >= limit);
      return x % n;
    }
    return Math.floor(this.next() * n);
  }

  /** Standard normal (Box–Muller, pairs cached). */
  normal(): number {
    if (this.spareNormal !== null) {
      const v = this.spareNormal;
      this.spareNormal = null;
      return v;
    }
    let u = 0;
    while (u === 0) u = this.next();
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spareNormal = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** Fisher–Yates in place. */
  shuffle<T>(arr: T[] | Uint32Array | Int32Array): typeof arr {
    for (let i = arr.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = arr[i];
      arr[i] = arr[j];
      arr[j] = t;
    }
    return arr;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** A permutation of 0..n-1 as a Uint32Array, determined by (seed, keys). */
export function permutation(n: number, seed: number, ...keys: Array<number | string>): Uint32Array {
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  new Rng(seed, ...keys).shuffle(p);
  return p;
}

import { Rng } from '@smolrate/core';
import { describe, expect, it } from 'vitest';
import { fromF16 } from '../tests/f16-reference.js';
import { fromBf16, roundToBf16InPlace, toBf16, toF16 } from './grad-transport.js';

/** Magnitude of a float32 bit pattern (sign bit clear) in float64; 0x7f800000 counts as 2^128. */
function magnitude(bits: number): number {
  const exp = bits >>> 23;
  const mant = bits & 0x7fffff;
  return exp === 0 ? mant * 2 ** -149 : (2 ** 23 + mant) * 2 ** (exp - 150);
}

/**
 * float32 bits → bfloat16 word the slow way: of the two bf16 neighbours of |x| (truncated and one
 * ulp up) take the nearer, on a tie the even one; overflow past the largest bf16 becomes Inf as
 * IEEE 754 round-to-nearest-even does. NaN is returned as null (any NaN word is accepted).
 */
function referenceBf16(bits: number): number | null {
  const sign = (bits >>> 16) & 0x8000;
  const m = bits & 0x7fffffff;
  if (m > 0x7f800000) return null;
  if (m === 0x7f800000) return sign | 0x7f80;
  const lo = m & 0xffff0000;
  const hi = lo + 0x10000;
  const below = magnitude(m) - magnitude(lo);
  const above = magnitude(hi) - magnitude(m);
  const up = above < below || (above === below && (lo & 0x10000) !== 0);
  return sign | ((up ? hi : lo) >>> 16);
}

function fromBits(bits: number[]): Float32Array {
  return new Float32Array(Uint32Array.from(bits).buffer);
}

function bitsOf(x: Float32Array): number[] {
  return [...new Uint32Array(x.buffer, x.byteOffset, x.length)];
}

function expectMatchesReference(words: Uint16Array, bits: number[]): void {
  const mismatches: string[] = [];
  bits.forEach((b, i) => {
    const want = referenceBf16(b);
    const got = words[i];
    const ok = want === null ? (got & 0x7f80) === 0x7f80 && (got & 0x7f) !== 0 : got === want;
    if (!ok) mismatches.push(`0x${b.toString(16)} → 0x${got.toString(16)}, expected ${want === null ? 'a NaN' : `0x${want.toString(16)}`}`);
  });
  expect(mismatches.slice(0, 5)).toEqual([]);
}

describe('toBf16', () => {
  it('rounds to nearest, ties to even (golden values)', () => {
    const cases: Array<[number, number]> = [
      [1, 0x3f80],
      [1 + 2 ** -8, 0x3f80], // a tie; 1.0 is even
      [1 + 3 * 2 ** -8, 0x3f82], // a tie; 1 + 2^-7 is odd, so up
      [1 + 2 ** -8 + 2 ** -23, 0x3f81], // just above the tie
      [-(1 + 2 ** -8 + 2 ** -23), 0xbf81],
      [3.4028234663852886e38, 0x7f80], // the largest float32 is past the largest bf16 + ½ ulp: Inf
      [-3.4028234663852886e38, 0xff80],
      [Infinity, 0x7f80],
      [-Infinity, 0xff80],
      [0, 0x0000],
      [-0, 0x8000],
      [2 ** -133, 0x0001], // the smallest bf16 subnormal, exact
      [2 ** -134, 0x0000], // half of it: a tie, rounds to the even 0
      [3 * 2 ** -134, 0x0002], // a tie between 0x0001 and 0x0002: the even one
      [2 ** -149, 0x0000], // the smallest float32 subnormal
    ];
    const words = toBf16(Float32Array.from(cases, ([x]) => x), new Uint16Array(cases.length));
    expect([...words].map((w) => w.toString(16))).toEqual(cases.map(([, w]) => w.toString(16)));
  });

  it('keeps NaN a NaN, whatever its payload', () => {
    const nans = [0x7fc00000, 0xffc00000, 0x7f800001, 0x7f810000, 0xff800001, 0x7fffffff];
    const back = fromBf16(toBf16(fromBits(nans), new Uint16Array(nans.length)), new Float32Array(nans.length));
    expect([...back].every(Number.isNaN)).toBe(true);
  });

  it('agrees with the reference on random bit patterns and on every kind of near-tie', () => {
    const rng = new Rng(17, 'bf16');
    const bits: number[] = [];
    for (let i = 0; i < 50_000; i++) bits.push(rng.nextU32());
    for (let i = 0; i < 20_000; i++) {
      const high = rng.nextU32() & 0xffff0000;
      for (const low of [0x7fff, 0x8000, 0x8001, 0x0000, 0xffff]) bits.push((high | low) >>> 0);
    }
    const words = toBf16(fromBits(bits), new Uint16Array(bits.length));
    expectMatchesReference(words, bits);
  });
});

describe('fromBf16', () => {
  it('widens every bf16 word exactly, and toBf16 gives the same word back (NaN stays NaN)', () => {
    const all = Uint16Array.from({ length: 0x10000 }, (_, w) => w);
    const wide = fromBf16(all, new Float32Array(all.length));
    expect(bitsOf(wide).every((b, w) => b === w << 16 >>> 0)).toBe(true);
    const back = toBf16(wide, new Uint16Array(all.length));
    const isNan = (w: number) => (w & 0x7f80) === 0x7f80 && (w & 0x7f) !== 0;
    const wrong = [...all].filter((w) => (isNan(w) ? !isNan(back[w]) : back[w] !== w));
    expect(wrong).toEqual([]);
  });
});

describe('roundToBf16InPlace', () => {
  it('rounds like the reference, in place, on a view into a larger buffer (neighbours untouched)', () => {
    const rng = new Rng(23, 'in-place');
    const bits = Array.from({ length: 4096 }, () => rng.nextU32());
    bits.push(0x7f800001, 0xffc00000, 0x7f800000, 0xff800000, 0x80000000, 0x00008000, 0x3f808000, 0x3f818000);
    const buffer = fromBits([0x12345678, ...bits, 0x9abcdef0]);
    const view = buffer.subarray(1, 1 + bits.length);

    expect(roundToBf16InPlace(view)).toBe(view);
    const got = bitsOf(view);
    expect(got.every((b) => (b & 0xffff) === 0)).toBe(true); // a float32 that is a bf16
    expectMatchesReference(Uint16Array.from(got, (b) => b >>> 16), bits);
    expect(bitsOf(buffer.subarray(0, 1))).toEqual([0x12345678]);
    expect(bitsOf(buffer.subarray(buffer.length - 1))).toEqual([0x9abcdef0]);
  });

  it('leaves values that bf16 represents exactly unchanged', () => {
    const exact = Float32Array.from([0, -0, 1, -2.5, 0.15625, 2 ** -133, -(2 ** -126), 65280, Infinity, -Infinity]);
    expect(bitsOf(roundToBf16InPlace(exact.slice()))).toEqual(bitsOf(exact));
  });
});

describe('toF16 / fromF16 (IEEE half precision)', () => {
  const halves = Uint16Array.from({ length: 0x10000 }, (_, h) => h);
  const wide = fromF16(halves, new Float32Array(0x10000));
  const isNaNWord = (h: number) => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;

  it('widens every word exactly and narrows it back to the same word (NaN stays NaN)', () => {
    expect([wide[0x3c00], wide[0xc000], wide[0x7bff], wide[0x0001], wide[0x0400], wide[0x7c00], wide[0xfc00]]).toEqual([1, -2, 65504, 2 ** -24, 2 ** -14, Infinity, -Infinity]);
    expect(Object.is(wide[0x8000], -0)).toBe(true);
    const back = toF16(wide, new Uint16Array(0x10000));
    for (let h = 0; h < 0x10000; h++) {
      if (isNaNWord(h)) expect(isNaNWord(back[h])).toBe(true);
      else if (back[h] !== h) expect.fail(`word ${h.toString(16)} came back as ${back[h].toString(16)}`);
    }
  });

  it('rounds random float32 values to the nearest half, ties to even, like a float64 reference', () => {
    // The finite positive halves in order; the reference picks the nearer neighbour in float64.
    const positives = Array.from({ length: 0x7c00 }, (_, h) => wide[h]);
    const rng = new Rng(5, 'f16');
    const bits = new Uint32Array(20_000);
    for (let i = 0; i < bits.length; i++) bits[i] = (rng.nextU32() & 0x8fffffff) | (i % 4 === 0 ? 0x38000000 : 0); // many in the half range
    const x = new Float32Array(bits.buffer);
    const got = toF16(x, new Uint16Array(x.length));
    for (let i = 0; i < x.length; i++) {
      const v = Math.abs(x[i]);
      if (Number.isNaN(v)) continue;
      let want: number;
      if (v >= 65520) want = 0x7c00; // 65504 + half an ulp and beyond → Inf
      else {
        let lo = 0;
        let hi = positives.length - 1;
        while (lo < hi) {
          const mid = (lo + hi + 1) >> 1;
          if (positives[mid] <= v) lo = mid;
          else hi = mid - 1;
        }
        const up = Math.min(lo + 1, positives.length - 1);
        const dLo = v - positives[lo];
        const dUp = positives[up] - v;
        want = dLo < dUp || (dLo === dUp && lo % 2 === 0) ? lo : up;
      }
      const sign = x[i] < 0 || Object.is(x[i], -0) ? 0x8000 : 0;
      if (got[i] !== (want | sign)) expect.fail(`${x[i]} → ${got[i].toString(16)}, reference ${(want | sign).toString(16)}`);
    }
  });
});

import { Rng } from '@smolrate/core';
import { describe, expect, it } from 'vitest';
import {
  countBelow,
  dequantize,
  nearestCode,
  quantizeBlock,
  quantizeBlockwise,
  SIGNED_CODE,
  tableMidpoints,
  UNSIGNED_CODE,
} from './quant-tables.js';

const S = SIGNED_CODE.table;
const U = UNSIGNED_CODE.table;

describe('dynamic code tables', () => {
  it('have 256 values and 255 midpoints', () => {
    expect(S).toBeInstanceOf(Float32Array);
    expect(S.length).toBe(256);
    expect(U.length).toBe(256);
    expect(SIGNED_CODE.midpoints.length).toBe(255);
    expect(UNSIGNED_CODE.midpoints.length).toBe(255);
  });

  it('signed: golden values (bitsandbytes create_dynamic_map(signed=True))', () => {
    expect(S[127]).toBe(0);
    expect(S[255]).toBe(1);
    expect(S[0]).toBe(-0.992968738079071); // −(last midpoint of 65 points in [0.1, 1]); no −1.0
    expect(S[1]).toBe(-0.9789062738418579);
    expect(S[254]).toBe(0.992968738079071);
    expect(S[128]).toBe(5.500000384017767e-7); // 1e-6 · (0.1 + 1)/2
    expect(S[129]).toBe(0.000003250000190746505); // 1e-5 · midpoint of [0.1, 0.55]
    expect(S[126]).toBe(-5.500000384017767e-7);
    expect(S[64]).toBe(-0.09859374910593033);
    expect(S.includes(-1)).toBe(false);
    expect(SIGNED_CODE.zeroCode).toBe(127);
  });

  it('unsigned: golden values (create_dynamic_map(signed=False))', () => {
    expect(U[0]).toBe(0);
    expect(U[255]).toBe(1);
    expect(U[1]).toBe(3.2500003044333425e-7); // 1e-6 · midpoint of [0.1, 0.55]
    expect(U[2]).toBe(7.749999895168003e-7);
    expect(U[127]).toBe(0.103515625);
    expect(U[254]).toBe(0.9964843988418579);
    expect(UNSIGNED_CODE.zeroCode).toBe(0);
  });

  it('are strictly increasing; the signed table is symmetric around index 127', () => {
    for (let i = 1; i < 256; i++) {
      expect(S[i] > S[i - 1], `signed ${i}`).toBe(true);
      expect(U[i] > U[i - 1], `unsigned ${i}`).toBe(true);
    }
    for (let i = 0; i < 127; i++) expect(S[i]).toBe(-S[254 - i]);
    expect(U[0]).toBe(0);
  });

  it('match the construction rule to float32 rounding (independent double computation)', () => {
    const expectDecades = (table: Float32Array, from: number, perDecade: (k: number) => number) => {
      let idx = from;
      for (let k = 0; k <= 6; k++) {
        const n = perDecade(k);
        for (let i = 0; i < n; i++, idx++) {
          const want = 10 ** (k - 6) * (0.1 + (0.9 * (i + 0.5)) / n);
          expect(Math.abs(table[idx] - want) / want, `index ${idx}`).toBeLessThan(4e-7);
        }
      }
      return idx;
    };
    expect(expectDecades(S, 128, (k) => 2 ** k)).toBe(255); // then +1.0
    expect(expectDecades(U, 1, (k) => 2 ** (k + 1))).toBe(255);
  });

  it('midpoints lie strictly between neighbours', () => {
    for (const code of [SIGNED_CODE, UNSIGNED_CODE]) {
      expect(tableMidpoints(code.table)).toEqual(code.midpoints);
      for (let i = 0; i < 255; i++) {
        expect(code.midpoints[i] > code.table[i] && code.midpoints[i] < code.table[i + 1]).toBe(true);
      }
    }
  });
});

describe('nearestCode / quantizeBlock / dequantize', () => {
  it('maps every table value to its own code and clamps beyond the ends', () => {
    for (const code of [SIGNED_CODE, UNSIGNED_CODE]) {
      for (let c = 0; c < 256; c++) expect(nearestCode(code, code.table[c])).toBe(c);
      expect(nearestCode(code, 2)).toBe(255);
      expect(nearestCode(code, -2)).toBe(0);
      expect(nearestCode(code, Infinity)).toBe(255);
      expect(nearestCode(code, -Infinity)).toBe(0);
    }
    // Exactly on a midpoint → the lower code.
    expect(nearestCode(SIGNED_CODE, SIGNED_CODE.midpoints[200])).toBe(200);
    expect(nearestCode(SIGNED_CODE, -0)).toBe(127);
  });

  it('the bucket lookup equals the binary search everywhere it can differ', () => {
    const f32 = new Float32Array(1);
    const u32 = new Uint32Array(f32.buffer);
    const neighbours = (x: number): number[] => {
      f32[0] = x;
      const bits = u32[0];
      const out: number[] = [x];
      for (const d of [-2, -1, 1, 2]) {
        u32[0] = (bits + d) >>> 0;
        if (Number.isFinite(f32[0])) out.push(f32[0]);
      }
      return out;
    };
    const rng = new Rng(9, 'lookup');
    for (const code of [SIGNED_CODE, UNSIGNED_CODE]) {
      const probes: number[] = [0, -0, 1, -1, 1e-45, -1e-45, 1.5e-38, 3e38, -3e38];
      for (let i = 0; i < 255; i++) probes.push(...neighbours(code.midpoints[i]), ...neighbours(-code.midpoints[i]));
      for (let i = 0; i < 256; i++) probes.push(...neighbours(code.table[i]));
      // Every bucket boundary (key multiples of 2^16) in [−2, 2], and random bit patterns.
      for (let e = 0; e < 65536; e += 1) {
        u32[0] = (e << 16) >>> 0;
        if (Number.isFinite(f32[0]) && Math.abs(f32[0]) <= 2) probes.push(...neighbours(f32[0]));
      }
      for (let k = 0; k < 20000; k++) {
        u32[0] = rng.nextU32();
        if (!Number.isNaN(f32[0])) probes.push(f32[0]);
        probes.push(Math.fround(2 * rng.next() - 1));
      }
      let mismatches = 0;
      for (const x of probes) if (nearestCode(code, x) !== countBelow(code.midpoints, x)) mismatches++;
      expect(mismatches).toBe(0);
      expect(probes.length).toBeGreaterThan(100_000);
    }
  });

  it('picks the nearest table value (brute force over random inputs)', () => {
    const rng = new Rng(7, 'nearest');
    for (const code of [SIGNED_CODE, UNSIGNED_CODE]) {
      for (let k = 0; k < 1000; k++) {
        // Log-uniform magnitudes exercise every decade.
        let x = Math.fround(10 ** (-7 * rng.next()));
        if (code.signed && rng.next() < 0.5) x = -x;
        const c = nearestCode(code, x);
        let best = 0;
        for (let j = 1; j < 256; j++) if (Math.abs(code.table[j] - x) < Math.abs(code.table[best] - x)) best = j;
        expect(Math.abs(code.table[c] - x)).toBe(Math.abs(code.table[best] - x));
      }
    }
  });

  it('quantizeBlock returns absmax, codes max|x| as ±1, keeps signs, and codes an all-zero block as the zero code', () => {
    const x = Float32Array.from([0.5, -2, 1e-3, 0, 2, -1e-9, 1e-9]);
    const out = new Uint8Array(10).fill(9);
    const absmax = quantizeBlock(SIGNED_CODE, x, out, 2);
    expect(absmax).toBe(2);
    expect([...out]).toEqual([
      9,
      9,
      nearestCode(SIGNED_CODE, 0.25),
      0, // −1 → the most negative code (no −1.0 in the table)
      nearestCode(SIGNED_CODE, 5e-4),
      127,
      255,
      126, // a tiny negative value rounds to zero and moves to the first negative code
      127, // a tiny positive one stays at zero
      9,
    ]);
    // The unsigned code scales by the largest value (its table has no negatives).
    const u = new Uint8Array(3);
    expect(quantizeBlock(UNSIGNED_CODE, Float32Array.from([-3, 1, 0.5]), u)).toBe(1);
    expect([...u]).toEqual([0, 255, nearestCode(UNSIGNED_CODE, 0.5)]);
    const zeros = new Uint8Array(4).fill(9);
    expect(quantizeBlock(SIGNED_CODE, new Float32Array(4), zeros)).toBe(0);
    expect([...zeros]).toEqual([127, 127, 127, 127]);
    const uz = new Uint8Array(3).fill(9);
    expect(quantizeBlock(UNSIGNED_CODE, new Float32Array(3), uz)).toBe(0);
    expect([...uz]).toEqual([0, 0, 0]);
  });

  it('round-trips block-wise with a short last block, error within half a code gap', () => {
    const rng = new Rng(3, 'blockwise');
    const n = 1000; // blocks of 256: 3 full + one of 232
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) x[i] = rng.normal() * (i < 256 ? 1e-3 : 1) * (i >= 768 ? 0 : 1);
    const { codes, absmax } = quantizeBlockwise(SIGNED_CODE, x, 256);
    expect(absmax.length).toBe(4);
    expect(absmax[3]).toBe(0);
    const y = dequantize(SIGNED_CODE, codes, absmax, 256);
    for (let i = 0; i < n; i++) {
      const b = Math.floor(i / 256);
      expect(y[i]).toBe(Math.fround(S[codes[i]] * absmax[b]));
      const c = codes[i];
      // Code 0 also covers −1 (there is no −1.0 in the table): its reach is down to −1.
      const reach = Math.max(c > 0 ? (S[c] - S[c - 1]) / 2 : S[0] + 1, c < 255 ? (S[c + 1] - S[c]) / 2 : 0);
      // + one float32 ulp for rounding the product table[c] · absmax.
      expect(Math.abs(y[i] - x[i])).toBeLessThanOrEqual(reach * absmax[b] + Math.abs(x[i]) * 2 ** -23);
    }
    expect(() => dequantize(SIGNED_CODE, codes, absmax.subarray(0, 3), 256)).toThrow(RangeError);
  });
});

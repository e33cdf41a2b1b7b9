import { describe, expect, it } from 'vitest';
import { meanInRankOrder, planAllReduce } from './all-reduce-plan.js';

describe('planAllReduce', () => {
  it('splits into N contiguous segments differing by at most one element, each into ≤ chunkBytes chunks', () => {
    for (const [length, n, chunkBytes] of [
      [0, 3, 16],
      [1, 3, 16],
      [7, 3, 16],
      [10, 4, 8],
      [1_000_003, 4, 65_536],
      [12, 1, 4],
    ]) {
      const p = planAllReduce(length, n, chunkBytes);
      expect(p.segmentStart[0]).toBe(0);
      expect(p.segmentStart[n]).toBe(length);
      const covered: number[] = [];
      for (let s = 0; s < n; s++) {
        const size = p.segmentStart[s + 1] - p.segmentStart[s];
        expect(size).toBeGreaterThanOrEqual(Math.floor(length / n));
        expect(size).toBeLessThanOrEqual(Math.ceil(length / n));
        for (let c = 0; c < p.chunks(s); c++) {
          const [lo, hi] = p.chunkRange(s, c);
          expect(hi - lo).toBeGreaterThan(0);
          expect((hi - lo) * 4).toBeLessThanOrEqual(chunkBytes);
          covered.push(lo, hi);
        }
      }
      // The chunks tile [0, length) in order, without gaps or overlaps.
      for (let i = 1; i + 1 < covered.length; i += 2) expect(covered[i]).toBe(covered[i + 1]);
      if (length > 0) expect([covered[0], covered[covered.length - 1]]).toEqual([0, length]);
      else expect(covered).toEqual([]);
    }
  });

  it('gives a 7-element buffer over 3 ranks the segments [0,2) [2,4) [4,7)', () => {
    expect(planAllReduce(7, 3, 8).segmentStart).toEqual([0, 2, 4, 7]);
    expect(planAllReduce(7, 3, 8).chunkRange(2, 1)).toEqual([6, 7]);
  });
});

describe('meanInRankOrder', () => {
  it('accumulates in float32 in rank order, then divides', () => {
    // 1 + 2^-24 rounds to 1 in float32; (1 + 2^-24) + 2^-24 would too, but 2^-24 + 2^-24 = 2^-23 is exact.
    const big = new Float32Array([1]);
    const tiny = new Float32Array([2 ** -24]);
    const out = new Float32Array(1);
    meanInRankOrder([big, tiny, tiny], out);
    expect(out[0]).toBe(Math.fround(1 / 3)); // fl(fl(1 + 2^-24) + 2^-24) = 1, / 3
    meanInRankOrder([tiny, tiny, big], out);
    expect(out[0]).toBe(Math.fround((1 + 2 ** -23) / 3)); // 2^-23 + 1 is representable
    expect(out[0]).not.toBe(Math.fround(1 / 3));
  });

  it('may write into parts[0], and rejects parts of the wrong length', () => {
    const a = new Float32Array([1, 2]);
    meanInRankOrder([a, new Float32Array([3, 4])], a);
    expect([...a]).toEqual([2, 3]);
    expect(() => meanInRankOrder([a, new Float32Array(3)], new Float32Array(2))).toThrow(/part 1 has 3 elements, expected 2/);
  });
});

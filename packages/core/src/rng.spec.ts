import { describe, expect, it } from 'vitest';
import { permutation, Rng, seedFrom } from './rng.js';

describe('Rng', () => {
  it('is deterministic for the same seed and keys and differs otherwise', () => {
    const a = new Rng(42, 'dropout', 7);
    const b = new Rng(42, 'dropout', 7);
    const c = new Rng(42, 'dropout', 8);
    const xa = Array.from({ length: 16 }, () => a.nextU32());
    const xb = Array.from({ length: 16 }, () => b.nextU32());
    const xc = Array.from({ length: 16 }, () => c.nextU32());
    expect(xa).toEqual(xb);
    expect(xa).not.toEqual(xc);
  });

  it('matches the xoshiro128** reference sequence for state {1,2,3,4}', () => {
    const r = Rng.fromState([1, 2, 3, 4]);
    expect([r.nextU32(), r.nextU32(), r.nextU32(), r.nextU32()]).toEqual([11520, 0, 5927040, 70819200]);
  });

  it('restores exactly from a saved state', () => {
    const r = new Rng(5);
    for (let i = 0; i < 10; i++) r.next();
    const saved = r.state();
    const tail = Array.from({ length: 8 }, () => r.next());
    const again = Rng.fromState(saved);
    expect(Array.from({ length: 8 }, () => again.next())).toEqual(tail);
  });

  it('draws uniform floats in [0,1) with the right mean and normals with unit variance', () => {
    const r = new Rng(123);
    let sum = 0;
    let sq = 0;
    const n = 20000;
    for (let i = 0; i < n; i++) {
      const u = r.next();
      expect(u).toBeGreaterThanOrEqual(0);
      expect(u).toBeLessThan(1);
      sum += u;
      const z = r.normal();
      sq += z * z;
    }
    expect(sum / n).toBeCloseTo(0.5, 1);
    expect(sq / n).toBeCloseTo(1, 1);
  });

  it('int(n) stays in range and covers it', () => {
    const r = new Rng(9);
    const seen = new Set<number>();
    for (let i = 0; i < 1000; i++) {
      const k = r.int(7);
      expect(k).toBeGreaterThanOrEqual(0);
      expect(k).toBeLessThan(7);
      seen.add(k);
    }
    expect(seen.size).toBe(7);
    expect(() => r.int(0)).toThrow(RangeError);
  });

  it('permutation is a permutation and depends on the keys', () => {
    const p = permutation(1000, 3, 'epoch', 0);
    expect([...p].sort((x, y) => x - y)).toEqual([...Array(1000).keys()]);
    expect(permutation(1000, 3, 'epoch', 0)).toEqual(p);
    expect(permutation(1000, 3, 'epoch', 1)).not.toEqual(p);
  });

  it('seedFrom separates string keys and large integers', () => {
    expect(seedFrom(1, 'ab', 'c')).not.toBe(seedFrom(1, 'a', 'bc'));
    expect(seedFrom(1, 2 ** 32 + 5)).not.toBe(seedFrom(1, 5));
  });
});

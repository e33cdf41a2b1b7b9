import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DataError } from './errors.js';
import { averageRanks, pearson, regressionMetrics, spearman } from './regression-metrics.js';

interface Case {
  name: string;
  targets: number[];
  predictions: number[];
  expected: { n: number; rmse: number; mae: number; plcc: number | null; srcc: number | null; plcc_plus: number | null };
}

// Written by tools/eval-fixtures.py (numpy reference, independent rank method).
const fixture = JSON.parse(readFileSync(new URL('../tests/fixtures/metrics-cases.json', import.meta.url), 'utf8')) as { cases: Case[] };

const close = (actual: number | null, expected: number | null) => {
  if (expected === null) expect(actual).toBeNull();
  else {
    expect(actual).not.toBeNull();
    expect(Math.abs(actual! - expected)).toBeLessThan(1e-9);
  }
};

describe('regressionMetrics against the numpy reference', () => {
  it('has the expected kinds of cases', () => {
    const names = fixture.cases.map((c) => c.name);
    expect(names).toEqual(expect.arrayContaining(['heavy-ties-both', 'negative-correlation', 'large-n-5000', 'constant-predictions']));
  });
  for (const c of fixture.cases) {
    it(c.name, () => {
      const m = regressionMetrics(c.targets, c.predictions);
      expect(m.n).toBe(c.expected.n);
      close(m.rmse, c.expected.rmse);
      close(m.mae, c.expected.mae);
      close(m.plcc, c.expected.plcc);
      close(m.srcc, c.expected.srcc);
      close(m.plccPlus, c.expected.plcc_plus);
    });
  }
  it('negative correlation gives PLCC < 0 and PLCC⁺ = 0', () => {
    const c = fixture.cases.find((x) => x.name === 'negative-correlation')!;
    const m = regressionMetrics(c.targets, c.predictions);
    expect(m.plcc!).toBeLessThan(-0.5);
    expect(m.plccPlus).toBe(0);
  });
});

describe('pearson / spearman / averageRanks', () => {
  it('golden values; symmetric in their arguments', () => {
    // numpy.corrcoef([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])[0, 1] = 0.8
    expect(pearson([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])).toBeCloseTo(0.8, 12);
    expect(pearson([2, 1, 4, 3, 5], [1, 2, 3, 4, 5])).toBe(pearson([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]));
    expect(pearson([1, 2, 3], [3, 2, 1])).toBeCloseTo(-1, 12);
    // scipy.stats.spearmanr([1, 2, 2, 3], [1, 3, 2, 4]).statistic = 0.9486832980505138
    expect(spearman([1, 2, 2, 3], [1, 3, 2, 4])).toBeCloseTo(0.9486832980505138, 12);
    expect(spearman([1, 2, 3, 4], [1, 8, 27, 64])).toBe(1);
  });
  it('clamps to [-1, 1] (an exact linear fit can round above 1) and is null for zero variance', () => {
    // Unclamped, Σdxdy / √(Σdx²·Σdy²) is ±1.0000000000000002 here.
    expect(pearson([1, 2, 4], [3.1, 6.1, 12.1])).toBe(1);
    expect(pearson([1, 2, 4], [7, 4, -2])).toBe(-1);
    expect(pearson([1, 1, 1], [1, 2, 3])).toBeNull();
    expect(spearman([1, 2, 3], [5, 5, 5])).toBeNull();
  });
  it('gives tied values the mean of their ranks', () => {
    expect(Array.from(averageRanks([10, 20, 10, 30, 20, 20]))).toEqual([1.5, 4, 1.5, 6, 4, 4]);
  });
});

describe('degenerate input', () => {
  it('constant predictions or targets: null correlations with a reason, errors still computed', () => {
    const m = regressionMetrics([1, 2, 3], [2, 2, 2]);
    expect(m.plcc).toBeNull();
    expect(m.srcc).toBeNull();
    expect(m.plccPlus).toBeNull();
    expect(m.degenerate).toBe('constant predictions');
    expect(m.mae).toBeCloseTo(2 / 3, 12);
    expect(m.rmse).toBeCloseTo(Math.sqrt(2 / 3), 12);
    expect(regressionMetrics([4, 4], [1, 2]).degenerate).toBe('constant targets');
    expect(regressionMetrics([3], [3])).toEqual({ n: 1, rmse: 0, mae: 0, plcc: null, srcc: null, plccPlus: null, degenerate: 'constant targets and predictions' });
  });
  it('non-finite values: null correlations with a reason, the errors carry the NaN', () => {
    const m = regressionMetrics([1, 2, 3], [1, NaN, 3]);
    expect(m).toMatchObject({ n: 3, plcc: null, srcc: null, plccPlus: null, degenerate: 'non-finite predictions' });
    expect(m.rmse).toBeNaN();
    expect(regressionMetrics([1, Infinity, 3, 4], [1, 2, 3, 5]).degenerate).toBe('non-finite targets');
  });
  it('rejects arrays of different lengths and no rows', () => {
    expect(() => regressionMetrics([1, 2], [1, 2, 3])).toThrow(/2 targets but 3 predictions/);
    expect(() => regressionMetrics([], [])).toThrow(DataError);
  });
});

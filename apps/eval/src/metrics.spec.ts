import { readFileSync } from 'node:fs';
import { DataError } from '@smolrate/core';
import { describe, expect, it } from 'vitest';
import { averageRanks, metricsByCategory, regressionMetrics } from './metrics.js';

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

describe('degenerate input', () => {
  it('rejects fewer than 2 rows, NaN, and length mismatch', () => {
    expect(() => regressionMetrics([3], [3])).toThrow(DataError);
    expect(() => regressionMetrics([1, 2, NaN], [1, 2, 3])).toThrow(/target of row 2/);
    expect(() => regressionMetrics([1, 2, 3], [1, Infinity, 3])).toThrow(/prediction of row 1/);
    expect(() => regressionMetrics([1, 2], [1, 2, 3])).toThrow(/2 targets but 3 predictions/);
  });
  it('constant predictions or targets: null correlations with a reason, errors still computed', () => {
    const m = regressionMetrics([1, 2, 3], [2, 2, 2]);
    expect(m.plcc).toBeNull();
    expect(m.srcc).toBeNull();
    expect(m.plccPlus).toBeNull();
    expect(m.degenerate).toBe('constant predictions');
    expect(m.mae).toBeCloseTo(2 / 3, 12);
    expect(regressionMetrics([4, 4], [1, 2]).degenerate).toBe('constant targets');
  });
});

describe('averageRanks', () => {
  it('gives tied values the mean of their ranks', () => {
    expect(Array.from(averageRanks([10, 20, 10, 30, 20, 20]))).toEqual([1.5, 4, 1.5, 6, 4, 4]);
  });
});

describe('metricsByCategory', () => {
  it('groups, sorts by size and notes groups too small for metrics', () => {
    const rows = [
      { category: 'B', target: 1, prediction: 1.2 },
      { category: 'A', target: 2, prediction: 2.5 },
      { category: 'B', target: 3, prediction: 2.8 },
      { category: 'B', target: 5, prediction: 4.1 },
    ];
    const out = metricsByCategory(rows);
    expect(out.map((c) => [c.category, c.n])).toEqual([['B', 3], ['A', 1]]);
    expect(out[1].note).toMatch(/fewer than 2/);
    expect(out[0].rmse).toBeCloseTo(Math.sqrt((0.04 + 0.04 + 0.81) / 3), 12);
  });
});

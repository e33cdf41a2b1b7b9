import { DataError, regressionMetrics } from '@smolrate/core';
import { describe, expect, it } from 'vitest';
import { metricsByCategory, reportMetrics } from './metrics.js';

describe('reportMetrics', () => {
  it('rejects fewer than 2 rows, NaN, and length mismatch', () => {
    expect(() => reportMetrics([3], [3])).toThrow(DataError);
    expect(() => reportMetrics([1, 2, NaN], [1, 2, 3])).toThrow(/target of row 2/);
    expect(() => reportMetrics([1, 2, 3], [1, Infinity, 3])).toThrow(/prediction of row 1/);
    expect(() => reportMetrics([1, 2], [1, 2, 3])).toThrow(/2 targets but 3 predictions/);
  });
  it("is core's regressionMetrics otherwise, constant input included", () => {
    expect(reportMetrics([1, 2, 3, 5], [1.5, 2, 3.5, 4])).toEqual(regressionMetrics([1, 2, 3, 5], [1.5, 2, 3.5, 4]));
    expect(reportMetrics([1, 2, 3], [2, 2, 2]).degenerate).toBe('constant predictions');
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

import { describe, expect, it } from 'vitest';
import { averageRanks, pearson, rmse, spearman, valMetrics } from './val-metrics.js';

describe('val metrics', () => {
  it('rmse of known residuals', () => {
    expect(rmse([1, 2, 3, 4], [1, 2, 3, 6])).toBeCloseTo(1, 12); // sqrt(4 / 4)
  });

  it('pearson: perfect, anti, golden value, constant input is NaN', () => {
    expect(pearson([1, 2, 3], [2, 4, 6])).toBeCloseTo(1, 12);
    expect(pearson([1, 2, 3], [3, 2, 1])).toBeCloseTo(-1, 12);
    // numpy.corrcoef([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])[0, 1] = 0.8
    expect(pearson([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])).toBeCloseTo(0.8, 12);
    expect(pearson([1, 1, 1], [1, 2, 3])).toBeNaN();
  });

  it('spearman uses average ranks for ties (scipy.stats.spearmanr)', () => {
    expect([...averageRanks([10, 20, 20, 30])]).toEqual([1, 2.5, 2.5, 4]);
    // scipy.stats.spearmanr([1, 2, 2, 3], [1, 3, 2, 4]).statistic = 0.9486832980505138
    expect(spearman([1, 2, 2, 3], [1, 3, 2, 4])).toBeCloseTo(0.9486832980505138, 12);
    expect(spearman([1, 2, 3, 4], [1, 8, 27, 64])).toBeCloseTo(1, 12);
  });

  it('valMetrics bundles them and rejects mismatched lengths', () => {
    expect(valMetrics([1, 2], [1, 2])).toEqual({ rmse: 0, plcc: 1, srcc: 1, samples: 2 });
    expect(() => rmse([1], [1, 2])).toThrow(/1 predictions vs 2 targets/);
  });
});

import { describe, expect, it } from 'vitest';
import { regressionMetrics } from '@smolrate/core';
import { valMetrics } from './evaluate.js';

describe('valMetrics', () => {
  it("is core's regressionMetrics as the trainer records it (targets first)", () => {
    const targets = [1, 2, 3, 4];
    const predictions = [1.5, 1.8, 3.6, 3.9];
    const m = regressionMetrics(targets, predictions);
    expect(valMetrics(targets, predictions)).toEqual({ rmse: m.rmse, plcc: m.plcc, srcc: m.srcc, samples: 4 });
    expect(valMetrics([1, 2], [1, 2])).toEqual({ rmse: 0, plcc: 1, srcc: 1, samples: 2 });
  });
  it('records undefined correlations as NaN (never an improvement) instead of stopping the run', () => {
    expect(valMetrics([1, 2, 3], [2, 2, 2])).toEqual({ rmse: Math.sqrt(2 / 3), plcc: NaN, srcc: NaN, samples: 3 });
    const diverged = valMetrics([1, 2, 3], [NaN, NaN, NaN]);
    expect(diverged.rmse).toBeNaN();
    expect(diverged.plcc).toBeNaN();
    expect(diverged.srcc).toBeNaN();
  });
});

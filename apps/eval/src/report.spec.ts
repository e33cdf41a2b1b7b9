import { describe, expect, it } from 'vitest';
import { errorByBand, hexbin, histogramCounts, niceTicks } from './figures.js';
import { trainingCurves } from './report.js';

describe('trainingCurves', () => {
  it('separates train and validation records and tolerates other field names', () => {
    const c = trainingCurves([
      { step: 1, loss: 2, lr: 1e-4 },
      { global_step: 2, train_loss: 1.5, learning_rate: 2e-4 },
      { step: 2, val_plcc: 0.3, val_rmse: 0.9, val_srcc: 0.28 },
      { step: 3, loss: 'nan' },
      { loss: 1 },
    ]);
    expect(c.loss).toEqual([[1, 2], [2, 1.5]]);
    expect(c.lr).toEqual([[1, 1e-4], [2, 2e-4]]);
    expect(c.valPlcc).toEqual([[2, 0.3]]);
  });
});

describe('figure helpers', () => {
  it('hexbin puts every point in its nearest hexagon centre and conserves the count', () => {
    const xs: number[] = [];
    const ys: number[] = [];
    for (let i = 0; i < 400; i++) {
      xs.push(1 + ((i * 0.731) % 4));
      ys.push(1 + ((i * 0.377) % 4));
    }
    const r = 0.1;
    const bins = hexbin(xs, ys, r);
    expect(bins.reduce((s, b) => s + b.count, 0)).toBe(400);
    const tally = new Array<number>(bins.length).fill(0);
    for (let i = 0; i < xs.length; i++) {
      const d = bins.map((b) => Math.hypot(b.cx - xs[i], b.cy - ys[i]));
      expect(Math.min(...d)).toBeLessThanOrEqual(r + 1e-9); // inside the circumscribed circle
      tally[d.indexOf(Math.min(...d))]++;
    }
    // Brute-force nearest-centre assignment gives the same counts.
    expect(tally).toEqual(bins.map((b) => b.count));
  });
  it('histogram and bands count every value once', () => {
    const v = [1, 1.05, 2.5, 4.99, 5];
    expect(histogramCounts(v, 1, 5, 40).reduce((a, b) => a + b, 0)).toBe(5);
    const bands = errorByBand([1, 2.5, 3.2, 4.5, 5], [2, 2.5, 3, 4, 5]);
    expect(bands.reduce((s, b) => s + b.n, 0)).toBe(5);
    expect(bands[0]).toMatchObject({ n: 1, mae: 1, bias: 1 });
    expect(bands[5]).toMatchObject({ n: 2, mae: 0.25, bias: -0.25 });
    expect(bands[1].bias).toBe(0);
  });
  it('nice ticks cover the range with round steps', () => {
    expect(niceTicks(1, 5, 4)).toEqual([1, 2, 3, 4, 5]);
    expect(niceTicks(0, 0.00042, 4)).toEqual([0, 0.0002, 0.0004]);
    expect(niceTicks(0, 0.00042, 8)).toEqual([0, 0.0001, 0.0002, 0.0003, 0.0004]);
  });
});

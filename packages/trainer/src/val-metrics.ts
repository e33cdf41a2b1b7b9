/**
 * The challenge's validation metrics, simply computed (apps/eval has the richer library):
 * RMSE, Pearson's linear correlation (PLCC) and Spearman's rank correlation (SRCC, Pearson of
 * average ranks, so ties get the mean of the ranks they span, as scipy.stats.spearmanr does).
 * Sums in float64. A constant input has no correlation: NaN.
 */
import { ShapeError } from '@smolrate/core';

function checkPair(a: ArrayLike<number>, b: ArrayLike<number>, what: string): void {
  if (a.length !== b.length) throw new ShapeError(`${what}: ${a.length} predictions vs ${b.length} targets`);
  if (a.length === 0) throw new ShapeError(`${what}: no samples`);
}

export function rmse(pred: ArrayLike<number>, target: ArrayLike<number>): number {
  checkPair(pred, target, 'rmse');
  let s = 0;
  for (let i = 0; i < pred.length; i++) s += (pred[i] - target[i]) ** 2;
  return Math.sqrt(s / pred.length);
}

export function pearson(x: ArrayLike<number>, y: ArrayLike<number>): number {
  checkPair(x, y, 'pearson');
  const n = x.length;
  let mx = 0;
  let my = 0;
  for (let i = 0; i < n; i++) {
    mx += x[i];
    my += y[i];
  }
  mx /= n;
  my /= n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = x[i] - mx;
    const dy = y[i] - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  return sxx === 0 || syy === 0 ? NaN : sxy / Math.sqrt(sxx * syy);
}

/** 1-based ranks; tied values share the average of their ranks. */
export function averageRanks(x: ArrayLike<number>): Float64Array {
  const order = Array.from({ length: x.length }, (_, i) => i).sort((a, b) => x[a] - x[b]);
  const ranks = new Float64Array(x.length);
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && x[order[j + 1]] === x[order[i]]) j++;
    const r = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) ranks[order[k]] = r;
    i = j + 1;
  }
  return ranks;
}

export function spearman(x: ArrayLike<number>, y: ArrayLike<number>): number {
  checkPair(x, y, 'spearman');
  return pearson(averageRanks(x), averageRanks(y));
}

export interface ValMetrics {
  rmse: number;
  plcc: number;
  srcc: number;
  samples: number;
}

export function valMetrics(pred: ArrayLike<number>, target: ArrayLike<number>): ValMetrics {
  return { rmse: rmse(pred, target), plcc: pearson(pred, target), srcc: spearman(pred, target), samples: pred.length };
}

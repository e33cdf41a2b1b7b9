/**
 * Regression metrics of the paper and the LoViF challenge, for the trainer's validation and the
 * evaluation report alike: RMSE, MAE, PLCC (Pearson), SRCC (Spearman: Pearson of average ranks,
 * so ties share the mean of their ranks, as scipy.stats.spearmanr), and PLCC⁺ = max(0, PLCC),
 * the factor CES uses. Arguments are (targets, predictions); sums in float64, two-pass (centred).
 *
 * Undefined correlations are null, never a silent NaN: `plcc`, `srcc` and `plccPlus` are null
 * when the targets or the predictions are constant or not all finite, and `degenerate` says why
 * (RMSE / MAE are still given, NaN or Infinity for non-finite input). Arrays of different lengths
 * or no rows at all are a DataError. Stricter policies belong to the caller: the evaluation report
 * rejects fewer than 2 rows and non-finite values; the trainer records whatever it got.
 */
import { DataError } from './errors.js';

export interface RegressionMetrics {
  n: number;
  rmse: number;
  mae: number;
  /** Pearson linear correlation; null when either side is constant or not finite. */
  plcc: number | null;
  /** Spearman rank correlation (average ranks for ties); null with plcc. */
  srcc: number | null;
  /** max(0, PLCC), the factor of CES; null with plcc. */
  plccPlus: number | null;
  /** Why the correlations are null (e.g. "constant predictions"); absent when they are defined. */
  degenerate?: string;
}

function mean(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i];
  return s / x.length;
}

/** Pearson correlation clamped to [-1, 1], or null when either side has zero variance. */
export function pearson(x: ArrayLike<number>, y: ArrayLike<number>): number | null {
  const mx = mean(x);
  const my = mean(y);
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < x.length; i++) {
    const dx = x[i] - mx;
    const dy = y[i] - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  if (sxx === 0 || syy === 0) return null;
  const r = sxy / Math.sqrt(sxx * syy);
  return Math.max(-1, Math.min(1, r));
}

/** 1-based ranks; tied values get the mean of the ranks they span. */
export function averageRanks(x: ArrayLike<number>): Float64Array {
  const order = Array.from({ length: x.length }, (_, i) => i).sort((a, b) => x[a] - x[b]);
  const ranks = new Float64Array(x.length);
  let i = 0;
  while (i < order.length) {
    let j = i;
    while (j + 1 < order.length && x[order[j + 1]] === x[order[i]]) j++;
    const r = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) ranks[order[k]] = r;
    i = j + 1;
  }
  return ranks;
}

/** Spearman rank correlation: Pearson of average ranks; null when either side is constant. */
export function spearman(x: ArrayLike<number>, y: ArrayLike<number>): number | null {
  return pearson(averageRanks(x), averageRanks(y));
}

function isConstant(x: ArrayLike<number>): boolean {
  for (let i = 1; i < x.length; i++) if (x[i] !== x[0]) return false;
  return true;
}

function allFinite(x: ArrayLike<number>): boolean {
  for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i])) return false;
  return true;
}

/** Which sides are `bad` ("targets", "predictions", "targets and predictions"), or undefined. */
function sides(targets: boolean, predictions: boolean): string | undefined {
  return targets && predictions ? 'targets and predictions' : targets ? 'targets' : predictions ? 'predictions' : undefined;
}

export function regressionMetrics(targets: ArrayLike<number>, predictions: ArrayLike<number>): RegressionMetrics {
  if (targets.length !== predictions.length) throw new DataError(`metrics: ${targets.length} targets but ${predictions.length} predictions`);
  if (targets.length === 0) throw new DataError('metrics: no rows');
  const n = targets.length;
  let se = 0;
  let ae = 0;
  for (let i = 0; i < n; i++) {
    const e = predictions[i] - targets[i];
    se += e * e;
    ae += Math.abs(e);
  }
  const out: RegressionMetrics = { n, rmse: Math.sqrt(se / n), mae: ae / n, plcc: null, srcc: null, plccPlus: null };
  const nonFinite = sides(!allFinite(targets), !allFinite(predictions));
  const constant = sides(isConstant(targets), isConstant(predictions));
  if (nonFinite !== undefined || constant !== undefined) {
    out.degenerate = nonFinite !== undefined ? `non-finite ${nonFinite}` : `constant ${constant}`;
    return out;
  }
  out.plcc = pearson(targets, predictions);
  out.srcc = spearman(targets, predictions);
  out.plccPlus = out.plcc === null ? null : Math.max(0, out.plcc);
  return out;
}

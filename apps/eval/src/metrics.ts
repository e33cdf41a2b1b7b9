/**
 * Regression metrics of the paper and the LoViF challenge: RMSE, MAE, PLCC (Pearson), SRCC
 * (Spearman: Pearson of average ranks, so ties share the mean of their ranks, as
 * scipy.stats.spearmanr), and PLCC⁺ = max(0, PLCC), the factor CES uses.
 *
 * Degenerate input never yields NaN silently:
 *  - fewer than 2 rows, non-finite values or arrays of different lengths → DataError;
 *  - constant predictions or constant targets → correlations are undefined: `plcc`, `srcc` and
 *    `plccPlus` are null and `degenerate` says why (RMSE / MAE are still given).
 */
import { DataError } from '@smolrate/core';

export interface RegressionMetrics {
  n: number;
  rmse: number;
  mae: number;
  /** Pearson linear correlation; null when either side is constant. */
  plcc: number | null;
  /** Spearman rank correlation (average ranks for ties); null when either side is constant. */
  srcc: number | null;
  /** max(0, PLCC), the factor of CES; null with plcc. */
  plccPlus: number | null;
  /** Why the correlations are null (e.g. "constant predictions"); absent when they are defined. */
  degenerate?: string;
}

function check(targets: ArrayLike<number>, predictions: ArrayLike<number>): void {
  if (targets.length !== predictions.length) {
    throw new DataError(`metrics: ${targets.length} targets but ${predictions.length} predictions`);
  }
  if (targets.length < 2) throw new DataError(`metrics need at least 2 rows, got ${targets.length}`);
  for (let i = 0; i < targets.length; i++) {
    if (!Number.isFinite(targets[i])) throw new DataError(`metrics: target of row ${i} is not a finite number (${targets[i]})`);
    if (!Number.isFinite(predictions[i])) throw new DataError(`metrics: prediction of row ${i} is not a finite number (${predictions[i]})`);
  }
}

function mean(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i];
  return s / x.length;
}

/** Pearson correlation, or null when either side has zero variance. Two-pass (centred) for accuracy. */
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

function isConstant(x: ArrayLike<number>): boolean {
  for (let i = 1; i < x.length; i++) if (x[i] !== x[0]) return false;
  return true;
}

export function regressionMetrics(targets: ArrayLike<number>, predictions: ArrayLike<number>): RegressionMetrics {
  check(targets, predictions);
  const n = targets.length;
  let se = 0;
  let ae = 0;
  for (let i = 0; i < n; i++) {
    const e = predictions[i] - targets[i];
    se += e * e;
    ae += Math.abs(e);
  }
  const out: RegressionMetrics = { n, rmse: Math.sqrt(se / n), mae: ae / n, plcc: null, srcc: null, plccPlus: null };
  const constT = isConstant(targets);
  const constP = isConstant(predictions);
  if (constT || constP) {
    out.degenerate = constT && constP ? 'constant targets and predictions' : constT ? 'constant targets' : 'constant predictions';
    return out;
  }
  out.plcc = pearson(targets, predictions);
  out.srcc = pearson(averageRanks(targets), averageRanks(predictions));
  out.plccPlus = out.plcc === null ? null : Math.max(0, out.plcc);
  return out;
}

export interface CategoryMetrics extends Partial<RegressionMetrics> {
  category: string;
  n: number;
  /** Set when the group has too few rows for metrics (< 2). */
  note?: string;
}

/** Metrics per category, sorted by descending row count then name; groups of < 2 rows get a note instead. */
export function metricsByCategory(rows: ReadonlyArray<{ category: string; target: number; prediction: number }>): CategoryMetrics[] {
  const groups = new Map<string, { t: number[]; p: number[] }>();
  for (const r of rows) {
    let g = groups.get(r.category);
    if (!g) groups.set(r.category, (g = { t: [], p: [] }));
    g.t.push(r.target);
    g.p.push(r.prediction);
  }
  const out: CategoryMetrics[] = [];
  for (const [category, g] of groups) {
    if (g.t.length < 2) out.push({ category, n: g.t.length, note: 'fewer than 2 rows' });
    else out.push({ ...regressionMetrics(g.t, g.p), category });
  }
  return out.sort((a, b) => b.n - a.n || (a.category < b.category ? -1 : a.category > b.category ? 1 : 0));
}

/**
 * The report's policy over core's regressionMetrics (RMSE, MAE, PLCC, SRCC, PLCC⁺): degenerate
 * input never yields NaN silently —
 *  - fewer than 2 rows, non-finite values or arrays of different lengths → DataError;
 *  - constant predictions or constant targets → correlations are undefined: `plcc`, `srcc` and
 *    `plccPlus` are null and `degenerate` says why (RMSE / MAE are still given).
 */
import { compareKeys, DataError, regressionMetrics, type RegressionMetrics } from '@smolrate/core';

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

/** regressionMetrics of rows a report is about: at least 2, all finite, else a DataError naming the row. */
export function reportMetrics(targets: ArrayLike<number>, predictions: ArrayLike<number>): RegressionMetrics {
  check(targets, predictions);
  return regressionMetrics(targets, predictions);
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
    else out.push({ ...reportMetrics(g.t, g.p), category });
  }
  return out.sort((a, b) => b.n - a.n || compareKeys(a.category, b.category));
}

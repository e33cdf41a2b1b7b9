/** `smolrate-eval metrics`: RMSE, MAE, PLCC, SRCC, PLCC⁺ of a CSV with target and prediction columns. */
import { readFile } from 'node:fs/promises';
import { DataError, flagBool, parseArgs, requireFlag } from '@smolrate/core';
import { parseCsvRecords } from '../csv.js';
import { metricsByCategory, reportMetrics } from '../metrics.js';

export const summary = 'RMSE / MAE / PLCC / SRCC / PLCC⁺ of a CSV (columns target,prediction[,category])';

export const usage = `usage: smolrate-eval metrics --input FILE.csv [--json]

  --input FILE.csv   columns target and prediction (numbers); an optional category column
                     adds a per-category breakdown
  --json             print JSON instead of a table

Correlations are null (with the reason) when targets or predictions are constant; fewer than
2 rows or a non-numeric value is an error.`;

function toNumber(v: string, row: number, col: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new DataError(`row ${row}: ${col} ${JSON.stringify(v)} is not a finite number`);
  return n;
}

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, ['json']);
  const file = requireFlag(args, 'input');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new DataError(`cannot read --input ${file}`, { cause: e });
  }
  const recs = parseCsvRecords(text, ['target', 'prediction'], file);
  const rows = recs.map((r, i) => ({ target: toNumber(r.target, i + 2, 'target'), prediction: toNumber(r.prediction, i + 2, 'prediction'), category: r.category ?? '' }));
  const m = reportMetrics(rows.map((r) => r.target), rows.map((r) => r.prediction));
  const perCategory = recs.length > 0 && 'category' in recs[0] ? metricsByCategory(rows) : undefined;
  if (flagBool(args, 'json')) {
    process.stdout.write(JSON.stringify({ n: m.n, rmse: m.rmse, mae: m.mae, plcc: m.plcc, srcc: m.srcc, plcc_plus: m.plccPlus, ...(m.degenerate ? { degenerate: m.degenerate } : {}), ...(perCategory ? { perCategory } : {}) }, null, 2) + '\n');
    return 0;
  }
  const f = (v: number | null) => (v === null ? 'null' : v.toFixed(6));
  const lines = [`n      ${m.n}`, `RMSE   ${f(m.rmse)}`, `MAE    ${f(m.mae)}`, `PLCC   ${f(m.plcc)}`, `SRCC   ${f(m.srcc)}`, `PLCC+  ${f(m.plccPlus)}`];
  if (m.degenerate) lines.push(`note   correlations undefined: ${m.degenerate}`);
  if (perCategory) for (const c of perCategory) lines.push(`  ${c.category}: n=${c.n} rmse=${f(c.rmse ?? null)} plcc=${f(c.plcc ?? null)} srcc=${f(c.srcc ?? null)}${c.note ? ` (${c.note})` : ''}`);
  process.stdout.write(lines.join('\n') + '\n');
  return 0;
}

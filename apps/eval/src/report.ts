/**
 * The evaluation report: `report.json`, `predictions.csv`, one PNG per figure, and a
 * self-contained `report.html` (figures inline as base64 PNG, no external resources).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { readMetrics, type MetricRecord } from '@smolrate/core';
import { formatCsv } from './csv.js';
import { ces, type Efficiency } from './efficiency.js';
import { densitySvg, errorByBand, errorByBandSvg, histogramsSvg, lineChartSvg, type BandError, type Series } from './figures.js';
import { metricsByCategory, reportMetrics, type CategoryMetrics } from './metrics.js';
import type { Throughput } from './predictor.js';

export interface ReportRow {
  parent_asin: string;
  category: string;
  target: number;
  prediction: number;
}

export interface ReportJson {
  metrics: { rmse: number; mae: number; plcc: number | null; srcc: number | null; plcc_plus: number | null; n: number; degenerate?: string };
  perCategory: CategoryMetrics[];
  errorByBand: BandError[];
  efficiency: Efficiency;
  throughput: Throughput;
  backend: string;
  checkpoint: string;
  split: string;
  data: string;
  run: string | null;
  figures: string[];
  createdAt: string;
}

export interface TrainingCurves {
  loss: Array<[number, number]>;
  lr: Array<[number, number]>;
  valPlcc: Array<[number, number]>;
}

function num(r: MetricRecord, keys: readonly string[]): number | null {
  for (const k of keys) {
    const v = r[k];
    if (typeof v === 'number' && Number.isFinite(v)) return v;
  }
  return null;
}

/** Curves from a run's metrics.jsonl; field names read defensively (step|global_step, loss|train_loss, lr|learning_rate, val_plcc|plcc). */
export function trainingCurves(records: readonly MetricRecord[]): TrainingCurves {
  const out: TrainingCurves = { loss: [], lr: [], valPlcc: [] };
  for (const r of records) {
    const step = num(r, ['step', 'global_step']);
    if (step === null) continue;
    const isVal = Object.keys(r).some((k) => k.startsWith('val_')) || r.split === 'val' || r.kind === 'val';
    const plcc = num(r, ['val_plcc', ...(isVal ? ['plcc'] : [])]);
    if (plcc !== null) out.valPlcc.push([step, plcc]);
    if (!isVal || r.loss !== undefined) {
      const loss = num(r, ['loss', 'train_loss']);
      if (loss !== null && !isVal) out.loss.push([step, loss]);
      const lr = num(r, ['lr', 'learning_rate']);
      if (lr !== null) out.lr.push([step, lr]);
    }
  }
  return out;
}

export function readRunCurves(runDir: string): TrainingCurves {
  return trainingCurves(readMetrics(path.join(runDir, 'metrics.jsonl')));
}

export async function svgToPng(svg: string): Promise<Buffer> {
  return sharp(Buffer.from(svg, 'utf8'), { density: 96 }).png().toBuffer();
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const f3 = (v: number | null | undefined) => (v === null || v === undefined ? '—' : v.toFixed(3));
const g = (v: number) => `${(v / 1e9).toFixed(2)} G`;
const m = (v: number) => `${(v / 1e6).toFixed(2)} M`;

/** What the report says about the run and the model, as report.json holds it (efficiency.ces is filled in). */
export interface BuildReportInput extends Pick<ReportJson, 'efficiency' | 'throughput' | 'backend' | 'checkpoint' | 'split' | 'data'> {
  outDir: string;
  rows: readonly ReportRow[];
  runDir?: string | null;
}

export async function writeReport(input: BuildReportInput): Promise<ReportJson> {
  const { outDir, rows } = input;
  await mkdir(outDir, { recursive: true });
  const targets = rows.map((r) => r.target);
  const preds = rows.map((r) => r.prediction);
  const met = reportMetrics(targets, preds);
  const perCategory = metricsByCategory(rows);
  const bands = errorByBand(targets, preds);

  const figures: Array<{ file: string; title: string; svg: string }> = [
    { file: 'density.png', title: 'Predicted vs true (hexbin density of rounded values, y = x dashed)', svg: densitySvg(targets, preds) },
    { file: 'histograms.png', title: 'Targets and predictions', svg: histogramsSvg(targets, preds) },
    { file: 'error-by-band.png', title: 'Error by target band', svg: errorByBandSvg(bands) },
  ];
  let curvesNote = 'no --run given: training curves omitted';
  if (input.runDir) {
    const c = readRunCurves(input.runDir);
    const add = (file: string, title: string, yLabel: string, s: Series) => {
      if (s.points.length > 0) figures.push({ file, title, svg: lineChartSvg(title, 'step', yLabel, [s]) });
    };
    add('curve-loss.png', 'Training loss (MSE)', 'loss', { label: 'train loss', points: c.loss, colour: '#1f77b4' });
    add('curve-lr.png', 'Learning rate', 'lr', { label: 'lr', points: c.lr, colour: '#2ca02c' });
    add('curve-val-plcc.png', 'Validation PLCC', 'PLCC', { label: 'val PLCC', points: c.valPlcc, colour: '#d62728' });
    const n = c.loss.length + c.lr.length + c.valPlcc.length;
    curvesNote = n > 0 ? `from ${path.join(input.runDir, 'metrics.jsonl')}` : `${path.join(input.runDir, 'metrics.jsonl')} holds no step/loss/lr/val_plcc records`;
  }
  const pngs = await Promise.all(figures.map((f) => svgToPng(f.svg)));
  await Promise.all(figures.map((f, i) => writeFile(path.join(outDir, f.file), pngs[i])));

  const report: ReportJson = {
    metrics: { rmse: met.rmse, mae: met.mae, plcc: met.plcc, srcc: met.srcc, plcc_plus: met.plccPlus, n: met.n, ...(met.degenerate ? { degenerate: met.degenerate } : {}) },
    perCategory,
    errorByBand: bands,
    efficiency: { ...input.efficiency, ces: ces(met.plcc, input.efficiency.E) },
    throughput: input.throughput,
    backend: input.backend,
    checkpoint: input.checkpoint,
    split: input.split,
    data: input.data,
    run: input.runDir ?? null,
    figures: figures.map((f) => f.file),
    createdAt: new Date().toISOString(),
  };
  await writeFile(path.join(outDir, 'report.json'), JSON.stringify(report, null, 2) + '\n');
  await writeFile(path.join(outDir, 'predictions.csv'), formatCsv(['parent_asin', 'category', 'target', 'prediction'], rows.map((r) => [r.parent_asin, r.category, r.target, r.prediction])));
  await writeFile(path.join(outDir, 'report.html'), renderHtml(report, figures.map((f, i) => ({ title: f.title, file: f.file, png: pngs[i] })), curvesNote));
  return report;
}

export function renderHtml(r: ReportJson, figures: ReadonlyArray<{ title: string; file: string; png: Buffer }>, curvesNote: string): string {
  const e = r.efficiency;
  const t = r.throughput;
  const metricRows = [
    ['items (n)', String(r.metrics.n)],
    ['RMSE', f3(r.metrics.rmse)],
    ['MAE', f3(r.metrics.mae)],
    ['PLCC', f3(r.metrics.plcc)],
    ['SRCC', f3(r.metrics.srcc)],
    ['PLCC⁺ = max(0, PLCC)', f3(r.metrics.plcc_plus)],
    ...(r.metrics.degenerate ? [['note', `correlations undefined: ${r.metrics.degenerate}`]] : []),
  ];
  const effRows = [
    ['parameters (rating model, no lm_head)', `${m(e.params.total)} (trainable ${m(e.params.trainable)})`],
    [`MACs, operational (mean ${e.macs.operational.textTokens} text tokens, L = ${e.macs.operational.seqLen}) — Linear/Conv only`, g(e.macs.operational.linearConvMacs)],
    ['MACs, operational — all (incl. attention products)', g(e.macs.operational.allMacs)],
    [`MACs, maximum (fields filled to ${e.truncation} chars: ${e.macs.maximum.textTokens} text tokens, L = ${e.macs.maximum.seqLen}) — Linear/Conv only`, g(e.macs.maximum.linearConvMacs)],
    ['MACs, maximum — all (incl. attention products)', g(e.macs.maximum.allMacs)],
    ['image size', `${e.imageSize}²`],
    ['C = √(P/1e9)·√(F/20e9) (F = operational Linear/Conv MACs)', e.C.toFixed(4)],
    ['E(C)', e.E.toFixed(4)],
    ['CES = max(0, PLCC)·E(C)', f3(e.ces)],
  ];
  const table = (rows: string[][]) => `<table>${rows.map((x) => `<tr><th>${esc(x[0])}</th><td>${esc(x[1])}</td></tr>`).join('')}</table>`;
  const cat = `<table class="grid"><tr><th>category</th><th>n</th><th>RMSE</th><th>MAE</th><th>PLCC</th><th>SRCC</th></tr>${r.perCategory
    .map((c) => `<tr><td>${esc(c.category)}</td><td>${c.n}</td><td>${f3(c.rmse)}</td><td>${f3(c.mae)}</td><td>${f3(c.plcc)}</td><td>${f3(c.srcc)}</td></tr>`)
    .join('')}</table>`;
  const figs = figures
    .map((f) => `<figure><img alt="${esc(f.title)}" src="data:image/png;base64,${f.png.toString('base64')}"><figcaption>${esc(f.title)} (${esc(f.file)})</figcaption></figure>`)
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>smolrate evaluation — ${esc(r.split)}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:0.5rem 0 1.5rem}th,td{padding:3px 10px;text-align:left;border-bottom:1px solid #ddd}
table.grid td:not(:first-child){text-align:right;font-variant-numeric:tabular-nums}
figure{display:inline-block;margin:0.5rem}img{max-width:100%;border:1px solid #ccc}figcaption{font-size:0.85rem;color:#555}
.small{font-size:0.85rem;color:#555}
</style></head><body>
<h1>smolrate evaluation</h1>
<p class="small">checkpoint <code>${esc(r.checkpoint)}</code> · data <code>${esc(r.data)}</code> · split <b>${esc(r.split)}</b> · backend ${esc(r.backend)} · ${esc(r.createdAt)}</p>
<h2>Metrics</h2>${table(metricRows)}
<h2>Efficiency</h2>${table(effRows)}
<p class="small">${esc(e.convention)}. MACs are multiply-accumulates per forward pass at batch 1; “FLOPs” in CES are these MACs (not 2×).</p>
<h2>Throughput</h2>${table([
    ['images/s (model: pixels → rating, batched)', t.imagesPerSecond.toFixed(2)],
    ['images/s end to end (incl. reading + JPEG decode)', t.endToEndImagesPerSecond === undefined ? '—' : t.endToEndImagesPerSecond.toFixed(2)],
    ['batch size', String(t.batchSize)],
    ['backend', t.backend],
  ])}
<h2>Figures</h2>
${figs}
<p class="small">Training curves: ${esc(curvesNote)}.</p>
<h2>Per category</h2>${cat}
</body></html>
`;
}

/**
 * `smolrate-eval report`: predictions of a checkpoint on a split of a shard set, metrics,
 * per-category metrics, efficiency (params, MACs in both conventions, C, E, CES), throughput,
 * figures, and report.html / report.json / predictions.csv.
 */
import path from 'node:path';
import { createProgress, decodeImage, flagNumber, flagString, parseArgs, requireFlag, UsageError } from '@smolrate/core';
import { efficiency, maximumTextTokens } from '../efficiency.js';
import { predictBatch, type PredictInput } from '../predictor.js';
import { writeReport, type ReportRow } from '../report.js';
import { openRuntime } from '../runtime.js';
import { openSplit, parseSplit, promptOfRow } from '../shard-items.js';
import { textTokenCount } from '@smolrate/model';

export const summary = 'metrics, CES, throughput and figures of a checkpoint on a split → report.html, report.json, PNGs';

export const usage = `usage: smolrate-eval report --checkpoint DIR --data MANIFEST_ROOT --out DIR
                           [--split val] [--run RUN_DIR] [--backend auto|wasm|cpu|tensorflow] [--batch 8]
                           [--limit N]

  --checkpoint DIR   a model folder (config.json, model.safetensors, tokenizer.json), a pointer
                     file (<run>/checkpoints/best|latest), or a run / checkpoints folder (best, else latest)
  --data ROOT        shard set root holding manifest.json (folder or s3:// URI)
  --split NAME       train or val (default val)
  --run RUN_DIR      adds training curves (loss, lr, val PLCC) from RUN_DIR/metrics.jsonl
  --out DIR          writes report.html (self-contained), report.json, predictions.csv, *.png
  --backend B        compute backend (default auto)
  --batch N          inference batch size (default 8)
  --limit N          evaluate only the first N rows of the split (smoke runs)

Efficiency: parameters of the rating model (no lm_head) and multiply-accumulates per forward at
batch 1, in two conventions (Linear/Conv only; all incl. attention products), at the split's
mean prompt length ("operational") and at fields filled to the truncation length ("maximum").
CES uses the operational Linear/Conv MACs as FLOPs (the paper's convention).`;

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  const checkpoint = requireFlag(args, 'checkpoint');
  const data = requireFlag(args, 'data');
  const outDir = requireFlag(args, 'out');
  const split = parseSplit(flagString(args, 'split', 'val')!);
  const runDir = flagString(args, 'run') ?? null;
  const batchSize = flagNumber(args, 'batch', 8)!;
  const limit = flagNumber(args, 'limit');
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new UsageError(`--batch must be a positive integer, got ${batchSize}`);
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) throw new UsageError(`--limit must be a positive integer, got ${limit}`);
  const source = await openSplit(data, split);
  const rt = await openRuntime(checkpoint, flagString(args, 'backend', 'auto'));
  const { predictor, log } = rt;
  const cfg = predictor.config;
  const size = cfg.regression.imageSize;

  const total = limit === undefined ? source.rows : Math.min(limit, source.rows);
  const rows: ReportRow[] = [];
  let tokenSum = 0;
  const timer = { seconds: 0 };
  const progress = createProgress({ label: `predict ${split}`, total, unit: 'items', logger: log });
  const start = performance.now();
  let pending: Array<{ row: ReportRow; input: Promise<PredictInput> }> = [];
  const flush = async () => {
    if (pending.length === 0) return;
    const inputs = await Promise.all(pending.map((p) => p.input));
    const ratings = predictBatch(predictor, inputs, timer);
    pending.forEach((p, i) => {
      p.row.prediction = ratings[i];
      rows.push(p.row);
    });
    progress.update(rows.length);
    pending = [];
  };
  outer: for await (const group of source.groups()) {
    for (const r of group) {
      if (rows.length + pending.length >= total) break outer;
      const prompt = promptOfRow(r);
      tokenSum += textTokenCount(predictor.tokenizer, cfg, prompt);
      const input = decodeImage(r.image, { size }).then((d) => ({ prompt, rgb: d.data }));
      // Awaited in flush(); until then a failure must not count as an unhandled rejection.
      input.catch(() => undefined);
      pending.push({ row: { parent_asin: r.parent_asin, category: r.category, target: r.average_rating, prediction: NaN }, input });
      if (pending.length === batchSize) await flush();
    }
  }
  await flush();
  progress.done();
  const seconds = (performance.now() - start) / 1000;

  const eff = efficiency({ cfg, operationalTextTokens: Math.round(tokenSum / rows.length), maximumTextTokens: maximumTextTokens(predictor.tokenizer, cfg) });
  const report = await writeReport({
    outDir,
    rows,
    efficiency: eff,
    throughput: { imagesPerSecond: rows.length / timer.seconds, endToEndImagesPerSecond: rows.length / seconds, batchSize, items: rows.length, modelSeconds: timer.seconds, backend: rt.backend },
    backend: rt.backend,
    checkpoint: predictor.dir,
    split,
    data,
    runDir,
  });
  const f = (v: number | null) => (v === null ? 'null' : v.toFixed(4));
  process.stdout.write(
    [
      `${split}: n=${report.metrics.n} RMSE=${f(report.metrics.rmse)} MAE=${f(report.metrics.mae)} PLCC=${f(report.metrics.plcc)} SRCC=${f(report.metrics.srcc)}`,
      `params ${(eff.params.total / 1e6).toFixed(2)} M; MACs (Linear/Conv) operational ${(eff.macs.operational.linearConvMacs / 1e9).toFixed(2)} G, maximum ${(eff.macs.maximum.linearConvMacs / 1e9).toFixed(2)} G; C=${eff.C.toFixed(4)} E=${eff.E.toFixed(4)} CES=${f(report.efficiency.ces)}`,
      `throughput ${report.throughput.imagesPerSecond.toFixed(2)} images/s (batch ${batchSize}, ${rt.backend})`,
      `wrote ${path.join(outDir, 'report.html')}`,
    ].join('\n') + '\n',
  );
  return 0;
}

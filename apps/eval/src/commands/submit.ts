/**
 * `smolrate-eval submit`: the LoViF submission CSV for a test set folder (docs/reference/data.md "LoViF 2026").
 * Input: <dir>/input.csv with parent_asin, main_category, title, features, description,
 * image_paths (';'-separated, relative to <dir>). Output: item_id,score,params,flops — params in
 * millions (the rating model's parameters, no lm_head), flops in G = Linear/Conv-only
 * multiply-accumulates per forward at batch 1, at the set's mean prompt length (the paper's
 * convention: "operational"), the same value on every row.
 */
import { writeFile, readFile } from 'node:fs/promises';
import path from 'node:path';
import { DataError, flagNumber, flagString, parseArgs, requireFlag, UsageError } from '@smolrate/core';
import { countMacs, countParameters } from '@smolrate/model';
import { parseCsvRecords, formatCsv } from '../csv.js';
import { CES_CONVENTION } from '../efficiency.js';
import { openRuntime } from '../runtime.js';
import { clampScore, scoreItems, type ExternalItem } from '../score-items.js';

export const summary = 'the LoViF submission CSV (item_id,score,params,flops) for a test set folder';

export const usage = `usage: smolrate-eval submit --checkpoint DIR --input LOVIF_DIR --out submission.csv [--backend B] [--batch 8]

  --input DIR   folder with input.csv (parent_asin, main_category, title, features, description,
                image_paths ';'-separated relative to DIR)
  --out FILE    item_id,score,params,flops: score in [1, 5]; params in millions; flops in G =
                Linear/Conv-only multiply-accumulates per forward (batch 1) at the set's mean
                prompt length — the paper's convention

An item with no readable image is scored on a mid-grey image and counted in a warning.`;

const INPUT_COLUMNS = ['parent_asin', 'main_category', 'title', 'features', 'description', 'image_paths'] as const;

async function readLovifInput(dir: string): Promise<ExternalItem[]> {
  const file = path.join(dir, 'input.csv');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new DataError(`cannot read ${file} (--input must be the LoViF set folder holding input.csv)`, { cause: e });
  }
  const recs = parseCsvRecords(text, INPUT_COLUMNS, file);
  if (recs.length === 0) throw new DataError(`${file} holds no items`);
  return recs.map((r, i) => {
    if (!r.parent_asin) throw new DataError(`${file}: row ${i + 2} has an empty parent_asin`);
    return {
      id: r.parent_asin,
      prompt: { title: r.title, description: r.description, features: r.features, category: r.main_category },
      images: r.image_paths.split(';').map((s) => s.trim()).filter(Boolean).map((p) => path.resolve(dir, p)),
    };
  });
}

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  const checkpoint = requireFlag(args, 'checkpoint');
  const input = requireFlag(args, 'input');
  const out = requireFlag(args, 'out');
  const batchSize = flagNumber(args, 'batch', 8)!;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new UsageError(`--batch must be a positive integer, got ${batchSize}`);
  const items = await readLovifInput(input);
  const rt = await openRuntime(checkpoint, flagString(args, 'backend', 'auto'));
  const { predictor, log } = rt;
  const res = await scoreItems(predictor, items, { batchSize, backend: rt.backend });
  if (res.withoutImage.length > 0) {
    log.warn(`${res.withoutImage.length} of ${items.length} items had no readable image and were scored on a mid-grey image`, { items: res.withoutImage.slice(0, 20) });
  }
  const params = countParameters(predictor.config).total;
  const macs = countMacs(predictor.config, { textTokens: res.meanTextTokens });
  const paramsM = (params / 1e6).toFixed(3);
  const flopsG = (macs.linearConv.total / 1e9).toFixed(3);
  log.info('efficiency columns', { paramsM, flopsG, meanTextTokens: res.meanTextTokens, seqLen: macs.seqLen, allMacsG: (macs.all.total / 1e9).toFixed(3), convention: CES_CONVENTION });
  await writeFile(out, formatCsv(['item_id', 'score', 'params', 'flops'], items.map((it, i) => [it.id, clampScore(res.scores[i]).toFixed(6), paramsM, flopsG])));
  process.stdout.write(`wrote ${items.length} rows to ${out}: params ${paramsM} M, flops ${flopsG} G (Linear/Conv MACs at mean ${res.meanTextTokens} text tokens); ${res.withoutImage.length} without image\n`);
  return 0;
}

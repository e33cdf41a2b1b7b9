/**
 * End to end through the CLI dispatcher (in-process): report / predict / submit / metrics on a
 * seeded tiny checkpoint, tiny shards and a LoViF-style folder, on the wasm backend; and the
 * one-line errors with their exit codes.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openStore, regressionMetrics } from '@smolrate/core';
import { writeFixtureShards } from '@smolrate/core/testing';
import sharp from 'sharp';
import { countMacs, countParameters, loadTokenizer, presetConfig, textTokenCount, TINY_TOKENIZER_URL } from '@smolrate/model';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { dispatch } from '../src/cli.js';
import { parseCsv, parseCsvRecords } from '../src/csv.js';
import type { ReportJson } from '../src/report.js';
import { promptOfRow } from '../src/shard-items.js';
import { writeFixtureRun, writeLovifFolder } from './eval-fixtures.js';

let tmp: string;
let run: string;
let data: string;
let valRows: Awaited<ReturnType<typeof writeFixtureShards>>['rows']['val'];

/** Runs the CLI and captures stdout / stderr. */
async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => ((out += String(s)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => ((err += String(s)), true));
  try {
    const code = await dispatch(argv);
    return { code, out, err };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

/** stderr lines that are not structured log lines (JSON): the CLI's own messages. */
const messages = (err: string) => err.split('\n').filter((l) => l.trim() && !l.startsWith('{'));

beforeAll(async () => {
  tmp = mkdtempSync(path.join(tmpdir(), 'smolrate-eval-'));
  run = path.join(tmp, 'run');
  data = path.join(tmp, 'shards');
  await writeFixtureRun(run);
  const built = await writeFixtureShards(openStore(data), { train: [3], val: [5, 4] });
  valRows = built.rows.val;
});

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('report', () => {
  let report: ReportJson;
  const out = () => path.join(tmp, 'report');

  beforeAll(async () => {
    const r = await cli(['report', '--checkpoint', path.join(run, 'checkpoints', 'best'), '--data', data, '--run', run, '--out', out(), '--backend', 'wasm', '--batch', '4']);
    expect(r.err).not.toMatch(/unexpected error/);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/val: n=9 RMSE=/);
    report = JSON.parse(await readFile(path.join(out(), 'report.json'), 'utf8')) as ReportJson;
  });

  it('predicts every val row and its metrics agree with predictions.csv', async () => {
    const recs = parseCsvRecords(await readFile(path.join(out(), 'predictions.csv'), 'utf8'), ['parent_asin', 'category', 'target', 'prediction']);
    expect(recs.map((r) => r.parent_asin)).toEqual(valRows.map((r) => r.parent_asin));
    expect(recs.map((r) => Number(r.target))).toEqual(valRows.map((r) => r.average_rating));
    const preds = recs.map((r) => Number(r.prediction));
    for (const p of preds) expect(p > 1 && p < 5).toBe(true);
    expect(new Set(preds).size).toBeGreaterThan(1); // images and text differ per row
    const m = regressionMetrics(recs.map((r) => Number(r.target)), preds);
    expect(report.metrics.n).toBe(9);
    expect(report.metrics.rmse).toBeCloseTo(m.rmse, 9);
    expect(report.metrics.plcc).toBeCloseTo(m.plcc!, 9);
    expect(report.perCategory.map((c) => c.n).reduce((a, b) => a + b, 0)).toBe(9);
    expect(report.split).toBe('val');
    expect(report.checkpoint).toBe(path.join(run, 'checkpoints', 'step-2'));
    expect(report.backend).toMatch(/^wasm/);
  });

  it('reports efficiency in both conventions at the split\'s mean prompt length', async () => {
    const cfg = presetConfig('tiny');
    const tok = loadTokenizer(await readFile(TINY_TOKENIZER_URL, 'utf8'));
    const mean = Math.round(valRows.reduce((s, r) => s + textTokenCount(tok, cfg, promptOfRow(r)), 0) / valRows.length);
    const e = report.efficiency;
    expect(e.params.total).toBe(countParameters(cfg).total);
    expect(e.macs.operational.textTokens).toBe(mean);
    expect(e.macs.operational.linearConvMacs).toBe(countMacs(cfg, { textTokens: mean }).linearConv.total);
    expect(e.macs.operational.allMacs).toBe(countMacs(cfg, { textTokens: mean }).all.total);
    expect(e.macs.maximum.textTokens).toBeGreaterThan(mean);
    expect(e.C).toBeCloseTo(Math.sqrt(e.params.total / 1e9) * Math.sqrt(e.macs.operational.linearConvMacs / 20e9), 12);
    expect(e.E).toBe(1.1); // the tiny model is far below C = 1: capped bonus
    expect(e.ces).toBeCloseTo(Math.max(0, report.metrics.plcc ?? 0) * 1.1, 12);
    expect(e.convention).toMatch(/Linear\/Conv-only/);
    expect(report.throughput.imagesPerSecond).toBeGreaterThan(0);
    expect(report.throughput.batchSize).toBe(4);
  });

  it('writes valid PNG figures, training curves included, inlined in a self-contained HTML', async () => {
    expect(report.figures).toEqual(['density.png', 'histograms.png', 'error-by-band.png', 'curve-loss.png', 'curve-lr.png', 'curve-val-plcc.png']);
    for (const f of report.figures) {
      const meta = await sharp(await readFile(path.join(out(), f))).metadata();
      expect(meta.format).toBe('png');
      expect(meta.width).toBeGreaterThan(300);
    }
    const html = await readFile(path.join(out(), 'report.html'), 'utf8');
    expect(html.match(/src="data:image\/png;base64,/g)?.length).toBe(6);
    expect(html).not.toMatch(/(src|href)="(?!data:)/);
    expect(html).toContain('Linear/Conv');
  });
});

describe('predict', () => {
  it('scores JSONL items from an image folder like the report does, with a grey fallback', async () => {
    const images = path.join(tmp, 'pred-images');
    await mkdir(images, { recursive: true });
    const items = valRows.slice(0, 3);
    const lines = items.map((r) => {
      return JSON.stringify({ parent_asin: r.parent_asin, title: r.title, description: r.description, features: r.features, main_category: r.main_category ?? r.category });
    });
    for (const r of items.slice(0, 2)) await writeFile(path.join(images, `${r.parent_asin}.jpg`), r.image);
    lines.push(JSON.stringify({ parent_asin: 'NOIMAGE001', title: 'no picture' }));
    await writeFile(path.join(tmp, 'items.jsonl'), lines.join('\n') + '\n');
    const outFile = path.join(tmp, 'preds.csv');
    const r = await cli(['predict', '--checkpoint', path.join(run, 'checkpoints', 'step-2'), '--items', path.join(tmp, 'items.jsonl'), '--images', images, '--out', outFile, '--backend', 'wasm', '--batch', '3']);
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/2 of 4 items had no readable image/);
    const rows = parseCsv(await readFile(outFile, 'utf8'));
    expect(rows[0]).toEqual(['parent_asin', 'score']);
    expect(rows.slice(1).map((x) => x[0])).toEqual([...items.map((x) => x.parent_asin), 'NOIMAGE001']);
    // The same image and text give the report's prediction (different batch and padding).
    const reportPreds = parseCsvRecords(await readFile(path.join(tmp, 'report', 'predictions.csv'), 'utf8'), ['parent_asin', 'prediction']);
    for (let i = 0; i < 2; i++) expect(Number(rows[i + 1][1])).toBeCloseTo(Number(reportPreds[i].prediction), 4);
    // Item 3 had no image file: the grey fallback gives a different score than its real image.
    expect(Math.abs(Number(rows[3][1]) - Number(reportPreds[2].prediction))).toBeGreaterThan(1e-6);
  });
});

describe('submit', () => {
  it('writes item_id,score,params,flops for a LoViF folder, scoring items without images', async () => {
    const lovif = path.join(tmp, 'lovif');
    const items = await writeLovifFolder(lovif, 6);
    const outFile = path.join(tmp, 'submission.csv');
    const r = await cli(['submit', '--checkpoint', run, '--input', lovif, '--out', outFile, '--backend', 'wasm', '--batch', '4']);
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/1 of 6 items had no readable image/);
    const recs = parseCsvRecords(await readFile(outFile, 'utf8'), ['item_id', 'score', 'params', 'flops']);
    expect(Object.keys(recs[0])).toEqual(['item_id', 'score', 'params', 'flops']);
    expect(recs.map((x) => x.item_id)).toEqual(items.map((x) => x.id));
    const cfg = presetConfig('tiny');
    const tok = loadTokenizer(await readFile(TINY_TOKENIZER_URL, 'utf8'));
    const input = parseCsvRecords(await readFile(path.join(lovif, 'input.csv'), 'utf8'), ['title']);
    expect(input[3].description).toBe('multi\nline description');
    const mean = Math.round(input.reduce((s, x) => s + textTokenCount(tok, cfg, { title: x.title, description: x.description, features: x.features, category: x.main_category }), 0) / input.length);
    for (const x of recs) {
      expect(Number(x.score)).toBeGreaterThanOrEqual(1);
      expect(Number(x.score)).toBeLessThanOrEqual(5);
      expect(x.params).toBe((countParameters(cfg).total / 1e6).toFixed(3));
      expect(x.flops).toBe((countMacs(cfg, { textTokens: mean }).linearConv.total / 1e9).toFixed(3));
    }
  });
});

describe('metrics', () => {
  it('reads target,prediction CSV and prints JSON', async () => {
    const f = path.join(tmp, 'm.csv');
    await writeFile(f, 'target,prediction,category\n1,1.5,a\n2,2.5,a\n3,3.0,b\n4,3.5,b\n');
    const r = await cli(['metrics', '--input', f, '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out) as { n: number; rmse: number; plcc: number; perCategory: unknown[] };
    const m = regressionMetrics([1, 2, 3, 4], [1.5, 2.5, 3, 3.5]);
    expect(j.n).toBe(4);
    expect(j.rmse).toBeCloseTo(m.rmse, 12);
    expect(j.plcc).toBeCloseTo(m.plcc!, 12);
    expect(j.perCategory).toHaveLength(2);
  });
  it('a non-numeric value is a one-line data error', async () => {
    const f = path.join(tmp, 'bad.csv');
    await writeFile(f, 'target,prediction\n1,x\n2,3\n');
    const r = await cli(['metrics', '--input', f]);
    expect(r.code).toBe(4);
    expect(messages(r.err)).toEqual(['smolrate-eval: row 2: prediction "x" is not a finite number']);
  });
});

describe('errors: one line, non-zero exit', () => {
  const reportArgs = (checkpoint: string, dataRoot: string) => ['report', '--checkpoint', checkpoint, '--data', dataRoot, '--out', path.join(tmp, 'err-report'), '--backend', 'wasm'];

  it('missing checkpoint', async () => {
    const r = await cli(reportArgs(path.join(tmp, 'nope'), data));
    expect(r.code).toBe(7);
    const m = messages(r.err);
    expect(m).toHaveLength(1);
    expect(m[0]).toMatch(/checkpoint .*nope does not exist/);
  });

  it('checkpoint that does not match its config', async () => {
    const bad = path.join(tmp, 'bad-ckpt');
    await mkdir(bad, { recursive: true });
    const src = path.join(run, 'checkpoints', 'step-2');
    await copyFile(path.join(src, 'model.safetensors'), path.join(bad, 'model.safetensors'));
    await copyFile(path.join(src, 'tokenizer.json'), path.join(bad, 'tokenizer.json'));
    const cfg = JSON.parse(await readFile(path.join(src, 'config.json'), 'utf8')) as { text_config: { intermediate_size: number } };
    cfg.text_config.intermediate_size = 96;
    await writeFile(path.join(bad, 'config.json'), JSON.stringify(cfg));
    const r = await cli(reportArgs(bad, data));
    expect(r.code).toBe(7);
    expect(r.err).toMatch(/smolrate-eval: .*(shape|mismatch)/i);
  });

  it('empty split', async () => {
    const empty = path.join(tmp, 'empty-shards');
    await writeFixtureShards(openStore(empty), { train: [2], val: [] });
    const r = await cli(reportArgs(path.join(run, 'checkpoints', 'best'), empty));
    expect(r.code).toBe(4);
    expect(messages(r.err)[0]).toMatch(/split "val" of .* is empty/);
  });

  it('a shard whose bytes no longer match the manifest hash', async () => {
    const broken = path.join(tmp, 'broken-shards');
    await writeFixtureShards(openStore(broken), { train: [1], val: [2] });
    const file = path.join(broken, 'val', 'shard-00000.parquet');
    const bytes = await readFile(file);
    bytes[100] ^= 0xff;
    await writeFile(file, bytes);
    const r = await cli(reportArgs(path.join(run, 'checkpoints', 'best'), broken));
    expect(r.code).toBe(6);
    expect(messages(r.err)).toHaveLength(1);
    expect(messages(r.err)[0]).toMatch(/shard .*shard-00000\.parquet: .*sha-?256/i);
  });

  it('unknown command', async () => {
    const r = await cli(['frobnicate']);
    expect(r.code).toBe(2);
  });
});

/** `smolrate-eval predict`: ratings for items in a JSONL or CSV file → parent_asin,score. */
import { readFile, writeFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { DataError, flagNumber, flagString, parseArgs, requireFlag, UsageError } from '@smolrate/core';
import { formatCsv, parseCsvRecords } from '../csv.js';
import { openRuntime } from '../runtime.js';
import { clampScore, scoreItems, type ExternalItem } from '../score-items.js';

export const summary = 'ratings for items in a JSONL/CSV file with images in a folder → parent_asin,score';

export const usage = `usage: smolrate-eval predict --checkpoint DIR --items FILE.jsonl|FILE.csv --images DIR --out preds.csv
                            [--backend B] [--batch 8]

  --items FILE   one item per JSON line or CSV row: parent_asin, title, description, features,
                 main_category (features/description: a string or, in JSONL, a list of strings);
                 the image: a column image / image_path / image_paths (';'-separated, first
                 readable wins), relative to --images; without one, <images>/<parent_asin>.jpg|.jpeg|.png|.webp
  --images DIR   folder of the item images
  --out FILE     CSV parent_asin,score (score in [1, 5])

An item without a readable image is scored on a mid-grey image and counted in a warning.`;

const EXTENSIONS = ['.jpg', '.jpeg', '.png', '.webp'];

type Raw = Record<string, unknown>;

function field(r: Raw, k: string): string | string[] | null {
  const v = r[k];
  if (v === undefined || v === null) return null;
  if (Array.isArray(v)) return v.map((x) => String(x ?? ''));
  return String(v);
}

async function readItemsFile(file: string): Promise<Raw[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new DataError(`cannot read --items ${file}`, { cause: e });
  }
  if (file.toLowerCase().endsWith('.csv')) return parseCsvRecords(text, ['parent_asin'], file);
  const out: Raw[] = [];
  text.split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    try {
      out.push(JSON.parse(line) as Raw);
    } catch (e) {
      throw new DataError(`${file}: line ${i + 1} is not JSON`, { cause: e });
    }
  });
  return out;
}

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  const checkpoint = requireFlag(args, 'checkpoint');
  const itemsFile = requireFlag(args, 'items');
  const imagesDir = requireFlag(args, 'images');
  const out = requireFlag(args, 'out');
  const batchSize = flagNumber(args, 'batch', 8)!;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new UsageError(`--batch must be a positive integer, got ${batchSize}`);
  if (!(await stat(imagesDir).then((s) => s.isDirectory(), () => false))) throw new DataError(`--images ${imagesDir} is not a folder`);
  const raws = await readItemsFile(itemsFile);
  if (raws.length === 0) throw new DataError(`${itemsFile} holds no items`);
  const items: ExternalItem[] = raws.map((r, i) => {
    const id = field(r, 'parent_asin');
    if (typeof id !== 'string' || id === '') throw new DataError(`${itemsFile}: item ${i + 1} has no parent_asin`);
    const img = field(r, 'image') ?? field(r, 'image_path') ?? field(r, 'image_paths');
    const names = img === null ? EXTENSIONS.map((e) => id + e) : (Array.isArray(img) ? img : img.split(';')).map((s) => s.trim()).filter(Boolean);
    return {
      id,
      prompt: { title: field(r, 'title'), description: field(r, 'description'), features: field(r, 'features'), category: field(r, 'main_category') },
      images: names.map((n) => path.resolve(imagesDir, n)),
    };
  });
  const rt = await openRuntime(checkpoint, flagString(args, 'backend', 'auto'));
  const res = await scoreItems(rt.predictor, items, { batchSize, backend: rt.backend });
  if (res.withoutImage.length > 0) {
    rt.log.warn(`${res.withoutImage.length} of ${items.length} items had no readable image and were scored on a mid-grey image`, { items: res.withoutImage.slice(0, 20) });
  }
  await writeFile(out, formatCsv(['parent_asin', 'score'], items.map((it, i) => [it.id, clampScore(res.scores[i]).toFixed(6)])));
  process.stdout.write(`wrote ${items.length} predictions to ${out} (${res.throughput.imagesPerSecond.toFixed(2)} images/s, ${rt.backend})\n`);
  return 0;
}

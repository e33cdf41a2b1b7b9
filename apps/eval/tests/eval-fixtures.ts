/**
 * Test fixtures for apps/eval: a seeded tiny checkpoint inside a run folder (with a `best`
 * pointer and a metrics.jsonl), a tiny `smolrate-shards/1` build whose rows carry real 384×384
 * JPEGs (made with sharp from generated RGB), and a LoViF-style test folder.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { openStore, Rng, SHARD_FORMAT, writeManifest, writeShard, type Manifest, type ShardInfo, type ShardRow } from '@smolrate/core';
import { presetConfig, saveModelDir, SmolVLMRegressor, TINY_TOKENIZER_URL } from '@smolrate/model';

/** A seeded 384×384 JPEG, distinct per id (a colour gradient with a block). */
export async function fixtureJpeg(id: number, size = 384): Promise<Buffer> {
  const side = 32;
  const rng = new Rng(5, 'eval-image', id);
  const [r0, g0, b0] = [rng.int(256), rng.int(256), rng.int(256)];
  const rgb = Buffer.alloc(side * side * 3);
  for (let y = 0; y < side; y++)
    for (let x = 0; x < side; x++) {
      const i = 3 * (y * side + x);
      const block = x >= 8 && x < 20 && y >= 10 && y < 24;
      rgb[i] = block ? 255 - r0 : (r0 + 5 * x) & 255;
      rgb[i + 1] = block ? 255 - g0 : (g0 + 7 * y) & 255;
      rgb[i + 2] = (b0 + 3 * (x + y)) & 255;
    }
  return sharp(rgb, { raw: { width: side, height: side, channels: 3 } }).resize(size, size, { kernel: 'linear' }).jpeg({ quality: 90 }).toBuffer();
}

const CATEGORIES = ['All_Beauty', 'Books', 'Toys_and_Games'];

export function fixtureRow(split: string, i: number, image: Buffer): ShardRow {
  return {
    parent_asin: `${split === 'train' ? 'T' : 'V'}${String(i).padStart(9, '0')}`,
    category: CATEGORIES[i % CATEGORIES.length],
    main_category: i % 2 === 0 ? 'All Beauty' : null,
    title: `Item ${i} ${'deluxe '.repeat(i % 4)}widget`,
    description: i % 5 === 0 ? '' : `A fine thing number ${i}.`,
    features: i % 2 === 0 ? [`feature ${i}`, 'sturdy'] : [],
    average_rating: Math.round((1 + ((i * 0.37) % 4)) * 10) / 10,
    rating_number: 10 + i,
    image,
    image_url: `https://example.invalid/${split}-${i}.jpg`,
  };
}

/** Writes shards + manifest under the folder `root`; returns the rows per split. */
export async function writeFixtureShards(root: string, sizes: { train: number[]; val: number[] }): Promise<{ rows: Record<'train' | 'val', ShardRow[]>; manifest: Manifest }> {
  const store = openStore(root);
  const rows = { train: [] as ShardRow[], val: [] as ShardRow[] };
  const infos = { train: [] as ShardInfo[], val: [] as ShardInfo[] };
  const perCategory: Record<string, { read: number; kept: number; rejected: number }> = {};
  for (const split of ['train', 'val'] as const) {
    let index = 0;
    for (let s = 0; s < sizes[split].length; s++) {
      const shardRows: ShardRow[] = [];
      for (let j = 0; j < sizes[split][s]; j++, index++) {
        const row = fixtureRow(split, index, await fixtureJpeg((split === 'val' ? 1000 : 0) + index));
        shardRows.push(row);
        const c = (perCategory[row.category] ??= { read: 0, kept: 0, rejected: 0 });
        c.read++;
        c.kept++;
      }
      rows[split].push(...shardRows);
      if (shardRows.length > 0) infos[split].push(await writeShard(store, '', `${split}/shard-${String(s).padStart(5, '0')}.parquet`, shardRows, { rowGroupSize: 3 }));
    }
  }
  const total = rows.train.length + rows.val.length;
  const manifest: Manifest = {
    format: SHARD_FORMAT,
    toolVersion: '0.0.0-test',
    seed: 1,
    config: { fixture: 'eval' },
    inputs: [{ uri: 'file:///synthetic/meta.jsonl', records: total }],
    counts: { read: total, kept: total, rejected: { byReason: {} }, perCategory },
    splits: { train: { shards: infos.train, rows: rows.train.length }, val: { shards: infos.val, rows: rows.val.length } },
  };
  await writeManifest(store, manifest);
  return { rows, manifest };
}

/**
 * `<run>/checkpoints/step-2/` (seeded tiny model), `<run>/checkpoints/best` → step-2, and a
 * `<run>/metrics.jsonl` with training and validation records. Returns the step folder.
 */
export async function writeFixtureRun(run: string, seed = 3): Promise<string> {
  const cfg = presetConfig('tiny');
  const model = SmolVLMRegressor.fromSeed(cfg, seed);
  const dir = path.join(run, 'checkpoints', 'step-2');
  try {
    await saveModelDir(dir, { model, tokenizerJson: await readFile(TINY_TOKENIZER_URL, 'utf8') });
  } finally {
    model.dispose();
  }
  await writeFile(path.join(run, 'checkpoints', 'best'), 'step-2\n');
  const lines: string[] = [];
  for (let step = 1; step <= 6; step++) {
    lines.push(JSON.stringify({ time: step, step, loss: 1.5 / step, lr: step <= 2 ? 2e-4 * step : 4e-4 * (1 - (step - 2) / 5), samples_per_s: 10 }));
    if (step % 2 === 0) lines.push(JSON.stringify({ time: step, step, val_plcc: 0.1 * step, val_rmse: 1 / step, val_srcc: 0.09 * step }));
  }
  await writeFile(path.join(run, 'metrics.jsonl'), lines.join('\n') + '\n');
  return dir;
}

/** A LoViF-style folder: input.csv + images/. Item 1 has no image at all; item 2 a broken first path. */
export async function writeLovifFolder(dir: string, n: number): Promise<Array<{ id: string }>> {
  await mkdir(path.join(dir, 'images'), { recursive: true });
  const q = (s: string) => `"${s.replace(/"/g, '""')}"`;
  const lines = ['parent_asin,main_category,title,features,description,image_paths'];
  const items: Array<{ id: string }> = [];
  for (let i = 0; i < n; i++) {
    const id = `L${String(i).padStart(9, '0')}`;
    let paths = `images/${id}.jpg`;
    if (i !== 1) await writeFile(path.join(dir, 'images', `${id}.jpg`), await fixtureJpeg(2000 + i, 500));
    if (i === 1) paths = '';
    if (i === 2) paths = `images/missing.jpg;images/${id}.jpg`;
    lines.push([id, 'Toys & Games', q(`Lovif "item" ${i}, with comma`), q(`feature a; feature ${i}`), q(i === 3 ? 'multi\nline description' : `desc ${i}`), paths].join(','));
    items.push({ id });
  }
  await writeFile(path.join(dir, 'input.csv'), lines.join('\r\n') + '\r\n');
  return items;
}

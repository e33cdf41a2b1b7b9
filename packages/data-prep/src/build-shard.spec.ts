import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { openStore, readShardRows } from '@smolrate/core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildShard, readShardResult } from './build-shard.js';
import { resolveDataPrepConfig, type DataPrepConfig } from './config.js';
import { createImageFetcher } from './image-fetch.js';
import type { BuildTask } from './plan.js';
import type { Item } from './types.js';
import { itemsJsonl } from './work-items.js';

const CDN = 'https://m.media-amazon.com/images/I/';
let dir: string;
let cfg: DataPrepConfig;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'smolrate-build-shard-spec-'));
  for (const [name, r] of [['a', 200], ['b', 40], ['c', 120], ['d', 10]] as const) {
    const png = await sharp({ create: { width: 30 + r, height: 50, channels: 3, background: { r, g: 90, b: 200 } } }).png().toBuffer();
    await writeFile(join(dir, `${name}.png`), png);
  }
  await writeFile(join(dir, 'broken.jpg'), Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]));
  cfg = resolveDataPrepConfig({
    overrides: { 'images.size': 32, 'images.retries': 0, 'images.rewrite': { [CDN]: `${pathToFileURL(dir).href}/` }, 'shards.rowGroupSize': 2 },
  });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const item = (asin: string, file: string, line: number): Item => ({
  parent_asin: asin,
  category: 'Books',
  main_category: 'Books',
  title: `title ${asin}`,
  description: 'd',
  features: ['f1', 'f2'],
  average_rating: 3.5,
  rating_number: 10 + line,
  image_url: `${CDN}${file}`,
  source: 'file:///in/meta_Books.jsonl',
  line,
});

describe('buildShard', () => {
  it('writes the planned items in chunk order, turns image failures into rejects, and is byte-identical on rerun', async () => {
    const store = openStore(join(dir, 'out'));
    const items = [item('A1', 'a.png', 1), item('B2', 'missing.jpg', 2), item('C3', 'c.png', 3), item('D4', 'broken.jpg', 4), item('E5', 'b.png', 5), item('F6', 'd.png', 6)];
    await store.put('_work/selected/Books/chunk-00000.jsonl', itemsJsonl(items));
    const task: BuildTask = { split: 'train', file: 'train/Books-00000.parquet', chunkKey: '_work/selected/Books/chunk-00000.jsonl', chunkRows: 6, exclude: ['F6'], rows: 5 };
    const done: number[] = [];
    const r1 = await buildShard({ store, task, cfg, fetcher: createImageFetcher(cfg.images), onItem: (d) => done.push(d) });
    expect(done).toEqual([1, 2, 3, 4, 5]);
    expect(r1.shard).toMatchObject({ file: 'train/Books-00000.parquet', rows: 3 });
    expect(r1.rowsByCategory).toEqual({ Books: 3 });
    expect(r1.rejects.map((r) => [r.line, r.parent_asin, r.reason])).toEqual([
      [2, 'B2', 'image_not_found'],
      [4, 'D4', 'image_corrupt'],
    ]);
    const rows = await readShardRows(store, '', r1.shard!);
    expect(rows.map((r) => r.parent_asin)).toEqual(['A1', 'C3', 'E5']);
    expect(rows[0]).toMatchObject({ category: 'Books', title: 'title A1', features: ['f1', 'f2'], image_url: `${CDN}a.png`, rating_number: 11 });
    expect((await sharp(rows[1].image).metadata())).toMatchObject({ width: 32, height: 32, format: 'jpeg' });
    expect(await readShardResult(store, task)).toEqual(r1);

    const bytes1 = await store.get(task.file);
    const r2 = await buildShard({ store, task, cfg, fetcher: createImageFetcher(cfg.images) });
    expect(r2).toEqual(r1);
    expect((await store.get(task.file)).equals(bytes1)).toBe(true);
  });

  it('publishes no shard when no item survives (and removes one left by an earlier run)', async () => {
    const store = openStore(join(dir, 'out2'));
    await store.put('_work/val/val-00000.jsonl', itemsJsonl([item('X1', 'missing.jpg', 7)]));
    await store.put('val/val-00000.parquet', 'stale');
    const task: BuildTask = { split: 'val', file: 'val/val-00000.parquet', chunkKey: '_work/val/val-00000.jsonl', chunkRows: 1, exclude: [], rows: 1 };
    const r = await buildShard({ store, task, cfg, fetcher: createImageFetcher(cfg.images) });
    expect(r.shard).toBeNull();
    expect(r.rejects).toHaveLength(1);
    expect(await store.exists('val/val-00000.parquet')).toBe(false);
  });

  it('refuses a chunk that does not match the plan', async () => {
    const store = openStore(join(dir, 'out3'));
    await store.put('_work/c.jsonl', itemsJsonl([item('A1', 'a.png', 1)]));
    const task: BuildTask = { split: 'train', file: 'train/Books-00001.parquet', chunkKey: '_work/c.jsonl', chunkRows: 2, exclude: [], rows: 2 };
    await expect(buildShard({ store, task, cfg, fetcher: createImageFetcher(cfg.images) })).rejects.toThrow(/1 items, the plan says 2/);
  });
});

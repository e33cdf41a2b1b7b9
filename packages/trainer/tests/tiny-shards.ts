/**
 * Test fixture: a tiny `smolrate-shards/1` build written with core's writeShard / writeManifest,
 * whose rows carry real 384×384 JPEGs made by core's resizeToJpeg from generated RGB pixels
 * (wrapped in a hand-built PNG: sharp stays out of the trainer package).
 */
import { crc32, deflateSync } from 'node:zlib';
import {
  Rng,
  resizeToJpeg,
  SHARD_FORMAT,
  writeManifest,
  writeShard,
  type Manifest,
  type ShardInfo,
  type ShardRow,
  type Store,
} from '@smolrate/core';

/** A minimal truecolour PNG (filter 0 on every row). */
export function encodePng(width: number, height: number, rgb: Uint8Array): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body) >>> 0, 8 + data.length);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB, deflate, filter method 0, no interlace
  const raw = Buffer.alloc(height * (1 + 3 * width));
  for (let y = 0; y < height; y++) raw.set(rgb.subarray(y * 3 * width, (y + 1) * 3 * width), y * (1 + 3 * width) + 1);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

/** Image `id` as a 384×384 JPEG: a seeded colour gradient with a block, distinct per id. */
export async function tinyJpeg(id: number): Promise<Buffer> {
  const side = 24;
  const rng = new Rng(77, 'image', id);
  const [r0, g0, b0] = [rng.int(256), rng.int(256), rng.int(256)];
  const rgb = new Uint8Array(side * side * 3);
  for (let y = 0; y < side; y++)
    for (let x = 0; x < side; x++) {
      const i = 3 * (y * side + x);
      const inBlock = x >= 6 && x < 14 && y >= 8 && y < 18;
      rgb[i] = inBlock ? 255 - r0 : (r0 + 5 * x) & 255;
      rgb[i + 1] = inBlock ? 255 - g0 : (g0 + 7 * y) & 255;
      rgb[i + 2] = (b0 + 3 * (x + y)) & 255;
    }
  return (await resizeToJpeg(encodePng(side, side, rgb), { size: 384, quality: 90 })).data;
}

const CATEGORIES = ['All_Beauty', 'Books', 'Toys_and_Games'];
const MAIN_CATEGORIES: Array<string | null> = ['All Beauty', null, 'Toys & Games', ''];

export interface TinyShardsOptions {
  /** Shard root inside the store. Default 'ds'. */
  root?: string;
  /** Rows per train shard. */
  train: number[];
  /** Rows per val shard. Default [2]. */
  val?: number[];
  /** Image id of the train row with global index i. Default i (all distinct). */
  imageOf?: (index: number) => number;
}

export interface TinyShards {
  root: string;
  manifest: Manifest;
  /** The rows written, in global-index order per split. */
  rows: { train: ShardRow[]; val: ShardRow[] };
}

/** Row `i` of a split: text that varies in length, a rating with one decimal in [1, 5]. */
export function tinyRow(split: string, i: number, image: Buffer): ShardRow {
  return {
    parent_asin: `${split === 'train' ? 'T' : 'V'}${String(i).padStart(9, '0')}`,
    category: CATEGORIES[i % CATEGORIES.length],
    main_category: MAIN_CATEGORIES[i % MAIN_CATEGORIES.length],
    title: `Item ${i} ${'deluxe '.repeat(i % 4)}widget`,
    description: i % 5 === 0 ? '' : `A fine thing number ${i}.`,
    features: i % 2 === 0 ? [`feature ${i}`, 'sturdy'] : [],
    average_rating: Math.round((1 + ((i * 0.37) % 4)) * 10) / 10,
    rating_number: 10 + i,
    image,
    image_url: `https://example.invalid/images/${split}-${i}.jpg`,
  };
}

/** Writes the build (shards, then manifest) under `root` in `store`. */
export async function writeTinyShards(store: Store, options: TinyShardsOptions): Promise<TinyShards> {
  const root = options.root ?? 'ds';
  const imageOf = options.imageOf ?? ((i: number) => i);
  const jpegs = new Map<number, Buffer>();
  const jpeg = async (id: number) => {
    let b = jpegs.get(id);
    if (b === undefined) {
      b = await tinyJpeg(id);
      jpegs.set(id, b);
    }
    return b;
  };
  const rows = { train: [] as ShardRow[], val: [] as ShardRow[] };
  const infos = { train: [] as ShardInfo[], val: [] as ShardInfo[] };
  const perCategory: Record<string, { read: number; kept: number; rejected: number }> = {};
  for (const split of ['train', 'val'] as const) {
    const sizes = split === 'train' ? options.train : (options.val ?? [2]);
    let index = 0;
    for (let s = 0; s < sizes.length; s++) {
      const shardRows: ShardRow[] = [];
      for (let j = 0; j < sizes[s]; j++, index++) {
        const image = await jpeg(split === 'train' ? imageOf(index) : 100_000 + index);
        const row = tinyRow(split, index, image);
        shardRows.push(row);
        const c = (perCategory[row.category] ??= { read: 0, kept: 0, rejected: 0 });
        c.read++;
        c.kept++;
      }
      rows[split].push(...shardRows);
      infos[split].push(await writeShard(store, root, `${split}/shard-${String(s).padStart(5, '0')}.parquet`, shardRows, { rowGroupSize: 3 }));
    }
  }
  const total = rows.train.length + rows.val.length;
  const manifest: Manifest = {
    format: SHARD_FORMAT,
    toolVersion: '0.0.0-test',
    seed: 1,
    config: { fixture: 'tiny-shards' },
    inputs: [{ uri: 'file:///synthetic/meta_tiny.jsonl', records: total }],
    counts: { read: total, kept: total, rejected: { byReason: {} }, perCategory },
    splits: {
      train: { shards: infos.train, rows: rows.train.length },
      val: { shards: infos.val, rows: rows.val.length },
    },
  };
  await writeManifest(store, manifest, { root });
  return { root, manifest, rows };
}

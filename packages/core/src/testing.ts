/**
 * Test fixtures shared by the packages' specs (`@smolrate/core/testing`; not part of the main
 * entry point): hand-built PNGs (no image library needed to make one), seeded JPEGs, and small
 * `smolrate-shards/1` builds written with the real writeShard / writeManifest.
 */
import { crc32, deflateSync } from 'node:zlib';
import { resizeToJpeg } from './image.js';
import { Rng } from './rng.js';
import { SHARD_FORMAT, type ShardRow } from './shards/schema.js';
import type { ShardInfo } from './shards/shard-info.js';
import { writeShard } from './shards/shard-writer.js';
import { writeManifest, type Manifest } from './shards/manifest.js';
import type { Store } from './storage/store.js';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** One PNG chunk: length, type, data, CRC-32 of type + data. */
function pngChunk(type: string, data: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  body.copy(out, 4);
  out.writeUInt32BE(crc32(body) >>> 0, 8 + data.length);
  return out;
}

function ihdr(width: number, height: number): Buffer {
  const h = Buffer.alloc(13);
  h.writeUInt32BE(width, 0);
  h.writeUInt32BE(height, 4);
  h.set([8, 2, 0, 0, 0], 8); // 8-bit RGB, deflate, filter method 0, no interlace
  return h;
}

/** A minimal truecolour PNG of `rgb` (row-major, 3 bytes per pixel; filter 0 on every row). */
export function encodePng(width: number, height: number, rgb: Uint8Array): Buffer {
  const raw = Buffer.alloc(height * (1 + 3 * width));
  for (let y = 0; y < height; y++) raw.set(rgb.subarray(y * 3 * width, (y + 1) * 3 * width), y * (1 + 3 * width) + 1);
  return Buffer.concat([PNG_SIGNATURE, pngChunk('IHDR', ihdr(width, height)), pngChunk('IDAT', deflateSync(raw)), pngChunk('IEND', Buffer.alloc(0))]);
}

/** A well-formed PNG whose header claims width × height while its data is a few bytes: a bomb. */
export function pngClaiming(width: number, height: number): Buffer {
  return Buffer.concat([PNG_SIGNATURE, pngChunk('IHDR', ihdr(width, height)), pngChunk('IDAT', deflateSync(Buffer.alloc(64))), pngChunk('IEND', Buffer.alloc(0))]);
}

/** Image `id` as a `size`² JPEG: a seeded colour gradient with a block, distinct per id. */
export async function fixtureJpeg(id: number, options: { size?: number; seed?: number } = {}): Promise<Buffer> {
  const side = 24;
  const rng = new Rng(options.seed ?? 77, 'image', id);
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
  return (await resizeToJpeg(encodePng(side, side, rgb), { size: options.size ?? 384, quality: 90 })).data;
}

const CATEGORIES = ['All_Beauty', 'Books', 'Toys_and_Games'];
const MAIN_CATEGORIES: Array<string | null> = ['All Beauty', null, 'Toys & Games', ''];

/** Row `i` of a split: text that varies in length, a rating with one decimal in [1, 5]. */
export function fixtureRow(split: string, i: number, image: Buffer): ShardRow {
  return {
    parent_asin: `${split === 'train' ? 'T' : 'V'}${String(i).padStart(9, '0')}`,
    category: CATEGORIES[i % CATEGORIES.length]!,
    main_category: MAIN_CATEGORIES[i % MAIN_CATEGORIES.length]!,
    title: `Item ${i} ${'deluxe '.repeat(i % 4)}widget`,
    description: i % 5 === 0 ? '' : `A fine thing number ${i}.`,
    features: i % 2 === 0 ? [`feature ${i}`, 'sturdy'] : [],
    average_rating: Math.round((1 + ((i * 0.37) % 4)) * 10) / 10,
    rating_number: 10 + i,
    image,
    image_url: `https://example.invalid/images/${split}-${i}.jpg`,
  };
}

export interface ShardSet {
  root: string;
  manifest: Manifest;
  /** The rows written, in global-index order per split. */
  rows: { train: ShardRow[]; val: ShardRow[] };
}

/**
 * Writes the given shards (each a list of rows; empty ones are skipped) and then a manifest that
 * counts them, under `root` of `store`.
 */
export async function writeShardSet(
  store: Store,
  shards: { train: ShardRow[][]; val: ShardRow[][] },
  options: { root?: string; label?: string; rowGroupSize?: number } = {},
): Promise<ShardSet> {
  const root = options.root ?? '';
  const rows = { train: shards.train.flat(), val: shards.val.flat() };
  const infos = { train: [] as ShardInfo[], val: [] as ShardInfo[] };
  const perCategory: Record<string, { read: number; kept: number; rejected: number }> = {};
  for (const split of ['train', 'val'] as const) {
    for (const [s, shardRows] of shards[split].entries()) {
      if (shardRows.length === 0) continue;
      for (const row of shardRows) {
        const c = (perCategory[row.category] ??= { read: 0, kept: 0, rejected: 0 });
        c.read++;
        c.kept++;
      }
      infos[split].push(await writeShard(store, root, `${split}/shard-${String(s).padStart(5, '0')}.parquet`, shardRows, { rowGroupSize: options.rowGroupSize ?? 3 }));
    }
  }
  const total = rows.train.length + rows.val.length;
  const manifest: Manifest = {
    format: SHARD_FORMAT,
    toolVersion: '0.0.0-test',
    seed: 1,
    config: { fixture: options.label ?? 'fixture' },
    inputs: [{ uri: 'file:///synthetic/meta_fixture.jsonl', records: total }],
    counts: { read: total, kept: total, rejected: { byReason: {} }, perCategory },
    splits: {
      train: { shards: infos.train, rows: rows.train.length },
      val: { shards: infos.val, rows: rows.val.length },
    },
  };
  await writeManifest(store, manifest, { root });
  return { root, manifest, rows };
}

export interface FixtureShardsOptions {
  /** Shard root inside the store. Default ''. */
  root?: string;
  /** Rows per train shard. */
  train: number[];
  /** Rows per val shard. Default [2]. */
  val?: number[];
  /** Image id of the train row with global index i. Default i (all distinct). */
  imageOf?: (index: number) => number;
  /** Image id of the val row with index i. Default 100,000 + i. */
  valImageOf?: (index: number) => number;
}

/** A small build of fixtureRow rows with fixtureJpeg images (one JPEG per distinct image id). */
export async function writeFixtureShards(store: Store, options: FixtureShardsOptions): Promise<ShardSet> {
  const imageOf = { train: options.imageOf ?? ((i: number) => i), val: options.valImageOf ?? ((i: number) => 100_000 + i) };
  const jpegs = new Map<number, Buffer>();
  const jpeg = async (id: number) => {
    let b = jpegs.get(id);
    if (b === undefined) jpegs.set(id, (b = await fixtureJpeg(id)));
    return b;
  };
  const shards = { train: [] as ShardRow[][], val: [] as ShardRow[][] };
  for (const split of ['train', 'val'] as const) {
    let index = 0;
    for (const size of split === 'train' ? options.train : (options.val ?? [2])) {
      const shardRows: ShardRow[] = [];
      for (let j = 0; j < size; j++, index++) shardRows.push(fixtureRow(split, index, await jpeg(imageOf[split](index))));
      shards[split].push(shardRows);
    }
  }
  return writeShardSet(store, shards, { root: options.root, label: 'fixture-shards' });
}

import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, DataError } from '../errors.js';
import { openStore } from '../storage/open-store.js';
import type { Store } from '../storage/store.js';
import type { ShardRow } from './schema.js';
import { readShardRowGroups, readShardRows } from './shard-reader.js';
import { ShardWriter, writeShard } from './shard-writer.js';

// Text that breaks naive encoders: astral emoji, ZWJ sequences and skin tones, CJK, combining
// marks (decomposed é, Å, Hangul jamo), right-to-left script, NUL, quotes, backslashes, newlines.
const TRICKY = [
  'plain ASCII',
  'emoji 😀 👍🏽 👨‍👩‍👧 🏳️‍🌈',
  '日本語のテキスト、中文字符、한국어',
  'combining: e\u0301 A\u030a \u1100\u1161\u11a8 n\u0303',
  'مرحبا بالعالم — עברית',
  'nul \u0000 inside, "quotes", back\\slash, tab\tnew\nline',
  '',
];

/** Every byte value 0..255, rotated by i, plus a few bytes more, so images differ per row. */
function imageBytes(i: number): Buffer {
  const b = Buffer.alloc(256 + i);
  for (let k = 0; k < b.length; k++) b[k] = (k + i) & 0xff;
  return b;
}

function makeRow(i: number): ShardRow {
  return {
    parent_asin: `B0${String(i).padStart(8, '0')}`,
    category: ['All_Beauty', 'Video_Games', 'Books'][i % 3],
    main_category: i % 4 === 0 ? null : ['All Beauty', 'AMAZON FASHION', 'Prime Video'][i % 3],
    title: `Item ${i}: ${TRICKY[i % TRICKY.length]}`,
    description: TRICKY[(i + 3) % TRICKY.length],
    features: i % 5 === 0 ? [] : [TRICKY[(i + 1) % TRICKY.length], '', `feature ${i}`],
    average_rating: 1 + ((i * 37) % 41) / 10,
    rating_number: i === 7 ? Number.MAX_SAFE_INTEGER : i * 1013,
    image: imageBytes(i),
    image_url: `https://m.media-amazon.com/images/I/71${i}+abc._SL1500_.jpg`,
  };
}

const ROWS = Array.from({ length: 10 }, (_, i) => makeRow(i));

let dir: string;
let store: Store;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'smolrate-shard-writer-'));
  store = openStore(join(dir, 'store'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('writeShard / readShardRows', () => {
  it('round-trips rows exactly: non-ASCII text, every byte value, null and empty fields, big INT64', async () => {
    const info = await writeShard(store, 'build-1', 'train/shard-00000.parquet', ROWS, { rowGroupSize: 4 });
    expect(info.file).toBe('train/shard-00000.parquet');
    expect(info.rows).toBe(10);

    const bytes = await readFile(fileURLToPath(store.uriOf('build-1/train/shard-00000.parquet')));
    expect(info.bytes).toBe(bytes.length);
    expect(info.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect(bytes.subarray(0, 4).toString()).toBe('PAR1');
    expect(bytes.subarray(-4).toString()).toBe('PAR1');

    const back = await readShardRows(store, 'build-1', info);
    expect(back).toEqual(ROWS);
    // toEqual on strings is exact (code units); check the images byte for byte as well.
    back.forEach((r, i) => {
      expect(Buffer.isBuffer(r.image)).toBe(true);
      expect(r.image.equals(ROWS[i].image)).toBe(true);
      expect(typeof r.rating_number).toBe('number');
    });
    expect(back[0].main_category).toBeNull();
    expect(back[0].features).toEqual([]);
    expect(new Set(back[1].image).size).toBe(256);
  });

  it('honours the row-group size: the reader yields one row group at a time', async () => {
    const info = await writeShard(store, '', 'a.parquet', ROWS, { rowGroupSize: 4 });
    const sizes: number[] = [];
    for await (const group of readShardRowGroups(store, '', info)) sizes.push(group.length);
    expect(sizes).toEqual([4, 4, 2]);

    const one = await writeShard(store, '', 'b.parquet', ROWS);
    const single: number[] = [];
    for await (const group of readShardRowGroups(store, '', one)) single.push(group.length);
    expect(single).toEqual([10]);
    expect(one.sha256).not.toBe(info.sha256);
  });

  it('is byte-deterministic: the same rows in the same order give identical bytes', async () => {
    const other = openStore(join(dir, 'other-store'));
    const a = await writeShard(store, 'x', 's.parquet', ROWS, { rowGroupSize: 3 });
    // A different store, key, temp dir and a fresh copy of the rows, a moment later.
    const copy = ROWS.map((r) => ({ ...r, features: [...r.features], image: Buffer.from(r.image) }));
    await new Promise((resolve) => setTimeout(resolve, 20));
    const b = await writeShard(other, 'y/z', 't.parquet', copy, { rowGroupSize: 3, tmpDir: dir });
    expect(b.sha256).toBe(a.sha256);
    expect(b.bytes).toBe(a.bytes);
    const bytesA = await readFile(fileURLToPath(store.uriOf('x/s.parquet')));
    const bytesB = await readFile(fileURLToPath(other.uriOf('y/z/t.parquet')));
    expect(bytesA.equals(bytesB)).toBe(true);

    // Order matters: reversing the rows changes the bytes.
    const c = await writeShard(store, 'x', 'r.parquet', [...ROWS].reverse(), { rowGroupSize: 3 });
    expect(c.sha256).not.toBe(a.sha256);
  });

  it('matches the golden hash (pins the on-disk bytes across machines and library updates)', async () => {
    // If this changes, shards built before and after are no longer byte-identical: treat it as a
    // format change (check the parquetjs-lite version and the schema), not as a test to update.
    const info = await writeShard(store, '', 'golden.parquet', ROWS.slice(0, 6), { rowGroupSize: 4 });
    expect({ bytes: info.bytes, sha256: info.sha256 }).toEqual({ bytes: GOLDEN_BYTES, sha256: GOLDEN_SHA256 });
  });

  it('accepts an async iterable of rows', async () => {
    async function* gen(): AsyncGenerator<ShardRow> {
      for (const r of ROWS) yield r;
    }
    const a = await writeShard(store, '', 'async.parquet', gen());
    const b = await writeShard(store, '', 'sync.parquet', ROWS);
    expect(a.sha256).toBe(b.sha256);
  });
});

describe('ShardWriter', () => {
  it('rejects an invalid row with a DataError naming the field, and publishes nothing', async () => {
    const tmp = await mkdtemp(join(dir, 'tmp-'));
    const bad = { ...makeRow(3), average_rating: 7 };
    await expect(writeShard(store, '', 'bad.parquet', [makeRow(1), bad], { tmpDir: tmp })).rejects.toThrow(
      /shard row "B000000003" is invalid: average_rating: 7 is outside \[1, 5\]/,
    );
    expect(await store.exists('bad.parquet')).toBe(false);
    expect(await readdir(tmp)).toEqual([]); // temp file removed
  });

  it('refuses an empty shard and an invalid row-group size', async () => {
    await expect(writeShard(store, '', 'empty.parquet', [])).rejects.toThrow(DataError);
    expect(await store.exists('empty.parquet')).toBe(false);
    await expect(ShardWriter.open(store, '', 'x.parquet', { rowGroupSize: 0 })).rejects.toThrow(ConfigError);
    await expect(ShardWriter.open(store, '', '../x.parquet')).rejects.toThrow(/must not contain "\." or "\.\." segments/);
    await expect(ShardWriter.open(store, '/abs', 'x.parquet')).rejects.toThrow(/shard root "\/abs" must be relative/);
  });

  it('streams rows, removes its temp file on finish and on abort, and cannot be reused', async () => {
    const tmp = await mkdtemp(join(dir, 'tmp-'));
    const w = await ShardWriter.open(store, 'r', 's.parquet', { tmpDir: tmp, rowGroupSize: 2 });
    expect(await readdir(tmp)).toHaveLength(1);
    for (const r of ROWS.slice(0, 5)) await w.append(r);
    expect(w.rows).toBe(5);
    expect(await store.exists('r/s.parquet')).toBe(false); // nothing visible before finish
    const info = await w.finish();
    expect(info.rows).toBe(5);
    expect(await readdir(tmp)).toEqual([]);
    await expect(w.append(ROWS[0])).rejects.toThrow(/already done/);
    expect(await readShardRows(store, 'r', info)).toEqual(ROWS.slice(0, 5));

    const aborted = await ShardWriter.open(store, 'r', 'gone.parquet', { tmpDir: tmp });
    await aborted.append(ROWS[0]);
    await aborted.abort();
    await aborted.abort();
    expect(await readdir(tmp)).toEqual([]);
    expect(await store.exists('r/gone.parquet')).toBe(false);
  });
});

const GOLDEN_BYTES = 6097;
const GOLDEN_SHA256 = '4999afec35937d4525b0700ac409dfdb86d4ab15cc53e6d747422531b4b882c3';

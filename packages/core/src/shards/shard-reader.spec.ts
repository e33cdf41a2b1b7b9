import { createHash } from 'node:crypto';
import { mkdtemp, open, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import parquet from 'parquetjs-lite';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DataError, NotFoundError, ShardIntegrityError } from '../errors.js';
import { openStore } from '../storage/open-store.js';
import type { Store } from '../storage/store.js';
import { readManifest, writeManifest, type Manifest } from './manifest.js';
import { SHARD_FORMAT, shardSchemaDefinition, type ShardRow } from './schema.js';
import type { ShardInfo } from './shard-info.js';
import { readShard, readShardRows, verifyShard } from './shard-reader.js';
import { SHARD_FORMAT_METADATA_KEY, writeShard } from './shard-writer.js';

function makeRow(i: number): ShardRow {
  const image = Buffer.alloc(4096 + i);
  for (let k = 0; k < image.length; k++) image[k] = (k * 7 + i) & 0xff;
  return {
    parent_asin: `B0${String(i).padStart(8, '0')}`,
    category: i % 2 ? 'All_Beauty' : 'Books',
    main_category: i % 3 ? 'All Beauty' : null,
    title: `Item ${i} 😀 日本語 e\u0301`,
    description: `description ${i}`,
    features: i % 2 ? ['a', 'b'] : [],
    average_rating: 1 + (i % 40) / 10,
    rating_number: 10 + i,
    image,
    image_url: `https://example.invalid/${i}.jpg`,
  };
}

const ROWS = Array.from({ length: 12 }, (_, i) => makeRow(i));

let dir: string;
let store: Store;
let info: ShardInfo;
let path: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'smolrate-shard-reader-'));
  store = openStore(join(dir, 'store'));
  info = await writeShard(store, 'ds', 'train/shard-00000.parquet', ROWS, { rowGroupSize: 5 });
  path = fileURLToPath(store.uriOf('ds/train/shard-00000.parquet'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Collects what a reader yields before it fails, and the error it fails with. */
async function drain(iter: AsyncIterable<ShardRow>): Promise<{ rows: ShardRow[]; error: unknown }> {
  const rows: ShardRow[] = [];
  try {
    for await (const r of iter) rows.push(r);
  } catch (error) {
    return { rows, error };
  }
  return { rows, error: undefined };
}

async function flipByte(file: string, offset: number): Promise<void> {
  const fh = await open(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, offset);
    b[0] ^= 0x01;
    await fh.write(b, 0, 1, offset);
  } finally {
    await fh.close();
  }
}

describe('shard integrity', () => {
  it('reads a verified shard', async () => {
    await verifyShard(store, 'ds', info);
    expect(await readShardRows(store, 'ds', info)).toEqual(ROWS);
  });

  it('detects one flipped byte before decoding, naming the shard and both hashes', async () => {
    await flipByte(path, Math.floor(info.bytes / 2));
    const actual = sha256(await readFile(path));
    const { rows, error } = await drain(readShard(store, 'ds', info));
    expect(rows).toEqual([]); // nothing yielded
    expect(error).toBeInstanceOf(ShardIntegrityError);
    const e = error as ShardIntegrityError;
    expect(e.shard).toBe(store.uriOf('ds/train/shard-00000.parquet'));
    expect(e.message).toContain(e.shard);
    expect(e.message).toContain(`expected ${info.sha256} (manifest), actual ${actual}`);
    await expect(verifyShard(store, 'ds', info)).rejects.toThrow(ShardIntegrityError);
  });

  it('detects a flipped byte in the Parquet magic or footer as well', async () => {
    for (const offset of [0, info.bytes - 1, info.bytes - 9]) {
      const original = await readFile(path);
      await flipByte(path, offset);
      await expect(readShardRows(store, 'ds', info)).rejects.toThrow(/SHA-256 mismatch/);
      await writeFile(path, original);
    }
    expect(await readShardRows(store, 'ds', info)).toEqual(ROWS);
  });

  it('detects a truncated shard by its size', async () => {
    await truncate(path, info.bytes - 100);
    const { rows, error } = await drain(readShard(store, 'ds', info));
    expect(rows).toEqual([]);
    expect(error).toBeInstanceOf(ShardIntegrityError);
    expect((error as Error).message).toBe(
      `shard ${store.uriOf('ds/train/shard-00000.parquet')}: size mismatch (truncated): expected ${info.bytes} bytes (manifest), actual ${info.bytes - 100} bytes`,
    );
  });

  it('fails clearly when the manifest hash differs from the file', async () => {
    const manifest: Manifest = {
      format: SHARD_FORMAT,
      toolVersion: '0.1.0',
      seed: 1,
      config: {},
      inputs: [{ uri: 'file:///in/All_Beauty.jsonl', records: 12 }],
      counts: { read: 12, kept: 12, rejected: { byReason: {} }, perCategory: { All_Beauty: { read: 12, kept: 12, rejected: 0 } } },
      // A well-formed hash that is not this file's: the last hex digit changed.
      splits: {
        train: { shards: [{ ...info, sha256: info.sha256.slice(0, -1) + (info.sha256.endsWith('0') ? '1' : '0') }], rows: 12 },
        val: { shards: [], rows: 0 },
      },
    };
    await writeManifest(store, manifest, { root: 'ds' }); // sizes match, so it is written
    const m = await readManifest(store, { root: 'ds' });
    const entry = m.splits.train.shards[0];
    await expect(readShardRows(store, 'ds', entry)).rejects.toThrow(
      `shard ${store.uriOf('ds/train/shard-00000.parquet')}: SHA-256 mismatch: expected ${entry.sha256} (manifest), actual ${info.sha256}`,
    );
  });

  it('turns a decoding failure of hash-consistent bytes into a ShardIntegrityError', async () => {
    // The manifest describes exactly these (truncated) bytes, so only the decoder can notice.
    await truncate(path, info.bytes - 100);
    const bytes = await readFile(path);
    const entry = { ...info, bytes: bytes.length, sha256: sha256(bytes) };
    const { rows, error } = await drain(readShard(store, 'ds', entry));
    expect(rows).toEqual([]);
    expect(error).toBeInstanceOf(ShardIntegrityError);
    expect((error as Error).message).toMatch(/: not a readable Parquet file: not a valid parquet file$/);
  });

  it('rejects a footer whose row count disagrees with the manifest', async () => {
    await expect(readShardRows(store, 'ds', { ...info, rows: 11 })).rejects.toThrow(
      /row count mismatch: expected 11 rows \(manifest\), actual 12 in the footer, 12 in its row groups/,
    );
  });

  it('rejects a valid Parquet file that is not a smolrate shard, or has another schema', async () => {
    const write = async (name: string, schema: Record<string, { type: string; optional?: boolean; repeated?: boolean }>, format: string | undefined, row: Record<string, unknown>): Promise<ShardInfo> => {
      const file = join(dir, name);
      const w = await (parquet.ParquetWriter as unknown as {
        openFile(s: unknown, p: string): Promise<{ appendRow(r: unknown): Promise<void>; setMetadata(k: string, v: string): void; close(): Promise<void> }>;
      }).openFile(new parquet.ParquetSchema(schema), file);
      if (format !== undefined) w.setMetadata(SHARD_FORMAT_METADATA_KEY, format);
      await w.appendRow(row);
      await w.close();
      await store.putFile(`ds/${name}`, file);
      const bytes = await readFile(file);
      return { file: name, rows: 1, bytes: bytes.length, sha256: sha256(bytes) };
    };
    const plain = await write('plain.parquet', { a: { type: 'UTF8' } }, undefined, { a: 'x' });
    await expect(readShardRows(store, 'ds', plain)).rejects.toThrow(/format mismatch: expected smolrate-shards\/1, actual \(none\)/);

    // Our format tag, but rating_number stored as DOUBLE.
    const def: Record<string, { type: string; optional?: boolean; repeated?: boolean }> = { ...shardSchemaDefinition() };
    def.rating_number = { type: 'DOUBLE' };
    const { image, ...rest } = makeRow(1);
    const odd = await write('odd.parquet', def, SHARD_FORMAT, { ...rest, image });
    await expect(readShardRows(store, 'ds', odd)).rejects.toThrow(/schema mismatch: expected \[.*rating_number:INT64\/\/REQUIRED.*\], actual \[.*rating_number:DOUBLE\/\/REQUIRED/);
  });

  it('reports a missing shard as NotFoundError and a malformed entry as DataError', async () => {
    await expect(readShardRows(store, 'ds', { ...info, file: 'train/nope.parquet' })).rejects.toThrow(NotFoundError);
    await expect(readShardRows(store, 'ds', { ...info, sha256: 'ABC' })).rejects.toThrow(DataError);
  });

  it('removes its downloaded copy when the consumer stops early', async () => {
    // A store whose URI is not file:// is read through getFile into tmpDir.
    const tmp = await mkdtemp(join(dir, 'dl-'));
    const remoteLike: Store = Object.create(store, { uri: { value: 'memory://test' } }) as Store;
    let seen = 0;
    for await (const row of readShard(remoteLike, 'ds', info, { tmpDir: tmp })) {
      expect(row).toEqual(ROWS[seen]);
      seen++;
      expect(await readdir(tmp)).toHaveLength(1);
      if (seen === 3) break;
    }
    expect(seen).toBe(3);
    expect(await readdir(tmp)).toEqual([]);
    expect(await readShardRows(remoteLike, 'ds', info, { tmpDir: tmp })).toEqual(ROWS);
    expect(await readdir(tmp)).toEqual([]);
  });
});

// One build through the real S3-compatible server started by the vitest global setup
// (AWS_ENDPOINT_URL_S3, SMOLRATE_TEST_S3_BUCKET), under a random prefix that is deleted afterwards.
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ShardIntegrityError } from '../errors.js';
import { openStore } from '../storage/open-store.js';
import type { Store } from '../storage/store.js';
import { readManifest, writeManifest, type Manifest } from './manifest.js';
import { readRejects, writeRejects } from './rejects.js';
import { SHARD_FORMAT, type ShardRow } from './schema.js';
import { readShardRows, verifyShard } from './shard-reader.js';
import { writeShard } from './shard-writer.js';

function makeRow(i: number): ShardRow {
  const image = Buffer.alloc(512);
  for (let k = 0; k < image.length; k++) image[k] = (k + 3 * i) & 0xff;
  return {
    parent_asin: `S3ITEM${i}`,
    category: 'All_Beauty',
    main_category: i % 2 ? null : 'All Beauty',
    title: `Title ${i} — 😀 中文 a\u0308`,
    description: 'desc',
    features: [`f${i}`],
    average_rating: 1 + (i % 5),
    rating_number: 100 + i,
    image,
    image_url: `https://example.invalid/${i}.jpg`,
  };
}

let store: Store;
let prefix: string;
let tmp: string;

beforeAll(async () => {
  const bucket = process.env.SMOLRATE_TEST_S3_BUCKET;
  if (!bucket || !process.env.AWS_ENDPOINT_URL_S3) {
    throw new Error('the vitest global setup did not provide an S3 server (SMOLRATE_TEST_S3_BUCKET, AWS_ENDPOINT_URL_S3)');
  }
  prefix = `shards-test-${randomBytes(6).toString('hex')}`;
  store = openStore(`s3://${bucket}/${prefix}`);
  tmp = await mkdtemp(join(tmpdir(), 'smolrate-shards-s3-'));
});

afterAll(async () => {
  if (store) for (const { key } of await store.list()) await store.delete(key);
  if (store) expect(await store.list()).toEqual([]);
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('shards on S3', () => {
  it('writes shards, rejects and manifest, reads them back verified, and detects a replaced shard', async () => {
    const train = Array.from({ length: 7 }, (_, i) => makeRow(i));
    const val = [makeRow(100)];
    const t0 = await writeShard(store, 'ds', 'train/shard-00000.parquet', train, { rowGroupSize: 3, tmpDir: tmp });
    const v0 = await writeShard(store, 'ds', 'val/shard-00000.parquet', val, { tmpDir: tmp });
    await writeRejects(store, [{ source: 'file:///in/All_Beauty.jsonl', line: 3, reason: 'no-image', parent_asin: 'X' }], { root: 'ds' });
    const manifest: Manifest = {
      format: SHARD_FORMAT,
      toolVersion: '0.1.0',
      seed: 7,
      config: { s3: true },
      inputs: [{ uri: 'file:///in/All_Beauty.jsonl', records: 9 }],
      counts: { read: 9, kept: 8, rejected: { byReason: { 'no-image': 1 } }, perCategory: { All_Beauty: { read: 9, kept: 8, rejected: 1 } } },
      splits: { train: { shards: [t0], rows: 7 }, val: { shards: [v0], rows: 1 } },
    };
    await writeManifest(store, manifest, { root: 'ds' });

    expect((await store.list('ds/')).map((e) => e.key)).toEqual([
      'ds/manifest.json',
      'ds/rejects.jsonl',
      'ds/train/shard-00000.parquet',
      'ds/val/shard-00000.parquet',
    ]);
    const m = await readManifest(store, { root: 'ds' });
    expect(m).toEqual(manifest);
    expect(await readShardRows(store, 'ds', m.splits.train.shards[0], { tmpDir: tmp })).toEqual(train);
    expect(await readShardRows(store, 'ds', m.splits.val.shards[0], { tmpDir: tmp })).toEqual(val);
    expect(await readRejects(store, { root: 'ds' })).toHaveLength(1);
    expect(await readdir(tmp)).toEqual([]); // downloads cleaned up

    // Same size, different bytes (one byte flipped): caught by the hash after download.
    const bytes = await store.get('ds/train/shard-00000.parquet');
    bytes[100] ^= 0xff;
    await store.put('ds/train/shard-00000.parquet', bytes);
    const err = await verifyShard(store, 'ds', t0, { tmpDir: tmp }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ShardIntegrityError);
    expect((err as ShardIntegrityError).shard).toBe(`s3://${process.env.SMOLRATE_TEST_S3_BUCKET}/${prefix}/ds/train/shard-00000.parquet`);
    expect((err as Error).message).toContain(`SHA-256 mismatch: expected ${t0.sha256} (manifest), actual `);
    expect(await readdir(tmp)).toEqual([]);
  });
});

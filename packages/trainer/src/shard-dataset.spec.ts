import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore, readManifest, ShardIntegrityError, type ShardRow, type Store } from '@smolrate/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFixtureShards, type ShardSet } from '@smolrate/core/testing';
import { imageSha256, ShardDataset } from './shard-dataset.js';

let dir: string;
let store: Store;
let build: ShardSet;

const same = (a: ShardRow, b: ShardRow) => {
  expect(a.parent_asin).toBe(b.parent_asin);
  expect(a.title).toBe(b.title);
  expect(a.main_category).toBe(b.main_category);
  expect(a.features).toEqual(b.features);
  expect(a.average_rating).toBe(b.average_rating);
  expect(Buffer.compare(a.image, b.image)).toBe(0);
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'smolrate-dataset-'));
  store = openStore(join(dir, 'store'));
  build = await writeFixtureShards(store, { root: 'ds', train: [5, 4, 3], val: [2, 1] });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('ShardDataset', () => {
  it('addresses rows by global index in manifest order, across shards, in the order asked', async () => {
    const manifest = await readManifest(store, { root: build.root });
    const ds = await ShardDataset.open({ store, manifest, split: 'train', root: build.root });
    expect(ds.numSamples).toBe(12);
    expect(ds.locate(0)).toEqual({ shard: 0, row: 0 });
    expect(ds.locate(4)).toEqual({ shard: 0, row: 4 });
    expect(ds.locate(5)).toEqual({ shard: 1, row: 0 });
    expect(ds.locate(11)).toEqual({ shard: 2, row: 2 });
    expect(() => ds.locate(12)).toThrow(RangeError);

    const indices = Uint32Array.from([11, 0, 6, 6, 3, 9]);
    const rows = await ds.rows(indices);
    expect(rows).toHaveLength(6);
    rows.forEach((r, k) => same(r, build.rows.train[indices[k]]));

    const meta = await ds.meta([7, 2]);
    expect(meta.map((m) => m.index)).toEqual([7, 2]);
    expect(meta[0].parent_asin).toBe(build.rows.train[7].parent_asin);
    expect(meta[1].imageSha256).toBe(createHash('sha256').update(build.rows.train[2].image).digest('hex'));
    expect(meta[1].imageSha256).toBe(imageSha256(build.rows.train[2].image));
    expect('image' in meta[0]).toBe(false);

    const val = await ShardDataset.open({ store, manifest, split: 'val', root: build.root });
    expect(val.numSamples).toBe(3);
    (await val.rows([2, 0])).forEach((r, k) => same(r, build.rows.val[[2, 0][k]]));
  });

  it('keeps decoded shards, metadata included, in an LRU bounded by bytes', async () => {
    const manifest = build.manifest;
    const roomy = await ShardDataset.open({ store, manifest, split: 'train', root: build.root });
    await roomy.rows([0, 5]);
    await roomy.rows([1, 6, 2]);
    expect(roomy.stats()).toMatchObject({ loads: 2, hits: 2, evictions: 0 });

    const tight = await ShardDataset.open({ store, manifest, split: 'train', root: build.root, maxCachedBytes: 1 });
    await tight.rows([0]);
    await tight.rows([5]); // evicts shard 0
    await tight.rows([1]); // loads shard 0 again
    expect(tight.stats()).toMatchObject({ loads: 3, hits: 0, evictions: 2 });
    // Metadata goes with its shard: shard 0 is still held, shard 1 was evicted and loads again.
    await tight.meta([2, 7]);
    expect(tight.stats()).toMatchObject({ loads: 4, hits: 1, evictions: 3 });

    // Concurrent requests for one shard share a single load.
    const fresh = await ShardDataset.open({ store, manifest, split: 'train', root: build.root });
    await Promise.all([fresh.rows([0]), fresh.rows([1]), fresh.shard(0)]);
    expect(fresh.stats().loads).toBe(1);
  });

  it('raises ShardIntegrityError naming a shard whose bytes do not match the manifest', async () => {
    const copy = openStore(join(dir, 'corrupt'));
    const b = await writeFixtureShards(copy, { root: 'ds', train: [2, 2], val: [1] });
    const file = b.manifest.splits.train.shards[1].file;
    const path = join(dir, 'corrupt', 'ds', file);
    const bytes = await readFile(path);
    bytes[bytes.length >> 1] ^= 0xff; // same size, different hash
    await writeFile(path, bytes);
    const ds = await ShardDataset.open({ store: copy, manifest: b.manifest, split: 'train', root: 'ds' });
    expect((await ds.rows([0, 1])).length).toBe(2); // the intact shard still reads
    const err = await ds.rows([3]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ShardIntegrityError);
    expect((err as ShardIntegrityError).shard).toBe(copy.uriOf(`ds/${file}`));
    expect((err as Error).message).toMatch(/SHA-256 mismatch/);
    // And again: a failed load is not remembered as a success.
    await expect(ds.rows([2])).rejects.toBeInstanceOf(ShardIntegrityError);
  });

  it('reads shards from S3 through a verified local copy in cacheDir', async () => {
    const bucket = process.env.SMOLRATE_TEST_S3_BUCKET;
    if (!bucket || !process.env.AWS_ENDPOINT_URL_S3) throw new Error('the vitest global setup did not provide an S3 server');
    const s3 = openStore(`s3://${bucket}/trainer-dataset-${randomBytes(6).toString('hex')}`);
    const cacheDir = join(dir, 'shard-cache');
    try {
      const b = await writeFixtureShards(s3, { root: 'ds', train: [3, 2], val: [1] });
      const manifest = await readManifest(s3, { root: 'ds' });
      const ds = await ShardDataset.open({ store: s3, manifest, split: 'train', root: 'ds', cacheDir });
      (await ds.rows([4, 0, 2])).forEach((r, k) => same(r, b.rows.train[[4, 0, 2][k]]));
      const cached = (await readdir(cacheDir)).sort();
      expect(cached).toEqual(manifest.splits.train.shards.map((s) => `${s.sha256}.parquet`).sort());

      // A damaged local copy is dropped and fetched again.
      const local1 = join(cacheDir, `${manifest.splits.train.shards[1].sha256}.parquet`);
      const original = await readFile(local1);
      const damaged = Buffer.from(original);
      damaged[damaged.length >> 1] ^= 0xff;
      await writeFile(local1, damaged);
      const repaired = await ShardDataset.open({ store: s3, manifest, split: 'train', root: 'ds', cacheDir });
      same((await repaired.rows([3]))[0], b.rows.train[3]);
      expect(Buffer.compare(await readFile(local1), original)).toBe(0);

      // Later opens read the local copies: the S3 objects are no longer needed.
      for (const s of manifest.splits.train.shards) await s3.delete(`ds/${s.file}`);
      const again = await ShardDataset.open({ store: s3, manifest, split: 'train', root: 'ds', cacheDir });
      (await again.rows([1, 3])).forEach((r, k) => same(r, b.rows.train[[1, 3][k]]));

      // A corrupted S3 object is refused on download and never lands in the cache.
      const file = manifest.splits.train.shards[0].file;
      const good = await readFile(join(cacheDir, `${manifest.splits.train.shards[0].sha256}.parquet`));
      const bad = Buffer.from(good);
      bad[100] ^= 0x01;
      await s3.put(`ds/${file}`, bad);
      const otherCache = join(dir, 'shard-cache-2');
      const fresh = await ShardDataset.open({ store: s3, manifest, split: 'train', root: 'ds', cacheDir: otherCache });
      const err = await fresh.rows([0]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ShardIntegrityError);
      expect((err as ShardIntegrityError).shard).toBe(s3.uriOf(`ds/${file}`));
      expect(await readdir(otherCache)).toEqual([]);
    } finally {
      for (const { key } of await s3.list()) await s3.delete(key);
    }
  });
});

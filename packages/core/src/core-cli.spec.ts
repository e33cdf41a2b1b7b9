import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { main } from './core-cli.js';
import { openStore } from './storage/open-store.js';
import { writeShard } from './shards/shard-writer.js';
import { writeManifest, type Manifest } from './shards/manifest.js';
import { SHARD_FORMAT, type ShardRow } from './shards/schema.js';

function row(i: number): ShardRow {
  return {
    parent_asin: `CLI${String(i).padStart(7, '0')}`,
    category: 'Books',
    main_category: null,
    title: `title ${i}`,
    description: '',
    features: [],
    average_rating: 1 + (i % 5),
    rating_number: 10 + i,
    image: Buffer.from([i, 255 - i, 7]),
    image_url: `file:///img/${i}.jpg`,
  };
}

async function capture(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((c) => (out.push(String(c)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((c) => (err.push(String(c)), true));
  const before = process.exitCode;
  try {
    await main(argv);
    return { code: Number(process.exitCode ?? 0), out: out.join(''), err: err.join('') };
  } finally {
    o.mockRestore();
    e.mockRestore();
    process.exitCode = before;
  }
}

describe('smolrate-core CLI', () => {
  afterEach(() => vi.restoreAllMocks());

  it('verifies a shard set and names a corrupted shard with a non-zero exit', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'core-cli-'));
    const store = openStore(dir);
    const train = await writeShard(store, '', 'train-00000.parquet', [row(0), row(1), row(2)]);
    const val = await writeShard(store, '', 'val-00000.parquet', [row(3)]);
    const manifest: Manifest = {
      format: SHARD_FORMAT,
      toolVersion: 'test',
      seed: 1,
      config: {},
      inputs: [{ uri: 'file:///meta_Books.jsonl', records: 5 }],
      counts: { read: 5, kept: 4, rejected: { byReason: { no_image: 1 } }, perCategory: { Books: { read: 5, kept: 4, rejected: 1 } } },
      splits: { train: { shards: [train], rows: 3 }, val: { shards: [val], rows: 1 } },
    };
    await writeManifest(store, manifest);

    const ok = await capture(['verify-shards', dir, '--decode']);
    expect(ok.code).toBe(0);
    expect(ok.out).toMatch(/ok: 2 shards \(1 train, 1 val\), 4 rows \(4 decoded\)/);

    const p = join(dir, 'train-00000.parquet');
    const bytes = readFileSync(p);
    bytes[bytes.length >> 1] ^= 0x01;
    writeFileSync(p, bytes);
    const bad = await capture(['verify-shards', dir]);
    expect(bad.code).toBe(6);
    expect(bad.err).toContain('train-00000.parquet');
  });

  it('copies, lists, prints and deletes objects across local and S3 stores', async () => {
    const bucket = process.env.SMOLRATE_TEST_S3_BUCKET;
    expect(bucket, 'the vitest global setup provides an S3-compatible server').toBeTruthy();
    const dir = mkdtempSync(join(tmpdir(), 'core-cli-'));
    writeFileSync(join(dir, 'a.txt'), 'hello smolrate\n');
    const prefix = `s3://${bucket}/cli-${process.pid}-${Date.now()}`;
    expect((await capture(['cp', join(dir, 'a.txt'), `${prefix}/x/a.txt`])).code).toBe(0);
    const ls = await capture(['ls', prefix]);
    expect(ls.out).toMatch(/15 {2}x\/a\.txt/);
    expect((await capture(['cat', `${prefix}/x/a.txt`])).out).toBe('hello smolrate\n');
    expect((await capture(['rm', `${prefix}/x/a.txt`])).code).toBe(0);
    const missing = await capture(['cat', `${prefix}/x/a.txt`]);
    expect(missing.code).toBe(5);
    expect(missing.err).toContain(`${prefix}/x/a.txt`);
    expect((await capture(['cp', 'only-one'])).code).toBe(2);
  });
});

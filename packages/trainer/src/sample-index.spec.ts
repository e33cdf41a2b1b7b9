import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, DataError, openStore, silentLogger, type Logger, type ShardInfo } from '@smolrate/core';
import { writeFixtureShards, type ShardSet } from '@smolrate/core/testing';
import { encodePromptRows, imageTokenCount, loadTokenizer, presetConfig, TINY_TOKENIZER_URL, type TextTokenizer } from '@smolrate/model';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promptItemOf } from './batches.js';
import {
  buildSampleIndex,
  loadOrBuildSampleIndex,
  readSampleIndex,
  SampleIndex,
  sampleIndexKey,
  sampleIndexPath,
  writeSampleIndex,
  type SampleIndexSource,
} from './sample-index.js';
import { ShardDataset, type SampleMeta } from './shard-dataset.js';

const cfg = presetConfig('tiny');
const sha = (s: string | Uint8Array) => createHash('sha256').update(s).digest('hex');

let dir: string;
let tokenizer: TextTokenizer;
let tokenizerSha256: string;
let build: ShardSet;
let dataset: ShardDataset;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'smolrate-sample-index-'));
  const json = await readFile(TINY_TOKENIZER_URL, 'utf8');
  tokenizer = loadTokenizer(json);
  tokenizerSha256 = sha(json);
  const store = openStore(join(dir, 'shards'));
  build = await writeFixtureShards(store, { root: 'ds', train: [4, 5, 3] });
  dataset = await ShardDataset.open({ store, manifest: build.manifest, split: 'train', root: build.root });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('buildSampleIndex', () => {
  it("holds each sample's prompt ids, target, source category and image hash, shard by shard", async () => {
    const progress: number[] = [];
    const index = await buildSampleIndex({ dataset, tokenizer, tokenizerSha256, config: cfg, onProgress: (p) => progress.push(p.samples) });
    const rows = build.rows.train;
    expect(index.numSamples).toBe(12);
    expect(progress).toEqual([4, 9, 12]);
    const want = encodePromptRows(tokenizer, cfg, rows.map(promptItemOf));
    rows.forEach((r, i) => {
      expect([...index.row(i)]).toEqual(want[i]);
      expect(index.target(i)).toBe(Math.fround(r.average_rating));
      expect(index.category(i)).toBe(r.category);
    });
    expect(index.categories.length).toBe(new Set(rows.map((r) => r.category)).size);
    expect(index.tokens.length).toBe(want.reduce((n, r) => n + r.length, 0));
    expect(() => index.row(12)).toThrow(RangeError);
  });

  it('refuses a tokenizer whose ids do not fit 16 bits', async () => {
    const wide = { ...tokenizer, vocabSize: 70_000 } as TextTokenizer;
    await expect(buildSampleIndex({ dataset, tokenizer: wide, tokenizerSha256, config: cfg })).rejects.toThrow(ConfigError);
  });
});

describe('sample index file', () => {
  let index: SampleIndex;
  let path: string;
  beforeAll(async () => {
    index = await buildSampleIndex({ dataset, tokenizer, tokenizerSha256, config: cfg });
    path = sampleIndexPath(join(dir, 'index'), index.key);
    await writeSampleIndex(path, index);
  });

  it('is named by its key: other shards, tokenizer, truncation or length give another file', () => {
    const shards = build.manifest.splits.train.shards;
    const keyOf = (over: Partial<Parameters<typeof sampleIndexKey>[0]> = {}) => sampleIndexKey({ split: 'train', shards, tokenizerSha256, config: cfg, ...over });
    expect(keyOf()).toEqual(index.key);
    const others = [
      keyOf({ shards: shards.slice(1) }),
      keyOf({ shards: shards.map((sh, k) => (k === 0 ? { ...sh, sha256: sha('changed') } : sh)) }),
      keyOf({ tokenizerSha256: sha('another tokenizer') }),
      keyOf({ config: { ...cfg, regression: { ...cfg.regression, truncation: 7 } } }),
      keyOf({ maxLength: 300 }),
      keyOf({ split: 'val' }),
    ];
    const names = new Set([path, ...others.map((k) => sampleIndexPath(join(dir, 'index'), k))]);
    expect(names.size).toBe(others.length + 1);
  });

  it('loads back the same arrays (8-byte aligned sections, key checked)', async () => {
    expect(path).toMatch(/index\/train-[0-9a-f]{16}\.sridx$/);
    const loaded = await readSampleIndex(path, index.key);
    for (const k of ['targets', 'categoryIds', 'offsets', 'tokens'] as const) expect(loaded[k]).toEqual(index[k]);
    expect(loaded.categories).toEqual(index.categories);
    expect(loaded.key).toEqual(index.key);
    expect((await readFile(path)).length % 8).toBe(0);
  });

  async function damaged(name: string, change: (bytes: Buffer) => Buffer): Promise<string> {
    const copy = join(dir, 'index', name);
    await writeFile(copy, change(await readFile(path)));
    return copy;
  }

  it('refuses, naming the file, a truncated or corrupted file, another key, another format', async () => {
    const truncated = await damaged('truncated.sridx', (b) => b.subarray(0, b.length - 8));
    await expect(readSampleIndex(truncated, index.key)).rejects.toThrow(new RegExp(`${truncated}: truncated`));
    const flipped = await damaged('flipped.sridx', (b) => {
      b[b.length - 40] ^= 0x01; // inside the image hashes
      return b;
    });
    await expect(readSampleIndex(flipped, index.key)).rejects.toThrow(new RegExp(`${flipped}: SHA-256 .*corrupted`));
    const magic = await damaged('magic.sridx', (b) => {
      b.write('SRFP', 0, 'latin1');
      return b;
    });
    await expect(readSampleIndex(magic, index.key)).rejects.toThrow(new RegExp(`${magic}: not a sample index`));
    const other = { ...index.key, maxLength: 300 };
    await expect(readSampleIndex(path, other)).rejects.toThrow(new RegExp(`${path}: built for another input \\(maxLength: file ${index.key.maxLength}, wanted 300\\)`));
    await expect(readSampleIndex(path, { ...index.key, tokenizerSha256: sha('other') })).rejects.toThrow(DataError);
  });

  it('loadOrBuild loads a good file and rebuilds a damaged one in place', async () => {
    const indexDir = join(dir, 'index');
    const first = await loadOrBuildSampleIndex({ dir: indexDir, dataset, tokenizer, tokenizerSha256, config: cfg });
    expect([first.built, first.path]).toEqual([false, path]);
    const good = await readFile(path);
    const bad = Buffer.from(good);
    bad[bad.length - 40] ^= 0x01;
    await writeFile(path, bad);
    const warned: string[] = [];
    const log: Logger = { ...silentLogger, warn: (msg, f) => warned.push(`${msg} ${String(f?.path)}`) };
    const second = await loadOrBuildSampleIndex({ dir: indexDir, dataset, tokenizer, tokenizerSha256, config: cfg, log });
    expect(second.built).toBe(true);
    expect(warned).toEqual([`sample index refused, rebuilding it ${path}`]);
    expect((await readFile(path)).equals(good)).toBe(true); // the same bytes as the first build
  });
});

describe('resident bytes per sample', () => {
  /** A split of `s` samples in shards of 256, every text field longer than the truncation. */
  function paperSource(s: number): SampleIndexSource {
    const words = 'gentle hydrating facial cream (SPF-30, 50ml) with argan oil for dry & sensitive skin; travel-size 3-pack'.split(' ');
    const text = (i: number, k: number) => Array.from({ length: 40 }, (_, w) => words[(i * 7 + k * 3 + w * 5) % words.length]).join(' ');
    const meta = (i: number): SampleMeta => ({
      index: i, parent_asin: `P${i}`, category: ['All_Beauty', 'Toys_and_Games', 'Books'][i % 3], main_category: 'Health & Personal Care',
      title: text(i, 0), description: text(i, 1), features: [text(i, 2), text(i, 3)], average_rating: 1 + (i % 40) / 10,
      rating_number: 10, image_url: '', imageSha256: sha(`image ${i}`),
    });
    const shards: ShardInfo[] = Array.from({ length: Math.ceil(s / 256) }, (_, k) => ({ file: `s${k}`, rows: Math.min(256, s - 256 * k), bytes: 1, sha256: sha(`s${k}`) }));
    return { split: 'train', shards, numSamples: s, shard: async (k) => ({ start: 256 * k, meta: Array.from({ length: shards[k].rows }, (_, j) => meta(256 * k + j)) }) };
  }

  it('is at most 512 B at the paper prompt length (209 ids a row), and 14 B + 2 B per id', async () => {
    // The paper's rows are 36 + 3 image-block ids and ~170 text ids at 384² (docs/reference/model.md
    // "Counts"). The tiny tokenizer splits text finer than SmolVLM's, so fields cut at
    // 85 code points (not the paper's 100) give rows of that length here.
    const paper = { ...cfg, regression: { ...cfg.regression, imageSize: 384, truncation: 85 } };
    expect(imageTokenCount(paper)).toBe(36);
    const s = 1000;
    const index = await buildSampleIndex({ dataset: paperSource(s), tokenizer, tokenizerSha256, config: paper });
    const meanIds = index.tokens.length / s;
    expect(meanIds).toBeGreaterThanOrEqual(209);
    expect(meanIds).toBeLessThan(212);
    expect(index.bytesResident).toBe(s * (4 + 2 + 8) + 8 + 2 * index.tokens.length);
    expect(index.bytesResident / s).toBeLessThanOrEqual(512);
  });
});

import { describe, expect, it } from 'vitest';
import type { ShardResult } from './build-shard.js';
import { resolveDataPrepConfig } from './config.js';
import { countBuild, manifestConfig } from './finalize.js';
import type { Plan } from './plan.js';
import type { SelectResult } from './select.js';

const select = (category: string, read: number, kept: number, rejected: Record<string, number>): SelectResult => ({
  source: `file:///in/meta_${category}.jsonl`,
  category,
  read,
  kept,
  rejected,
  chunks: [],
  rejectsKey: `_work/rejects/select-${category}.jsonl`,
  lowest: [],
});

const plan = (dups: Record<string, number>): Plan => ({
  seed: 0,
  chunkRows: 4,
  categories: Object.entries(dups).map(([category, duplicates]) => ({ category, source: '', read: 0, selected: 0, duplicates, train: 0, val: 0 })),
  valRows: 0,
  trainRows: 0,
  duplicates: Object.values(dups).reduce((a, b) => a + b, 0),
  tasks: [],
});

describe('countBuild', () => {
  const selects = [select('A', 10, 6, { not_selected: 2, malformed_json: 2 }), select('B', 5, 5, {})];
  const shards: ShardResult[] = [
    {
      file: 'train/A-00000.parquet',
      shard: { file: 'train/A-00000.parquet', rows: 5, bytes: 100, sha256: 'a'.repeat(64) },
      rejects: [{ source: 'file:///in/meta_A.jsonl', line: 3, reason: 'image_not_found' }],
      rowsByCategory: { A: 5 },
    },
    {
      file: 'val/val-00000.parquet',
      shard: { file: 'val/val-00000.parquet', rows: 4, bytes: 80, sha256: 'b'.repeat(64) },
      rejects: [],
      rowsByCategory: { B: 4 },
    },
  ];

  it('adds select, plan and image rejects up per reason and per category', () => {
    const c = countBuild(selects, plan({ A: 0, B: 1 }), shards);
    expect(c).toEqual({
      read: 15,
      kept: 9,
      rejected: { byReason: { duplicate_parent_asin: 1, image_not_found: 1, malformed_json: 2, not_selected: 2 } },
      perCategory: { A: { read: 10, kept: 5, rejected: 5 }, B: { read: 5, kept: 4, rejected: 1 } },
    });
    expect(Object.keys(c.rejected.byReason)).toEqual(['duplicate_parent_asin', 'image_not_found', 'malformed_json', 'not_selected']);
  });

  it('refuses results that do not add up', () => {
    // B kept 5 but only 4 rows and 0 rejects account for them.
    expect(() => countBuild(selects, plan({ A: 0, B: 0 }), shards)).toThrow(/category B: read \(5\) ≠ kept \(4\) \+ rejected \(0\)/);
    expect(() => countBuild([select('A', 10, 6, { x: 1 })], plan({ A: 0 }), [])).toThrow(/select A: read \(10\) ≠ kept \(6\) \+ rejected \(1\)/);
  });
});

describe('manifestConfig', () => {
  it('drops the settings that cannot change the output, keeps the rest', () => {
    const cfg = resolveDataPrepConfig({
      overrides: { input: '/data/x,s3://bucket/meta', out: 's3://b/p', redis: 'redis://h', workers: 3, 'images.concurrency': 32, 'images.cacheDir': '/c', seed: 9 },
    });
    const m = manifestConfig(cfg) as Record<string, Record<string, unknown>>;
    expect(Object.keys(m).sort()).toEqual(['images', 'input', 'seed', 'selection', 'shards', 'text']);
    expect(m.images.concurrency).toBeUndefined();
    expect(m.images.cacheDir).toBeUndefined();
    expect(m.images.quality).toBe(95);
    expect(m.seed).toBe(9);
    expect(m.input).toEqual(['file:///data/x', 's3://bucket/meta']);
  });
});

/**
 * The evaluated split of a shard set: manifest → shards of the split, read one row group at a
 * time (core verifies each shard's size and SHA-256 first: a corrupted shard is a
 * ShardIntegrityError, not wrong numbers). Prompt fields follow the trainer's rule: the row's own
 * `main_category` fills "Main Category: {category}", falling back to the source-file category
 * when it is null or blank; per-category metrics use the source-file category (the stratum).
 */
import { DataError, openStore, readManifest, readShardRowGroups, type ShardRow } from '@smolrate/core';
import type { PromptItem } from '@smolrate/model';

export type SplitName = 'train' | 'val';

export function parseSplit(s: string): SplitName {
  if (s === 'train' || s === 'val') return s;
  throw new DataError(`--split must be train or val, got "${s}"`);
}

export function promptOfRow(row: Pick<ShardRow, 'title' | 'description' | 'features' | 'main_category' | 'category'>): PromptItem {
  const main = row.main_category;
  return { title: row.title, description: row.description, features: row.features, category: main !== null && main.trim() !== '' ? main : row.category };
}

export interface SplitSource {
  rows: number;
  shards: number;
  groups(): AsyncGenerator<ShardRow[], void, undefined>;
}

/** Opens `split` of the shard set at `root` (a folder or s3:// URI holding manifest.json). */
export async function openSplit(root: string, split: SplitName): Promise<SplitSource> {
  const store = openStore(root);
  const manifest = await readManifest(store);
  const s = manifest.splits[split];
  if (s.rows === 0 || s.shards.length === 0) {
    throw new DataError(`split "${split}" of ${root} is empty (manifest lists ${s.shards.length} shards, ${s.rows} rows): choose another --split or rebuild the shards`);
  }
  return {
    rows: s.rows,
    shards: s.shards.length,
    async *groups() {
      for (const info of s.shards) yield* readShardRowGroups(store, '', info);
    },
  };
}

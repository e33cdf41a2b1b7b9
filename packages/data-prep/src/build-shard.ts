/**
 * The `build-shard` / `build-val` step: one BuildTask → one Parquet shard. For each planned item,
 * in chunk order: fetch its MAIN image (URL rewrites, cache), resize to size² JPEG (core
 * resizeToJpeg via loadItemImage), and append the row; an item whose image fails becomes a reject
 * (`image_*`), and the rows around it are kept. Images are fetched `images.concurrency` at a time,
 * rows are written in order.
 *
 * Idempotent: the shard's bytes depend only on the task, the config and the image bytes, so a
 * retried or taken-over job publishes the same file again (atomically), then its result JSON
 * `_work/results/shard-<split>-<name>.json`.
 */
import {
  DataError,
  type Logger,
  type RejectRecord,
  type ShardInfo,
  type ShardRow,
  ShardWriter,
  shardKey,
  shardRowProblems,
  silentLogger,
  type Store,
} from '@smolrate/core';
import { mapOrdered } from './concurrency.js';
import type { DataPrepConfig } from './config.js';
import type { ImageFetcher } from './image-fetch.js';
import { loadItemImage } from './item-image.js';
import type { BuildTask } from './plan.js';
import { REJECT_REASONS, type Item } from './types.js';
import { readItems } from './work-items.js';
import { readWorkJson, shardResultKey } from './work-area.js';

export interface ShardResult {
  /** The task's shard file. */
  file: string;
  /** The published shard, or null when no row survived. */
  shard: ShardInfo | null;
  /** Items of the task that were rejected here (image failures), in chunk order. */
  rejects: RejectRecord[];
  /** Rows written, per source category (validation shards mix categories). */
  rowsByCategory: Record<string, number>;
}

export interface BuildShardOptions {
  /** The output store: shards go under its root, the task's chunk is read from its `_work/`. */
  store: Store;
  task: BuildTask;
  cfg: DataPrepConfig;
  fetcher: ImageFetcher;
  log?: Logger;
  /** Called after each item (written or rejected). */
  onItem?: (done: number, total: number) => void;
}

type Outcome = { row: ShardRow } | { reject: RejectRecord };

function toRow(item: Item, jpeg: Buffer): ShardRow {
  return {
    parent_asin: item.parent_asin,
    category: item.category,
    main_category: item.main_category,
    title: item.title,
    description: item.description,
    features: item.features,
    average_rating: item.average_rating,
    rating_number: item.rating_number,
    image: jpeg,
    // The metadata's URL (not the rewritten one): the row says which image it is, whatever
    // mirror it was read from.
    image_url: item.image_url,
  };
}

async function outcome(item: Item, cfg: DataPrepConfig, fetcher: ImageFetcher): Promise<Outcome> {
  const loaded = await loadItemImage(item, fetcher, cfg);
  if (!loaded.ok) return { reject: loaded.reject };
  const row = toRow(item, loaded.jpeg);
  const problems = shardRowProblems(row);
  if (problems.length > 0) {
    // select normalises every field; reaching this means a record slipped through with a value the
    // shard format refuses. It is bad data, so it is a reject, not a failed build.
    return {
      reject: { source: item.source, line: item.line, parent_asin: item.parent_asin, reason: REJECT_REASONS.badField, detail: problems.join('; ') },
    };
  }
  return { row };
}

/** The items of a task: its chunk minus the excluded parent_asins, checked against the plan. */
async function taskItems(store: Store, task: BuildTask): Promise<Item[]> {
  const all = await readItems(store, task.chunkKey);
  if (all.length !== task.chunkRows) {
    throw new DataError(`${store.uriOf(task.chunkKey)}: ${all.length} items, the plan says ${task.chunkRows}`);
  }
  const exclude = new Set(task.exclude);
  const items = all.filter((it) => !exclude.has(it.parent_asin));
  if (items.length !== task.rows) {
    throw new DataError(`${task.file}: ${items.length} items after exclusions, the plan says ${task.rows}`);
  }
  return items;
}

/** Builds one shard and writes its result JSON; returns the result. */
export async function buildShard(opts: BuildShardOptions): Promise<ShardResult> {
  const { store, task, cfg, fetcher } = opts;
  const log = opts.log ?? silentLogger;
  const items = await taskItems(store, task);
  const rejects: RejectRecord[] = [];
  const rowsByCategory: Record<string, number> = {};
  let writer: ShardWriter | undefined;
  let done = 0;
  let shard: ShardInfo | null = null;
  try {
    for await (const o of mapOrdered(items, cfg.images.concurrency, (item) => outcome(item, cfg, fetcher))) {
      if ('reject' in o) {
        rejects.push(o.reject);
      } else {
        writer ??= await ShardWriter.open(store, '', task.file, { rowGroupSize: cfg.shards.rowGroupSize });
        await writer.append(o.row);
        rowsByCategory[o.row.category] = (rowsByCategory[o.row.category] ?? 0) + 1;
      }
      opts.onItem?.(++done, items.length);
    }
    if (writer !== undefined) shard = await writer.finish();
  } catch (e) {
    await writer?.abort();
    throw e;
  }
  // No row survived: no shard. Remove one a previous run may have left under this name.
  if (shard === null) await store.delete(shardKey('', task.file));
  const result: ShardResult = { file: task.file, shard, rejects, rowsByCategory };
  await store.put(shardResultKey(task.file), JSON.stringify(result), { contentType: 'application/json' });
  log.info('shard built', { file: task.file, rows: shard?.rows ?? 0, bytes: shard?.bytes ?? 0, rejected: rejects.length });
  return result;
}

export async function readShardResult(store: Store, task: BuildTask): Promise<ShardResult> {
  const r = await readWorkJson<ShardResult>(store, shardResultKey(task.file));
  if (r.file !== task.file) throw new DataError(`${store.uriOf(shardResultKey(task.file))}: result of ${r.file}, expected ${task.file}`);
  return r;
}

/**
 * The `plan` step: turns the per-category selections into build tasks.
 *
 *  1. Categories in sorted order (the order every later decision follows).
 *  2. Validation hold-out: the `valSize` kept items with the lowest `itemScore(seed, parent_asin)`
 *     over all categories (ties by parent_asin). Every SelectResult carries its own min(valSize,
 *     kept) lowest scores, and a score depends only on (seed, parent_asin), so the union of those
 *     lists contains the global lowest — whatever the number of workers that produced them.
 *  3. Cross-category duplicates: a parent_asin kept by more than one category stays in the first
 *     category (sorted order) and is rejected as `duplicate_parent_asin` in the others.
 *  4. One `train/<category>-<chunk>.parquet` task per select chunk (its items minus validation
 *     items and duplicates, in chunk order), and `val/val-<n>.parquet` tasks of `chunkRows` items
 *     each, in score order (the validation items are copied to `_work/val/` chunks).
 *
 * Memory: one Map entry per kept parent_asin (the duplicate check; ~16 M entries at the paper's
 * scale, about 1–1.5 GB), plus the validation items. Chunks are read one at a time.
 */
import { compareKeys, DataError, type Logger, rejectLine, type RejectRecord, silentLogger, type Store } from '@smolrate/core';
import type { DataPrepConfig } from './config.js';
import type { SelectResult } from './select.js';
import { REJECT_REASONS, type Item } from './types.js';
import { itemsJsonl, readItems } from './work-items.js';
import { PLAN_KEY, PLAN_REJECTS_KEY, selectResultKey, trainShardFile, valChunkKey, valShardFile, readWorkJson } from './work-area.js';

export type Split = 'train' | 'val';

/** One shard to build: the items of `chunkKey` minus `exclude`, in chunk order. */
export interface BuildTask {
  split: Split;
  /** Shard file relative to the shard root: `train/All_Beauty-00000.parquet`, `val/val-00000.parquet`. */
  file: string;
  /** Work-area JSONL of the items. */
  chunkKey: string;
  /** Items in the chunk file. */
  chunkRows: number;
  /** parent_asins of the chunk that are not part of this shard (validation items, duplicates), sorted. */
  exclude: string[];
  /** Items planned for the shard: chunkRows − exclude.length (≥ 1). */
  rows: number;
}

export interface PlanCategory {
  category: string;
  source: string;
  read: number;
  /** Kept by select. */
  selected: number;
  /** Of those: rejected here as cross-category duplicates. */
  duplicates: number;
  /** Of those: planned into train / val shards. */
  train: number;
  val: number;
}

export interface Plan {
  seed: number;
  chunkRows: number;
  categories: PlanCategory[];
  /** Validation items actually held out (≤ valSize). */
  valRows: number;
  trainRows: number;
  /** Cross-category duplicates (listed in `_work/rejects/plan.jsonl`). */
  duplicates: number;
  /** Train tasks (category, chunk order), then val tasks. */
  tasks: BuildTask[];
}

/** SelectResults sorted by category; two inputs with the same category are an error. */
function sortSelectResults(results: readonly SelectResult[]): SelectResult[] {
  const sorted = [...results].sort((a, b) => compareKeys(a.category, b.category));
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].category === sorted[i - 1].category) {
      throw new DataError(`two inputs have the category ${sorted[i].category}: ${sorted[i - 1].source} and ${sorted[i].source}`);
    }
  }
  return sorted;
}

/**
 * The validation parent_asins, mapped to their rank (0 = lowest score): the `valSize` lowest
 * distinct (score, parent_asin) over every category's `lowest` list.
 */
export function chooseValidation(results: readonly SelectResult[], valSize: number): Map<string, number> {
  const best = new Map<string, number>();
  for (const r of results) {
    for (const { score, parent_asin } of r.lowest) {
      const prev = best.get(parent_asin);
      if (prev !== undefined && prev !== score) {
        throw new DataError(`parent_asin ${parent_asin} has two scores (${prev}, ${score}): select results come from different seeds`);
      }
      best.set(parent_asin, score);
    }
  }
  const all = [...best.entries()].sort((a, b) => a[1] - b[1] || compareKeys(a[0], b[0]));
  const out = new Map<string, number>();
  all.slice(0, valSize).forEach(([asin], rank) => out.set(asin, rank));
  return out;
}

export interface PlanOptions {
  /** The output store (the work area lives under `_work/` in it). */
  store: Store;
  cfg: DataPrepConfig;
  /** The select results (any order). */
  results: readonly SelectResult[];
  /** Items per validation shard (train shards follow the select chunks). */
  chunkRows: number;
  log?: Logger;
}

/** Reads the SelectResults of `categories` from the work area. */
export async function readSelectResults(store: Store, categories: readonly string[]): Promise<SelectResult[]> {
  return Promise.all(categories.map((c) => readWorkJson<SelectResult>(store, selectResultKey(c))));
}

/** Runs the plan step: writes val chunks, plan rejects and `_work/plan.json`; returns the plan. */
export async function planBuild(opts: PlanOptions): Promise<Plan> {
  const { store, cfg, chunkRows } = opts;
  const log = opts.log ?? silentLogger;
  const results = sortSelectResults(opts.results);
  const valRank = chooseValidation(results, cfg.selection.valSize);
  const valItems: Item[] = new Array<Item>(valRank.size);
  const firstCategory = new Map<string, string>();
  const rejects: RejectRecord[] = [];
  const trainTasks: BuildTask[] = [];
  const categories: PlanCategory[] = [];

  for (const r of results) {
    const cat: PlanCategory = { category: r.category, source: r.source, read: r.read, selected: r.kept, duplicates: 0, train: 0, val: 0 };
    let seen = 0;
    for (let ci = 0; ci < r.chunks.length; ci++) {
      const chunk = r.chunks[ci];
      const items = await readItems(store, chunk.key);
      if (items.length !== chunk.rows) {
        throw new DataError(`${store.uriOf(chunk.key)}: ${items.length} items, but the select result says ${chunk.rows}`);
      }
      const exclude: string[] = [];
      for (const item of items) {
        const first = firstCategory.get(item.parent_asin);
        if (first !== undefined) {
          exclude.push(item.parent_asin);
          cat.duplicates++;
          rejects.push({
            source: item.source,
            line: item.line,
            parent_asin: item.parent_asin,
            reason: REJECT_REASONS.duplicate,
            detail: first === r.category ? 'duplicate within the category' : `also kept in category ${first}`,
          });
          continue;
        }
        firstCategory.set(item.parent_asin, r.category);
        const rank = valRank.get(item.parent_asin);
        if (rank !== undefined) {
          valItems[rank] = item;
          exclude.push(item.parent_asin);
          cat.val++;
        } else {
          cat.train++;
        }
      }
      seen += items.length;
      const rows = items.length - exclude.length;
      if (rows > 0) {
        trainTasks.push({
          split: 'train',
          file: trainShardFile(r.category, ci),
          chunkKey: chunk.key,
          chunkRows: items.length,
          exclude: exclude.sort(compareKeys),
          rows,
        });
      }
    }
    if (seen !== r.kept) throw new DataError(`category ${r.category}: chunks hold ${seen} items, but the select result says kept = ${r.kept}`);
    categories.push(cat);
  }

  for (let i = 0; i < valItems.length; i++) {
    if (valItems[i] === undefined) throw new DataError(`validation item of rank ${i} was not found in any chunk (inconsistent select results)`);
  }
  const valTasks: BuildTask[] = [];
  for (let start = 0, n = 0; start < valItems.length; start += chunkRows, n++) {
    const part = valItems.slice(start, start + chunkRows);
    const key = valChunkKey(n);
    await store.put(key, itemsJsonl(part), { contentType: 'application/x-ndjson' });
    valTasks.push({ split: 'val', file: valShardFile(n), chunkKey: key, chunkRows: part.length, exclude: [], rows: part.length });
  }

  await store.put(PLAN_REJECTS_KEY, rejects.map(rejectLine).join(''), { contentType: 'application/x-ndjson' });
  const plan: Plan = {
    seed: cfg.seed,
    chunkRows,
    categories,
    valRows: valItems.length,
    trainRows: categories.reduce((s, c) => s + c.train, 0),
    duplicates: rejects.length,
    tasks: [...trainTasks, ...valTasks],
  };
  await store.put(PLAN_KEY, JSON.stringify(plan), { contentType: 'application/json' });
  log.info('plan', { categories: categories.length, trainRows: plan.trainRows, valRows: plan.valRows, duplicates: plan.duplicates, shards: plan.tasks.length });
  return plan;
}

export async function readPlan(store: Store): Promise<Plan> {
  return readWorkJson<Plan>(store, PLAN_KEY);
}

/**
 * The work area of a build: `<out>/_work/`, where the pipeline's steps hand data to each other
 * through storage (so any worker on any host can run any step). Every key here is relative to the
 * output store (the store opened on `--out`), and is a pure function of its arguments, so a rerun
 * of a step overwrites exactly what the first run wrote.
 *
 *   _work/selected/<category>/chunk-00000.jsonl   kept items of a category, in score order (select)
 *   _work/rejects/select-<category>.jsonl         select rejects of a category, in line order
 *   _work/results/select-<category>.json          SelectResult of a category
 *   _work/plan.json                               the Plan (plan)
 *   _work/rejects/plan.jsonl                      cross-category duplicate rejects (plan)
 *   _work/val/val-00000.jsonl                     validation items, in score order (plan)
 *   _work/results/shard-<split>-<name>.json       ShardResult of one shard (build-shard/build-val)
 *
 * `_work/` is deleted after a successful build unless `--keep-work`.
 */
import { DataError, type Store } from '@smolrate/core';


export const WORK_DIR = '_work';

/** Five-digit zero-padded index, as used in every chunk and shard name. */
function pad5(i: number): string {
  if (!Number.isSafeInteger(i) || i < 0) throw new DataError(`chunk/shard index must be a non-negative integer, got ${i}`);
  return String(i).padStart(5, '0');
}

// Category names come from file names; they become key segments, so they must be one safe segment.
const CATEGORY_RE = /^[A-Za-z0-9][A-Za-z0-9_.&+-]*$/;

/** Throws DataError when `category` cannot be used as a key segment. */
function checkCategoryName(category: string): string {
  if (!CATEGORY_RE.test(category) || category.includes('..')) {
    throw new DataError(`category ${JSON.stringify(category)} cannot be used in a storage key (letters, digits, _ . & + - only)`);
  }
  return category;
}

// The select step's keys are defined with it (select.ts); re-exported here so that this module
// lists the whole work area.
export { selectedChunkKey, selectRejectsKey, selectResultKey } from './select.js';

export const PLAN_KEY = `${WORK_DIR}/plan.json`;
export const PLAN_REJECTS_KEY = `${WORK_DIR}/rejects/plan.jsonl`;

export function valChunkKey(index: number): string {
  return `${WORK_DIR}/val/val-${pad5(index)}.jsonl`;
}

/** Shard file (relative to the shard root) of a category's train chunk. */
export function trainShardFile(category: string, chunkIndex: number): string {
  return `train/${checkCategoryName(category)}-${pad5(chunkIndex)}.parquet`;
}

export function valShardFile(index: number): string {
  return `val/val-${pad5(index)}.parquet`;
}

/** `train/All_Beauty-00003.parquet` → `_work/results/shard-train-All_Beauty-00003.json`. */
export function shardResultKey(shardFile: string): string {
  const m = /^(train|val)\/([^/]+)\.parquet$/.exec(shardFile);
  if (!m) throw new DataError(`not a shard file name: ${JSON.stringify(shardFile)}`);
  return `${WORK_DIR}/results/shard-${m[1]}-${m[2]}.json`;
}

/** Reads a JSON object written by another step; a missing or unparseable one is a DataError. */
export async function readWorkJson<T>(store: Store, key: string): Promise<T> {
  const bytes = await store.get(key);
  try {
    return JSON.parse(bytes.toString('utf8')) as T;
  } catch (e) {
    throw new DataError(`${store.uriOf(key)}: not valid JSON (a step's result was damaged): ${(e as Error).message}`, { cause: e });
  }
}

/** Deletes everything under `_work/`. */
export async function removeWorkArea(store: Store): Promise<number> {
  const entries = await store.list(`${WORK_DIR}/`);
  for (const e of entries) await store.delete(e.key);
  return entries.length;
}

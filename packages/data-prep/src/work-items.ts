/**
 * Items as the work area holds them: one JSON object per line (chunk files written by `select`
 * and by `plan`). These files are the pipeline's own intermediate data, so a line that is not a
 * well-formed Item means the file was damaged (or written by another version): a DataError for
 * the step, never a reject.
 */
import { DataError, type Store } from '@smolrate/core';
import type { Item } from './types.js';

function isStr(v: unknown): v is string {
  return typeof v === 'string';
}

/** Problems with a would-be Item, [] when it has every field with the right type. */
function itemProblems(v: unknown): string[] {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return ['expected an object'];
  const o = v as Record<string, unknown>;
  const p: string[] = [];
  for (const k of ['parent_asin', 'category', 'title', 'description', 'image_url', 'source'] as const) {
    if (!isStr(o[k])) p.push(`${k}: expected a string`);
  }
  if (o.main_category !== null && !isStr(o.main_category)) p.push('main_category: expected a string or null');
  if (!Array.isArray(o.features) || !o.features.every(isStr)) p.push('features: expected an array of strings');
  if (typeof o.average_rating !== 'number') p.push('average_rating: expected a number');
  if (typeof o.rating_number !== 'number') p.push('rating_number: expected a number');
  if (typeof o.line !== 'number' || !Number.isSafeInteger(o.line) || o.line < 1) p.push('line: expected a positive integer');
  return p;
}

/** The items of a work-area JSONL file, in file order. */
export async function readItems(store: Store, key: string): Promise<Item[]> {
  const text = (await store.get(key)).toString('utf8');
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines.map((line, i) => {
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (e) {
      throw new DataError(`${store.uriOf(key)} line ${i + 1}: not valid JSON (damaged work file)`, { cause: e });
    }
    const problems = itemProblems(v);
    if (problems.length > 0) throw new DataError(`${store.uriOf(key)} line ${i + 1}: not an item (${problems.join('; ')})`);
    return v as Item;
  });
}

/** JSONL text of items, one per line. */
export function itemsJsonl(items: readonly Item[]): string {
  return items.map((it) => `${JSON.stringify(it)}\n`).join('');
}

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore, parseRejects, type Store } from '@smolrate/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveDataPrepConfig } from './config.js';
import { chooseValidation, planBuild, readPlan } from './plan.js';
import { compareScored, itemScore, type SelectResult } from './select.js';
import type { Item } from './types.js';
import { itemsJsonl, readItems } from './work-items.js';
import { PLAN_REJECTS_KEY, selectedChunkKey } from './work-area.js';

const SEED = 5;
let dir: string;
let n = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'smolrate-plan-spec-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function item(category: string, asin: string, line: number): Item {
  return {
    parent_asin: asin,
    category,
    main_category: null,
    title: `t ${asin}`,
    description: '',
    features: [],
    average_rating: 4,
    rating_number: 20,
    image_url: `https://m.media-amazon.com/images/I/${asin}.jpg`,
    source: `file:///in/meta_${category}.jsonl`,
    line,
  };
}

/** Writes a category's kept items (in score order, as select does) and returns its SelectResult. */
async function selected(store: Store, category: string, asins: string[], chunkRows: number, valSize: number): Promise<SelectResult> {
  const scored = asins.map((a, i) => ({ it: item(category, a, i + 1), score: itemScore(SEED, a), parent_asin: a })).sort(compareScored);
  const chunks: SelectResult['chunks'] = [];
  for (let s = 0, c = 0; s < scored.length; s += chunkRows, c++) {
    const part = scored.slice(s, s + chunkRows).map((x) => x.it);
    await store.put(selectedChunkKey(category, c), itemsJsonl(part));
    chunks.push({ key: selectedChunkKey(category, c), rows: part.length });
  }
  return {
    source: `file:///in/meta_${category}.jsonl`,
    category,
    read: asins.length,
    kept: asins.length,
    rejected: {},
    chunks,
    rejectsKey: `_work/rejects/select-${category}.jsonl`,
    lowest: scored.slice(0, Math.min(valSize, scored.length)).map(({ score, parent_asin }) => ({ score, parent_asin })),
  };
}

const asins = (prefix: string, count: number) => Array.from({ length: count }, (_, i) => `${prefix}${String(i).padStart(8, '0')}`);

describe('chooseValidation', () => {
  it('takes the globally lowest scores, whatever way the items are split into categories', async () => {
    const store = openStore(join(dir, `v${n++}`));
    const all = asins('B0', 40);
    const lowest = all
      .map((a) => ({ score: itemScore(SEED, a), parent_asin: a }))
      .sort(compareScored)
      .slice(0, 7)
      .map((x) => x.parent_asin);
    const oneCategory = chooseValidation([await selected(store, 'A', all, 5, 7)], 7);
    const split = chooseValidation(
      [await selected(store, 'A', all.slice(0, 9), 5, 7), await selected(store, 'B', all.slice(9, 30), 5, 7), await selected(store, 'C', all.slice(30), 5, 7)],
      7,
    );
    expect([...oneCategory.keys()]).toEqual(lowest);
    expect([...split.keys()]).toEqual(lowest);
    expect([...split.values()]).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });

  it('refuses lists made with different seeds', () => {
    const r = (score: number): SelectResult => ({ source: 's', category: 'A', read: 1, kept: 1, rejected: {}, chunks: [], rejectsKey: 'k', lowest: [{ score, parent_asin: 'X' }] });
    expect(() => chooseValidation([r(1), { ...r(2), category: 'B' }], 1)).toThrow(/two scores/);
  });
});

describe('planBuild', () => {
  it('keeps a cross-category duplicate in the first category, holds out validation items, and plans every chunk', async () => {
    const store = openStore(join(dir, `p${n++}`));
    const a = asins('A0', 13);
    const b = [...asins('B0', 10), a[3], a[11]]; // two items also kept by category A
    const cfg = resolveDataPrepConfig({ overrides: { seed: SEED, 'selection.valSize': 6 } });
    // Given out of order: the plan sorts by category.
    const results = [await selected(store, 'Books', b, 4, 6), await selected(store, 'All_Beauty', a, 4, 6)];
    const plan = await planBuild({ store, cfg, results, chunkRows: 4 });

    expect(plan.categories.map((c) => c.category)).toEqual(['All_Beauty', 'Books']);
    expect(plan.duplicates).toBe(2);
    const rejects = parseRejects((await store.get(PLAN_REJECTS_KEY)).toString());
    expect(rejects.map((r) => [r.parent_asin, r.reason, r.source]).sort()).toEqual(
      [a[3], a[11]].sort().map((x) => [x, 'duplicate_parent_asin', 'file:///in/meta_Books.jsonl']),
    );
    expect(rejects[0].detail).toBe('also kept in category All_Beauty');

    // Validation: the 6 lowest scores over the 23 distinct items, in score order, in val chunks of 4.
    const distinct = [...new Set([...a, ...b])];
    const expectedVal = distinct
      .map((x) => ({ score: itemScore(SEED, x), parent_asin: x }))
      .sort(compareScored)
      .slice(0, 6)
      .map((x) => x.parent_asin);
    const valTasks = plan.tasks.filter((t) => t.split === 'val');
    expect(valTasks.map((t) => [t.file, t.rows])).toEqual([
      ['val/val-00000.parquet', 4],
      ['val/val-00001.parquet', 2],
    ]);
    const valItems = [...(await readItems(store, valTasks[0].chunkKey)), ...(await readItems(store, valTasks[1].chunkKey))];
    expect(valItems.map((i) => i.parent_asin)).toEqual(expectedVal);
    // A duplicate that is a validation item is held out from its first category.
    for (const v of valItems) expect(v.category).toBe(a.includes(v.parent_asin) ? 'All_Beauty' : 'Books');

    // Train: every chunk minus validation items and duplicates; every item planned exactly once.
    const train = plan.tasks.filter((t) => t.split === 'train');
    // One task per chunk (chunk i of a category → <category>-<i>), except chunks left with no item.
    for (const r of results) {
      for (let i = 0; i < r.chunks.length; i++) {
        const file = `train/${r.category}-${String(i).padStart(5, '0')}.parquet`;
        const task = train.find((t) => t.file === file);
        const items = await readItems(store, r.chunks[i].key);
        if (task === undefined) {
          for (const it of items) expect(expectedVal.includes(it.parent_asin) || rejects.some((x) => x.line === it.line && x.source === it.source)).toBe(true);
        } else {
          expect(task.chunkKey).toBe(r.chunks[i].key);
        }
      }
    }
    expect(train.length).toBeGreaterThanOrEqual(5);
    let planned = 0;
    for (const t of train) {
      const items = await readItems(store, t.chunkKey);
      const kept = items.filter((i) => !t.exclude.includes(i.parent_asin));
      expect(kept.length).toBe(t.rows);
      expect(t.exclude).toEqual([...t.exclude].sort());
      for (const i of kept) expect(expectedVal).not.toContain(i.parent_asin);
      planned += t.rows;
    }
    expect(planned + valItems.length + plan.duplicates).toBe(a.length + b.length);
    expect(plan.trainRows).toBe(planned);
    expect(plan.categories.reduce((s, c) => s + c.train + c.val + c.duplicates, 0)).toBe(a.length + b.length);
    expect(await readPlan(store)).toEqual(plan);
  });

  it('refuses a chunk that does not hold what the select result says', async () => {
    const store = openStore(join(dir, `p${n++}`));
    const cfg = resolveDataPrepConfig({ overrides: { seed: SEED, 'selection.valSize': 0 } });
    const r = await selected(store, 'A', asins('A0', 5), 4, 0);
    await expect(planBuild({ store, cfg, results: [{ ...r, chunks: [{ ...r.chunks[0], rows: 3 }, r.chunks[1]] }], chunkRows: 4 })).rejects.toThrow(
      /4 items, but the select result says 3/,
    );
    await store.put(r.chunks[1].key, '{"parent_asin": 1}\n');
    await expect(planBuild({ store, cfg, results: [r], chunkRows: 4 })).rejects.toThrow(/not an item/);
  });
});

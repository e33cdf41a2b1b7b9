import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { openStore, parseRejects, Rng, type Store } from '@smolrate/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveDataPrepConfig, type DataPrepConfig } from './config.js';
import { rawLine, SAMPLE_LINES } from './metadata-samples.js';
import { compareScored, itemScore, selectCategory, selectResultKey, type SelectResult } from './select.js';
import type { Item } from './types.js';

let dir: string;
let n = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'smolrate-select-spec-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A fresh local store under the test folder. */
function freshStore(): Store {
  return openStore(join(dir, `s${n++}`));
}

function config(selection: Partial<DataPrepConfig['selection']> = {}, seed = 3): DataPrepConfig {
  const overrides: Record<string, unknown> = { seed };
  for (const [k, v] of Object.entries(selection)) overrides[`selection.${k}`] = v;
  return resolveDataPrepConfig({ overrides });
}

async function run(input: Store, key: string, cfg: DataPrepConfig, chunkRows = 4, work = freshStore(), source = 'file:///in/meta_All_Beauty.jsonl') {
  const progress: number[] = [];
  const result = await selectCategory({ input, key, source, category: 'All_Beauty', cfg, work, chunkRows, onProgress: (l) => progress.push(l), tmpDir: dir });
  return { result, work, progress };
}

async function keptItems(work: Store, result: SelectResult): Promise<Item[]> {
  const out: Item[] = [];
  for (const c of result.chunks) {
    const lines = (await work.get(c.key)).toString('utf8').split('\n');
    expect(lines.pop()).toBe('');
    expect(lines.length).toBe(c.rows);
    out.push(...lines.map((l) => JSON.parse(l) as Item));
  }
  return out;
}

/** Every file of a store, key → bytes. */
async function snapshot(store: Store): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const { key } of await store.list()) out.set(key, await store.get(key));
  return out;
}

function sum(counts: Record<string, number>): number {
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

describe('selectCategory on the trap file', () => {
  it('puts every hand-written trap where it belongs, in line order, and the counts add up', async () => {
    const input = freshStore();
    // Line 1 is blank (not a record), then every sample; a CRLF ending on one of them.
    const text = `\n${SAMPLE_LINES.map((s) => s.text).join('\n')}\r\n`;
    await input.put('meta_All_Beauty.jsonl', text);
    const { result, work, progress } = await run(input, 'meta_All_Beauty.jsonl', config({ topK: 100, bottomK: 100, valSize: 3 }));

    const lineOf = (i: number) => i + 2;
    const expectedItems = SAMPLE_LINES.map((s, i) => ({ s, line: lineOf(i) })).filter(({ s }) => 'item' in s.expect);
    const expectedRejects = SAMPLE_LINES.map((s, i) => ({ s, line: lineOf(i) })).filter(({ s }) => 'reason' in s.expect);

    const items = await keptItems(work, result);
    expect(items.map((i) => i.line).sort((a, b) => a - b)).toEqual(expectedItems.map((e) => e.line));
    for (const { s, line } of expectedItems) {
      const item = items.find((i) => i.line === line)!;
      expect(item).toMatchObject({ ...(s.expect as { item: Partial<Item> }).item, category: 'All_Beauty', source: 'file:///in/meta_All_Beauty.jsonl' });
    }
    // Chunk order is the seeded score order.
    const scored = items.map((i) => ({ score: itemScore(3, i.parent_asin), parent_asin: i.parent_asin }));
    expect(scored).toEqual([...scored].sort(compareScored));
    expect(result.lowest).toEqual(scored.slice(0, 3));

    const rejects = parseRejects((await work.get(result.rejectsKey)).toString('utf8'));
    expect(rejects.map((r) => [r.line, r.reason])).toEqual(expectedRejects.map(({ s, line }) => [line, (s.expect as { reason: string }).reason]));
    for (const r of rejects) {
      const detail = (expectedRejects.find((e) => e.line === r.line)!.s.expect as { detail?: string }).detail;
      if (detail !== undefined) expect(r.detail).toContain(detail);
    }
    expect(rejects.find((r) => r.reason === 'malformed_json' && r.parent_asin === 'B0BROKEN01')).toBeDefined();

    expect(result.read).toBe(SAMPLE_LINES.length);
    expect(result.kept).toBe(expectedItems.length);
    expect(result.read).toBe(result.kept + sum(result.rejected));
    expect(result.rejected.not_selected).toBeUndefined();
    expect(sum(result.rejected)).toBe(rejects.length);
    expect(result.chunks.map((c) => c.key)).toEqual(
      Array.from({ length: Math.ceil(result.kept / 4) }, (_, i) => `_work/selected/All_Beauty/chunk-${String(i).padStart(5, '0')}.jsonl`),
    );
    expect(JSON.parse((await work.get(selectResultKey('All_Beauty'))).toString())).toEqual(result);
    expect(progress[progress.length - 1]).toBe(SAMPLE_LINES.length + 1);
  });

  it('gives byte-identical work files for the plain file, its gzip copy on S3, and a second run', async () => {
    const bucket = process.env.SMOLRATE_TEST_S3_BUCKET;
    if (!bucket || !process.env.AWS_ENDPOINT_URL_S3) throw new Error('the vitest global setup did not provide an S3 server');
    const text = `${SAMPLE_LINES.map((s) => s.text).join('\n')}\n${randomLines(300, 11).join('\n')}`;
    const input = freshStore();
    await input.put('meta_All_Beauty.jsonl', text);
    const s3 = openStore(`s3://${bucket}/select-test-${randomBytes(6).toString('hex')}`);
    try {
      await s3.put('in/meta_All_Beauty.jsonl.gz', gzipSync(Buffer.from(text)));
      const cfg = config({ topK: 40, bottomK: 30, valSize: 10 });
      const a = await run(input, 'meta_All_Beauty.jsonl', cfg, 16);
      const b = await run(input, 'meta_All_Beauty.jsonl', cfg, 16);
      const s3Work = openStore(`${s3.uri}/out`);
      const c = await run(openStore(`${s3.uri}/in`), 'meta_All_Beauty.jsonl.gz', cfg, 16, s3Work);
      const snapA = await snapshot(a.work);
      expect(snapA.size).toBe(a.result.chunks.length + 2);
      expect(await snapshot(b.work)).toEqual(snapA);
      expect(await snapshot(s3Work)).toEqual(snapA);
      expect(c.result).toEqual(a.result);
      expect(a.result.kept).toBe(70);
      expect(a.result.rejected.not_selected).toBeGreaterThan(0);
    } finally {
      for (const { key } of await s3.list()) await s3.delete(key);
    }
  });
});

/** Random raw-form lines: unique asins, many rating_number ties, some below the minimum or without an image. */
function randomLines(count: number, seed: number, opts: { maxRatings?: number } = {}): string[] {
  const rng = new Rng(seed, 'select-spec');
  const asins = new Set<string>();
  const out: string[] = [];
  while (out.length < count) {
    const asin = `B0${rng.int(36 ** 6).toString(36).toUpperCase().padStart(8, '0')}`;
    if (asins.has(asin)) continue;
    asins.add(asin);
    const images = rng.int(10) === 0 ? [] : [{ thumb: null, large: `https://m.media-amazon.com/images/I/${asin}.jpg`, variant: 'MAIN', hi_res: null }];
    out.push(rawLine({ parent_asin: asin, rating_number: rng.int(opts.maxRatings ?? 40), average_rating: 1 + rng.int(41) / 10, images }));
  }
  return out;
}

interface Candidate {
  asin: string;
  rating: number;
}

/** The selection by sorting everything: the specification the heaps must meet. */
function reference(lines: string[], cfg: DataPrepConfig): { kept: string[]; notSelected: number } {
  const cands: Candidate[] = [];
  for (const l of lines) {
    const r = JSON.parse(l) as { parent_asin: string; rating_number: number; images: unknown[] };
    if (r.rating_number >= cfg.selection.minRatingNumber && r.images.length > 0) cands.push({ asin: r.parent_asin, rating: r.rating_number });
  }
  const byAsin = (a: Candidate, b: Candidate) => (a.asin < b.asin ? -1 : a.asin > b.asin ? 1 : 0);
  const top = [...cands].sort((a, b) => b.rating - a.rating || byAsin(a, b)).slice(0, cfg.selection.topK);
  const bottom = [...cands].sort((a, b) => a.rating - b.rating || byAsin(a, b)).slice(0, cfg.selection.bottomK);
  // "All items when a category has fewer than 2K candidates" holds even with ties.
  const all = cands.length <= cfg.selection.topK + cfg.selection.bottomK;
  const kept = [...new Set((all ? cands : [...top, ...bottom]).map((c) => c.asin))];
  kept.sort((a, b) => compareScored({ score: itemScore(cfg.seed, a), parent_asin: a }, { score: itemScore(cfg.seed, b), parent_asin: b }));
  return { kept, notSelected: cands.length - kept.length };
}

describe('heap selection', () => {
  const cases: Array<[string, number, Partial<DataPrepConfig['selection']>, number]> = [
    ['small K, many ties', 400, { topK: 7, bottomK: 5 }, 9],
    ['fewer candidates than topK + bottomK: all kept', 60, { topK: 40, bottomK: 40 }, 30],
    ['exactly as many candidates as topK + bottomK, with ties', 0, { topK: 10, bottomK: 10 }, 5],
    ['one candidate more than topK + bottomK', -1, { topK: 10, bottomK: 9 }, 5],
    ['bottomK 0: top only', 300, { topK: 25, bottomK: 0 }, 12],
    ['topK 0 and no minimum', 300, { topK: 0, bottomK: 33, minRatingNumber: 0 }, 6],
    ['both 0: nothing kept', 50, { topK: 0, bottomK: 0 }, 3],
  ];
  for (const [name, count, selection, maxRatings] of cases) {
    it(`equals the sort-based reference: ${name}`, async () => {
      let lines = randomLines(count, count + maxRatings, { maxRatings });
      if (count <= 0) {
        // Exactly 20 candidates with only two rating_numbers: the heaps' tie order alone would drop some.
        lines = randomLines(200, 99).map((l, i) => l.replace(/"rating_number":\d+/, `"rating_number":${10 + (i % 2)}`).replace('"images":[]', '"images":null'));
        lines = lines.filter((l) => !l.includes('"images":null')).slice(0, 20);
        expect(lines.length).toBe(20);
      }
      const cfg = config({ ...selection, valSize: 4 }, Math.abs(count));
      const input = freshStore();
      await input.put('meta_All_Beauty.jsonl', lines.join('\n'));
      const { result, work } = await run(input, 'meta_All_Beauty.jsonl', cfg, 8);
      const ref = reference(lines, cfg);
      const items = await keptItems(work, result);
      expect(items.map((i) => i.parent_asin)).toEqual(ref.kept);
      expect(result.kept).toBe(ref.kept.length);
      expect(result.rejected.not_selected ?? 0).toBe(ref.notSelected);
      expect(result.read).toBe(lines.length);
      expect(result.read).toBe(result.kept + sum(result.rejected));
      expect(result.lowest.map((l) => l.parent_asin)).toEqual(ref.kept.slice(0, 4));
      if (name.startsWith('fewer') || name.startsWith('exactly')) expect(result.rejected.not_selected).toBeUndefined();
    });
  }

  it('rejects a parent_asin seen again while its first copy is held, and forgets it once evicted', async () => {
    const line = (asin: string, rating: number) => rawLine({ parent_asin: asin, rating_number: rating });
    const lines = [
      line('B0XXXXXXXX', 50), // held by both heaps
      line('B0YYYYYYYY', 100), // displaces X from the top heap
      line('B0XXXXXXXX', 70), // X still held (bottom): duplicate
      line('B0ZZZZZZZZ', 10), // displaces X from the bottom heap: X forgotten
      line('B0XXXXXXXX', 60), // a candidate again, but neither heap wants it
      line('B0YYYYYYYY', 12), // Y held: duplicate
      line('B0ZZZZZZZZ', 5), // too_few_ratings comes first
    ];
    const input = freshStore();
    await input.put('meta_All_Beauty.jsonl', lines.join('\n'));
    const { result, work } = await run(input, 'meta_All_Beauty.jsonl', config({ topK: 1, bottomK: 1, valSize: 0 }));
    const items = await keptItems(work, result);
    expect(items.map((i) => [i.parent_asin, i.line]).sort()).toEqual([
      ['B0YYYYYYYY', 2],
      ['B0ZZZZZZZZ', 4],
    ]);
    const rejects = parseRejects((await work.get(result.rejectsKey)).toString());
    expect(rejects).toEqual([
      { source: 'file:///in/meta_All_Beauty.jsonl', line: 3, parent_asin: 'B0XXXXXXXX', reason: 'duplicate_parent_asin', detail: 'first seen on line 1' },
      { source: 'file:///in/meta_All_Beauty.jsonl', line: 6, parent_asin: 'B0YYYYYYYY', reason: 'duplicate_parent_asin', detail: 'first seen on line 2' },
      { source: 'file:///in/meta_All_Beauty.jsonl', line: 7, parent_asin: 'B0ZZZZZZZZ', reason: 'too_few_ratings', detail: 'rating_number 5 < 10' },
    ]);
    expect(result.rejected).toEqual({ duplicate_parent_asin: 2, too_few_ratings: 1, not_selected: 2 });
    expect(result.read).toBe(7);
    expect(result.lowest).toEqual([]);
  });
});

describe('selectCategory robustness', () => {
  it('keeps what a truncated gzip file yielded and rejects the rest as truncated_input', async () => {
    const lines = randomLines(3000, 5);
    const gz = gzipSync(Buffer.from(`${lines.join('\n')}\n`));
    const input = freshStore();
    await input.put('meta_All_Beauty.jsonl.gz', gz.subarray(0, Math.floor(gz.length * 0.5)));
    const cfg = config({ topK: 1_000_000, bottomK: 1_000_000, valSize: 0 });
    const { result, work } = await run(input, 'meta_All_Beauty.jsonl.gz', cfg, 500);
    const rejects = parseRejects((await work.get(result.rejectsKey)).toString());
    const last = rejects[rejects.length - 1];
    expect(last).toMatchObject({ reason: 'truncated_input' });
    expect(last.detail).toContain('ends early');
    const readLines = last.line - 1;
    expect(readLines).toBeGreaterThan(1000);
    expect(readLines).toBeLessThan(2000);
    // Everything before the damage was judged exactly as the complete file's prefix would be.
    const prefix = freshStore();
    await prefix.put('meta_All_Beauty.jsonl', lines.slice(0, readLines).join('\n'));
    const whole = await run(prefix, 'meta_All_Beauty.jsonl', cfg, 500);
    expect(await keptItems(work, result)).toEqual(await keptItems(whole.work, whole.result));
    expect(result.read).toBe(readLines + 1);
    expect(result.rejected.truncated_input).toBe(1);
    expect(result.read).toBe(result.kept + sum(result.rejected));
  });

  it('removes chunk files a previous run with other settings left behind', async () => {
    const input = freshStore();
    await input.put('meta_All_Beauty.jsonl', randomLines(100, 8).join('\n'));
    const work = freshStore();
    const cfg = config({ topK: 30, bottomK: 30 });
    const small = await run(input, 'meta_All_Beauty.jsonl', cfg, 5, work);
    expect(small.result.chunks.length).toBe(12);
    const big = await run(input, 'meta_All_Beauty.jsonl', cfg, 50, work);
    expect(big.result.chunks.length).toBe(2);
    expect((await work.list('_work/selected/')).map((e) => e.key)).toEqual(big.result.chunks.map((c) => c.key));
  });

  it('refuses a bad chunkRows or category before reading anything', async () => {
    const input = freshStore();
    const cfg = config();
    await expect(selectCategory({ input, key: 'x', source: 's', category: 'All_Beauty', cfg, work: input, chunkRows: 0 })).rejects.toThrow(/chunkRows/);
    await expect(selectCategory({ input, key: 'x', source: 's', category: '../x', cfg, work: input, chunkRows: 1 })).rejects.toThrow(/category/);
  });
});

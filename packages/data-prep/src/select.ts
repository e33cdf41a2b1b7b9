/**
 * The `select` step for one category file (docs/reference/design.md "Distributed data preparation"): one
 * streaming pass that normalises every line (record.ts) and keeps, among the candidates
 * (rating_number ≥ minRatingNumber and a MAIN image), the top-K by (rating_number desc,
 * parent_asin asc) and the bottom-K by (rating_number asc, parent_asin asc) — docs/reference/data.md "Selection
 * used by the paper": filter first, then rank; ties by parent_asin. An item in both heaps is kept
 * once; with at most topK + bottomK candidates every candidate is kept (see `keepAllUpTo`).
 *
 * Memory is bounded by K, not by the file: the heaps hold (rating_number, parent_asin, offset)
 * and the items themselves wait in a local spill file; rejects stream to another. Local disk use
 * is what entered a heap at some point — about K·(1 + ln(N/K)) items per heap for a file in no
 * particular order, all N candidates at worst (a file sorted by rating_number). A parent_asin
 * seen again while its first copy is held is rejected as `duplicate_parent_asin` (first
 * occurrence wins); once the first copy has left both heaps the asin is forgotten — remembering
 * every asin of a 13 M-item file would not be bounded by K. Candidates that do not make the cut
 * are counted as `not_selected`, not listed.
 *
 * Outputs, in the `work` store (canonical, deterministic bytes — the same file and config give
 * the same bytes on any host, whatever else runs):
 *   _work/selected/<category>/chunk-NNNNN.jsonl  the kept items in ascending itemScore order
 *   _work/rejects/select-<category>.jsonl        the listed rejects, in line order
 *   _work/results/select-<category>.json         SelectResult, written last
 * Counts add up: read = kept + Σ rejected (not_selected included). Blank lines are not records
 * and are not counted.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { canonicalJson, compareKeys, ConfigError, type Logger, rejectLine, type RejectRecord, seedFrom, type Store } from '@smolrate/core';
import { BoundedHeap } from './bounded-heap.js';
import type { DataPrepConfig } from './config.js';
import { readLines, TruncatedInputError } from './line-reader.js';
import { toItem, validateRecord, type RecordContext } from './record.js';
import { SpillFile } from './spill-file.js';
import { REJECT_REASONS, type Item, type RejectReason } from './types.js';

export interface SelectResult {
  /** URI of the input file. */
  source: string;
  category: string;
  /** Records read (non-blank lines; a truncated remainder counts as one). */
  read: number;
  kept: number;
  /** Count per reason, `not_selected` included; only reasons that occurred. */
  rejected: Record<string, number>;
  /** The chunk files, in order; `rows` items each (the last may have fewer). */
  chunks: Array<{ key: string; rows: number }>;
  /** Key of the listed rejects (JSON lines, line order). */
  rejectsKey: string;
  /** The min(valSize, kept) kept items with the lowest itemScore, ascending (score, parent_asin). */
  lowest: Array<{ score: number; parent_asin: string }>;
}

export interface SelectOptions {
  /** Store holding the input file, and its key there. */
  input: Store;
  key: string;
  /** The input's URI as it should appear in rejects (InputFile.uri). */
  source: string;
  category: string;
  cfg: DataPrepConfig;
  /** The build's output root: the `_work/` keys are written here. */
  work: Store;
  /** Items per chunk file. */
  chunkRows: number;
  log?: Logger;
  /** Called every few thousand lines and at the end with the number of lines read so far. */
  onProgress?: (linesRead: number) => void;
  /** Local folder for the spill files (default: the OS temp folder). */
  tmpDir?: string;
}

/** The seeded order key of an item: shard order and the validation hold-out derive from it. */
export function itemScore(seed: number, parentAsin: string): number {
  return seedFrom(seed, 'order', parentAsin);
}

/** Orders (score, parent_asin) pairs: ascending score, ties by parent_asin. */
export function compareScored(a: { score: number; parent_asin: string }, b: { score: number; parent_asin: string }): number {
  return a.score - b.score || (a.parent_asin < b.parent_asin ? -1 : a.parent_asin > b.parent_asin ? 1 : 0);
}

export function selectedChunkKey(category: string, index: number): string {
  return `_work/selected/${category}/chunk-${String(index).padStart(5, '0')}.jsonl`;
}
export function selectRejectsKey(category: string): string {
  return `_work/rejects/select-${category}.jsonl`;
}
export function selectResultKey(category: string): string {
  return `_work/results/select-${category}.json`;
}

/** A held candidate: its rank keys and where the item waits in the spill file. */
interface Held {
  rating: number;
  asin: string;
  line: number;
  offset: number;
  length: number;
  /** How many holders (top heap, bottom heap, the keep-all list) have it; forgotten at 0. */
  holders: number;
}

/** Top-K: more ratings first, ties by parent_asin ascending. */
const topOrder = (a: Held, b: Held): number => b.rating - a.rating || compareKeys(a.asin, b.asin);
/** Bottom-K: fewer ratings first, ties by parent_asin ascending. */
const bottomOrder = (a: Held, b: Held): number => a.rating - b.rating || compareKeys(a.asin, b.asin);

const PROGRESS_EVERY = 10_000;
const ASIN_IN_TEXT = /"parent_asin"\s*:\s*"([^"\\]{1,64})"/;

const LEADING_SPACE = /^\s/;
function isBlank(text: string): boolean {
  return text.length === 0 || (LEADING_SPACE.test(text) && text.trim() === '');
}

/** Runs selection for one category file; see the module comment. */
export async function selectCategory(opts: SelectOptions): Promise<SelectResult> {
  const { input, key, source, category, cfg, work, chunkRows } = opts;
  if (!Number.isSafeInteger(chunkRows) || chunkRows < 1) throw new ConfigError(`select: chunkRows must be a positive integer, got ${chunkRows}`);
  if (!/^[A-Za-z0-9_]+$/.test(category)) throw new ConfigError(`select: category ${JSON.stringify(category)} is not a file-name category`);

  const top = new BoundedHeap<Held>(cfg.selection.topK, topOrder);
  const bottom = new BoundedHeap<Held>(cfg.selection.bottomK, bottomOrder);
  const held = new Map<string, Held>();
  // Ties are broken by parent_asin ascending on both sides, so the two heaps are not mirror
  // images: with many equal rating_numbers their union can miss candidates even when there are
  // fewer than topK + bottomK of them. "All items when a category has fewer than 2K candidates"
  // (docs/reference/data.md) is therefore kept literally: every candidate is held until there are more than
  // topK + bottomK, and if that never happens all of them are kept.
  const keepAllUpTo = cfg.selection.topK + cfg.selection.bottomK;
  let everyone: Held[] | null = [];
  const counts = new Map<RejectReason, number>();
  let read = 0;
  let candidates = 0;
  let linesSeen = 0;

  const tmp = await mkdtemp(join(opts.tmpDir ?? tmpdir(), 'smolrate-select-'));
  const items = await SpillFile.create(join(tmp, 'items.jsonl'));
  const rejects = await SpillFile.create(join(tmp, 'rejects.jsonl'));
  try {
    const addReject = (r: RejectRecord & { reason: RejectReason }) => {
      counts.set(r.reason, (counts.get(r.reason) ?? 0) + 1);
      rejects.append(rejectLine(r));
    };
    const release = (h: Held | undefined) => {
      if (h === undefined) return;
      if (--h.holders === 0) held.delete(h.asin);
    };
    const ctx: RecordContext = { source, line: 0, category, cfg };

    try {
      for await (const l of readLines(input, key)) {
        linesSeen = l.line;
        if (l.line % PROGRESS_EVERY === 0) {
          opts.onProgress?.(l.line);
          // Let timers (job lock renewal, heartbeats) run even when the data arrives faster than I/O turns.
          await yieldToLoop();
        }
        if (items.full) await items.flush();
        if (rejects.full) await rejects.flush();

        if (l.overlongBytes !== undefined) {
          read++;
          addReject({ source, line: l.line, reason: REJECT_REASONS.malformedJson, detail: `line of ${l.overlongBytes} bytes is longer than the limit` });
          continue;
        }
        if (isBlank(l.text)) continue;
        read++;
        let raw: unknown;
        try {
          raw = JSON.parse(l.text);
        } catch {
          const r: RejectRecord & { reason: RejectReason } = { source, line: l.line, reason: REJECT_REASONS.malformedJson, detail: 'not valid JSON' };
          const asin = ASIN_IN_TEXT.exec(l.text)?.[1];
          if (asin !== undefined) r.parent_asin = asin;
          addReject(r);
          continue;
        }
        ctx.line = l.line;
        const res = validateRecord(raw, ctx);
        if ('reject' in res) {
          addReject(res.reject);
          continue;
        }
        const valid = res.valid;
        const first = held.get(valid.parent_asin);
        if (first !== undefined) {
          addReject({ source, line: l.line, parent_asin: valid.parent_asin, reason: REJECT_REASONS.duplicate, detail: `first seen on line ${first.line}` });
          continue;
        }
        candidates++;
        if (everyone !== null && candidates > keepAllUpTo) {
          // More candidates than both heaps hold: from now on only the heaps decide.
          for (const e of everyone) release(e);
          everyone = null;
        }
        const h: Held = { rating: valid.rating_number, asin: valid.parent_asin, line: l.line, offset: 0, length: 0, holders: 0 };
        const toTop = top.accepts(h);
        const toBottom = bottom.accepts(h);
        if (!toTop && !toBottom && everyone === null) continue;
        const item: Item = toItem(valid, ctx);
        const ref = items.append(`${JSON.stringify(item)}\n`);
        h.offset = ref.offset;
        h.length = ref.length;
        held.set(h.asin, h);
        if (everyone !== null) {
          h.holders++;
          everyone.push(h);
        }
        if (toTop) {
          h.holders++;
          release(top.offer(h));
        }
        if (toBottom) {
          h.holders++;
          release(bottom.offer(h));
        }
      }
    } catch (e) {
      if (!(e instanceof TruncatedInputError)) throw e;
      read++;
      addReject({ source, line: e.line, reason: REJECT_REASONS.truncatedInput, detail: `${e.detail}; the rest of the file from this line on is unread` });
      opts.log?.warn('input truncated: keeping what was read', { source, line: e.line });
    }
    opts.onProgress?.(linesSeen);

    // The kept set, in the seeded order that shards and the validation hold-out follow.
    const keptSet = new Set<Held>(everyone ?? [...top.values(), ...bottom.values()]);
    const kept = [...keptSet].map((h) => ({ h, score: itemScore(cfg.seed, h.asin), parent_asin: h.asin })).sort(compareScored);
    const notSelected = candidates - kept.length;
    if (notSelected > 0) counts.set(REJECT_REASONS.notSelected, notSelected);

    const chunks: SelectResult['chunks'] = [];
    for (let start = 0, index = 0; start < kept.length; start += chunkRows, index++) {
      const part = kept.slice(start, start + chunkRows);
      const texts = await items.read(part.map(({ h }) => h));
      const body = texts.map((t) => `${canonicalJson(JSON.parse(t) as Item, 0)}\n`).join('');
      const chunkKey = selectedChunkKey(category, index);
      await work.put(chunkKey, body, { contentType: 'application/x-ndjson' });
      chunks.push({ key: chunkKey, rows: part.length });
    }
    // A rerun with other settings may have left more chunks behind; only the listed ones may exist.
    const current = new Set(chunks.map((c) => c.key));
    for (const { key: stale } of await work.list(`_work/selected/${category}/`)) {
      if (!current.has(stale)) await work.delete(stale);
    }

    await rejects.flush();
    await rejects.close();
    const rejectsKey = selectRejectsKey(category);
    await work.putFile(rejectsKey, rejects.path, { contentType: 'application/x-ndjson' });

    const rejected: Record<string, number> = {};
    for (const [reason, n] of counts) rejected[reason] = n;
    const result: SelectResult = {
      source,
      category,
      read,
      kept: kept.length,
      rejected,
      chunks,
      rejectsKey,
      lowest: kept.slice(0, Math.min(cfg.selection.valSize, kept.length)).map(({ score, parent_asin }) => ({ score, parent_asin })),
    };
    await work.put(selectResultKey(category), `${canonicalJson(result)}\n`, { contentType: 'application/json' });
    opts.log?.info('selected', { category, read, kept: kept.length, candidates, rejected });
    return result;
  } finally {
    await items.close();
    await rejects.close();
    await rm(tmp, { recursive: true, force: true });
  }
}

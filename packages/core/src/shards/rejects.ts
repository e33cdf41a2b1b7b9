/**
 * `rejects.jsonl` at the shard root: one line per rejected input record. Jobs that reject records
 * run in parallel and finish in any order, so the file is written sorted — by source, line,
 * reason, parent_asin, detail — with a fixed key order per line; the same rejects give the same
 * bytes.
 */
import { Readable } from 'node:stream';
import { DataError, ShardIntegrityError } from '../errors.js';
import type { Store } from '../storage/store.js';
import type { ManifestLocation } from './manifest.js';
import { shardKey } from './shard-info.js';

const REJECTS_FILE = 'rejects.jsonl';

export interface RejectRecord {
  /** URI of the input file the record came from. */
  source: string;
  /** 1-based line number within `source`. */
  line: number;
  /** The item key, when the record was parseable far enough to have one. */
  parent_asin?: string;
  /** Stable reason code (the keys of manifest counts.rejected.byReason). */
  reason: string;
  /** Human-readable detail (e.g. the HTTP status of a failed image fetch). */
  detail?: string;
}

/** Every problem with a would-be RejectRecord, as messages; [] when valid. */
export function rejectRecordProblems(value: unknown): string[] {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return ['expected an object'];
  const r = value as Record<string, unknown>;
  const problems: string[] = [];
  for (const k of Object.keys(r)) {
    if (!['source', 'line', 'parent_asin', 'reason', 'detail'].includes(k)) problems.push(`${k}: unknown field`);
  }
  if (typeof r.source !== 'string' || r.source === '') problems.push('source: expected a non-empty string');
  if (typeof r.line !== 'number' || !Number.isSafeInteger(r.line) || r.line < 1) {
    problems.push(`line: expected a positive integer, got ${JSON.stringify(r.line)}`);
  }
  if (r.parent_asin !== undefined && typeof r.parent_asin !== 'string') problems.push('parent_asin: expected a string');
  if (typeof r.reason !== 'string' || r.reason === '') problems.push('reason: expected a non-empty string');
  if (r.detail !== undefined && typeof r.detail !== 'string') problems.push('detail: expected a string');
  return problems;
}

function cmp(a: string | undefined, b: string | undefined): number {
  if (a === b) return 0;
  if (a === undefined) return -1;
  if (b === undefined) return 1;
  return a < b ? -1 : 1;
}

/** The canonical order of reject records. */
function compareRejects(a: RejectRecord, b: RejectRecord): number {
  return cmp(a.source, b.source) || a.line - b.line || cmp(a.reason, b.reason) || cmp(a.parent_asin, b.parent_asin) || cmp(a.detail, b.detail);
}

/** One JSONL line (with its newline) with the fixed key order; absent optional keys are omitted. */
export function rejectLine(record: RejectRecord): string {
  const problems = rejectRecordProblems(record);
  if (problems.length > 0) throw new DataError(`invalid reject record ${JSON.stringify(record)}: ${problems.join('; ')}`);
  const ordered: Record<string, string | number> = { source: record.source, line: record.line };
  if (record.parent_asin !== undefined) ordered.parent_asin = record.parent_asin;
  ordered.reason = record.reason;
  if (record.detail !== undefined) ordered.detail = record.detail;
  return `${JSON.stringify(ordered)}\n`;
}

/** Validates and sorts (a copy of) `records` into canonical order. */
function sortRejects(records: readonly RejectRecord[]): RejectRecord[] {
  return [...records].sort(compareRejects);
}

/** The whole rejects.jsonl text: canonical order, one line per record ('' for none). */
export function serializeRejects(records: readonly RejectRecord[]): string {
  return sortRejects(records).map(rejectLine).join('');
}

/**
 * Writes rejects.jsonl under the shard root (atomically; streamed, so the text is never held
 * whole in memory — the sorted records are).
 */
export async function writeRejects(store: Store, records: readonly RejectRecord[], opts: ManifestLocation = {}): Promise<void> {
  const sorted = sortRejects(records);
  for (const r of sorted) rejectLine(r); // validate everything before anything is written
  function* chunks(): Generator<string> {
    const batch: string[] = [];
    for (const r of sorted) {
      batch.push(rejectLine(r));
      if (batch.length === 4096) yield batch.splice(0).join('');
    }
    if (batch.length > 0) yield batch.join('');
  }
  await store.putStream(shardKey(opts.root ?? '', REJECTS_FILE), Readable.from(chunks()), { contentType: 'application/x-ndjson' });
}

/** Parses rejects.jsonl text; a malformed line is a DataError naming its line number. */
export function parseRejects(text: string): RejectRecord[] {
  const out: RejectRecord[] = [];
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  lines.forEach((line, i) => {
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (e) {
      throw new DataError(`${REJECTS_FILE} line ${i + 1}: not valid JSON`, { cause: e });
    }
    const problems = rejectRecordProblems(value);
    if (problems.length > 0) throw new DataError(`${REJECTS_FILE} line ${i + 1}: ${problems.join('; ')}`);
    out.push(value as RejectRecord);
  });
  return out;
}

/** Reads rejects.jsonl under the shard root. */
export async function readRejects(store: Store, opts: ManifestLocation = {}): Promise<RejectRecord[]> {
  const key = shardKey(opts.root ?? '', REJECTS_FILE);
  const text = (await store.get(key)).toString('utf8');
  try {
    return parseRejects(text);
  } catch (e) {
    if (e instanceof DataError) throw new ShardIntegrityError(store.uriOf(key), e.message, { cause: e });
    throw e;
  }
}

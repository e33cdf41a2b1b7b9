/**
 * The row of a `smolrate-shards/1` Parquet shard (docs/reference/design.md, "Shard format") and the checks a
 * row must pass before it is written. Validation is strict because Parquet would otherwise
 * change data silently: a lone UTF-16 surrogate becomes U+FFFD when encoded as UTF8, a float
 * `rating_number` is truncated by INT64, and unknown keys are dropped.
 */
import { DataError } from '../errors.js';

/** Format name written into every shard's key/value metadata and into manifest.json. */
export const SHARD_FORMAT = 'smolrate-shards/1';

/** Cap on title, description and (joined) features, in Unicode code points. */
export const SHARD_TEXT_CAP = 1000;

export interface ShardRow {
  /** Item key. */
  parent_asin: string;
  /** The source file's category (e.g. `All_Beauty`), the stratum used for sampling. */
  category: string;
  /** The record's own `main_category` (store label); null when absent. */
  main_category: string | null;
  title: string;
  description: string;
  /** Feature bullet points. Their `" "`-join (as used in the prompt) is capped at 1,000 code points. */
  features: string[];
  /** Regression target, 1–5. */
  average_rating: number;
  /** Count of star ratings (non-negative integer, INT64 on disk). */
  rating_number: number;
  /** 384×384 RGB JPEG bytes. */
  image: Buffer;
  /** Where the image came from. */
  image_url: string;
}

/** Column names in on-disk order. */
export const SHARD_COLUMNS = [
  'parent_asin',
  'category',
  'main_category',
  'title',
  'description',
  'features',
  'average_rating',
  'rating_number',
  'image',
  'image_url',
] as const satisfies ReadonlyArray<keyof ShardRow>;

/** One column of the parquetjs-lite schema definition (a subset of its field options). */
export interface ShardColumnSpec {
  type: 'UTF8' | 'DOUBLE' | 'INT64' | 'BYTE_ARRAY';
  optional?: boolean;
  repeated?: boolean;
  /** `false`: no min/max statistics for this column. */
  statistics?: false;
}

/**
 * The parquetjs-lite schema definition. A fresh object each call: `new ParquetSchema(def)`
 * mutates the definition it is given (fills in encoding/compression defaults).
 *
 * Choices, all for determinism and for correctness when read by other Parquet readers:
 * PLAIN encoding, no compression (the JPEG bytes dominate and do not compress);
 * min/max statistics only on the numeric columns — parquetjs-lite orders strings by UTF-16 code
 * units, not by unsigned bytes as the Parquet spec requires, so its string statistics could
 * mislead a reader's predicate push-down, and image statistics would store whole JPEGs twice more.
 */
export function shardSchemaDefinition(): Record<(typeof SHARD_COLUMNS)[number], ShardColumnSpec> {
  const utf8 = (extra: Partial<ShardColumnSpec> = {}): ShardColumnSpec => ({ type: 'UTF8', statistics: false, ...extra });
  return {
    parent_asin: utf8(),
    category: utf8(),
    main_category: utf8({ optional: true }),
    title: utf8(),
    description: utf8(),
    features: utf8({ repeated: true }),
    average_rating: { type: 'DOUBLE' },
    rating_number: { type: 'INT64' },
    image: { type: 'BYTE_ARRAY', statistics: false },
    image_url: utf8(),
  };
}

/** Number of Unicode code points (not UTF-16 code units) in `s`. */
export function codePointLength(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

// In `u` mode a surrogate pair is one code point, so this matches only lone surrogates.
const LONE_SURROGATE = /\p{Surrogate}/u;

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (Buffer.isBuffer(v)) return 'Buffer';
  if (typeof v === 'string') return `string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return `${typeof v} ${String(v)}`;
  return typeof v;
}

/**
 * Returns every problem with `row` as a list of messages, each naming the field; empty when the
 * row is valid.
 */
export function shardRowProblems(row: unknown): string[] {
  if (typeof row !== 'object' || row === null || Array.isArray(row)) return [`row: expected an object, got ${describe(row)}`];
  const r = row as Record<string, unknown>;
  const problems: string[] = [];
  const known = new Set<string>(SHARD_COLUMNS);
  for (const k of Object.keys(r)) if (!known.has(k)) problems.push(`${k}: unknown field`);

  const text = (name: string, v: unknown, opts: { nonEmpty?: boolean; cap?: number }): void => {
    if (typeof v !== 'string') {
      problems.push(`${name}: expected a string, got ${describe(v)}`);
      return;
    }
    if (opts.nonEmpty && v.length === 0) problems.push(`${name}: must not be empty`);
    if (LONE_SURROGATE.test(v)) problems.push(`${name}: not well-formed Unicode (lone surrogate)`);
    if (opts.cap !== undefined) {
      const n = codePointLength(v);
      if (n > opts.cap) problems.push(`${name}: ${n} code points, more than the cap of ${opts.cap}`);
    }
  };

  text('parent_asin', r.parent_asin, { nonEmpty: true });
  text('category', r.category, { nonEmpty: true });
  if (r.main_category !== null) text('main_category', r.main_category, {});
  text('title', r.title, { cap: SHARD_TEXT_CAP });
  text('description', r.description, { cap: SHARD_TEXT_CAP });
  text('image_url', r.image_url, { nonEmpty: true });

  if (!Array.isArray(r.features)) {
    problems.push(`features: expected an array of strings, got ${describe(r.features)}`);
  } else {
    r.features.forEach((f, i) => text(`features[${i}]`, f, {}));
    if (r.features.every((f) => typeof f === 'string')) {
      const n = codePointLength(r.features.join(' '));
      if (n > SHARD_TEXT_CAP) problems.push(`features: ${n} code points when joined with " ", more than the cap of ${SHARD_TEXT_CAP}`);
    }
  }

  const rating = r.average_rating;
  if (typeof rating !== 'number' || !Number.isFinite(rating)) {
    problems.push(`average_rating: expected a finite number, got ${describe(rating)}`);
  } else if (rating < 1 || rating > 5) {
    problems.push(`average_rating: ${rating} is outside [1, 5]`);
  }

  const count = r.rating_number;
  if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0) {
    problems.push(`rating_number: expected a non-negative safe integer, got ${describe(count)}`);
  }

  if (!Buffer.isBuffer(r.image)) problems.push(`image: expected a Buffer, got ${describe(r.image)}`);
  else if (r.image.length === 0) problems.push('image: must not be empty');

  return problems;
}

/**
 * Checks a row before it is written; throws a DataError naming every bad field (and the item's
 * `parent_asin` when it is readable). Returns the row, typed.
 */
export function validateShardRow(row: unknown): ShardRow {
  const problems = shardRowProblems(row);
  if (problems.length > 0) {
    const asin = (row as { parent_asin?: unknown } | null)?.parent_asin;
    const who = typeof asin === 'string' && asin.length > 0 ? `shard row ${JSON.stringify(asin)}` : 'shard row';
    throw new DataError(`${who} is invalid: ${problems.join('; ')}`);
  }
  return row as ShardRow;
}

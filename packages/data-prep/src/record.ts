/**
 * One parsed metadata line → an `Item` or a reject with a stable reason code. Accepts the raw
 * JSON-lines form and the Hugging Face column form (docs/reference/data.md): the fields used here have the same
 * types in both except `images` (see image-choice.ts); `price`, `details`, `videos`, `store`,
 * `categories`, `bought_together`, `subtitle`, `author` are not used and not checked.
 *
 * The checks run in a fixed, documented order and the first failure is the reason:
 *
 *  1. `not_an_object`        the line is JSON but not an object (array, string, number, null);
 *  2. `missing_parent_asin`  parent_asin absent, null or blank;
 *  3. `bad_field_type`       a used field has the wrong type, in the order parent_asin,
 *                            average_rating, rating_number, main_category, title, description,
 *                            features, images (detail names the field);
 *  4. `no_average_rating`    average_rating null or absent;
 *  5. `average_rating_out_of_range`  outside [1, 5] (or not finite, e.g. 1e999);
 *  6. `no_rating_number`     rating_number null or absent;
 *  7. `too_few_ratings`      rating_number < selection.minRatingNumber;
 *  8. `no_main_image`        no usable MAIN image URL.
 *
 * Numbers given as strings ("4.5") are a type error, not coerced: no such values exist in either
 * published form, so seeing one means the file is not what it claims to be. Text is cleaned and
 * capped only for records that pass, so rejected lines cost little.
 */
import type { RejectRecord } from '@smolrate/core';
import type { DataPrepConfig } from './config.js';
import { chooseMainImage } from './image-choice.js';
import { capCodePoints, capTextList, cleanText, joinText } from './text.js';
import { REJECT_REASONS, type Item, type RejectReason } from './types.js';

export interface RecordContext {
  /** URI of the input file. */
  source: string;
  /** 1-based line number. */
  line: number;
  /** The file's category (the stratum). */
  category: string;
  cfg: Pick<DataPrepConfig, 'selection' | 'text'>;
}

export type NormalizeResult = { item: Item } | { reject: RejectRecord & { reason: RejectReason } };

/** A record that passed every check, before its text is cleaned (`toItem`). */
export interface ValidRecord {
  parent_asin: string;
  average_rating: number;
  rating_number: number;
  main_category: string | null;
  title: string | null;
  description: string[];
  features: string[];
  image_url: string;
}

export type ValidateResult = { valid: ValidRecord } | { reject: RejectRecord & { reason: RejectReason } };

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'number') return `number ${v}`;
  if (typeof v === 'string') return `string ${JSON.stringify(v.length > 20 ? `${v.slice(0, 20)}…` : v)}`;
  return `a ${typeof v}`;
}

const absent = (v: unknown): v is null | undefined => v === null || v === undefined;

/** null/absent, one string, or a list of strings (null entries skipped) → the strings; else a problem. */
function textParts(v: unknown, name: string): string[] | string {
  if (absent(v)) return [];
  if (typeof v === 'string') return [v];
  if (!Array.isArray(v)) return `${name}: expected a list of strings, a string or null, got ${typeName(v)}`;
  const out: string[] = [];
  for (let i = 0; i < v.length; i++) {
    const p = v[i] as unknown;
    if (p === null) continue;
    if (typeof p !== 'string') return `${name}[${i}]: expected a string, got ${typeName(p)}`;
    out.push(p);
  }
  return out;
}

// A parent_asin is an opaque key, but one that is not well-formed text cannot be stored.
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** `validateRecord` then `toItem`: the whole normalisation of one parsed line. */
export function normalizeRecord(raw: unknown, ctx: RecordContext): NormalizeResult {
  const res = validateRecord(raw, ctx);
  return 'valid' in res ? { item: toItem(res.valid, ctx) } : res;
}

/**
 * The checks, in the order of the module comment; no text is cleaned yet, so a selection pass
 * can drop candidates that will not be kept before paying for that.
 */
export function validateRecord(raw: unknown, ctx: RecordContext): ValidateResult {
  const { source, line } = ctx;
  const reject = (reason: RejectReason, detail?: string, parentAsin?: string): ValidateResult => {
    const r: RejectRecord & { reason: RejectReason } = { source, line, reason };
    if (parentAsin !== undefined) r.parent_asin = parentAsin;
    if (detail !== undefined) r.detail = detail;
    return { reject: r };
  };

  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return reject(REJECT_REASONS.notAnObject, `expected an object, got ${typeName(raw)}`);
  }
  const rec = raw as Record<string, unknown>;

  const asinValue = rec.parent_asin;
  if (absent(asinValue) || (typeof asinValue === 'string' && asinValue.trim() === '')) {
    return reject(REJECT_REASONS.missingParentAsin);
  }
  const bad = (detail: string, asin?: string) => reject(REJECT_REASONS.badField, detail, asin);
  if (typeof asinValue !== 'string') return bad(`parent_asin: expected a string, got ${typeName(asinValue)}`);
  if (LONE_SURROGATE.test(asinValue)) return bad('parent_asin: not well-formed Unicode (lone surrogate)');
  const asin = asinValue;

  const rating = rec.average_rating;
  if (!absent(rating) && typeof rating !== 'number') return bad(`average_rating: expected a number or null, got ${typeName(rating)}`, asin);
  const count = rec.rating_number;
  if (!absent(count) && (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0)) {
    return bad(`rating_number: expected a non-negative integer or null, got ${typeName(count)}`, asin);
  }
  const mainCategory = rec.main_category;
  if (!absent(mainCategory) && typeof mainCategory !== 'string') {
    return bad(`main_category: expected a string or null, got ${typeName(mainCategory)}`, asin);
  }
  const title = rec.title;
  if (!absent(title) && typeof title !== 'string') return bad(`title: expected a string or null, got ${typeName(title)}`, asin);
  const description = textParts(rec.description, 'description');
  if (typeof description === 'string') return bad(description, asin);
  const features = textParts(rec.features, 'features');
  if (typeof features === 'string') return bad(features, asin);
  const image = chooseMainImage(rec.images);
  if (image.kind === 'bad') return bad(image.detail, asin);

  if (absent(rating)) return reject(REJECT_REASONS.noRating, undefined, asin);
  if (!Number.isFinite(rating) || rating < 1 || rating > 5) {
    return reject(REJECT_REASONS.ratingOutOfRange, `average_rating ${rating} is outside [1, 5]`, asin);
  }
  if (absent(count)) return reject(REJECT_REASONS.noRatingNumber, undefined, asin);
  const min = ctx.cfg.selection.minRatingNumber;
  if (count < min) return reject(REJECT_REASONS.tooFewRatings, `rating_number ${count} < ${min}`, asin);
  if (image.kind === 'none') return reject(REJECT_REASONS.noImage, undefined, asin);

  return {
    valid: {
      parent_asin: asin,
      average_rating: rating,
      rating_number: count,
      main_category: absent(mainCategory) ? null : mainCategory,
      title: absent(title) ? null : title,
      description,
      features,
      image_url: image.url,
    },
  };
}

/** The stored form of a valid record: text cleaned and capped at `text.maxChars` code points. */
export function toItem(v: ValidRecord, ctx: RecordContext): Item {
  const maxChars = ctx.cfg.text.maxChars;
  const mainCat = v.main_category === null ? '' : cleanText(v.main_category);
  return {
    parent_asin: v.parent_asin,
    category: ctx.category,
    main_category: mainCat === '' ? null : mainCat,
    title: v.title === null ? '' : capCodePoints(cleanText(v.title), maxChars),
    description: joinText(v.description, maxChars),
    features: capTextList(v.features, maxChars),
    average_rating: v.average_rating,
    rating_number: v.rating_number,
    image_url: v.image_url,
    source: ctx.source,
    line: ctx.line,
  };
}

/**
 * The traps of docs/reference/data.md planted in the synthetic files, at exact rates: a trap with rate r appears
 * on exactly round(r · items) records (fewer only when too few records are eligible for it), chosen
 * by a seeded permutation — so small datasets still contain every kind, and tests can count them.
 *
 * Fatal traps decide a record's fate (the reject reason the pipeline must give it) and are mutually
 * exclusive, so the expected reason is never ambiguous (no dependence on the order of checks).
 * Format traps change how a record is written but not its fate.
 */
import { ConfigError, permutation } from '@smolrate/core';
import { REJECT_REASONS, type RejectReason } from './types.js';

export interface TrapRates {
  /** Line is not valid JSON (cut short, bare NaN, two objects on one line, trailing comma) → malformed_json. */
  malformedJson: number;
  /** Line repeats an earlier record's parent_asin (same file, or a file of an earlier category) → duplicate_parent_asin. */
  duplicate: number;
  /** `images: []` → no_main_image. */
  emptyImages: number;
  /** `average_rating: null` → no_average_rating. */
  nullRating: number;
  /** `rating_number: null` → no_rating_number. */
  nullRatingNumber: number;
  /** rating_number in 1..9 → too_few_ratings (minRatingNumber 10). */
  fewRatings: number;
  /** MAIN image URL points at no file → image_not_found. */
  missingImage: number;
  /** MAIN image file is damaged → image_corrupt. */
  corruptImage: number;
  /** Hugging Face column form: images/videos as dicts of lists, price a string ("None"), details a JSON string. */
  columnForm: number;
  /** Video-catalogue record: main_category "Prime Video", width-keyed image URLs (360w…1920w), WebP bytes under a .jpg name. */
  widthKeyed: number;
  /** MAIN `hi_res` is null: the `large` URL (≈ 500 px) must be used. */
  hiResNull: number;
  /** MAIN image is an RGBA PNG (transparent black background, a semi-transparent shadow). */
  pngAlpha: number;
  /** price as a string with a symbol ("$12.99"). */
  priceString: number;
  /** price null. */
  priceNull: number;
  /** details with nested objects and lists (Best Sellers Rank, dimensions, materials). */
  nestedDetails: number;
  /** Emoji, CJK, control characters, mojibake in the title (and description). */
  weirdText: number;
}

export type TrapKind = keyof TrapRates;

export const DEFAULT_TRAP_RATES: Readonly<TrapRates> = {
  malformedJson: 0.02,
  duplicate: 0.02,
  emptyImages: 0.03,
  nullRating: 0.02,
  nullRatingNumber: 0.02,
  fewRatings: 0.05,
  missingImage: 0.02,
  corruptImage: 0.02,
  columnForm: 0.05,
  widthKeyed: 0.03,
  hiResNull: 0.08,
  pngAlpha: 0.1,
  priceString: 0.25,
  priceNull: 0.2,
  nestedDetails: 0.3,
  weirdText: 0.05,
};

/** Fatal traps, the reason each must produce, and the pipeline stage that finds it. */
export const FATAL_TRAPS = {
  malformedJson: { reason: REJECT_REASONS.malformedJson, stage: 'select' },
  duplicate: { reason: REJECT_REASONS.duplicate, stage: 'select' }, // 'plan' when the first copy is in another file
  emptyImages: { reason: REJECT_REASONS.noImage, stage: 'select' },
  nullRating: { reason: REJECT_REASONS.noRating, stage: 'select' },
  nullRatingNumber: { reason: REJECT_REASONS.noRatingNumber, stage: 'select' },
  fewRatings: { reason: REJECT_REASONS.tooFewRatings, stage: 'select' },
  missingImage: { reason: REJECT_REASONS.imageNotFound, stage: 'image' },
  corruptImage: { reason: REJECT_REASONS.imageCorrupt, stage: 'image' },
} as const satisfies Partial<Record<TrapKind, { reason: RejectReason; stage: 'select' | 'image' }>>;

export type FatalTrap = keyof typeof FATAL_TRAPS;
export const FATAL_KINDS = Object.keys(FATAL_TRAPS) as FatalTrap[];
export type FormatTrap = Exclude<TrapKind, FatalTrap>;
export const FORMAT_KINDS: FormatTrap[] = ['columnForm', 'widthKeyed', 'hiResNull', 'pngAlpha', 'priceString', 'priceNull', 'nestedDetails', 'weirdText'];
export const TRAP_KINDS: TrapKind[] = [...FATAL_KINDS, ...FORMAT_KINDS];

/** Defaults overridden by `rates`; unknown keys and values outside [0, 1] are errors naming the key. */
export function resolveTrapRates(rates: Partial<Record<string, unknown>> = {}): TrapRates {
  const out: TrapRates = { ...DEFAULT_TRAP_RATES };
  for (const [k, v] of Object.entries(rates)) {
    if (!(TRAP_KINDS as string[]).includes(k)) throw new ConfigError(`synth rates: unknown trap "${k}" (known: ${TRAP_KINDS.join(', ')})`);
    if (typeof v !== 'number' || !(v >= 0 && v <= 1)) throw new ConfigError(`synth rates: ${k} must be a number in [0, 1], got ${JSON.stringify(v)}`);
    out[k as TrapKind] = v;
  }
  return out;
}

export interface TrapPlan {
  /** Per record: index into FATAL_KINDS + 1, or 0 for none. */
  fatal: Uint8Array;
  /** Per format trap: 1 where the record has it. */
  flags: Record<FormatTrap, Uint8Array>;
  /** Records that got each trap. */
  counts: Record<TrapKind, number>;
}

function fatalOf(plan: Pick<TrapPlan, 'fatal'>, i: number): FatalTrap | null {
  const f = plan.fatal[i];
  return f === 0 ? null : FATAL_KINDS[f - 1];
}

/** Who may carry a format trap (a trap that would be invisible or contradictory is not planted). */
function eligible(kind: FormatTrap, fatal: FatalTrap | null, flags: Record<FormatTrap, Uint8Array>, i: number): boolean {
  if (fatal === 'malformedJson') return false;
  const hasImages = fatal !== 'emptyImages';
  switch (kind) {
    case 'widthKeyed':
      // The column form loses the width keys (docs/reference/data.md), so the two cannot be combined.
      return hasImages && !flags.columnForm[i];
    case 'hiResNull':
      return hasImages && !flags.widthKeyed[i];
    case 'pngAlpha':
      return hasImages && fatal !== 'missingImage' && fatal !== 'corruptImage' && !flags.widthKeyed[i];
    case 'priceNull':
      return !flags.priceString[i];
    default:
      return true;
  }
}

/**
 * Assigns traps to records 0..n-1. Record 0 never gets a fatal trap, so every duplicate has an
 * earlier clean record to copy.
 */
export function planTraps(n: number, rates: TrapRates, seed: number): TrapPlan {
  const fatal = new Uint8Array(n);
  const counts = Object.fromEntries(TRAP_KINDS.map((k) => [k, 0])) as Record<TrapKind, number>;
  const wanted = FATAL_KINDS.map((k) => Math.round(rates[k] * n));
  const total = wanted.reduce((a, b) => a + b, 0);
  if (total > Math.max(0, n - 1)) {
    throw new ConfigError(`synth rates: the fatal traps (${FATAL_KINDS.join(', ')}) need ${total} of ${n} records; at most ${Math.max(0, n - 1)} can carry one`);
  }
  const order = permutation(Math.max(0, n - 1), seed, 'synth-traps', 'fatal');
  let at = 0;
  FATAL_KINDS.forEach((k, ki) => {
    for (let j = 0; j < wanted[ki]; j++) fatal[order[at++] + 1] = ki + 1;
    counts[k] = wanted[ki];
  });
  const flags = Object.fromEntries(FORMAT_KINDS.map((k) => [k, new Uint8Array(n)])) as Record<FormatTrap, Uint8Array>;
  for (const kind of FORMAT_KINDS) {
    const pool: number[] = [];
    for (let i = 0; i < n; i++) if (eligible(kind, fatalOf({ fatal }, i), flags, i)) pool.push(i);
    const take = Math.min(Math.round(rates[kind] * n), pool.length);
    const p = permutation(pool.length, seed, 'synth-traps', kind);
    for (let j = 0; j < take; j++) flags[kind][pool[p[j]]] = 1;
    counts[kind] = take;
  }
  return { fatal, flags, counts };
}

export function fatalTrapOf(plan: TrapPlan, i: number): FatalTrap | null {
  return fatalOf(plan, i);
}

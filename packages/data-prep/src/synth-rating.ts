/**
 * The latent rating model of the synthetic dataset: how `average_rating` is generated from what a
 * model can see (the MAIN image and the text fields) plus noise. Kept in one small file so the
 * formula here, the one in the generated README.md and the learnability test cannot drift apart.
 *
 *   raw    = 3.6
 *          + 0.6 · warmth                          warmth ∈ [-1, 1]: hue of the big shape, blue → red
 *          + SHAPE_EFFECT[shape]                   circle +0.35, square +0.10, triangle −0.15, cross −0.30
 *          − 0.06 · (clutter − 5)                  clutter ∈ {0..10}: small blobs scattered over the image
 *          + 0.3 · (positive − negative)           title words ("Premium", "Durable"… vs "Cheap", "Broken"…)
 *          + 0.6 · (descLen − 0.5)                 descLen = ln(1 + min(D, 100)) / ln(101), D = description code points
 *          + CATEGORY_OFFSET[category]             in [-0.3, 0.3]
 *          + N(0, σ²),  σ = 0.15 + 0.05 · (5 − log10(rating_number))   (0.15 at 1e5 ratings, 0.35 at 10)
 *   average_rating = round(clamp(raw, 1, 5), 1 decimal)
 *
 * Why these choices: the image terms are big solid colour fields and shapes (visible after the
 * 384×384 resize, not fine texture); the description term saturates at 100 characters because the
 * model reads each text field truncated to L = 100 characters (docs/reference/design.md), so longer descriptions
 * could not be told apart; few ratings give noisier averages, as on the real site. With these
 * weights the latent terms explain ≈ 85 % of the variance (a linear model on them reaches PLCC
 * ≈ 0.92) and the ratings' standard deviation is ≈ 0.65 — a mean predictor has PLCC 0.
 */
import { seedFrom } from '@smolrate/core';

export const SYNTH_SHAPES = ['circle', 'square', 'triangle', 'cross'] as const;
export type ShapeKind = (typeof SYNTH_SHAPES)[number];

export const SYNTH_RATING_MODEL = {
  base: 3.6,
  warmth: 0.6,
  shape: { circle: 0.35, square: 0.1, triangle: -0.15, cross: -0.3 } as Record<ShapeKind, number>,
  clutter: -0.06,
  clutterCentre: 5,
  maxClutter: 10,
  titleWord: 0.3,
  description: 0.6,
  /** Characters of a text field the model reads (docs/reference/design.md: L = 100). */
  descriptionWindow: 100,
  noiseSdMin: 0.15,
  noiseSdPerDecade: 0.05,
} as const;

/** Offsets of the default categories; other names get a stable hash-derived offset in [-0.3, 0.3]. */
export const SYNTH_CATEGORY_OFFSETS: Readonly<Record<string, number>> = {
  All_Beauty: 0.15,
  Amazon_Fashion: -0.25,
  Books: 0.3,
  Electronics: -0.1,
  Home_and_Kitchen: 0.05,
  Toys_and_Games: -0.2,
  Video_Games: 0.1,
};

export function synthCategoryOffset(category: string): number {
  const known = SYNTH_CATEGORY_OFFSETS[category];
  if (known !== undefined) return known;
  // Independent of the seed: a category means the same thing in every synthetic dataset.
  const u = seedFrom(0, 'synth-category-offset', category) / 2 ** 32;
  return Math.round((u * 0.6 - 0.3) * 100) / 100;
}

/** What the rating depends on; everything but `noise` is visible in the record or its image. */
export interface LatentFeatures {
  warmth: number;
  shape: ShapeKind;
  clutter: number;
  titlePositive: number;
  titleNegative: number;
  /** Description length in Unicode code points (all paragraphs, separators not counted). */
  descriptionChars: number;
  category: string;
  /** rating_number as written, or null; sets the noise scale (null counts as 10). */
  ratingNumber: number | null;
}

export interface LatentRating {
  components: {
    base: number;
    colour: number;
    shape: number;
    clutter: number;
    title: number;
    description: number;
    category: number;
    noise: number;
  };
  noiseSd: number;
  /** Sum of the components before clamping and rounding. */
  raw: number;
  /** round(clamp(raw, 1, 5), 1 decimal): the record's average_rating. */
  rating: number;
}

/** The saturating description feature in [0, 1]. */
export function descriptionFeature(chars: number): number {
  return Math.log1p(Math.min(Math.max(chars, 0), SYNTH_RATING_MODEL.descriptionWindow)) / Math.log1p(SYNTH_RATING_MODEL.descriptionWindow);
}

function ratingNoiseSd(ratingNumber: number | null): number {
  const decades = Math.min(5, Math.max(1, Math.log10(Math.max(ratingNumber ?? 10, 1))));
  return SYNTH_RATING_MODEL.noiseSdMin + SYNTH_RATING_MODEL.noiseSdPerDecade * (5 - decades);
}

/** The formula of the file comment; `standardNormal` is the noise draw, N(0, 1). */
export function latentRating(f: LatentFeatures, standardNormal: number): LatentRating {
  const m = SYNTH_RATING_MODEL;
  const sd = ratingNoiseSd(f.ratingNumber);
  const components = {
    base: m.base,
    colour: m.warmth * f.warmth,
    shape: m.shape[f.shape],
    clutter: m.clutter * (f.clutter - m.clutterCentre),
    title: m.titleWord * (f.titlePositive - f.titleNegative),
    description: m.description * (descriptionFeature(f.descriptionChars) - 0.5),
    category: synthCategoryOffset(f.category),
    noise: sd * standardNormal,
  };
  const raw = Object.values(components).reduce((a, b) => a + b, 0);
  const rating = Math.round(Math.min(5, Math.max(1, raw)) * 10) / 10;
  return { components, noiseSd: sd, raw, rating };
}

/**
 * Hue in degrees of the big shape for a warmth in [-1, 1]: +1 → 20° (red-orange), 0 → 120°
 * (green), −1 → 220° (blue), so warmth is a monotone function of the shape's red − blue balance.
 */
export function warmthHue(warmth: number): number {
  return 120 - 100 * warmth;
}

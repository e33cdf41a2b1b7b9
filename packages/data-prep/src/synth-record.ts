/**
 * One synthetic metadata record: its latent features and rating (synth-rating.ts), its text
 * (synth-text.ts), its image entries and MAIN image spec (synth-images.ts), the traps planned for
 * it (synth-traps.ts), the line written to the metadata file, and its truth.jsonl entry (the fate
 * the pipeline must give it). Everything comes from the record's own seeded stream, so a record
 * does not depend on the order images finish in.
 */
import type { Rng } from '@smolrate/core';
import { imageSpec, type CorruptKind, type SynthImageFormat, type SynthImageSpec } from './synth-images.js';
import { descriptionFeature, latentRating, SYNTH_SHAPES, synthCategoryOffset, type LatentFeatures, type LatentRating, type ShapeKind } from './synth-rating.js';
import {
  brandName,
  categoryProfile,
  codePoints,
  makeDescription,
  makeDetails,
  makeFeatures,
  makeTitle,
  OTHER_STORE_LABELS,
  pick,
  PyFloat,
  pythonJson,
  weirdSuffix,
  type PyJson,
} from './synth-text.js';
import { FATAL_TRAPS, type FatalTrap, type FormatTrap, type TrapKind } from './synth-traps.js';

export type Fate = 'kept-candidate' | (typeof FATAL_TRAPS)[FatalTrap]['reason'];
export type MalformedKind = 'truncated' | 'nan' | 'concatenated' | 'trailing-comma';

/** One line of truth.jsonl. */
export interface TruthRecord {
  /** The metadata file (relative to the dataset folder) and 1-based line. */
  source: string;
  line: number;
  category: string;
  /** The key written on the line (for malformed lines it may not be recoverable). */
  parent_asin: string;
  /** `kept-candidate` (passes every filter of the select step) or the reject reason it must get. */
  fate: Fate;
  /** Where the fate is decided: select (one file), plan (across files), image (build-shard); null when kept. */
  stage: 'select' | 'plan' | 'image' | null;
  /** Held by the select step (before top/bottom-K sampling, which these fates do not model). */
  candidate: boolean;
  /** Every trap on the record: its fatal trap first, then format traps. */
  traps: TrapKind[];
  /** For duplicates: the first copy. */
  duplicateOf: { source: string; line: number } | null;
  malformed: MalformedKind | null;
  /** The MAIN image the pipeline should fetch (hi_res, else widest NNNw, else large); null if none. */
  image: {
    url: string;
    /** Path of the file under the dataset folder; null when deliberately missing. */
    file: string | null;
    format: SynthImageFormat;
    width: number;
    height: number;
    corrupt: CorruptKind | null;
    /**
     * The core ImageError reason a lone decodeImage raises (both map to image_corrupt; under
     * concurrent decodes libvips may word a truncation as a generic error); null for a good image.
     */
    decodeError: 'truncated' | 'corrupt' | null;
  } | null;
  main_category: string | null;
  average_rating: number | null;
  rating_number: number | null;
  latent: Omit<LatentFeatures, 'category' | 'ratingNumber'> & {
    descriptionFeature: number;
    categoryOffset: number;
    /** The standard-normal draw of the noise term. */
    noiseZ: number;
  } & LatentRating;
}

export interface RecordInput {
  rng: Rng;
  category: string;
  source: string;
  line: number;
  imageBaseUrl: string;
  fatal: FatalTrap | null;
  formats: ReadonlySet<FormatTrap>;
  /** A fresh parent_asin, unique in the dataset. */
  newAsin: (rng: Rng, category: string) => string;
  /** A fresh 11-character image id, unique in the dataset. */
  newImageId: (rng: Rng) => string;
  /** For duplicates: the first copy to repeat, chosen by the generator (null when none exists). */
  duplicateOf: { parent_asin: string; source: string; line: number; crossFile: boolean } | null;
}

export interface BuiltRecord {
  /** The metadata line, without its newline. */
  text: string;
  truth: TruthRecord;
  /** The MAIN image file to write (path relative to the dataset folder), or null. */
  image: { file: string; spec: SynthImageSpec } | null;
}

const round4 = (x: number) => Math.round(x * 1e4) / 1e4;

/** 0, 1 or 2 title words, P = .5 / .35 / .15. */
function wordCount(rng: Rng): number {
  const u = rng.next();
  return u < 0.5 ? 0 : u < 0.85 ? 1 : 2;
}

function logUniform(rng: Rng, lo: number, hi: number): number {
  return Math.exp(Math.log(lo) + rng.next() * (Math.log(hi) - Math.log(lo)));
}

/** width × height with the long side `long` and a random aspect ratio in [1:2, 2:1] (30 % square); both sides ≥ 200 when the long side allows. */
function dimensions(rng: Rng, long: number): { width: number; height: number } {
  const ratio = rng.next() < 0.3 ? 1 : logUniform(rng, 1, 2);
  const short = Math.min(long, Math.max(200, Math.round(long / ratio)));
  return rng.next() < 0.5 ? { width: long, height: short } : { width: short, height: long };
}

const HI_RES_MODIFIERS = [
  { mod: '._SL1500_', max: 1500 },
  { mod: '._AC_SL1500_', max: 1500 },
  { mod: '._AC_UL1500_', max: 1500 },
  { mod: '._SL1000_', max: 1000 },
  { mod: '._AC_SL1000_', max: 1000 },
];
const LARGE_MODIFIERS = ['', '._AC_'];
const THUMB_MODIFIERS = ['._SS40_', '._AC_US40_'];
const WIDTH_KEYS = [360, 480, 720, 1080, 1440, 1920];
const VARIANTS = ['PT01', 'PT02', 'PT03', 'PT04', 'PT05', 'PT06', 'PT07', 'PT08', 'BACK'];

interface ImagePlan {
  entries: Array<Record<string, string | null>>;
  main: NonNullable<TruthRecord['image']> | null;
  spec: SynthImageSpec | null;
}

function planImages(
  input: RecordInput,
  rng: Rng,
  latent: { warmth: number; shape: ShapeKind; clutter: number },
): ImagePlan {
  if (input.fatal === 'emptyImages') return { entries: [], main: null, spec: null };
  const base = input.imageBaseUrl;
  const { formats, fatal } = input;
  const id = input.newImageId(rng);
  let corrupt: CorruptKind | null = null;
  let format: SynthImageFormat = formats.has('widthKeyed') ? 'webp' : formats.has('pngAlpha') ? 'png' : 'jpeg';
  if (fatal === 'corruptImage') {
    corrupt = format === 'webp' ? 'webp-truncated' : rng.next() < 0.5 ? 'jpeg-truncated' : 'png-bad-idat';
    format = corrupt === 'png-bad-idat' ? 'png' : corrupt === 'webp-truncated' ? 'webp' : 'jpeg';
  }
  const ext = format === 'png' ? '.png' : '.jpg'; // WebP hides behind .jpg, as on the real CDN
  const entries: Array<Record<string, string | null>> = [];
  let url: string;
  let size: { width: number; height: number };
  if (formats.has('widthKeyed')) {
    const widest = pick(rng, [1080, 1440, 1920]);
    const main: Record<string, string | null> = {};
    for (const w of WIDTH_KEYS) if (w <= widest) main[`${w}w`] = `${base}${id}._SX${w}_.jpg`;
    main.variant = 'MAIN';
    entries.push(main);
    url = `${base}${id}._SX${widest}_.jpg`;
    const width = widest / 2; // stored smaller than the key says, to keep the dataset small
    size = { width, height: Math.round(width * (rng.next() < 0.5 ? 9 / 16 : 1.5)) };
  } else {
    const large = `${base}${id}${pick(rng, LARGE_MODIFIERS)}${ext}`;
    const hi = pick(rng, HI_RES_MODIFIERS);
    const hiRes = formats.has('hiResNull') ? null : `${base}${id}${hi.mod}${ext}`;
    entries.push({ thumb: `${base}${id}${pick(rng, THUMB_MODIFIERS)}.jpg`, large, variant: 'MAIN', hi_res: hiRes });
    url = hiRes ?? large;
    size = dimensions(rng, hiRes ? Math.round(logUniform(rng, 300, hi.max)) : 200 + rng.int(301));
    // Other views: never fetched, so no files (a loader that picks them gets 404s).
    const n = rng.int(6);
    const names = VARIANTS.filter(() => rng.next() < 0.6).slice(0, n);
    for (const v of names) {
      const vid = input.newImageId(rng);
      entries.push({
        thumb: `${base}${vid}${pick(rng, THUMB_MODIFIERS)}.jpg`,
        large: `${base}${vid}${pick(rng, LARGE_MODIFIERS)}.jpg`,
        variant: v,
        hi_res: rng.next() < 0.2 ? null : `${base}${vid}${pick(rng, HI_RES_MODIFIERS).mod}.jpg`,
      });
    }
  }
  const spec = imageSpec(rng, latent, { ...size, format, corrupt });
  const file = fatal === 'missingImage' ? null : `images/${url.slice(base.length)}`;
  return {
    entries,
    main: {
      url,
      file,
      format,
      width: size.width,
      height: size.height,
      corrupt,
      decodeError: corrupt === null ? null : corrupt === 'jpeg-truncated' ? 'truncated' : 'corrupt',
    },
    spec: file === null ? null : spec,
  };
}

/** Hugging Face column form of a list of objects: a dict of lists over `keys`. */
function columns(list: Array<Record<string, string | null>>, keys: string[]): { [k: string]: PyJson } {
  return Object.fromEntries(keys.map((k) => [k, list.map((o) => o[k] ?? null)]));
}

function mangle(rng: Rng, text: string): { text: string; kind: MalformedKind } {
  const kinds: MalformedKind[] = ['truncated', 'nan', 'concatenated', 'trailing-comma'];
  const kind = pick(rng, kinds);
  switch (kind) {
    case 'nan': {
      // json.dumps writes float('nan') as a bare NaN, which is not JSON.
      const out = text.replace(/"average_rating": [0-9.]+/, '"average_rating": NaN');
      if (out !== text) return { text: out, kind };
      break;
    }
    case 'concatenated':
      return { text: text + text, kind };
    case 'trailing-comma':
      return { text: text.slice(0, -1) + ', }', kind };
    case 'truncated':
      break;
  }
  // Any proper prefix of an object is invalid JSON: the closing brace is missing.
  const cut = Math.floor(text.length * (0.2 + 0.75 * rng.next()));
  return { text: text.slice(0, Math.max(1, Math.min(cut, text.length - 1))), kind: 'truncated' };
}

export function buildRecord(input: RecordInput): BuiltRecord {
  const { rng, category, fatal, formats } = input;
  const profile = categoryProfile(category);
  const parentAsin = input.duplicateOf?.parent_asin ?? input.newAsin(rng, category);

  // Latent features (synth-rating.ts), rounded before use so truth.jsonl reproduces them exactly.
  const warmth = round4(2 * rng.next() - 1);
  const shape = SYNTH_SHAPES[rng.int(SYNTH_SHAPES.length)];
  const clutter = rng.int(11);
  const titlePositive = wordCount(rng);
  const titleNegative = wordCount(rng);
  const descTarget = rng.next() < 0.1 ? 0 : Math.round(logUniform(rng, 5, 2000));
  const ratingNumber = fatal === 'fewRatings' ? 1 + rng.int(9) : Math.floor(10 ** (1 + 4 * rng.next()));

  const brand = brandName(rng);
  const weird = formats.has('weirdText');
  let title = makeTitle(rng, brand, category, titlePositive, titleNegative);
  if (weird) title += weirdSuffix(rng);
  const description = makeDescription(rng, descTarget);
  if (weird && description.length > 0) description[0] += weirdSuffix(rng);
  const features = makeFeatures(rng);
  const descriptionChars = description.reduce((n, p) => n + codePoints(p), 0);
  const noiseZ = round4(rng.normal());
  const rating = latentRating({ warmth, shape, clutter, titlePositive, titleNegative, descriptionChars, category, ratingNumber }, noiseZ);

  const r = rng.next();
  const mainCategory = formats.has('widthKeyed') ? 'Prime Video' : r < 0.85 ? profile.storeLabel : r < 0.95 ? pick(rng, OTHER_STORE_LABELS) : null;
  const priceValue = Math.round(logUniform(rng, 3, 300) * 100) / 100;
  const price: PyJson = formats.has('priceNull') ? null : formats.has('priceString') ? `$${priceValue.toFixed(2)}` : new PyFloat(priceValue);
  const images = planImages(input, rng, { warmth, shape, clutter });
  const videos =
    rng.next() < 0.1 ? [{ title: `${brand} product video`, url: `https://www.amazon.com/vdp/${rng.nextU32().toString(16).padStart(8, '0')}`, user_id: '' }] : [];
  const store = rng.next() < 0.9 ? brand : null;
  const details = makeDetails(rng, brand, category, formats.has('nestedDetails'));
  const averageRating = fatal === 'nullRating' ? null : rating.rating;
  const ratingNumberOut = fatal === 'nullRatingNumber' ? null : ratingNumber;

  // Field order of the raw files (json.dumps of the crawled dict).
  const record: { [k: string]: PyJson } = { main_category: mainCategory, title };
  if (category === 'Books' && rng.next() < 0.7) {
    record.subtitle = `${pick(rng, ['Paperback', 'Hardcover', 'Kindle Edition'])} – ${pick(rng, ['January', 'May', 'September'])} ${1 + rng.int(28)}, ${1990 + rng.int(33)}`;
    record.author = { avatar: `${input.imageBaseUrl}${input.newImageId(rng)}._SY600_.jpg`, name: brandName(rng) + ' ' + brandName(rng), about: [] };
  }
  Object.assign(record, {
    average_rating: averageRating === null ? null : new PyFloat(averageRating),
    rating_number: ratingNumberOut,
    features,
    description,
    price,
    images: images.entries,
    videos,
    store,
    categories: pick(rng, profile.breadcrumbs),
    details,
    parent_asin: parentAsin,
    bought_together: null,
  } satisfies { [k: string]: PyJson });

  if (formats.has('columnForm')) {
    // The `datasets` loader's form: lists of objects become dicts of lists, price str(), details json.dumps.
    record.images = columns(images.entries, ['hi_res', 'large', 'thumb', 'variant']);
    record.videos = columns(videos, ['title', 'url', 'user_id']);
    record.price = price === null ? 'None' : price instanceof PyFloat ? pythonJson(price) : price;
    record.details = pythonJson(details);
  }

  let text = pythonJson(record);
  let malformed: MalformedKind | null = null;
  if (fatal === 'malformedJson') ({ text, kind: malformed } = mangle(rng, text));

  const crossFile = input.duplicateOf?.crossFile ?? false;
  const fate: Fate = fatal ? FATAL_TRAPS[fatal].reason : 'kept-candidate';
  const stage = fatal === null ? null : fatal === 'duplicate' && crossFile ? 'plan' : FATAL_TRAPS[fatal].stage;
  const candidate = fatal === null || fatal === 'missingImage' || fatal === 'corruptImage' || (fatal === 'duplicate' && crossFile);
  const image = fatal === 'malformedJson' ? null : images.main;

  const truth: TruthRecord = {
    source: input.source,
    line: input.line,
    category,
    parent_asin: parentAsin,
    fate,
    stage,
    candidate,
    traps: [...(fatal ? [fatal] : []), ...[...formats].sort()],
    duplicateOf: input.duplicateOf ? { source: input.duplicateOf.source, line: input.duplicateOf.line } : null,
    malformed,
    image,
    main_category: mainCategory,
    average_rating: averageRating,
    rating_number: ratingNumberOut,
    latent: {
      warmth,
      shape,
      clutter,
      titlePositive,
      titleNegative,
      descriptionChars,
      descriptionFeature: descriptionFeature(descriptionChars),
      categoryOffset: synthCategoryOffset(category),
      noiseZ,
      ...rating,
    },
  };
  const spec = fatal === 'malformedJson' ? null : images.spec;
  return { text, truth, image: spec && image?.file ? { file: image.file, spec } : null };
}

/**
 * Text for the synthetic records: titles carrying the rating's title words, descriptions of a
 * chosen length, features, details, store labels, the "weird text" trap (emoji, CJK, control
 * characters, mojibake), and the writer of the raw files' JSON dialect — Python's
 * `json.dumps(obj)`: `", "` and `": "` separators, non-ASCII `\uXXXX`-escaped (surrogate pairs for
 * emoji), floats always with a decimal point (4.0, not 4), NaN written bare.
 */
import type { Rng } from '@smolrate/core';

/** Title words that raise the latent rating (one `titleWord` step each). */
export const POSITIVE_WORDS = ['Premium', 'Durable', 'Deluxe', 'Professional', 'Sturdy', 'Elegant'] as const;
/** Title words that lower it. */
export const NEGATIVE_WORDS = ['Cheap', 'Broken', 'Flimsy', 'Knockoff', 'Defective', 'Leaky'] as const;

export interface CategoryProfile {
  /** The usual `main_category` store label of the category's records. */
  storeLabel: string;
  nouns: readonly string[];
  /** `categories` breadcrumbs ([] for the whole All_Beauty file, as in the real data). */
  breadcrumbs: readonly string[][];
}

const PROFILES: Record<string, CategoryProfile> = {
  All_Beauty: {
    storeLabel: 'All Beauty',
    nouns: ['Nail Polish', 'Face Serum', 'Hair Clips', 'Lip Balm', 'Makeup Brush Set', 'Body Lotion', 'Eyelash Curler'],
    breadcrumbs: [[]],
  },
  Amazon_Fashion: {
    storeLabel: 'AMAZON FASHION',
    nouns: ['Crew Neck T-Shirt', 'Leather Belt', 'Knit Beanie', 'Canvas Tote Bag', 'Ankle Socks', 'Rain Jacket'],
    breadcrumbs: [[]],
  },
  Books: {
    storeLabel: 'Books',
    nouns: ['Cookbook', 'Mystery Novel', 'Field Guide', 'Picture Book', 'Study Guide', 'Travel Journal'],
    breadcrumbs: [['Books', 'Literature & Fiction'], ['Books', 'Cookbooks, Food & Wine'], ['Books', "Children's Books"]],
  },
  Electronics: {
    storeLabel: 'All Electronics',
    nouns: ['USB-C Cable', 'Bluetooth Speaker', 'Wireless Mouse', 'Phone Charger', 'HDMI Adapter', 'Earbuds'],
    breadcrumbs: [['Electronics', 'Computers & Accessories'], ['Electronics', 'Headphones, Earbuds & Accessories']],
  },
  Home_and_Kitchen: {
    storeLabel: 'Amazon Home',
    nouns: ['Ceramic Mug', 'Chef Knife', 'Throw Pillow', 'Storage Bin', 'Cutting Board', 'Wall Clock'],
    breadcrumbs: [['Home & Kitchen', 'Kitchen & Dining'], ['Home & Kitchen', 'Home Décor Products']],
  },
  Toys_and_Games: {
    storeLabel: 'Toys & Games',
    nouns: ['Puzzle', 'Building Blocks', 'Plush Bear', 'Board Game', 'Toy Car', 'Play Dough Kit'],
    breadcrumbs: [['Toys & Games', 'Puzzles'], ['Toys & Games', 'Games & Accessories']],
  },
  Video_Games: {
    storeLabel: 'Video Games',
    nouns: ['Controller', 'Gaming Headset', 'Charging Dock', 'Console Skin', 'Carrying Case'],
    breadcrumbs: [['Video Games', 'Accessories'], ['Video Games', 'PlayStation 5']],
  },
};

const GENERIC_NOUNS = ['Organizer', 'Starter Kit', 'Gift Set', 'Replacement Part', 'Holder', 'Cover'];

/** The profile of a known category, or a generic one built from the name. */
export function categoryProfile(category: string): CategoryProfile {
  const known = PROFILES[category];
  if (known) return known;
  const label = category.replace(/_and_/g, ' & ').replace(/_/g, ' ');
  return { storeLabel: label, nouns: GENERIC_NOUNS, breadcrumbs: [[label]] };
}

/** Store labels used when a record's main_category does not match its file (as in the real data). */
export const OTHER_STORE_LABELS = ['Amazon Home', 'All Electronics', 'Toys & Games', 'Health & Personal Care', 'Tools & Home Improvement', 'Office Products'];

const SYLLABLES = ['lu', 'mo', 'ra', 'ven', 'ka', 'zo', 'tri', 'bel', 'no', 'vi', 'sta', 'qu', 'ex', 'lin', 'pha', 'dor'];
const ADJECTIVES = ['Classic', 'Portable', 'Compact', 'Large', 'Mini', 'Stainless', 'Natural', 'Soft', 'Adjustable', 'Reusable'];
const COLOURS = ['Black', 'White', 'Navy', 'Red', 'Sage Green', 'Grey', 'Pink', 'Teal'];
const SIZES = ['12 oz', '2 Pack', 'Set of 3', 'XL', '10 ft', '500 ml', 'Pack of 6', 'One Size'];

const SENTENCE_WORDS = [
  'this', 'item', 'comes', 'with', 'a', 'simple', 'design', 'for', 'everyday', 'use', 'and', 'fits', 'most',
  'homes', 'the', 'material', 'is', 'easy', 'to', 'clean', 'made', 'from', 'recycled', 'parts', 'suitable',
  'kids', 'adults', 'travel', 'office', 'gift', 'package', 'includes', 'one', 'unit', 'instructions',
  'colour', 'may', 'vary', 'slightly', 'from', 'pictures', 'please', 'check', 'size', 'before', 'ordering',
];

export function pick<T>(rng: Rng, list: readonly T[]): T {
  return list[rng.int(list.length)];
}

export function brandName(rng: Rng): string {
  const n = 2 + rng.int(2);
  let s = '';
  for (let i = 0; i < n; i++) s += pick(rng, SYLLABLES);
  return s[0].toUpperCase() + s.slice(1);
}

/**
 * A title: brand first, then the rating's title words (so they are inside the first 100
 * characters the model reads), then neutral words and the noun. Stays under 90 characters.
 */
export function makeTitle(rng: Rng, brand: string, category: string, positive: number, negative: number): string {
  const words: string[] = [];
  const pos = rng.shuffle([...POSITIVE_WORDS]) as string[];
  const neg = rng.shuffle([...NEGATIVE_WORDS]) as string[];
  for (let i = 0; i < positive; i++) words.push(pos[i]);
  for (let i = 0; i < negative; i++) words.push(neg[i]);
  rng.shuffle(words);
  const parts = [brand, ...words];
  if (rng.next() < 0.7) parts.push(pick(rng, ADJECTIVES));
  parts.push(pick(rng, categoryProfile(category).nouns));
  let title = parts.join(' ');
  const r = rng.next();
  if (r < 0.4) title += `, ${pick(rng, SIZES)}`;
  else if (r < 0.7) title += ` - ${pick(rng, COLOURS)}`;
  return title;
}

function sentence(rng: Rng): string {
  const n = 5 + rng.int(10);
  const words: string[] = [];
  for (let i = 0; i < n; i++) words.push(pick(rng, SENTENCE_WORDS));
  const s = words.join(' ');
  return s[0].toUpperCase() + s.slice(1) + '.';
}

/** Unicode code points of a string (the unit of every text length here). */
export function codePoints(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/**
 * Description paragraphs of `target` code points in total (cut at the end); [] for 0. Paragraphs
 * are ≈ 300 characters, as sentences accumulate.
 */
export function makeDescription(rng: Rng, target: number): string[] {
  if (target <= 0) return [];
  const paragraphs: string[] = [];
  let total = 0;
  while (total < target) {
    let p = '';
    while (p.length < 300 && total + p.length < target) p += (p ? ' ' : '') + sentence(rng);
    const room = target - total;
    if (p.length > room) {
      p = p.slice(0, room);
      if (p.endsWith(' ')) p = p.slice(0, -1) + '.';
    }
    paragraphs.push(p);
    total += p.length;
  }
  return paragraphs;
}

export function makeFeatures(rng: Rng): string[] {
  const n = rng.next() < 0.3 ? 0 : 1 + rng.int(5);
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(`${pick(rng, ['EASY TO USE', 'QUALITY MATERIAL', 'WHAT YOU GET', 'SIZE', 'CARE'])}: ${sentence(rng)}`);
  return out;
}

/** `details`: flat strings normally; with `nested`, also lists and objects (Best Sellers Rank). */
export function makeDetails(rng: Rng, brand: string, category: string, nested: boolean): { [key: string]: PyJson } {
  const d: { [key: string]: PyJson } = { Brand: brand };
  if (rng.next() < 0.6) d['Color'] = pick(rng, COLOURS);
  if (rng.next() < 0.5) d['Item Weight'] = `${(1 + rng.int(400)) / 10} ounces`;
  d['Date First Available'] = `${pick(rng, ['January', 'March', 'June', 'October'])} ${1 + rng.int(28)}, ${2008 + rng.int(15)}`;
  if (nested) {
    d['Best Sellers Rank'] = { [categoryProfile(category).storeLabel]: 1 + rng.int(900_000), [pick(rng, categoryProfile(category).nouns)]: 1 + rng.int(5000) };
    d['Product Dimensions'] = { Length: `${1 + rng.int(30)} inches`, Width: `${1 + rng.int(30)} inches` };
    d['Material'] = [pick(rng, ['Plastic', 'Cotton', 'Steel', 'Glass']), pick(rng, ['Rubber', 'Wood', 'Paper'])];
  }
  return d;
}

/** The "weird text" trap: emoji (astral plane), CJK, control characters, mojibake, zero-width space. */
const WEIRD_SUFFIXES = [' 🎁✨', ' 【日本製】高品質', ' \u0007\u001b[0m', ' Itâ€™s great', ' ×2 ❤️', ' \u200bNEW\u200b', ' ünïcödé Ω', ' 😀\u0000'];

export function weirdSuffix(rng: Rng): string {
  return pick(rng, WEIRD_SUFFIXES);
}

/** A float the Python writer prints with a decimal point (4.0), like json.dumps of a Python float. */
export class PyFloat {
  constructor(readonly value: number) {}
}

export type PyJson = null | boolean | number | string | PyFloat | PyJson[] | { [key: string]: PyJson };

function escapeNonAscii(json: string): string {
  // JSON.stringify already escapes control characters; what is left outside ASCII is escaped per
  // UTF-16 code unit, which is exactly Python's ensure_ascii output (surrogate pairs included).
  return json.replace(/[\u007f-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
}

/** Python `json.dumps(value)` (ensure_ascii, default separators). */
export function pythonJson(value: PyJson): string {
  if (value === null) return 'null';
  if (value instanceof PyFloat) {
    const v = value.value;
    if (Number.isNaN(v)) return 'NaN';
    if (!Number.isFinite(v)) return v > 0 ? 'Infinity' : '-Infinity';
    return Number.isInteger(v) ? v.toFixed(1) : String(v);
  }
  if (typeof value === 'string') return escapeNonAscii(JSON.stringify(value));
  if (typeof value === 'number' || typeof value === 'boolean') return JSON.stringify(value);
  if (Array.isArray(value)) return '[' + value.map(pythonJson).join(', ') + ']';
  return '{' + Object.entries(value).map(([k, v]) => `${escapeNonAscii(JSON.stringify(k))}: ${pythonJson(v)}`).join(', ') + '}';
}

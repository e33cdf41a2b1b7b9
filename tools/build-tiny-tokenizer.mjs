#!/usr/bin/env node
// Builds packages/model/assets/tiny/tokenizer.json: the tokenizer of the `tiny` model preset.
//
// It has the structure of the real SmolLM2 / SmolVLM2 `tokenizer.json` (GPT-2-style byte-level
// BPE; pre_tokenizer = Sequence[Digits(individual_digits), ByteLevel(no prefix space, GPT-2
// regex)]; ByteLevel decoder; no normalizer; no post_processor) at 1/48 of the vocabulary:
//
//   ids 0..16      the 17 SmolLM2 special tokens at their real ids (<|endoftext|> 0,
//                  <|im_start|> 1, <|im_end|> 2, <repo_name> 3, ... <empty_output> 16)
//   ids 17..272    the 256 byte-level symbols, sorted by code point (as the HF BPE trainer does)
//   ids 273..1023  tokens learned by BPE merges on a generated product-metadata corpus
//   ids 1024..1151 the 128 SmolVLM added tokens, laid out as the real 49152..49279 (see
//                  SMOLVLM_ADDED_TOKENS below)
//
// The trainer is deliberately simple and deterministic: the corpus comes from a seeded PRNG, the
// most frequent adjacent pair wins, ties go to the lexicographically smallest (left, right) pair.
// Pre-tokenization uses the pre-tokenizer of @huggingface/tokenizers itself, built from the same
// config object that is written to the file, so training and runtime split text identically.
// After building, the file is loaded back with @huggingface/tokenizers and checked (special ids,
// the segmentation of every training word, byte-exact round trips); any mismatch is an error.
//
// usage: node tools/build-tiny-tokenizer.mjs            write the file
//        node tools/build-tiny-tokenizer.mjs --check    exit 1 if the committed file differs
//        node tools/build-tiny-tokenizer.mjs --out PATH write elsewhere
import { readFileSync, writeFileSync, mkdirSync, renameSync, existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tokenizer, SequencePreTokenizer } from '@huggingface/tokenizers';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DEFAULT_OUT = join(ROOT, 'packages/model/assets/tiny/tokenizer.json');

export const BASE_VOCAB_SIZE = 1024;
export const SEED = 0x5eed_2605;

// ---------------------------------------------------------------------------------------------
// Special and added tokens

/** SmolLM2's special tokens, ids 0..16 (in the BPE vocab and in `added_tokens`). */
export const SMOLLM2_SPECIAL_TOKENS = [
  '<|endoftext|>', '<|im_start|>', '<|im_end|>', '<repo_name>', '<reponame>', '<file_sep>', '<filename>',
  '<gh_stars>', '<issue_start>', '<issue_comment>', '<issue_closed>', '<jupyter_start>', '<jupyter_text>',
  '<jupyter_code>', '<jupyter_output>', '<jupyter_script>', '<empty_output>',
];

/**
 * The 128 tokens SmolVLM (256M/500M, SmolVLM2) appends after the 49,152-token SmolLM2 vocabulary,
 * in id order (offset 0 = id 49152 in the real model, 1024 here):
 *   0        <global-img>
 *   1..36    <row_R_col_C> for R = 1..6, C = 1..6, row-major (R outer, C inner)
 *   37       <fake_token_around_image>
 *   38       <image>
 *   39..126  <|reserved_special_token_K|>, K = 0..87 (padding of the embedding table to 49,280)
 *   127      <end_of_utterance>
 * Offsets 0, 37, 38 and 127 are the documented ids (49152, 49189, 49190, 49279). The row-major
 * order of the 36 grid tokens and the names of the 88 filler slots follow the published
 * tokenizer as remembered, not as read from the file: code must look ids up by token text.
 */
export function smolvlmAddedTokens() {
  const out = ['<global-img>'];
  for (let r = 1; r <= 6; r++) for (let c = 1; c <= 6; c++) out.push(`<row_${r}_col_${c}>`);
  out.push('<fake_token_around_image>', '<image>');
  for (let k = 0; k < 88; k++) out.push(`<|reserved_special_token_${k}|>`);
  out.push('<end_of_utterance>');
  if (out.length !== 128) throw new Error(`expected 128 SmolVLM added tokens, built ${out.length}`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Tokenizer components (the same objects are written to tokenizer.json)

export const PRE_TOKENIZER = {
  type: 'Sequence',
  pretokenizers: [
    { type: 'Digits', individual_digits: true },
    { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
  ],
};
export const DECODER = { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true };

/** GPT-2's byte → printable-character table (bytes_to_unicode). */
export function bytesToUnicode() {
  const bs = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  const table = new Array(256);
  bs.forEach((b, i) => (table[b] = String.fromCharCode(cs[i])));
  return table;
}

// ---------------------------------------------------------------------------------------------
// Corpus: product metadata in the shape of the paper's prompt

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const W = (s) => s.trim().split(/\s+/);
const ADJECTIVES = W(`premium durable lightweight portable adjustable waterproof stainless professional compact
  heavy duty soft comfortable organic natural wireless rechargeable ergonomic classic modern vintage
  small large extra mini universal reusable eco friendly non-slip breathable quick dry multi purpose
  high quality easy clean safe strong sturdy elegant cute stylish long lasting fast quiet powerful
  smart digital magnetic foldable washable gentle fragrance free hypoallergenic travel outdoor indoor`);
const COLORS = W('black white red blue green pink purple gray silver gold brown beige navy clear yellow orange');
const MATERIALS = W(`cotton leather silicone plastic bamboo wood steel aluminum glass ceramic nylon polyester
  rubber wool linen canvas metal stone velvet acrylic`);
const NOUNS = W(`bottle case cover charger cable headphones speaker mouse keyboard lamp chair table desk bag
  backpack wallet watch shoes boots socks shirt dress jacket hat gloves blanket pillow towel mug cup
  plate bowl knife pan pot brush comb mirror shampoo conditioner lotion cream serum soap candle toy
  puzzle game book notebook pen pencil marker paint sticker frame shelf organizer basket box holder
  stand mount hook filter light bulb battery adapter screen protector stroller bottle leash collar
  bed tent tool drill wrench hammer scissors tape glue vitamin supplement coffee tea snack sauce`);
const BRANDS = W('Acme Zenith Nova Orbit Maple Harbor Summit Vertex Lumen Pioneer Willow Crest Aurora Echo');
const UNITS = ['oz', 'lb', 'ml', 'inch', 'inches', 'cm', 'mm', 'ft', 'Pack', 'Count', 'pcs', 'W', 'V', 'mAh', 'GB', 'x'];
export const CATEGORIES = W(`All_Beauty Toys_and_Games Cell_Phones_and_Accessories Industrial_and_Scientific Gift_Cards
  Musical_Instruments Electronics Handmade_Products Arts_Crafts_and_Sewing Baby_Products Health_and_Household
  Office_Products Digital_Music Grocery_and_Gourmet_Food Sports_and_Outdoors Home_and_Kitchen
  Subscription_Boxes Tools_and_Home_Improvement Pet_Supplies Video_Games Kindle_Store
  Clothing_Shoes_and_Jewelry Patio_Lawn_and_Garden Unknown Books Automotive CDs_and_Vinyl
  Beauty_and_Personal_Care Amazon_Fashion Magazine_Subscriptions Software Health_and_Personal_Care
  Appliances Movies_and_TV`);
const MAIN_CATEGORIES = [
  'All Beauty', 'AMAZON FASHION', 'Prime Video', 'Toys & Games', 'Cell Phones & Accessories', 'Industrial & Scientific',
  'Musical Instruments', 'All Electronics', 'Handmade', 'Arts, Crafts & Sewing', 'Baby', 'Health & Personal Care',
  'Office Products', 'Digital Music', 'Grocery', 'Sports & Outdoors', 'Amazon Home', 'Tools & Home Improvement',
  'Pet Supplies', 'Video Games', 'Books', 'Automotive', 'Beauty & Personal Care', 'Appliances', 'Movies & TV',
];
const FEATURE_TEMPLATES = [
  'Made of {m}, {a} and {a2}.', 'Package includes {n} x {noun}.', 'Size: {d} x {d2} {u}.', 'Perfect for home, office and travel.',
  'Easy to use: just plug and play.', '100% satisfaction guarantee - contact us with any questions!',
  'Compatible with most devices (see description).', 'Dimensions: {d}" L x {d2}" W x {d3}" H.', 'Weight: {d}.{n} {u}.',
  'Battery life up to {d} hours.', 'Dishwasher safe; BPA free.', 'Available in {c}, {c2} & {c3}.', "It's the {a} {noun} you'll love.",
  'Great gift for men, women & kids.', 'Warranty: {n} year(s).', 'Price: ${d}.{n}{n}', 'Rated {n}/5 by {d}+ customers.',
];
const DESCRIPTION_TEMPLATES = [
  'This {a} {noun} is designed for everyday use.', 'Our {noun} is made from high quality {m} and built to last.',
  'We are committed to providing the best products and service.', 'Please note: colors may vary slightly due to screen settings.',
  'The {noun} features a {a} design that fits any style.', 'Keep out of reach of children.',
  'Product description: {a} {c} {noun} with {m} finish.', 'If you have any problem, please feel free to contact us.',
  'Enjoy the {a} experience with the new {brand} {noun}.', 'From the manufacturer: {brand} has made {m} goods since 19{n}{n}.',
];

function makeCorpus(nItems = 2600) {
  const rand = mulberry32(SEED);
  const pick = (xs) => xs[Math.floor(rand() * xs.length)];
  const digit = () => String(Math.floor(rand() * 10));
  const num = () => String(1 + Math.floor(rand() * (rand() < 0.5 ? 12 : 250)));
  const fill = (tpl, noun) =>
    tpl
      .replaceAll('{a2}', pick(ADJECTIVES)).replaceAll('{a}', pick(ADJECTIVES))
      .replaceAll('{m}', pick(MATERIALS)).replaceAll('{noun}', noun)
      .replaceAll('{c2}', pick(COLORS)).replaceAll('{c3}', pick(COLORS)).replaceAll('{c}', pick(COLORS))
      .replaceAll('{d2}', num()).replaceAll('{d3}', num()).replaceAll('{d}', num())
      .replace(/\{n\}/g, digit).replaceAll('{u}', pick(UNITS)).replaceAll('{brand}', pick(BRANDS));
  const cap = (s) => s.charAt(0).toUpperCase() + s.slice(1);
  const texts = [];
  for (let i = 0; i < nItems; i++) {
    const noun = pick(NOUNS);
    const titleWords = [pick(BRANDS), cap(pick(ADJECTIVES)), cap(pick(COLORS)), cap(pick(MATERIALS)), cap(noun)];
    if (rand() < 0.6) titleWords.push(`- ${num()} ${pick(UNITS)}`);
    if (rand() < 0.3) titleWords.push(`(${num()}-Pack)`);
    if (rand() < 0.2) titleWords.push(`for ${cap(pick(NOUNS))}`);
    const title = titleWords.join(' ');
    const nDesc = Math.floor(rand() * 3);
    const description = Array.from({ length: nDesc }, () => fill(pick(DESCRIPTION_TEMPLATES), noun)).join(' ');
    const nFeat = Math.floor(rand() * 4);
    const features = Array.from({ length: nFeat }, () => fill(pick(FEATURE_TEMPLATES), noun)).join(' ');
    const category = rand() < 0.5 ? pick(MAIN_CATEGORIES) : pick(CATEGORIES);
    let text =
      ` The average user rating for this product. Text metadata: Title: ${title}, Description: ${description}, ` +
      `Features: ${features}, Main Category: ${category}`;
    if (rand() < 0.15) text = `User:${text}\nAssistant: ${digit()}.${digit()}`;
    if (rand() < 0.1) text = text.toUpperCase();
    texts.push(text);
  }
  return texts;
}

// ---------------------------------------------------------------------------------------------
// BPE training

function comparePair(a, b) {
  if (a[0] !== b[0]) return a[0] < b[0] ? -1 : 1;
  if (a[1] !== b[1]) return a[1] < b[1] ? -1 : 1;
  return 0;
}

/**
 * Learns merges until the base vocabulary reaches `vocabSize` tokens. Returns the vocab (token →
 * id), the merges in rank order, and the final segmentation of every training word.
 */
export function trainBpe(texts, { vocabSize = BASE_VOCAB_SIZE, specials = SMOLLM2_SPECIAL_TOKENS, minFrequency = 2 } = {}) {
  const pre = new SequencePreTokenizer(PRE_TOKENIZER);
  const counts = new Map();
  for (const t of texts) for (const w of pre.pre_tokenize(t)) counts.set(w, (counts.get(w) ?? 0) + 1);
  const wordList = [...counts.keys()].sort(); // fixed iteration order
  const words = wordList.map((w) => ({ text: w, count: counts.get(w), symbols: [...w] }));

  const vocab = new Map();
  for (const s of specials) vocab.set(s, vocab.size);
  for (const ch of [...bytesToUnicode()].sort()) vocab.set(ch, vocab.size);
  const merges = [];
  while (vocab.size < vocabSize) {
    const pairCounts = new Map();
    for (const w of words) {
      for (let i = 0; i + 1 < w.symbols.length; i++) {
        const key = `${w.symbols[i]} ${w.symbols[i + 1]}`; // byte-level symbols never contain ' '
        pairCounts.set(key, (pairCounts.get(key) ?? 0) + w.count);
      }
    }
    let best = null;
    let bestCount = 0;
    for (const [key, c] of pairCounts) {
      const pair = key.split(' ');
      if (c > bestCount || (c === bestCount && comparePair(pair, best) < 0)) {
        best = pair;
        bestCount = c;
      }
    }
    if (!best || bestCount < minFrequency) {
      throw new Error(`corpus too small: no pair occurs ${minFrequency}+ times at vocab size ${vocab.size} < ${vocabSize}`);
    }
    const [a, b] = best;
    merges.push(`${a} ${b}`);
    if (!vocab.has(a + b)) vocab.set(a + b, vocab.size);
    for (const w of words) {
      const s = w.symbols;
      if (s.length < 2) continue;
      const out = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          out.push(a + b);
          i++;
        } else out.push(s[i]);
      }
      w.symbols = out;
    }
  }
  return { vocab, merges, words };
}

// ---------------------------------------------------------------------------------------------
// tokenizer.json

export function buildTinyTokenizer() {
  const texts = makeCorpus();
  const { vocab, merges, words } = trainBpe(texts);
  const addedToken = (content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const added = [
    ...SMOLLM2_SPECIAL_TOKENS.map((t, i) => addedToken(t, i)),
    ...smolvlmAddedTokens().map((t, i) => addedToken(t, BASE_VOCAB_SIZE + i)),
  ];
  const json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: PRE_TOKENIZER,
    post_processor: null,
    decoder: DECODER,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: Object.fromEntries(vocab),
      merges,
    },
  };
  const text = JSON.stringify(json, null, 2) + '\n';
  verify(text, texts, words);
  return { text, json, texts };
}

function verify(text, texts, words) {
  const fail = (msg) => {
    throw new Error(`tiny tokenizer self-check failed: ${msg}`);
  };
  const tok = new Tokenizer(JSON.parse(text), { clean_up_tokenization_spaces: false });
  const expectId = (t, id) => tok.token_to_id(t) === id || fail(`${t} has id ${tok.token_to_id(t)}, expected ${id}`);
  expectId('<|endoftext|>', 0);
  expectId('<|im_start|>', 1);
  expectId('<|im_end|>', 2);
  expectId('<global-img>', 1024);
  expectId('<row_1_col_1>', 1025);
  expectId('<row_6_col_6>', 1060);
  expectId('<fake_token_around_image>', 1061);
  expectId('<image>', 1062);
  expectId('<end_of_utterance>', 1151);
  const size = tok.get_vocab(true).size;
  if (size !== 1152) fail(`vocab size ${size}, expected 1152`);
  // The library's BPE must reproduce the trainer's segmentation of every training word.
  const pre = new SequencePreTokenizer(PRE_TOKENIZER);
  for (const w of words) {
    const got = tok.model(pre.pre_tokenize(decodeByteLevel(w.text)));
    if (got.join('\u0001') !== w.symbols.join('\u0001')) fail(`word ${JSON.stringify(w.text)}: library ${JSON.stringify(got)} vs trainer ${JSON.stringify(w.symbols)}`);
  }
  for (const t of [...texts.slice(0, 50), 'naïve café 😀 ∑ 12345 \t\n  x', '<image>Title: <end_of_utterance>']) {
    const ids = tok.encode(t, { add_special_tokens: false }).ids;
    const back = tok.decode(ids);
    if (back !== t) fail(`round trip of ${JSON.stringify(t)} gave ${JSON.stringify(back)}`);
  }
}

const UNICODE_TO_BYTE = new Map(bytesToUnicode().map((ch, b) => [ch, b]));
function decodeByteLevel(s) {
  return Buffer.from([...s].map((ch) => UNICODE_TO_BYTE.get(ch))).toString('utf8');
}

// ---------------------------------------------------------------------------------------------

function main(argv) {
  const check = argv.includes('--check');
  const outIdx = argv.indexOf('--out');
  const out = outIdx >= 0 ? resolve(argv[outIdx + 1]) : DEFAULT_OUT;
  const { text, json } = buildTinyTokenizer();
  if (check) {
    const current = existsSync(out) ? readFileSync(out, 'utf8') : null;
    if (current !== text) {
      console.error(`${out} is ${current === null ? 'missing' : 'out of date'}: run node tools/build-tiny-tokenizer.mjs`);
      return 1;
    }
    console.log(`${out} is up to date (${Buffer.byteLength(text)} bytes)`);
    return 0;
  }
  mkdirSync(dirname(out), { recursive: true });
  const tmp = `${out}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, out);
  console.log(
    `wrote ${out}: ${Buffer.byteLength(text)} bytes, ${Object.keys(json.model.vocab).length} BPE tokens, ` +
      `${json.model.merges.length} merges, ${json.added_tokens.length} added tokens`,
  );
  return 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = main(process.argv.slice(2));
}

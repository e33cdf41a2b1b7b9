/**
 * The synthetic dataset (`smolrate-data-prep synth`): metadata files in the exact raw format of
 * Amazon Reviews'23 (docs/reference/data.md), with its traps planted at configurable rates (synth-traps.ts), the
 * MAIN images they reference, `truth.jsonl` (each record's expected fate and latent rating) and a
 * README.md describing the generative process (synth-readme.ts). Ratings are learnable: they are a
 * documented function of image content and text plus modest noise (synth-rating.ts).
 *
 * Layout of `out` (a local folder):
 *   meta_<Category>.jsonl | meta_<Category>.jsonl.gz   one record per line, Python json.dumps style
 *   images/<id><modifiers>.<ext>                       the file named by each MAIN URL's tail
 *   truth.jsonl   README.md
 *
 * Image URLs use the real CDN prefix (`imageBaseUrl`), so the pipeline reaches them through a URL
 * rewrite rule, as with a real mirror: `https://m.media-amazon.com/images/I/` → `file:///<out>/images/`
 * or the URL of `startStaticServer(<out>/images)`.
 *
 * Deterministic: the same options give byte-identical files (every record and image comes from its
 * own seeded stream; files are written in record order; gzip carries no timestamp).
 */
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { finished } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { compareKeys, ConfigError, Rng, StorageError } from '@smolrate/core';
import { renderImage, type SynthImageFormat } from './synth-images.js';
import { buildRecord, type RecordInput, type TruthRecord } from './synth-record.js';
import { synthReadme } from './synth-readme.js';
import { fatalTrapOf, FORMAT_KINDS, planTraps, resolveTrapRates, type FormatTrap, type TrapKind, type TrapRates } from './synth-traps.js';

const DEFAULT_SYNTH_CATEGORIES = ['All_Beauty', 'Amazon_Fashion', 'Books', 'Electronics', 'Home_and_Kitchen', 'Toys_and_Games'] as const;
const DEFAULT_IMAGE_BASE_URL = 'https://m.media-amazon.com/images/I/';
export const TRUTH_FILE = 'truth.jsonl';
const SYNTH_README_FILE = 'README.md';
const SYNTH_IMAGES_DIR = 'images';

export interface SynthOptions {
  /** Local folder to write (created if missing). */
  out: string;
  /** Metadata lines in all (every category together), ≥ 1. */
  items: number;
  /** Default 0. */
  seed?: number;
  /** File-name categories; default DEFAULT_SYNTH_CATEGORIES. Written in sorted order. */
  categories?: string[];
  /** Categories written gzipped (`.jsonl.gz`); default every second one in sorted order. */
  gzipCategories?: string[];
  /** Trap rates, fractions of `items` (synth-traps.ts DEFAULT_TRAP_RATES). */
  rates?: Partial<TrapRates>;
  /** Prefix of every image URL; default the real CDN, DEFAULT_IMAGE_BASE_URL. Must end with "/". */
  imageBaseUrl?: string;
  /** Allow a non-empty `out`: replaces a previous synthetic dataset there (only the files synth writes). */
  force?: boolean;
  /** Images encoded at once; default 2 × available cores. */
  concurrency?: number;
  /** Called after each record with (done, total). */
  onProgress?: (done: number, total: number) => void;
}

export interface SynthFileSummary {
  file: string;
  category: string;
  gzip: boolean;
  lines: number;
  bytes: number;
}

export interface SynthSummary {
  out: string;
  seed: number;
  items: number;
  imageBaseUrl: string;
  files: SynthFileSummary[];
  /** Records carrying each trap (format traps and fatal ones). */
  traps: Record<TrapKind, number>;
  /** Records per expected fate (truth.jsonl). */
  fates: Record<string, number>;
  images: { files: number; bytes: number; byFormat: Record<SynthImageFormat, number>; corrupt: number; missing: number };
  /** Over the records with a rating written. */
  ratings: { count: number; mean: number; sd: number; min: number; max: number };
  elapsedMs: number;
}

const CATEGORY_NAME = /^[A-Za-z0-9][A-Za-z0-9_]*$/;
/** Files that synth writes at the top of `out` (removed by `force`). */
const OWN_FILE = /^(meta_[A-Za-z0-9_]+\.jsonl(\.gz)?|truth\.jsonl|README\.md)(\.partial)?$/;

interface ResolvedOptions {
  out: string;
  items: number;
  seed: number;
  categories: string[];
  gzip: Set<string>;
  rates: TrapRates;
  imageBaseUrl: string;
  concurrency: number;
}

function resolveOptions(o: SynthOptions): ResolvedOptions {
  if (!o.out) throw new ConfigError('synth: out (the folder to write) is required');
  if (!Number.isSafeInteger(o.items) || o.items < 1) throw new ConfigError(`synth: items must be a positive integer, got ${o.items}`);
  const seed = o.seed ?? 0;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new ConfigError(`synth: seed must be a non-negative integer, got ${seed}`);
  const categories = [...new Set(o.categories ?? DEFAULT_SYNTH_CATEGORIES)].sort();
  if (categories.length === 0) throw new ConfigError('synth: categories must not be empty');
  for (const c of categories) if (!CATEGORY_NAME.test(c)) throw new ConfigError(`synth: category "${c}" is not a file-name category (letters, digits, _)`);
  const gzipList = o.gzipCategories ?? categories.filter((_, i) => i % 2 === 1);
  for (const c of gzipList) if (!categories.includes(c)) throw new ConfigError(`synth: gzip category "${c}" is not one of the categories (${categories.join(', ')})`);
  const imageBaseUrl = o.imageBaseUrl ?? DEFAULT_IMAGE_BASE_URL;
  if (!imageBaseUrl.endsWith('/')) throw new ConfigError(`synth: imageBaseUrl must end with "/", got "${imageBaseUrl}"`);
  const concurrency = o.concurrency ?? 2 * availableParallelism();
  if (!Number.isSafeInteger(concurrency) || concurrency < 1) throw new ConfigError(`synth: concurrency must be a positive integer, got ${concurrency}`);
  return { out: o.out, items: o.items, seed, categories, gzip: new Set(gzipList), rates: resolveTrapRates(o.rates), imageBaseUrl, concurrency };
}

/** Records per category: weights in [0.5, 2) drawn from the seed, largest-remainder rounding. */
function synthCategorySizes(items: number, categories: string[], seed: number): number[] {
  const rng = new Rng(seed, 'synth-category-sizes');
  const w = categories.map(() => 0.5 + 1.5 * rng.next());
  const total = w.reduce((a, b) => a + b, 0);
  const exact = w.map((x) => (x / total) * items);
  const sizes = exact.map(Math.floor);
  let left = items - sizes.reduce((a, b) => a + b, 0);
  const order = exact.map((x, i) => ({ i, frac: x - Math.floor(x) })).sort((a, b) => b.frac - a.frac || a.i - b.i);
  for (const { i } of order) {
    if (left-- <= 0) break;
    sizes[i]++;
  }
  return sizes;
}

const ALNUM = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const UPPER_ALNUM = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ';

function randomChars(rng: Rng, alphabet: string, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += alphabet[rng.int(alphabet.length)];
  return s;
}

/** 10-character parent_asin: B0xxxxxxxx, or an ISBN-10 for most Books. */
function asinCandidate(rng: Rng, category: string): string {
  if (category === 'Books' && rng.next() < 0.7) {
    const digits = randomChars(rng, '0123456789', 9);
    return digits + (rng.next() < 0.1 ? 'X' : String(rng.int(10)));
  }
  return 'B0' + randomChars(rng, UPPER_ALNUM, 8);
}

/** 11-character image id like the CDN's ("71i77AuI9xL"); ≈ 15 % contain a '+'. */
function imageIdCandidate(rng: Rng): string {
  const chars = (String(1 + rng.int(9)) + randomChars(rng, ALNUM, 9) + 'L').split('');
  if (rng.next() < 0.15) chars[2 + rng.int(8)] = '+';
  return chars.join('');
}

function unique(seen: Set<string>, make: () => string): string {
  for (;;) {
    const v = make();
    if (!seen.has(v)) {
      seen.add(v);
      return v;
    }
  }
}

/** A text file written line by line (optionally gzipped) to `<path>.partial`, renamed on close. */
class LineFile {
  private readonly file;
  private readonly sink;
  /** Rejects on the first write error of either stream (always observed, via race). */
  private readonly failed: Promise<never>;
  private lines = 0;
  constructor(
    readonly path: string,
    gzip: boolean,
  ) {
    this.file = createWriteStream(`${path}.partial`);
    // Node's gzip header has mtime 0 and no file name: the bytes depend on the content only.
    const z = gzip ? createGzip({ level: 6 }) : null;
    this.sink = z ?? this.file;
    this.failed = new Promise<never>((_, reject) => {
      const fail = (e: unknown) => reject(new StorageError(`synth: cannot write ${path}`, path, { cause: e }));
      this.file.on('error', fail);
      z?.on('error', fail);
    });
    this.failed.catch(() => undefined);
    z?.pipe(this.file);
  }

  async write(line: string): Promise<void> {
    this.lines++;
    if (!this.sink.write(line + '\n')) await Promise.race([once(this.sink, 'drain'), this.failed]);
  }

  /** Drops the partial file (after a failure). */
  async abort(): Promise<void> {
    this.sink.destroy();
    this.file.destroy();
    await rm(`${this.path}.partial`, { force: true });
  }

  async close(): Promise<{ lines: number; bytes: number }> {
    this.sink.end();
    await Promise.race([finished(this.file), this.failed]);
    await rename(`${this.path}.partial`, this.path);
    return { lines: this.lines, bytes: (await stat(this.path)).size };
  }
}

async function prepareOut(out: string, force: boolean): Promise<void> {
  let entries: string[];
  try {
    await mkdir(out, { recursive: true });
    entries = await readdir(out);
  } catch (e) {
    throw new StorageError(`synth: cannot use ${out} as the output folder`, out, { cause: e });
  }
  if (entries.length === 0) return;
  if (!force) throw new ConfigError(`synth: ${out} is not empty; pass force (--force) to replace a synthetic dataset written there`);
  for (const e of entries) {
    if (e === SYNTH_IMAGES_DIR || OWN_FILE.test(e)) await rm(join(out, e), { recursive: true, force: true });
  }
}

function fileName(category: string, gzip: boolean): string {
  return `meta_${category}.jsonl${gzip ? '.gz' : ''}`;
}

/** Writes the dataset (see the file comment) and returns what was written. */
export async function generateSynthetic(options: SynthOptions): Promise<SynthSummary> {
  const started = Date.now();
  const o = resolveOptions(options);
  const plan = planTraps(o.items, o.rates, o.seed);
  const sizes = synthCategorySizes(o.items, o.categories, o.seed);
  await prepareOut(o.out, options.force ?? false);
  await mkdir(join(o.out, SYNTH_IMAGES_DIR), { recursive: true });

  const asins = new Set<string>();
  const imageIds = new Set<string>();
  const newAsin = (rng: Rng, category: string) => unique(asins, () => asinCandidate(rng, category));
  const newImageId = (rng: Rng) => unique(imageIds, () => imageIdCandidate(rng));

  const fates: Record<string, number> = {};
  const images = { files: 0, bytes: 0, byFormat: { jpeg: 0, png: 0, webp: 0 } as Record<SynthImageFormat, number>, corrupt: 0, missing: 0 };
  const ratingStats = { count: 0, sum: 0, sumSq: 0, min: Infinity, max: -Infinity };
  const files: SynthFileSummary[] = [];

  // Image encodes run concurrently (sharp works off the main thread); `pending` bounds them.
  const pending = new Set<Promise<void>>();
  let failure: unknown = null;
  const writeImage = async (file: string, job: () => Promise<Buffer>) => {
    const p = (async () => {
      const bytes = await job();
      try {
        await writeFile(join(o.out, file), bytes);
      } catch (e) {
        throw new StorageError(`synth: cannot write ${file}`, join(o.out, file), { cause: e });
      }
      images.bytes += bytes.length;
    })()
      .catch((e) => {
        failure ??= e;
      })
      .finally(() => pending.delete(p));
    pending.add(p);
    if (pending.size >= o.concurrency) await Promise.race(pending);
  };

  const truthFile = new LineFile(join(o.out, TRUTH_FILE), false);
  const open = new Set<LineFile>([truthFile]);
  const earlierFiles: Array<{ parent_asin: string; source: string; line: number }> = [];
  let index = 0;
  try {
    for (let ci = 0; ci < o.categories.length; ci++) {
      const category = o.categories[ci];
      const gzip = o.gzip.has(category);
      const source = fileName(category, gzip);
      const out = new LineFile(join(o.out, source), gzip);
      open.add(out);
      const sameFile: Array<{ parent_asin: string; source: string; line: number }> = [];
      for (let line = 1; line <= sizes[ci]; line++, index++) {
        const rng = new Rng(o.seed, 'synth-record', index);
        const fatal = fatalTrapOf(plan, index);
        const formats = new Set<FormatTrap>(FORMAT_KINDS.filter((k) => plan.flags[k][index] === 1));
        let duplicateOf: RecordInput['duplicateOf'] = null;
        if (fatal === 'duplicate') {
          // Record 0 is never a trap, so one of the two lists is non-empty.
          const cross = earlierFiles.length > 0 && (sameFile.length === 0 || rng.next() < 0.3);
          const from = cross ? earlierFiles : sameFile;
          duplicateOf = { ...from[rng.int(from.length)], crossFile: cross };
        }
        const rec = buildRecord({ rng, category, source, line, imageBaseUrl: o.imageBaseUrl, fatal, formats, newAsin, newImageId, duplicateOf });
        await out.write(rec.text);
        await truthFile.write(JSON.stringify(rec.truth));
        const t = rec.truth;
        fates[t.fate] = (fates[t.fate] ?? 0) + 1;
        if (t.fate === 'kept-candidate') sameFile.push({ parent_asin: t.parent_asin, source, line });
        if (t.average_rating !== null && t.malformed === null) {
          const r = t.average_rating;
          ratingStats.count++;
          ratingStats.sum += r;
          ratingStats.sumSq += r * r;
          ratingStats.min = Math.min(ratingStats.min, r);
          ratingStats.max = Math.max(ratingStats.max, r);
        }
        if (t.image && t.image.file === null) images.missing++;
        if (rec.image) {
          const { spec, file } = rec.image;
          images.files++;
          if (spec.corrupt) images.corrupt++;
          else images.byFormat[spec.format]++;
          await writeImage(file, () => renderImage(spec));
        }
        if (failure) throw failure;
        options.onProgress?.(index + 1, o.items);
      }
      const written = await out.close();
      open.delete(out);
      files.push({ file: source, category, gzip, ...written });
      for (const r of sameFile) earlierFiles.push(r);
    }
    await Promise.all(pending);
    if (failure) throw failure;
    await truthFile.close();
    open.delete(truthFile);
  } finally {
    await Promise.allSettled(pending);
    for (const f of open) await f.abort();
  }

  const n = ratingStats.count;
  const mean = n ? ratingStats.sum / n : 0;
  const summary: SynthSummary = {
    out: o.out,
    seed: o.seed,
    items: o.items,
    imageBaseUrl: o.imageBaseUrl,
    files,
    traps: plan.counts,
    fates: Object.fromEntries(Object.entries(fates).sort(([a], [b]) => compareKeys(a, b))),
    images,
    ratings: {
      count: n,
      mean,
      sd: n ? Math.sqrt(Math.max(0, ratingStats.sumSq / n - mean * mean)) : 0,
      min: n ? ratingStats.min : 0,
      max: n ? ratingStats.max : 0,
    },
    elapsedMs: 0,
  };
  await writeFile(join(o.out, SYNTH_README_FILE), synthReadme(summary, o.rates));
  summary.elapsedMs = Date.now() - started;
  return summary;
}

export type { TruthRecord };

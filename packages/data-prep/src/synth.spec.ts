import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { gunzipSync } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, decodeImage, ImageError, StorageError } from '@smolrate/core';
import { generateSynthetic, type SynthSummary, type TruthRecord } from './synth.js';
import { latentRating, SYNTH_RATING_MODEL, SYNTH_SHAPES } from './synth-rating.js';
import { FATAL_KINDS, TRAP_KINDS, type TrapRates } from './synth-traps.js';

const N = 200;
// Higher than the defaults so that every kind appears often enough to count at N = 200.
const RATES: Partial<TrapRates> = {
  malformedJson: 0.04,
  duplicate: 0.05,
  emptyImages: 0.04,
  nullRating: 0.03,
  nullRatingNumber: 0.03,
  fewRatings: 0.05,
  missingImage: 0.04,
  corruptImage: 0.05,
  columnForm: 0.1,
  widthKeyed: 0.06,
  hiResNull: 0.1,
  pngAlpha: 0.12,
  weirdText: 0.1,
};
const BASE = 'https://m.media-amazon.com/images/I/';

function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

function hashes(dir: string): Record<string, string> {
  return Object.fromEntries(listFiles(dir).map((f) => [f, createHash('sha256').update(readFileSync(join(dir, f))).digest('hex')]));
}

function readTruth(dir: string): TruthRecord[] {
  return readFileSync(join(dir, 'truth.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as TruthRecord);
}

function metaLines(dir: string, file: string): string[] {
  const raw = readFileSync(join(dir, file));
  const text = file.endsWith('.gz') ? gunzipSync(raw).toString('utf8') : raw.toString('utf8');
  expect(text.endsWith('\n')).toBe(true);
  return text.slice(0, -1).split('\n');
}

/** docs/reference/data.md's MAIN preference, written independently of the generator: hi_res, widest NNNw, large. */
function mainUrl(images: unknown): string | null {
  if (Array.isArray(images)) {
    const main = images.find((e) => e.variant === 'MAIN') as Record<string, string | null> | undefined;
    if (!main) return null;
    if (main.hi_res) return main.hi_res;
    const widths = Object.keys(main)
      .filter((k) => /^\d+w$/.test(k))
      .sort((a, b) => parseInt(b) - parseInt(a));
    if (widths.length) return main[widths[0]];
    return main.large ?? null;
  }
  const cols = images as Record<string, Array<string | null>>;
  const i = cols.variant.indexOf('MAIN');
  if (i < 0) return null;
  return cols.hi_res[i] ?? cols.large[i] ?? null;
}

function pearson(x: number[], y: number[]): number {
  const n = x.length;
  const mx = x.reduce((a, b) => a + b, 0) / n;
  const my = y.reduce((a, b) => a + b, 0) / n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) ** 2;
    syy += (y[i] - my) ** 2;
  }
  return sxy / Math.sqrt(sxx * syy);
}

/** Least squares by the normal equations (Gauss–Jordan with partial pivoting, a small ridge for safety). */
function leastSquares(X: number[][], y: number[]): number[] {
  const p = X[0].length;
  const A = Array.from({ length: p }, (_, i) => Array.from({ length: p + 1 }, (_, j) => (i === j ? 1e-9 : 0)));
  X.forEach((row, r) => {
    for (let i = 0; i < p; i++) {
      for (let j = 0; j < p; j++) A[i][j] += row[i] * row[j];
      A[i][p] += row[i] * y[r];
    }
  });
  for (let c = 0; c < p; c++) {
    let best = c;
    for (let r = c + 1; r < p; r++) if (Math.abs(A[r][c]) > Math.abs(A[best][c])) best = r;
    [A[c], A[best]] = [A[best], A[c]];
    for (let r = 0; r < p; r++) {
      if (r === c) continue;
      const f = A[r][c] / A[c][c];
      for (let j = c; j <= p; j++) A[r][j] -= f * A[c][j];
    }
  }
  return A.map((row, i) => row[p] / row[i]);
}

function features(t: TruthRecord, categories: string[]): number[] {
  const l = t.latent;
  return [
    1,
    l.warmth,
    ...SYNTH_SHAPES.slice(1).map((s) => (l.shape === s ? 1 : 0)),
    l.clutter,
    l.titlePositive - l.titleNegative,
    l.descriptionFeature,
    ...categories.slice(1).map((c) => (t.category === c ? 1 : 0)),
  ];
}

describe('generateSynthetic', () => {
  const dirs: string[] = [];
  const fresh = () => {
    const d = mkdtempSync(join(tmpdir(), 'smolrate-synth-'));
    dirs.push(d);
    return d;
  };
  let a: string;
  let summary: SynthSummary;
  let truth: TruthRecord[];

  beforeAll(async () => {
    a = fresh();
    summary = await generateSynthetic({ out: a, items: N, seed: 7, rates: RATES });
    truth = readTruth(a);
  });
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('is deterministic: the same options give byte-identical files, another seed different ones', async () => {
    const b = fresh();
    await generateSynthetic({ out: b, items: N, seed: 7, rates: RATES, concurrency: 1 });
    const ha = hashes(a);
    expect(Object.keys(ha).length).toBeGreaterThan(N / 2);
    expect(hashes(b)).toEqual(ha);
    const c = fresh();
    await generateSynthetic({ out: c, items: 20, seed: 8 });
    const hc = hashes(c);
    expect(hc['truth.jsonl']).not.toEqual(ha['truth.jsonl']);
  });

  it('writes the default categories, some gzipped, with one truth line per record', () => {
    expect(summary.files.map((f) => f.file)).toEqual([
      'meta_All_Beauty.jsonl',
      'meta_Amazon_Fashion.jsonl.gz',
      'meta_Books.jsonl',
      'meta_Electronics.jsonl.gz',
      'meta_Home_and_Kitchen.jsonl',
      'meta_Toys_and_Games.jsonl.gz',
    ]);
    expect(truth).toHaveLength(N);
    expect(summary.files.reduce((n, f) => n + f.lines, 0)).toBe(N);
    for (const f of summary.files) {
      const raw = readFileSync(join(a, f.file));
      expect(raw.length).toBe(f.bytes);
      // gzip magic exactly on the .gz files, and they inflate to ASCII-only lines.
      expect(raw[0] === 0x1f && raw[1] === 0x8b).toBe(f.gzip);
      const lines = metaLines(a, f.file);
      expect(lines).toHaveLength(f.lines);
      for (const l of lines) expect(/^[\x20-\x7e]*$/.test(l)).toBe(true);
      expect(truth.filter((t) => t.source === f.file).map((t) => t.line)).toEqual(lines.map((_, i) => i + 1));
    }
    expect(readFileSync(join(a, 'README.md'), 'utf8')).toContain('average_rating = round(clamp(raw, 1, 5), 1 decimal)');
  });

  it('plants every trap at its configured rate', () => {
    const rates = { ...RATES } as Record<string, number>;
    for (const k of TRAP_KINDS) {
      const n = truth.filter((t) => t.traps.includes(k)).length;
      expect(n, k).toBe(summary.traps[k]);
      if (k in rates) expect(n, k).toBe(Math.round(rates[k] * N));
      else expect(n, k).toBeGreaterThan(0); // defaults: priceString 0.25, priceNull 0.2, nestedDetails 0.3
    }
    for (const t of truth) expect(t.traps.filter((k) => (FATAL_KINDS as string[]).includes(k)).length).toBeLessThanOrEqual(1);
    const fates = truth.reduce<Record<string, number>>((m, t) => ((m[t.fate] = (m[t.fate] ?? 0) + 1), m), {});
    expect(fates).toEqual(summary.fates);
    expect(fates['kept-candidate']).toBe(N - FATAL_KINDS.reduce((n, k) => n + summary.traps[k], 0));
  });

  it('writes what truth.jsonl says, trap by trap, in the raw formats', async () => {
    const seen = new Map<string, TruthRecord>();
    for (const f of summary.files) {
      const lines = metaLines(a, f.file);
      for (const t of truth.filter((x) => x.source === f.file)) {
        const line = lines[t.line - 1];
        const has = (k: string) => t.traps.includes(k as never);
        if (has('malformedJson')) {
          expect(() => JSON.parse(line)).toThrow();
          continue;
        }
        const rec = JSON.parse(line) as Record<string, unknown>;
        expect(rec.parent_asin).toBe(t.parent_asin);
        expect(String(rec.parent_asin)).toMatch(/^(B0[0-9A-Z]{8}|[0-9]{9}[0-9X])$/);
        expect(rec.main_category).toBe(t.main_category);
        expect(rec.average_rating).toBe(t.average_rating);
        expect(rec.rating_number).toBe(t.rating_number);
        expect(has('nullRating')).toBe(rec.average_rating === null);
        expect(has('nullRatingNumber')).toBe(rec.rating_number === null);
        expect(has('fewRatings')).toBe(typeof rec.rating_number === 'number' && rec.rating_number < 10);
        expect(has('columnForm')).toBe(!Array.isArray(rec.images));
        if (has('columnForm')) {
          expect(typeof rec.details).toBe('string');
          expect(typeof rec.price).toBe('string');
          expect(Object.keys(rec.images as object).sort()).toEqual(['hi_res', 'large', 'thumb', 'variant']);
        }
        const details = typeof rec.details === 'string' ? JSON.parse(rec.details) : rec.details;
        expect(has('nestedDetails')).toBe(Object.values(details).some((v) => typeof v === 'object' && v !== null));
        expect(has('priceNull')).toBe(rec.price === null || rec.price === 'None');
        expect(has('priceString')).toBe(typeof rec.price === 'string' && rec.price.startsWith('$'));
        expect(has('weirdText')).toBe(/[^\x20-\x7e]/.test(String(rec.title)));
        expect(has('widthKeyed')).toBe(rec.main_category === 'Prime Video');
        const url = mainUrl(rec.images);
        expect(has('emptyImages')).toBe(url === null);
        if (url === null) {
          expect(t.image).toBeNull();
        } else {
          expect(url).toBe(t.image!.url);
          expect(url.startsWith(BASE)).toBe(true);
          expect(url.slice(BASE.length)).toMatch(/^[0-9][0-9A-Za-z+]{9}L\._[A-Z0-9_,]+_\.(jpg|png)$|^[0-9][0-9A-Za-z+]{9}L(\._AC_)?\.(jpg|png)$/);
          if (has('widthKeyed')) expect(Object.keys((rec.images as object[])[0])).toContain('1080w');
          if (!has('columnForm') && !has('widthKeyed')) expect(((rec.images as Array<Record<string, unknown>>)[0].hi_res === null)).toBe(has('hiResNull'));
          expect(existsSync(join(a, 'images', url.slice(BASE.length)))).toBe(!has('missingImage'));
        }
        const first = seen.get(t.parent_asin);
        if (has('duplicate')) {
          expect(first?.fate).toBe('kept-candidate');
          expect(t.duplicateOf).toEqual({ source: first!.source, line: first!.line });
          expect(t.stage).toBe(first!.source === t.source ? 'select' : 'plan');
        } else {
          expect(first).toBeUndefined();
          seen.set(t.parent_asin, t);
        }
        // The written rating is the latent formula applied to the recorded features.
        const l = t.latent;
        if (t.rating_number !== null) expect(latentRating({ ...l, category: t.category, ratingNumber: t.rating_number }, l.noiseZ)).toMatchObject({ rating: l.rating, raw: l.raw });
        if (t.average_rating !== null) expect(t.average_rating).toBe(l.rating);
      }
    }
    expect(truth.some((t) => t.stage === 'plan')).toBe(true);
    expect(truth.some((t) => t.fate === 'duplicate_parent_asin' && t.stage === 'select')).toBe(true);
    expect(new Set(truth.filter((t) => t.malformed).map((t) => t.malformed)).size).toBeGreaterThan(1);
  });

  it('writes images that decode (JPEG, RGBA PNG, WebP named .jpg), and corrupt ones that fail with an ImageError', async () => {
    let good = 0;
    let bad = 0;
    const formats = new Set<string>();
    for (const t of truth) {
      if (!t.image?.file) continue;
      const bytes = readFileSync(join(a, t.image.file));
      if (t.image.corrupt) {
        const err = await decodeImage(bytes, { size: 32 }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ImageError);
        expect((err as ImageError).reason).toBe(t.image.decodeError);
        bad++;
        continue;
      }
      const d = await decodeImage(bytes, { size: 32 });
      expect(d.sourceFormat).toBe(t.image.format);
      expect([d.width, d.height]).toEqual([t.image.width, t.image.height]);
      expect(Math.max(d.width, d.height)).toBeGreaterThanOrEqual(200);
      expect(Math.max(d.width, d.height)).toBeLessThanOrEqual(1500);
      if (t.image.format === 'png') expect((await sharp(bytes).metadata()).hasAlpha).toBe(true);
      if (t.image.format === 'webp') expect(t.image.file.endsWith('.jpg')).toBe(true);
      formats.add(t.image.format);
      good++;
    }
    expect(formats).toEqual(new Set(['jpeg', 'png', 'webp']));
    expect(bad).toBe(summary.traps.corruptImage);
    expect(good + bad).toBe(summary.images.files);
    const onDisk = readdirSync(join(a, 'images'));
    expect(onDisk).toHaveLength(summary.images.files);
    expect(onDisk.reduce((n, f) => n + statSync(join(a, 'images', f)).size, 0)).toBe(summary.images.bytes);
    expect(onDisk.some((f) => f.includes('+'))).toBe(true);
  });

  it('makes the colour warmth visible at 384×384', async () => {
    const warmth: number[] = [];
    const redMinusBlue: number[] = [];
    for (const t of truth.filter((x) => x.image?.file && !x.image.corrupt).slice(0, 60)) {
      const d = await decodeImage(readFileSync(join(a, t.image!.file!)), { size: 384 });
      let s = 0;
      for (let i = 0; i < d.data.length; i += 3) s += d.data[i] - d.data[i + 2];
      warmth.push(t.latent.warmth);
      redMinusBlue.push(s / (d.data.length / 3));
    }
    expect(pearson(warmth, redMinusBlue)).toBeGreaterThan(0.8);
  });

  it('generates learnable ratings: a linear model on the latent features explains most of their variance', async () => {
    const b = fresh();
    // Held-out data from another seed, written without images (all empty) to stay fast.
    await generateSynthetic({ out: b, items: 400, seed: 11, rates: { emptyImages: 0.99, malformedJson: 0, duplicate: 0, nullRating: 0, nullRatingNumber: 0, fewRatings: 0, missingImage: 0, corruptImage: 0 } });
    const cats = summary.files.map((f) => f.category);
    const train = truth.filter((t) => t.average_rating !== null && t.malformed === null);
    const test = readTruth(b).filter((t) => t.average_rating !== null);
    expect(test.length).toBeGreaterThan(350);
    const w = leastSquares(
      train.map((t) => features(t, cats)),
      train.map((t) => t.average_rating!),
    );
    const y = test.map((t) => t.average_rating!);
    const pred = test.map((t) => features(t, cats).reduce((s, x, i) => s + x * w[i], 0));
    const mean = y.reduce((s, v) => s + v, 0) / y.length;
    const sst = y.reduce((s, v) => s + (v - mean) ** 2, 0);
    const sse = y.reduce((s, v, i) => s + (v - pred[i]) ** 2, 0);
    const r2 = 1 - sse / sst;
    const sd = Math.sqrt(sst / y.length);
    expect(sd).toBeGreaterThan(0.5);
    expect(r2).toBeGreaterThan(0.75);
    expect(pearson(pred, y)).toBeGreaterThan(0.85);
    // Every term matters: the image terms alone and the text terms alone each predict part of it.
    const only = (idx: number[]) => {
      const X = train.map((t) => idx.map((i) => features(t, cats)[i]));
      const v = leastSquares(X, train.map((t) => t.average_rating!));
      return pearson(test.map((t) => idx.reduce((s, i, j) => s + features(t, cats)[i] * v[j], 0)), y);
    };
    expect(only([0, 1, 2, 3, 4, 5])).toBeGreaterThan(0.6); // colour, shape, clutter (≈ 0.67)
    expect(only([0, 6, 7])).toBeGreaterThan(0.4); // title words, description length (≈ 0.53)
    // The fitted weights are the documented ones (tolerances ≈ 4 standard errors at n = 400).
    const m = SYNTH_RATING_MODEL;
    const fit = leastSquares(test.map((t) => features(t, cats)), y);
    expect(Math.abs(fit[1] - m.warmth)).toBeLessThan(0.15);
    SYNTH_SHAPES.slice(1).forEach((s, i) => expect(Math.abs(fit[2 + i] - (m.shape[s] - m.shape.circle)), s).toBeLessThan(0.15));
    expect(Math.abs(fit[5] - m.clutter)).toBeLessThan(0.03);
    expect(Math.abs(fit[6] - m.titleWord)).toBeLessThan(0.08);
    expect(Math.abs(fit[7] - m.description)).toBeLessThan(0.3);
    // rating_number spans orders of magnitude.
    const counts = test.map((t) => t.rating_number!).filter((n) => n !== null);
    expect(Math.min(...counts)).toBeLessThan(100);
    expect(Math.max(...counts)).toBeGreaterThan(10_000);
  });

  it('refuses bad options with errors that name them', async () => {
    const d = fresh();
    await expect(generateSynthetic({ out: d, items: 10, rates: { bogus: 0.1 } as never })).rejects.toThrow(/unknown trap "bogus"/);
    await expect(generateSynthetic({ out: d, items: 10, rates: { weirdText: 1.5 } })).rejects.toThrow(/weirdText must be a number in \[0, 1\]/);
    await expect(generateSynthetic({ out: d, items: 10, rates: { malformedJson: 0.6, duplicate: 0.5 } })).rejects.toBeInstanceOf(ConfigError);
    await expect(generateSynthetic({ out: d, items: 0 })).rejects.toThrow(/items must be a positive integer/);
    await expect(generateSynthetic({ out: d, items: 5, categories: ['../x'] })).rejects.toThrow(/not a file-name category/);
    await expect(generateSynthetic({ out: d, items: 5, gzipCategories: ['Books_X'] })).rejects.toThrow(/gzip category "Books_X"/);
    await expect(generateSynthetic({ out: d, items: 5, imageBaseUrl: 'http://x/images' })).rejects.toThrow(/must end with/);
    writeFileSync(join(d, 'a-file'), 'x');
    await expect(generateSynthetic({ out: join(d, 'a-file', 'sub'), items: 5 })).rejects.toBeInstanceOf(StorageError);
  });

  it('does not overwrite a non-empty folder unless forced, and then replaces only its own files', async () => {
    const d = fresh();
    writeFileSync(join(d, 'keep.txt'), 'mine');
    await expect(generateSynthetic({ out: d, items: 5 })).rejects.toThrow(/not empty/);
    await generateSynthetic({ out: d, items: 12, seed: 1, categories: ['Books', 'Video_Games'], force: true });
    const before = listFiles(d);
    await generateSynthetic({ out: d, items: 6, seed: 2, categories: ['Electronics'], force: true });
    const after = listFiles(d);
    expect(after).toContain('keep.txt');
    expect(after).toContain('meta_Electronics.jsonl');
    expect(after.some((f) => f.startsWith('meta_Books'))).toBe(false);
    expect(after.filter((f) => f.startsWith('images/')).length).toBeLessThan(before.filter((f) => f.startsWith('images/')).length);
    expect(readTruth(d)).toHaveLength(6);
  });
});

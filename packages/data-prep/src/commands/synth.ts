/**
 * `smolrate-data-prep synth` (`nx run data-prep:synth`): writes a synthetic dataset in the exact
 * Amazon Reviews'23 format (synth.ts) and prints what was written.
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createProgress, flagBool, flagNumber, flagString, kebab, parseArgs, requireFlag, UsageError } from '@smolrate/core';
import { generateSynthetic, type SynthSummary } from '../synth.js';
import { TRAP_KINDS, FATAL_TRAPS, type FatalTrap, type TrapRates } from '../synth-traps.js';

export const summary = "write a synthetic dataset in the exact Amazon Reviews'23 format, with learnable ratings";

export const usage = `usage: smolrate-data-prep synth --items N --out DIR [--seed S] [--categories a,b,...]
                              [--gzip-categories a,b] [--rates JSON] [--image-base-url URL] [--force]

  --items N              metadata records in all (split over the categories), ≥ 1
  --out DIR              local folder: meta_<Category>.jsonl[.gz], images/, truth.jsonl, README.md
  --seed S               non-negative integer (default 0); same options → byte-identical files
  --categories LIST      file-name categories (default All_Beauty,Amazon_Fashion,Books,Electronics,
                         Home_and_Kitchen,Toys_and_Games)
  --gzip-categories LIST categories written as .jsonl.gz (default every second one, sorted)
  --rates JSON           trap rates as fractions of N, e.g. '{"malformedJson":0.05,"widthKeyed":0}'
                         (traps: ${TRAP_KINDS.join(', ')})
  --image-base-url URL   image URL prefix (default https://m.media-amazon.com/images/I/, the real CDN:
                         map it to file:///DIR/images/ or a static server with a rewrite rule)
  --force                replace a synthetic dataset already in DIR

The rating formula and every trap are described in DIR/README.md.`;

const KNOWN_FLAGS = ['items', 'out', 'seed', 'categories', 'gzipCategories', 'rates', 'imageBaseUrl', 'force'];

function list(v: string | undefined): string[] | undefined {
  if (v === undefined) return undefined;
  return v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

function parseRates(v: string | undefined): Partial<TrapRates> | undefined {
  if (v === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(v);
  } catch (e) {
    throw new UsageError(`--rates must be a JSON object, e.g. '{"malformedJson":0.05}' (${(e as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new UsageError('--rates must be a JSON object of trap rates');
  return parsed as Partial<TrapRates>;
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/** The printed summary: files, records per category, traps by kind, fates, images, ratings. */
function formatSynthSummary(s: SynthSummary): string {
  const w = Math.max(...s.files.map((f) => f.file.length));
  const tw = Math.max(...TRAP_KINDS.map((k) => k.length));
  const lines = [
    `wrote ${s.items} records (seed ${s.seed}) to ${s.out} in ${(s.elapsedMs / 1000).toFixed(1)}s`,
    '',
    'files:',
    ...s.files.map((f) => `  ${f.file.padEnd(w)}  ${String(f.lines).padStart(7)} records  ${String(f.bytes).padStart(11)} bytes`),
    '',
    'traps:',
    ...TRAP_KINDS.map((k) => `  ${k.padEnd(tw)}  ${String(s.traps[k]).padStart(7)}${k in FATAL_TRAPS ? `  → ${FATAL_TRAPS[k as FatalTrap].reason}` : ''}`),
    '',
    `fates: ${Object.entries(s.fates).map(([k, v]) => `${k} ${v}`).join(', ')}`,
    `images: ${s.images.files} files, ${s.images.bytes} bytes (${mib(s.images.bytes)}): ${s.images.byFormat.jpeg} JPEG, ${s.images.byFormat.png} PNG, ` +
      `${s.images.byFormat.webp} WebP, ${s.images.corrupt} corrupt; ${s.images.missing} deliberately missing`,
    `ratings: mean ${s.ratings.mean.toFixed(2)}, sd ${s.ratings.sd.toFixed(2)}, range ${s.ratings.min.toFixed(1)}–${s.ratings.max.toFixed(1)} over ${s.ratings.count}`,
    '',
    `image rewrite rule: "${s.imageBaseUrl}" → "${pathToFileURL(resolve(s.out, 'images')).href}/"`,
  ];
  return lines.join('\n') + '\n';
}

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, ['force']);
  const unknown = Object.keys(args.flags).filter((k) => !KNOWN_FLAGS.includes(k));
  if (unknown.length > 0) throw new UsageError(`unknown option${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `--${kebab(k)}`).join(', ')} (see --help)`);
  if (args.positionals.length > 0) throw new UsageError(`unexpected argument "${args.positionals[0]}" (see --help)`);
  const items = flagNumber(args, 'items');
  if (items === undefined) throw new UsageError('missing required --items');
  const out = requireFlag(args, 'out');
  const progress = createProgress({ label: 'synth', total: items, unit: 'records' });
  const s = await generateSynthetic({
    items,
    out,
    seed: flagNumber(args, 'seed'),
    categories: list(flagString(args, 'categories')),
    gzipCategories: list(flagString(args, 'gzipCategories')),
    rates: parseRates(flagString(args, 'rates')),
    imageBaseUrl: flagString(args, 'imageBaseUrl'),
    force: flagBool(args, 'force'),
    onProgress: (done) => progress.update(done),
  });
  progress.done();
  process.stdout.write(formatSynthSummary(s));
  return 0;
}

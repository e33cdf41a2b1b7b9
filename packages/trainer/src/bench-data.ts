/**
 * `bench-data --samples N` (default 2,000,000): the trainer's data path at the paper's scale,
 * without the model. It builds, in a scratch folder,
 *
 *  - a synthetic split of N samples in shards of `--shard-rows` rows (only the manifest's shard
 *    table: the raw text is never needed once the index exists), and its **sample index**
 *    (sample-index.ts) with prompts of the paper's length (the image block plus `--text-tokens`
 *    text ids, 170 by default: 209 ids a row for the 256M geometry);
 *  - the **packed feature cache** (feature-cache.ts) of those shards, one file per shard, for the
 *    `--geometry` (256m: 36 × 576; tiny: 9 × 64) in `--dtype` (bf16). A cache of N images may not
 *    fit the disk (2 M × 40.5 KB = 83 GB): it is then built for the first C samples that fit in
 *    half the free space (or `--cache-samples C`), and sample i reads the entry of sample i mod C —
 *    the same files, offsets and read sizes as a full cache, said in the output;
 *
 * then runs one epoch of the data path (GlobalSampler → BatchBuilder: the rank's slice, tokens
 * from the index, features by ranged reads with bounded prefetch) for 1 and for 4 ranks, each rank
 * its own process, at N/4 and at N samples, plus an empty run (a rank that loads nothing), and
 * at N with the sampler's block shuffle (`--sample-blocks`, docs/training.md "The data path at
 * scale"). It
 * prints per-rank peak RSS and its growth per sample, the index's and the cache's bytes per sample,
 * samples/s against the raw sequential read rate of the same cache files measured in the same
 * run (4 MiB reads, 4 in flight, through the page cache and direct: the faster) and, for the
 * plain shuffle, against the disk's rate of random single-entry reads without the loader (16 in
 * flight per rank), how the ranks read (direct or buffered: `--direct-io`), and the
 * extrapolation to 16.4 M samples. Disk use is reported; the folder is removed at the
 * end unless `--keep`.
 */
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, flagBool, flagNumber, flagString, formatDuration, parseArgs, Rng, UsageError, type CommandSpec } from '@smolrate/core';
import { imageTokenCount, presetConfig, type ModelConfig } from '@smolrate/model';

/** The paper's dataset: samples of all categories, 5 epochs, 4 workers. */
export const PAPER_SAMPLES = 16_400_000;

export interface BenchDataOptions {
  samples: number;
  /** Worker counts (default 1, 4). */
  ranks: number[];
  /** Sampler blocks run at N besides the plain shuffle (default 16). */
  sampleBlocks: number[];
  geometry: 'smolvlm2-256m' | 'tiny';
  dtype: 'bf16' | 'f16' | 'f32';
  shardRows: number;
  textTokens: number;
  globalBatch: number;
  prefetch: number;
  /** Cap on the cached images (default: what fits in half the free disk). */
  cacheSamples?: number;
  dir?: string;
  keep: boolean;
  /** Drop the page cache (root) before the raw read and before each run: disk, not memory, rates. */
  cold?: boolean;
  /** The ranks' FeatureCache directIo (default auto: direct when the cache is over half the memory). */
  directIo: 'auto' | 'on' | 'off';
  onProgress?: (line: string) => void;
}

/** Synthetic prompt rows of the paper's shape: the image block, then `textTokens` text ids, seeded per sample. */
export function syntheticRow(cfg: ModelConfig, textTokens: number, sample: number, seed = 1): Uint16Array {
  const n = imageTokenCount(cfg);
  const rng = new Rng(seed, 'bench-data-row', sample);
  // Every row at the full text budget: the paper's longest prompt, the index's worst case.
  const text = textTokens;
  const row = new Uint16Array(3 + n + text);
  const vocab = Math.min(cfg.text.vocabSize, 0xffff);
  let k = 0;
  row[k++] = 1; // <|im_start|>-like
  row[k++] = cfg.imageTokenId - 1; // a fake-token-around-image stand-in
  for (let t = 0; t < n; t++) row[k++] = cfg.imageTokenId;
  row[k++] = cfg.imageTokenId - 1;
  for (let t = 0; t < text; t++) {
    let id = Math.floor(rng.next() * vocab);
    if (id === cfg.imageTokenId) id = 0;
    row[k++] = id;
  }
  return row;
}

export function benchDataDefaults(): Omit<BenchDataOptions, 'onProgress'> {
  return { samples: 2_000_000, ranks: [1, 4], sampleBlocks: [16], geometry: 'smolvlm2-256m', dtype: 'bf16', shardRows: 2_000, textTokens: 170, globalBatch: 64, prefetch: 2, keep: false, directIo: 'auto' };
}

export function scratchDir(o: Pick<BenchDataOptions, 'dir'>): { dir: string; owned: boolean } {
  if (o.dir !== undefined) {
    mkdirSync(o.dir, { recursive: true });
    return { dir: o.dir, owned: false };
  }
  return { dir: mkdtempSync(join(tmpdir(), `smolrate-bench-data-${randomBytes(3).toString('hex')}-`)), owned: true };
}

/** Free bytes on the file system holding `dir`. */
export function freeBytes(dir: string): number {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}

/** Empties the kernel's page cache (root only), so the next reads come from the disk. */
export function dropPageCache(): void {
  execFileSync('sync');
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '3\n');
  } catch (e) {
    throw new UsageError(`bench-data --cold: cannot drop the page cache (${(e as Error).message}); it needs root on Linux`);
  }
}

export function removeScratch(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export function checkOptions(o: BenchDataOptions): void {
  const positive = (name: string, v: number) => {
    if (!Number.isSafeInteger(v) || v < 1) throw new UsageError(`bench-data: ${name} must be a positive integer, got ${v}`);
  };
  positive('--samples', o.samples);
  positive('--shard-rows', o.shardRows);
  positive('--text-tokens', o.textTokens);
  positive('--global-batch', o.globalBatch);
  if (o.cacheSamples !== undefined) positive('--cache-samples', o.cacheSamples);
  for (const r of o.ranks) positive('--ranks', r);
  for (const k of o.sampleBlocks) positive('--sample-blocks', k);
  if (o.samples < 4 * o.globalBatch) throw new UsageError(`bench-data: --samples ${o.samples} is too small for a global batch of ${o.globalBatch} at N/4`);
  if (o.geometry !== 'smolvlm2-256m' && o.geometry !== 'tiny') throw new ConfigError(`bench-data: --geometry must be smolvlm2-256m or tiny, got ${String(o.geometry)}`);
  if (!['auto', 'on', 'off'].includes(o.directIo)) throw new ConfigError(`bench-data: --direct-io must be auto, on or off, got ${String(o.directIo)}`);
  if (!['bf16', 'f16', 'f32'].includes(o.dtype)) throw new ConfigError(`bench-data: --dtype must be bf16, f16 or f32, got ${String(o.dtype)}`);
  presetConfig(o.geometry);
}

export const benchDataUsage = [
  'options:',
  '  --samples N           samples of the synthetic split (default 2000000); also run at N/4 for the growth per sample',
  '  --ranks 1,4           rank counts, each rank its own process (default 1,4)',
  '  --sample-blocks 16    also run at N with the sampler\'s sampleBlock K (default 16; comma-separated; "" for none)',
  '  --geometry NAME       feature geometry: smolvlm2-256m (36 × 576, default) or tiny (9 × 64)',
  '  --dtype bf16|f16|f32  feature cache precision (default bf16)',
  '  --shard-rows R        rows per shard = entries per feature file (default 2000, ~80 MB files at 256M bf16)',
  '  --text-tokens T       text ids per prompt at most (default 170: the paper\'s prompt, 100-character fields)',
  '  --global-batch B      (default 64)   --prefetch D  steps built ahead (default 2, the trainer\'s)',
  '  --cache-samples C     cache only C images (default: what fits in half the free disk); sample i reads entry i mod C',
  '  --cold                drop the page cache (needs root) before the raw read and each run: the disk\'s rates',
  '  --direct-io auto|on|off  the ranks\' O_DIRECT entry reads (default auto: on when the cache is over half the memory)',
  '  --dir DIR             scratch folder (default: a temporary one)   --keep  keep it   --json  print JSON',
].join('\n');

export function parseBenchDataArgs(argv: string[]): BenchDataOptions & { json: boolean } {
  const args = parseArgs(argv, ['keep', 'json', 'cold']);
  const d = benchDataDefaults();
  const ranks = (flagString(args, 'ranks') ?? d.ranks.join(',')).split(',').map((s) => Number(s.trim()));
  const blocks = flagString(args, 'sampleBlocks') ?? d.sampleBlocks.join(',');
  const sampleBlocks = blocks.trim() === '' ? [] : blocks.split(',').map((s) => Number(s.trim()));
  const o = {
    samples: flagNumber(args, 'samples', d.samples)!,
    ranks,
    sampleBlocks,
    geometry: (flagString(args, 'geometry') ?? d.geometry) as BenchDataOptions['geometry'],
    dtype: (flagString(args, 'dtype') ?? d.dtype) as BenchDataOptions['dtype'],
    shardRows: flagNumber(args, 'shardRows', d.shardRows)!,
    textTokens: flagNumber(args, 'textTokens', d.textTokens)!,
    globalBatch: flagNumber(args, 'globalBatch', d.globalBatch)!,
    prefetch: flagNumber(args, 'prefetch', d.prefetch)!,
    cacheSamples: flagNumber(args, 'cacheSamples'),
    dir: flagString(args, 'dir'),
    keep: flagBool(args, 'keep'),
    cold: flagBool(args, 'cold'),
    directIo: (flagString(args, 'directIo') ?? d.directIo) as BenchDataOptions['directIo'],
    json: flagBool(args, 'json'),
  };
  checkOptions(o);
  return o;
}

export const benchDataCommand: CommandSpec = {
  summary: 'the data path at the paper\'s scale without the model: index and feature-cache bytes per sample, peak RSS per rank, read rate vs raw',
  usage: benchDataUsage,
  async run(argv) {
    const o = parseBenchDataArgs(argv);
    const t0 = performance.now();
    const { runBenchData, formatBenchData } = await import('./bench-data-run.js');
    const result = await runBenchData({ ...o, onProgress: (line) => process.stderr.write(`bench-data: ${line}\n`) });
    process.stdout.write(o.json ? `${JSON.stringify(result, null, 2)}\n` : `${formatBenchData(result)}\n`);
    process.stderr.write(`bench-data: done in ${formatDuration((performance.now() - t0) / 1000)}\n`);
    return 0;
  },
};

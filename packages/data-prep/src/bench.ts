/**
 * `nx run data-prep:bench`: the two data-prep benchmarks side by side.
 *
 *  - select: one streaming `selectCategory` pass over a generated category file at 0.5 M and 2 M
 *    records (select-bench.ts), each size in a fresh child process so that its RSS is its own.
 *    The claim checked: records/s stays flat and peak RSS does not grow with the file (memory is
 *    bounded by K, not by the file) — the 2 M / 0.5 M ratios should both be ≈ 1.
 *  - images: fetch + decode + resize + encode through a local HTTP server vs sharp alone on the
 *    same bytes (image-bench.ts); the ratio is the cost of the fetching machinery.
 *
 * At the paper's scale (16 M records in one category, K = 1 M):
 *   nx run data-prep:bench --sizes 16000000 --k 1000000 --images 0 --dir /big/scratch
 * needs ≈ 17 GB of scratch disk for the generated file (≈ 1.05 KB per record) plus the kept items'
 * spill file (≈ 2 GB at K = 1 M), and takes about sizes[0]/records-per-second of the 2 M run; its
 * peak RSS is dominated by the two K-item heaps (≈ 0.5 GB at K = 1 M).
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { DataError } from '@smolrate/core';
import { forkEntry } from '@smolrate/core';
import { formatImageBench, runImageBench, type ImageBenchResult } from './image-bench.js';
import type { SelectBenchResult } from './select-bench.js';

export interface BenchOptions {
  /** Record counts of the select runs. Default [500 000, 2 000 000]. */
  sizes?: number[];
  /** topK = bottomK of the select runs. Default 1000. */
  k?: number;
  /** Source images of the image bench (0 = skip it). Default 200. */
  images?: number;
  /** Parallel images (default: the config's images.concurrency, 8). */
  concurrency?: number;
  /** Scratch folder (generated files, spill files); removed afterwards. */
  dir: string;
  seed?: number;
  print?: (line: string) => void;
}

export interface BenchResult {
  select: SelectBenchResult[];
  images: ImageBenchResult | null;
}

/** Runs one select size in a fresh child process; resolves with its one-line JSON result. */
function runSelectBenchChild(args: { records: number; k: number; dir: string; seed?: number }): Promise<SelectBenchResult> {
  const argv = ['--records', String(args.records), '--k', String(args.k), '--dir', args.dir];
  if (args.seed !== undefined) argv.push('--seed', String(args.seed));
  const child = forkEntry(import.meta.url, 'select-bench-child', argv, { stdio: ['ignore', 'pipe', 'inherit', 'ipc'], execArgv: ['--expose-gc'] });
  let out = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (s: string) => {
    out += s;
  });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      const last = out.trim().split('\n').pop() ?? '';
      if (code !== 0) return reject(new DataError(`select bench (${args.records} records) exited with ${signal ?? `code ${code}`}`));
      try {
        resolve(JSON.parse(last) as SelectBenchResult);
      } catch (e) {
        reject(new DataError(`select bench (${args.records} records) printed no result line: ${JSON.stringify(last.slice(0, 200))}`, { cause: e }));
      }
    });
    // The child needs no IPC; without this its open channel would keep it alive.
    child.disconnect();
  });
}

function ratio(a: number, b: number): string {
  return b === 0 ? '–' : (a / b).toFixed(2);
}

/** The select runs as a table, sizes side by side, with the last/first ratios. */
export function formatSelectBench(rows: SelectBenchResult[]): string[] {
  if (rows.length === 0) return [];
  const fmt = (n: number) => n.toLocaleString('en-US');
  const head = ['', ...rows.map((r) => `${fmt(r.records)} records`)];
  const lines: string[][] = [
    head,
    ['file MB', ...rows.map((r) => (r.fileBytes / 1e6).toFixed(0))],
    ['select s (wall)', ...rows.map((r) => r.selectSeconds.toFixed(2))],
    ['records/s (wall)', ...rows.map((r) => fmt(r.recordsPerSecond))],
    ['records/CPU-s', ...rows.map((r) => fmt(r.recordsPerCpuSecond))],
    ['MB/s', ...rows.map((r) => r.megabytesPerSecond.toFixed(1))],
    ['peak RSS MiB', ...rows.map((r) => r.peakRssMiB.toFixed(0))],
    ['heap MiB at end', ...rows.map((r) => r.heapUsedMiB.toFixed(0))],
    ['retained heap MiB', ...rows.map((r) => (r.retainedHeapMiB ?? NaN).toFixed(0))],
    ['kept', ...rows.map((r) => fmt(r.kept))],
  ];
  const widths = head.map((_, c) => Math.max(...lines.map((l) => l[c].length)));
  const out = [`select bench: one streaming pass, K = ${fmt(rows[0].k)} (top-K and bottom-K), each size in its own process`];
  for (const l of lines) out.push(`  ${l.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ')}`);
  if (rows.length > 1) {
    const a = rows[0];
    const b = rows[rows.length - 1];
    out.push(
      `  ${fmt(b.records)} / ${fmt(a.records)}: records/CPU-s × ${ratio(b.recordsPerCpuSecond, a.recordsPerCpuSecond)}, ` +
        `peak RSS × ${ratio(b.peakRssMiB, a.peakRssMiB)} (flat rate and flat memory ≈ 1.00: bounded by K, not by the file)`,
    );
  }
  return out;
}

export async function runBench(opts: BenchOptions): Promise<BenchResult> {
  const print = opts.print ?? ((line: string) => void process.stdout.write(`${line}\n`));
  const sizes = opts.sizes ?? [500_000, 2_000_000];
  const k = opts.k ?? 1000;
  const scratch = join(opts.dir, `smolrate-bench-${process.pid}`);
  await mkdir(scratch, { recursive: true });
  try {
    const select: SelectBenchResult[] = [];
    for (const records of sizes) {
      print(`select bench: ${records.toLocaleString('en-US')} records…`);
      select.push(await runSelectBenchChild({ records, k, dir: scratch, seed: opts.seed }));
    }
    let images: ImageBenchResult | null = null;
    if ((opts.images ?? 200) > 0) {
      images = await runImageBench({ images: opts.images ?? 200, dir: join(scratch, 'images'), concurrency: opts.concurrency, seed: opts.seed, print: () => undefined });
    }
    print('');
    for (const line of formatSelectBench(select)) print(line);
    if (images) {
      print('');
      for (const line of formatImageBench(images)) print(line);
    }
    print('');
    print('At the paper\'s scale: --sizes 16000000 --k 1000000 --images 0 --dir /big/scratch (≈ 17 GB of scratch disk; see bench.ts).');
    return { select, images };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

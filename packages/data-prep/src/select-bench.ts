/**
 * Selection throughput and memory: generates one large category file of valid-looking raw-form
 * records (≈ 1 KB each, log-uniform rating_number so about a quarter fall below the minimum,
 * a few percent of docs/reference/data.md traps) and times one `selectCategory` pass over it, sampling the
 * resident set size. The claim it checks: records/s stays flat and peak RSS does not grow with the
 * file — memory is bounded by K. Run each size in its own process (select-bench-child.ts) so that
 * one run's heap does not inflate the next one's RSS.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { once } from 'node:events';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { openStore, Rng, silentLogger } from '@smolrate/core';
import { resolveDataPrepConfig, rowsPerShard } from './config.js';
import { SAMPLE_LINES } from './metadata-samples.js';
import { selectCategory, type SelectResult } from './select.js';

export interface SelectBenchOptions {
  /** Records in the generated file. */
  records: number;
  /** topK = bottomK. */
  k: number;
  /** Scratch folder: the file, the spill files and the work output go here (removed afterwards). */
  dir: string;
  /** Fraction of trap lines (default 0.03). */
  trapRate?: number;
  seed?: number;
  /** Keep the generated file and outputs. */
  keep?: boolean;
  /** RSS sampling period (default 20 ms). */
  sampleMs?: number;
}

export interface SelectBenchResult {
  records: number;
  k: number;
  fileBytes: number;
  generateSeconds: number;
  selectSeconds: number;
  /** CPU time (user + system) of this process during the pass: robust when the machine is shared. */
  selectCpuSeconds: number;
  recordsPerSecond: number;
  recordsPerCpuSecond: number;
  megabytesPerSecond: number;
  /** RSS just before the pass, and the highest sampled during it. */
  baselineRssMiB: number;
  peakRssMiB: number;
  /** The process's lifetime peak (getrusage), generation included. */
  maxRssMiB: number;
  /** V8 heap in use at the end of the pass, and after a full collection (what the pass retains). */
  heapUsedMiB: number;
  retainedHeapMiB: number;
  read: number;
  kept: number;
  rejected: Record<string, number>;
}

const WORDS = (
  'soft gentle leather conditioner pack ounce bottle natural organic travel size premium set kit daily use ' +
  'hair skin face body cream oil serum brush comb mirror case cover stand holder steel bamboo cotton silk ' +
  'black white blue red green pink large small mini portable waterproof durable lightweight classic modern ' +
  'gift women men kids home kitchen office outdoor sport 2-pack 3-pack 12oz 8oz fl oz with and for the of'
).split(' ');
const MAIN_CATEGORIES = ['All Beauty', 'AMAZON FASHION', 'Amazon Home', 'Health & Personal Care', 'Toys & Games', null];
const ID_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+';

/** Unique 10-character parent_asin for index i: i times a unit modulo 36^8 (BigInt: the product passes 2^53). */
function asinOf(i: number): string {
  return `B0${((BigInt(i) * 2654435761n) % 2821109907456n).toString(36).toUpperCase().padStart(8, '0')}`;
}

function words(rng: Rng, n: number): string {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(WORDS[rng.nextU32() % WORDS.length]);
  return out.join(' ');
}

function imageId(rng: Rng): string {
  let s = '';
  for (let i = 0; i < 11; i++) s += ID_CHARS[rng.nextU32() % ID_CHARS.length];
  return s;
}

/**
 * Pools of ready-made (already JSON-encoded) text fragments: building every record from fresh
 * random words made generation several times slower than the selection it is there to measure.
 */
class Pools {
  readonly titles: string[];
  readonly features: string[];
  readonly descriptions: string[];
  readonly stores: string[];
  readonly details: string[];
  readonly imageIds: string[];
  constructor(rng: Rng) {
    const many = <T>(n: number, f: () => T): T[] => Array.from({ length: n }, f);
    this.titles = many(4096, () => JSON.stringify(words(rng, 5 + (rng.nextU32() % 15))));
    this.features = many(4096, () => many(rng.nextU32() % 5, () => JSON.stringify(words(rng, 6 + (rng.nextU32() % 14)))).join(','));
    this.descriptions = many(4096, () => (rng.nextU32() % 3 === 0 ? '' : JSON.stringify(words(rng, 10 + (rng.nextU32() % 40)))));
    this.stores = many(1024, () => JSON.stringify(words(rng, 2)));
    this.details = many(1024, () => `{"Brand":${JSON.stringify(words(rng, 1))},"Item Weight":"${1 + (rng.nextU32() % 30)} ounces","Manufacturer":${JSON.stringify(words(rng, 2))}}`);
    this.imageIds = many(16384, () => imageId(rng));
  }
}

const pick = <T>(rng: Rng, list: readonly T[]): T => list[rng.nextU32() % list.length];

/** One valid-looking raw-form line. */
function recordLine(rng: Rng, pools: Pools, i: number): string {
  const img = 'https://m.media-amazon.com/images/I/';
  const ratingNumber = Math.floor(Math.exp(rng.next() * 10)) - 1; // log-uniform 0..22025; P(< 10) ≈ 0.24
  const rating = (10 + (rng.nextU32() % 41)) / 10;
  const mainCategory = MAIN_CATEGORIES[rng.nextU32() % MAIN_CATEGORIES.length];
  let images = '';
  const nImages = rng.nextU32() % 50 === 0 ? 0 : 1 + (rng.nextU32() % 4);
  for (let m = 0; m < nImages; m++) {
    const id = pick(rng, pools.imageIds);
    const hiRes = rng.nextU32() % 5 === 0 ? 'null' : `"${img}${pick(rng, pools.imageIds)}._SL1500_.jpg"`;
    const variant = m === 0 ? 'MAIN' : `PT0${m}`;
    images += `${m > 0 ? ',' : ''}{"thumb":"${img}${id}._SS40_.jpg","large":"${img}${id}.jpg","variant":"${variant}","hi_res":${hiRes}}`;
  }
  const price = rng.nextU32() % 3 === 0 ? 'null' : (rng.nextU32() % 10000) / 100;
  return (
    `{"main_category":${mainCategory === null ? 'null' : `"${mainCategory}"`},"title":${pick(rng, pools.titles)},` +
    `"average_rating":${rating},"rating_number":${ratingNumber},"features":[${pick(rng, pools.features)}],` +
    `"description":[${pick(rng, pools.descriptions)}],"price":${price},"images":[${images}],"videos":[],` +
    `"store":${pick(rng, pools.stores)},"categories":[],"details":${pick(rng, pools.details)},` +
    `"parent_asin":"${asinOf(i)}","bought_together":null}`
  );
}

const TRAPS = SAMPLE_LINES.filter((s) => 'reason' in s.expect).map((s) => s.text);

/** Writes `records` lines to `path` (streamed, bounded memory); returns the byte size. */
export async function generateMetadataFile(path: string, records: number, opts: { trapRate?: number; seed?: number } = {}): Promise<number> {
  const rng = new Rng(opts.seed ?? 0, 'select-bench');
  const trapRate = opts.trapRate ?? 0.03;
  const pools = new Pools(rng);
  const out = createWriteStream(path);
  let batch: string[] = [];
  let batchChars = 0;
  for (let i = 0; i < records; i++) {
    let line: string;
    if (rng.next() < trapRate) {
      // Traps keep their shape but get a unique asin, so they never collide with real records.
      line = TRAPS[rng.nextU32() % TRAPS.length].replace(/"parent_asin":"B0[0-9A-Z]+"/, `"parent_asin":"${asinOf(i)}"`);
    } else {
      line = recordLine(rng, pools, i);
    }
    batch.push(line);
    batchChars += line.length + 1;
    if (batchChars >= 4 << 20) {
      if (!out.write(`${batch.join('\n')}\n`)) await once(out, 'drain');
      batch = [];
      batchChars = 0;
    }
  }
  if (batch.length > 0) out.write(`${batch.join('\n')}\n`);
  out.end();
  await once(out, 'finish');
  return (await stat(path)).size;
}

const MiB = 1024 * 1024;

export async function runSelectBench(opts: SelectBenchOptions): Promise<SelectBenchResult> {
  const { records, k, dir } = opts;
  const work = join(dir, `select-bench-${process.pid}`);
  await mkdir(work, { recursive: true });
  const file = 'meta_Bench.jsonl';
  try {
    const g0 = performance.now();
    const fileBytes = await generateMetadataFile(join(work, file), records, { trapRate: opts.trapRate, seed: opts.seed });
    const generateSeconds = (performance.now() - g0) / 1000;

    const cfg = resolveDataPrepConfig({ overrides: { 'selection.topK': k, 'selection.bottomK': k, 'selection.valSize': Math.min(10_000, k), seed: opts.seed ?? 0 } });
    // Start the pass from a collected heap, so that generation garbage is not counted.
    const gc = exposeGc();
    gc();
    const baseline = process.memoryUsage.rss();
    let peak = baseline;
    const timer = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage.rss());
    }, opts.sampleMs ?? 20);
    let result: SelectResult;
    const s0 = performance.now();
    const c0 = process.cpuUsage();
    let heapUsed: number;
    let retained: number;
    try {
      result = await selectCategory({
        input: openStore(work),
        key: file,
        source: openStore(work).uriOf(file),
        category: 'Bench',
        cfg,
        work: openStore(join(work, 'out')),
        chunkRows: rowsPerShard(cfg),
        log: silentLogger,
        tmpDir: work,
        onProgress: () => {
          peak = Math.max(peak, process.memoryUsage.rss());
        },
      });
      heapUsed = process.memoryUsage().heapUsed;
      gc();
      retained = process.memoryUsage().heapUsed;
    } finally {
      clearInterval(timer);
    }
    const selectSeconds = (performance.now() - s0) / 1000;
    const cpu = process.cpuUsage(c0);
    const selectCpuSeconds = (cpu.user + cpu.system) / 1e6;
    peak = Math.max(peak, process.memoryUsage.rss());
    return {
      records,
      k,
      fileBytes,
      generateSeconds: round(generateSeconds, 2),
      selectSeconds: round(selectSeconds, 2),
      selectCpuSeconds: round(selectCpuSeconds, 2),
      recordsPerSecond: Math.round(records / selectSeconds),
      recordsPerCpuSecond: Math.round(records / selectCpuSeconds),
      megabytesPerSecond: round(fileBytes / MiB / selectSeconds, 1),
      baselineRssMiB: round(baseline / MiB, 1),
      peakRssMiB: round(peak / MiB, 1),
      maxRssMiB: round(process.resourceUsage().maxRSS / 1024, 1),
      heapUsedMiB: round(heapUsed / MiB, 1),
      retainedHeapMiB: round(retained / MiB, 1),
      read: result.read,
      kept: result.kept,
      rejected: result.rejected,
    };
  } finally {
    if (!opts.keep) await rm(work, { recursive: true, force: true });
  }
}

/** `global.gc`, exposed at run time (no `--expose-gc` needed on the command line). */
function exposeGc(): () => void {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (existing !== undefined) return existing;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

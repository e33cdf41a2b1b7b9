/**
 * The work of `bench-data` (bench-data.ts has the options and the command): builds the synthetic
 * index and packed cache, measures the raw read rate, runs the ranks (bench-worker-main `data`)
 * and reports. A rank runs `runDataBenchWorker`: one epoch of the trainer's data path.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { formatDuration, Rng } from '@smolrate/core';
import { imageTokenCount, presetConfig, type ModelConfig } from '@smolrate/model';
import { dropPageCache, freeBytes, PAPER_SAMPLES, removeScratch, scratchDir, syntheticRow, type BenchDataOptions } from './bench-data.js';
import { BatchBuilder } from './batches.js';
import { reportBenchResult, runBenchWorkers } from './bench-workers.js';
import { FEATURE_READS_IN_FLIGHT, FeatureCache, packedBytesPerImage, readEntriesAtRandom, readFeatureFilesSequentially, type DirectIoMode, type FeatureDtype, type FeatureShard } from './feature-cache.js';
import { Prefetcher } from './prefetcher.js';
import { readSampleIndex, SampleIndex, sampleIndexKey, writeSampleIndex, type SampleIndexKey } from './sample-index.js';
import { GlobalSampler } from './sampler.js';

export interface DataRankReport {
  rank: number;
  samples: number;
  seconds: number;
  /** Peak resident set of the rank's process (VmHWM), bytes. */
  peakRssBytes: number;
  /** Resident bytes of the loaded sample index (its typed arrays). */
  indexBytes: number;
  /** The feature cache's entry ranges by how they were read (FeatureCache.rangesRead). */
  rangesRead: { direct: number; buffered: number; remote: number };
}

export interface DataRun {
  samples: number;
  ranks: number;
  /** The sampler's sampleBlock (1: the plain global shuffle). */
  sampleBlock: number;
  /** Samples of the epoch over all ranks / the slowest rank's seconds. */
  samplesPerSecond: number;
  /** samplesPerSecond / the raw read rate in samples (raw bytes/s ÷ entry bytes). */
  readRatio: number;
  /** samplesPerSecond / the disk's random entry reads per second at this rank count's reads in flight. */
  randomRatio: number;
  /** Highest peak RSS of the ranks. */
  peakRssBytes: number;
  perRank: DataRankReport[];
}

export interface BenchDataResult {
  samples: number;
  geometry: string;
  dtype: string;
  tokens: number;
  dim: number;
  cacheSamples: number;
  shardRows: number;
  /** Index file and resident bytes per sample (at N). */
  indexFileBytesPerSample: number;
  indexResidentBytesPerSample: number;
  /** Packed cache bytes per image: the formula, and the files on disk ÷ cached images. */
  cacheBytesPerImage: number;
  cacheDiskBytesPerImage: number;
  diskBytes: number;
  /** The scratch folder when it was kept (`--keep` or `--dir`), else null (removed). */
  keptIn: string | null;
  /** The raw sequential rate, bytes/s: the faster of the two ways below (the ratios' denominator). */
  rawReadBytesPerSecond: number;
  rawSamplesPerSecond: number;
  /** Sequential 4 MiB reads of the whole files through the page cache, and with O_DIRECT. */
  rawBufferedBytesPerSecond: number;
  rawDirectBytesPerSecond: number;
  /** By rank count W: random single-entry reads per second with W·16 in flight (readEntriesAtRandom). */
  randomReadsPerSecond: Record<number, number>;
  emptyRssBytes: number;
  runs: DataRun[];
  /** Per rank count: (peak RSS at N − at N/4) ÷ (3N/4), bytes per sample. */
  rssGrowthPerSample: Record<number, number>;
  /** Epoch seconds of the data path at 16.4 M samples, by "<ranks> rank(s), block <K>". */
  extrapolation: { samples: number; indexBytesPerRank: number; cacheBytes: number; cacheFiles: number; epochSeconds: Record<string, number> };
  seconds: { index: number; cache: number; raw: number; runs: number };
}

export interface DataWorkerParams {
  geometry: string;
  dtype: string;
  samples: number;
  indexPath: string | null;
  cacheDir: string;
  cacheSamples: number;
  shardRows: number;
  globalBatch: number;
  prefetch: number;
  sampleBlock: number;
  directIo: DirectIoMode;
}

/** Entries read at random for the random-read baseline (or the whole cache, if smaller). */
const RANDOM_READS = 100_000;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** A fixed stand-in for the backbone hash: the bench has no model. */
const BENCH_BACKBONE = createHash('sha256').update('smolrate bench-data backbone').digest('hex');
const hex = (...parts: Array<string | number>) => createHash('sha256').update(parts.join('/')).digest('hex');

/** The synthetic split's shards (those the cache covers): a name for each, `rows` rows. */
function benchShards(cacheSamples: number, shardRows: number): FeatureShard[] {
  return Array.from({ length: Math.ceil(cacheSamples / shardRows) }, (_, s) => ({ sha256: hex('bench-data shard', s), rows: Math.min(shardRows, cacheSamples - s * shardRows) }));
}

function benchCache(dir: string, tokens: number, dim: number, dtype: string, directIo: DirectIoMode = 'auto'): FeatureCache {
  return new FeatureCache({ dir, backboneHash: BENCH_BACKBONE, tokens, dim, dtype: dtype as FeatureDtype, directIo });
}

/** Writes the packed cache of the first `samples` samples through the trainer's writer (seeded values). */
async function writeSyntheticCache(o: { dir: string; tokens: number; dim: number; dtype: string; samples: number; shardRows: number; say: (line: string) => void }): Promise<FeatureShard[]> {
  const cache = benchCache(o.dir, o.tokens, o.dim, o.dtype);
  const shards = benchShards(o.samples, o.shardRows);
  const values = new Float32Array(o.tokens * o.dim);
  const rng = new Rng(1, 'bench-data-features');
  for (let i = 0; i < values.length; i++) values[i] = 2 * rng.next() - 1;
  for (const [s, shard] of shards.entries()) {
    const w = cache.writer(shard);
    for (let row = 0; row < shard.rows; row++) {
      values[0] = s * o.shardRows + row; // entries differ, so a wrong read shows
      w.set(row, hex('bench-data image', s, row), values);
    }
    await cache.put(shard.sha256, w.finish());
    if (s % 50 === 49) o.say(`  feature files ${s + 1}/${shards.length}`);
  }
  await cache.close();
  return shards;
}

/** The index key of a synthetic split of `samples` samples (the same in the parent and the ranks). */
function benchIndexKey(cfg: ModelConfig, samples: number, shardRows: number): SampleIndexKey {
  const shards = Array.from({ length: Math.ceil(samples / shardRows) }, (_, k) => ({ file: `bench-${k}.parquet`, rows: Math.min(shardRows, samples - k * shardRows), bytes: 1, sha256: hex('bench-data shard', k) }));
  return sampleIndexKey({ split: 'train', shards, tokenizerSha256: hex('bench-data tokenizer'), config: cfg });
}

/**
 * Writes the sample index of `samples` synthetic rows through the trainer's writer. The rows have
 * one length (syntheticRow), so they go straight into the flat array: no per-row objects, which
 * at 16.4 M samples would cost more memory than the index.
 */
async function writeSyntheticIndex(path: string, key: SampleIndexKey, samples: number, rowOf: (i: number) => Uint16Array, say: (line: string) => void): Promise<void> {
  const length = rowOf(0).length;
  const offsets = Float64Array.from({ length: samples + 1 }, (_, i) => i * length);
  const tokens = new Uint16Array(samples * length);
  for (let i = 0; i < samples; i++) {
    const row = rowOf(i);
    if (row.length !== length) throw new Error(`bench-data: synthetic row ${i} has ${row.length} ids, row 0 ${length}`);
    tokens.set(row, i * length);
  }
  const targets = Float32Array.from({ length: samples }, (_, i) => 1 + ((i * 7919) % 41) / 10);
  const categoryIds = Uint16Array.from({ length: samples }, (_, i) => i % 3);
  await writeSampleIndex(path, new SampleIndex({ key, targets, categoryIds, categories: ['All_Beauty', 'Books', 'Toys_and_Games'], offsets, tokens }, path));
  say(`sample index of ${samples.toLocaleString('en-US')} samples: ${(statSync(path).size / samples).toFixed(0)} B/sample on disk`);
}

/** Bytes of one cache entry (features only). */
function entryBytes(tokens: number, dim: number, dtype: string): number {
  return tokens * dim * (dtype === 'f32' ? 4 : 2);
}

export async function runBenchData(o: BenchDataOptions): Promise<BenchDataResult> {
  const say = o.onProgress ?? (() => undefined);
  const cfg = presetConfig(o.geometry);
  const tokens = imageTokenCount(cfg);
  const dim = cfg.text.hiddenSize;
  const perImage = packedBytesPerImage(tokens, dim, o.dtype);
  const { dir, owned } = scratchDir(o);
  const quarter = Math.floor(o.samples / 4);
  try {
    const fit = Math.floor((0.5 * freeBytes(dir)) / perImage);
    const cacheSamples = Math.min(o.samples, o.cacheSamples ?? fit);
    if (cacheSamples < 1) throw new Error(`bench-data: no room for a feature cache in ${dir}`);
    say(`scratch ${dir}; ${o.samples.toLocaleString('en-US')} samples, ${o.geometry} features [${tokens}, ${dim}] ${o.dtype} = ${perImage} B/image; cache of ${cacheSamples.toLocaleString('en-US')} images${cacheSamples < o.samples ? ` (sample i reads entry i mod C${o.cacheSamples === undefined ? ': a full cache would not fit half the free disk' : ''})` : ''}`);

    // 1. Sample indexes at N/4 and N.
    const t1 = performance.now();
    const indexPaths: Record<number, string> = {};
    for (const n of [quarter, o.samples]) {
      indexPaths[n] = join(dir, `index-${n}.sridx`);
      await writeSyntheticIndex(indexPaths[n], benchIndexKey(cfg, n, o.shardRows), n, (i) => syntheticRow(cfg, o.textTokens, i), say);
    }
    const indexFileBytes = statSync(indexPaths[o.samples]).size;
    const tIndex = (performance.now() - t1) / 1000;

    // 2. The packed cache, one file per shard.
    const t2 = performance.now();
    const cacheDir = join(dir, 'features');
    const shards = await writeSyntheticCache({ dir: cacheDir, tokens, dim, dtype: o.dtype, samples: cacheSamples, shardRows: o.shardRows, say });
    const files = (await readdir(cacheDir, { recursive: true })).map((f) => join(cacheDir, String(f))).filter((f) => statSync(f).isFile());
    const diskBytes = files.reduce((s, f) => s + statSync(f).size, 0) + indexFileBytes + statSync(indexPaths[quarter]).size;
    const cacheBytes = files.reduce((s, f) => s + statSync(f).size, 0);
    const tCache = (performance.now() - t2) / 1000;
    say(`cache: ${files.length} files, ${(cacheBytes / 2 ** 30).toFixed(2)} GiB in ${formatDuration(tCache)}; disk in use ${(diskBytes / 2 ** 30).toFixed(2)} GiB`);

    // 3. Raw sequential read of the same files (what the disk gives without us), through the page
    // cache and with O_DIRECT; the faster is the baseline, whichever way the ranks read.
    const t3 = performance.now();
    const reading = benchCache(cacheDir, tokens, dim, o.dtype);
    const rawRate = async (direct: boolean) => {
      if (o.cold === true) dropPageCache();
      const raw = await readFeatureFilesSequentially(reading, shards, { direct });
      return raw.bytes / raw.seconds;
    };
    const rawBufferedBytesPerSecond = await rawRate(false);
    const rawDirectBytesPerSecond = await rawRate(true);
    // The disk's random entry reads, the way the ranks read (direct or not), as many in flight as
    // each rank count has: the most a plain shuffle can get from this disk, loader or not.
    reading.reader(shards);
    const direct = reading.readsDirect;
    const randomReadsPerSecond: Record<number, number> = {};
    for (const w of o.ranks) {
      if (o.cold === true) dropPageCache();
      const count = Math.min(RANDOM_READS, cacheSamples);
      const r = await readEntriesAtRandom(reading, shards, { count, inFlight: w * FEATURE_READS_IN_FLIGHT, direct });
      randomReadsPerSecond[w] = r.reads / r.seconds;
      say(`random entry reads, ${w * FEATURE_READS_IN_FLIGHT} in flight${r.direct ? ', direct' : ''}: ${randomReadsPerSecond[w].toFixed(0)}/s`);
    }
    await reading.close();
    const rawReadBytesPerSecond = Math.max(rawBufferedBytesPerSecond, rawDirectBytesPerSecond);
    const tRaw = (performance.now() - t3) / 1000;
    const rawSamplesPerSecond = rawReadBytesPerSecond / entryBytes(tokens, dim, o.dtype);
    say(`raw sequential read: buffered ${mib(rawBufferedBytesPerSecond)}/s, direct ${mib(rawDirectBytesPerSecond)}/s; baseline ${rawSamplesPerSecond.toFixed(0)} samples/s`);

    // 4. The ranks: an empty run, then each size × rank count.
    const t4 = performance.now();
    const base: Omit<DataWorkerParams, 'samples' | 'indexPath' | 'sampleBlock'> = { geometry: o.geometry, dtype: o.dtype, cacheDir, cacheSamples, shardRows: o.shardRows, globalBatch: o.globalBatch, prefetch: o.prefetch, directIo: o.directIo };
    const empty = (await runBenchWorkers<DataRankReport>({ kind: 'data', workers: 1, redisUrl: null, params: { ...base, samples: 0, indexPath: null, sampleBlock: 1 } })).result;
    const runs: DataRun[] = [];
    // The plain shuffle at N/4 and N (the memory growth), then block shuffles at N.
    const plan = [quarter, o.samples].flatMap((n) => o.ranks.map((w) => ({ n, w, k: 1 })));
    for (const k of o.sampleBlocks.filter((b) => b !== 1)) plan.push(...o.ranks.map((w) => ({ n: o.samples, w, k })));
    for (const { n, w, k } of plan) {
      say(`epoch of ${n.toLocaleString('en-US')} samples on ${w} rank(s), sample block ${k} …`);
      if (o.cold === true) dropPageCache();
      const result = (await runBenchWorkers<DataRankReport>({ kind: 'data', workers: w, redisUrl: null, params: { ...base, samples: n, indexPath: indexPaths[n], sampleBlock: k } })).perRank.map((r, rank) => {
        if (r === undefined) throw new Error(`bench-data: rank ${rank} reported no result`);
        return r;
      });
      const slowest = Math.max(...result.map((r) => r.seconds));
      const done = result.reduce((s, r) => s + r.samples, 0);
      const samplesPerSecond = done / slowest;
      runs.push({ samples: n, ranks: w, sampleBlock: k, samplesPerSecond, readRatio: samplesPerSecond / rawSamplesPerSecond, randomRatio: samplesPerSecond / randomReadsPerSecond[w], peakRssBytes: Math.max(...result.map((r) => r.peakRssBytes)), perRank: result });
      say(`  ${samplesPerSecond.toFixed(0)} samples/s (${(samplesPerSecond / rawSamplesPerSecond).toFixed(2)} × raw), peak RSS ${(Math.max(...result.map((r) => r.peakRssBytes)) / 2 ** 20).toFixed(0)} MiB per rank`);
    }
    const tRuns = (performance.now() - t4) / 1000;

    const rssGrowthPerSample: Record<number, number> = {};
    for (const w of o.ranks) {
      const at = (n: number) => runs.find((r) => r.samples === n && r.ranks === w && r.sampleBlock === 1)!;
      // Median over the ranks of each run's per-rank peak: the ranks of a run hold the same data.
      rssGrowthPerSample[w] = (median(at(o.samples).perRank.map((r) => r.peakRssBytes)) - median(at(quarter).perRank.map((r) => r.peakRssBytes))) / (o.samples - quarter);
    }
    const full = runs.filter((r) => r.samples === o.samples);
    const indexResident = median(full[0].perRank.map((r) => r.indexBytes)) / o.samples;
    const epochSeconds: Record<string, number> = {};
    for (const r of full) epochSeconds[`${r.ranks} rank(s), block ${r.sampleBlock}`] = PAPER_SAMPLES / r.samplesPerSecond;
    return {
      samples: o.samples,
      geometry: o.geometry,
      dtype: o.dtype,
      tokens,
      dim,
      cacheSamples,
      shardRows: o.shardRows,
      indexFileBytesPerSample: indexFileBytes / o.samples,
      indexResidentBytesPerSample: indexResident,
      cacheBytesPerImage: perImage,
      cacheDiskBytesPerImage: cacheBytes / cacheSamples,
      diskBytes,
      keptIn: owned && !o.keep ? null : dir,
      rawReadBytesPerSecond,
      rawSamplesPerSecond,
      rawBufferedBytesPerSecond,
      rawDirectBytesPerSecond,
      randomReadsPerSecond,
      emptyRssBytes: empty.peakRssBytes,
      runs,
      rssGrowthPerSample,
      extrapolation: {
        samples: PAPER_SAMPLES,
        indexBytesPerRank: indexResident * PAPER_SAMPLES,
        cacheBytes: perImage * PAPER_SAMPLES,
        cacheFiles: Math.ceil(PAPER_SAMPLES / o.shardRows),
        epochSeconds,
      },
      seconds: { index: tIndex, cache: tCache, raw: tRaw, runs: tRuns },
    };
  } finally {
    if (owned && !o.keep) removeScratch(dir);
  }
}

/** How a run's ranks read their entry ranges: "direct", "buffered", or the mix. */
function readsOf(run: DataRun): string {
  const total = { direct: 0, buffered: 0, remote: 0 };
  for (const r of run.perRank) for (const k of ['direct', 'buffered', 'remote'] as const) total[k] += r.rangesRead[k];
  const used = (['direct', 'buffered', 'remote'] as const).filter((k) => total[k] > 0);
  return used.length === 1 ? used[0] : used.map((k) => `${k} ${total[k]}`).join(', ');
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)} GiB`;

export function formatBenchData(r: BenchDataResult): string {
  const lines = [
    `data path, ${r.samples.toLocaleString('en-US')} samples (and ${Math.floor(r.samples / 4).toLocaleString('en-US')}), features ${r.geometry} [${r.tokens}, ${r.dim}] ${r.dtype}, ${r.shardRows.toLocaleString('en-US')} rows per shard/feature file`,
    `sample index: ${r.indexResidentBytesPerSample.toFixed(0)} B/sample resident per rank, ${r.indexFileBytesPerSample.toFixed(0)} B/sample on disk`,
    `feature cache: ${r.cacheBytesPerImage.toLocaleString('en-US')} B/image (${(r.cacheBytesPerImage / 1024).toFixed(1)} KB), ${r.cacheDiskBytesPerImage.toFixed(0)} B/image on disk with headers; ${r.cacheSamples.toLocaleString('en-US')} images cached${r.cacheSamples < r.samples ? ' (sample i reads entry i mod C)' : ''}; disk used ${gib(r.diskBytes)} (${r.keptIn === null ? 'removed' : `kept in ${r.keptIn}`})`,
    `raw sequential read of the cache files (4 MiB reads, 4 in flight): ${mib(r.rawBufferedBytesPerSecond)}/s through the page cache, ${mib(r.rawDirectBytesPerSecond)}/s direct; baseline (the faster) ${r.rawSamplesPerSecond.toFixed(0)} samples/s`,
    `random single-entry reads (the most a plain shuffle gets from this disk): ${Object.entries(r.randomReadsPerSecond).map(([w, v]) => `${v.toFixed(0)}/s with ${Number(w) * FEATURE_READS_IN_FLIGHT} in flight`).join(', ')}`,
    `empty run: peak RSS ${mib(r.emptyRssBytes)}`,
    '',
    '  samples  ranks  block  samples/s  × raw  × random  peak RSS/rank  RSS − empty per sample  reads',
  ];
  for (const run of r.runs) {
    lines.push(`${run.samples.toLocaleString('en-US').padStart(10)}  ${String(run.ranks).padStart(5)}  ${String(run.sampleBlock).padStart(5)}  ${run.samplesPerSecond.toFixed(0).padStart(9)}  ${run.readRatio.toFixed(2).padStart(5)}  ${(run.sampleBlock === 1 ? run.randomRatio.toFixed(2) : '').padStart(8)}  ${mib(run.peakRssBytes).padStart(13)}  ${((run.peakRssBytes - r.emptyRssBytes) / run.samples).toFixed(0).padStart(10)} B  ${readsOf(run)}`);
  }
  lines.push('');
  for (const [w, g] of Object.entries(r.rssGrowthPerSample)) lines.push(`peak RSS growth per sample, ${w} rank(s), ${Math.floor(r.samples / 4).toLocaleString('en-US')} → ${r.samples.toLocaleString('en-US')}: ${g.toFixed(0)} B`);
  const x = r.extrapolation;
  lines.push(
    `at ${x.samples.toLocaleString('en-US')} samples: index ${gib(x.indexBytesPerRank)} per rank; feature cache ${gib(x.cacheBytes)} in ${x.cacheFiles.toLocaleString('en-US')} files; one epoch's data path ${Object.entries(x.epochSeconds).map(([what, s]) => `${formatDuration(s)} (${what})`).join(', ')} at this machine's rates`,
  );
  return lines.join('\n');
}

/**
 * This process's peak resident set, bytes: /proc's VmHWM (per address space, so it starts afresh
 * at exec), not getrusage's maxRSS, which a child inherits from its parent at fork — the parent
 * holding the index it just built would show in every rank.
 */
function peakRss(): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m !== null) return Number(m[1]) * 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS * 1024;
}

/** One rank of a data run (bench-worker-main `data`). */
export async function runDataBenchWorker(): Promise<void> {
  const p = JSON.parse(process.env.SMOLRATE_BENCH ?? '{}') as DataWorkerParams;
  const rank = Number(process.env.RANK ?? 0);
  const worldSize = Number(process.env.WORLD_SIZE ?? 1);
  const report: DataRankReport = { rank, samples: 0, seconds: 0, peakRssBytes: 0, indexBytes: 0, rangesRead: { direct: 0, buffered: 0, remote: 0 } };
  if (p.samples > 0) {
    const cfg = presetConfig(p.geometry);
    const index = await readSampleIndex(p.indexPath!, benchIndexKey(cfg, p.samples, p.shardRows));
    report.indexBytes = index.bytesResident;
    const cache = benchCache(p.cacheDir, imageTokenCount(cfg), cfg.text.hiddenSize, p.dtype, p.directIo);
    const R = p.shardRows;
    const C = p.cacheSamples;
    const locate = (i: number) => {
      const j = i % C; // the cache may hold fewer images than samples (see bench-data.ts)
      return { shard: Math.floor(j / R), row: j % R };
    };
    const builder = new BatchBuilder({ config: cfg, cache: cache.reader(benchShards(C, R)), locate, index });
    const sampler = new GlobalSampler({ numSamples: p.samples, seed: 1, globalBatch: p.globalBatch, worldSize, rank, sampleBlock: p.sampleBlock });
    const t0 = performance.now();
    const batches = new Prefetcher({ keys: sampler.steps({ epoch: 0, step: 0 }, 1), depth: p.prefetch, build: (s) => builder.build(s.indices) });
    for await (const b of batches) {
      report.samples += b.batchSize;
      b.release(); // as the trainer does after the step
    }
    report.seconds = (performance.now() - t0) / 1000;
    report.rangesRead = { ...cache.rangesRead };
    await cache.close();
  }
  report.peakRssBytes = peakRss();
  reportBenchResult(report);
}

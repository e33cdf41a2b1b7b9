/**
 * bench-data end to end at a small size (tiny geometry): real rank processes run one epoch of the
 * trainer's data path over the index and packed cache it builds; the report's bookkeeping and
 * arithmetic are checked here (never its timings), and its scratch folder is removed.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UsageError } from '@smolrate/core';
import { imageTokenCount, presetConfig } from '@smolrate/model';
import { describe, expect, it } from 'vitest';
import { benchDataDefaults, parseBenchDataArgs } from './bench-data.js';
import { formatBenchData, runBenchData } from './bench-data-run.js';
import { packedBytesPerImage } from './feature-cache.js';
import { GlobalSampler } from './sampler.js';

describe('bench-data', () => {
  it('parses its flags, with the defaults of the issue (2 M samples, 1 and 4 ranks, bf16, a block-16 run)', () => {
    const d = parseBenchDataArgs([]);
    expect(d).toMatchObject({ samples: 2_000_000, ranks: [1, 4], sampleBlocks: [16], dtype: 'bf16', geometry: 'smolvlm2-256m' });
    expect(parseBenchDataArgs(['--samples', '5000', '--ranks', '2', '--sample-blocks', '', '--dtype', 'f16'])).toMatchObject({ samples: 5000, ranks: [2], sampleBlocks: [], dtype: 'f16' });
    expect(() => parseBenchDataArgs(['--samples', '0'])).toThrow(UsageError);
    expect(() => parseBenchDataArgs(['--sample-blocks', '0'])).toThrow(UsageError);
    expect(() => parseBenchDataArgs(['--dtype', 'f8'])).toThrow(/bf16, f16 or f32/);
    expect(parseBenchDataArgs([]).directIo).toBe('auto');
    expect(parseBenchDataArgs(['--direct-io', 'on']).directIo).toBe('on');
    expect(() => parseBenchDataArgs(['--direct-io', 'yes'])).toThrow(/auto, on or off/);
    expect(benchDataDefaults().samples).toBe(2_000_000);
  });

  it('builds the index and the packed cache, runs 1 and 2 ranks at N/4 and N and a block shuffle, and reports every sample once', async () => {
    const parent = await mkdtemp(join(tmpdir(), 'bench-data-spec-'));
    const dir = join(parent, 'scratch');
    try {
      const samples = 4096;
      const textTokens = 20;
      const r = await runBenchData({
        ...benchDataDefaults(), samples, ranks: [1, 2], sampleBlocks: [8], geometry: 'tiny', textTokens, shardRows: 256, cacheSamples: 1000, globalBatch: 32, dir, keep: false,
      });
      const cfg = presetConfig('tiny');
      const n = imageTokenCount(cfg);
      // 14 B per sample (target, category id, offset) plus 2 B per id, in memory as in the file (up to its header).
      const ids = 3 + n + textTokens;
      expect(r.indexResidentBytesPerSample).toBeCloseTo(14 + 2 * ids, 0);
      expect(r.indexFileBytesPerSample).toBeGreaterThanOrEqual(14 + 2 * ids);
      expect(r.indexFileBytesPerSample).toBeLessThan(14 + 2 * ids + 1);
      expect(r.cacheBytesPerImage).toBe(packedBytesPerImage(n, cfg.text.hiddenSize, 'bf16'));
      expect(r.cacheSamples).toBe(1000);
      expect(r.cacheDiskBytesPerImage).toBeGreaterThan(r.cacheBytesPerImage); // headers and alignment on top
      expect(r.runs.map((x) => [x.samples, x.ranks, x.sampleBlock])).toEqual([[1024, 1, 1], [1024, 2, 1], [4096, 1, 1], [4096, 2, 1], [4096, 1, 8], [4096, 2, 8]]);
      for (const run of r.runs) {
        const steps = new GlobalSampler({ numSamples: run.samples, seed: 1, globalBatch: 32 }).stepsPerEpoch;
        expect(run.perRank).toHaveLength(run.ranks);
        expect(run.perRank.reduce((s, x) => s + x.samples, 0)).toBe(steps * 32);
        expect(run.readRatio).toBeCloseTo(run.samplesPerSecond / r.rawSamplesPerSecond, 9);
        expect(run.randomRatio).toBeCloseTo(run.samplesPerSecond / r.randomReadsPerSecond[run.ranks], 9);
        // A cache this small is read through the page cache ('auto'), every batch's ranges counted.
        for (const x of run.perRank) expect(x.rangesRead).toMatchObject({ direct: 0, remote: 0 });
        expect(run.perRank.reduce((s, x) => s + x.rangesRead.buffered, 0)).toBeGreaterThanOrEqual(steps);
        for (const x of run.perRank) expect(x.peakRssBytes).toBeGreaterThan(0);
      }
      expect(Object.keys(r.rssGrowthPerSample)).toEqual(['1', '2']);
      expect(Object.keys(r.randomReadsPerSecond)).toEqual(['1', '2']);
      expect(r.rawReadBytesPerSecond).toBe(Math.max(r.rawBufferedBytesPerSecond, r.rawDirectBytesPerSecond));
      expect(Object.keys(r.extrapolation.epochSeconds)).toEqual(['1 rank(s), block 1', '2 rank(s), block 1', '1 rank(s), block 8', '2 rank(s), block 8']);
      expect(r.extrapolation.cacheBytes).toBe(r.cacheBytesPerImage * 16_400_000);
      expect(r.keptIn).toBe(dir); // a --dir given is the caller's: kept
      const text = formatBenchData(r);
      expect(text).toMatch(/sample index: \d+ B\/sample resident per rank/);
      expect(text).toMatch(/\n\s+4,096\s+2\s+8\s+\d+\s+[\d.]+\s/);
      expect(text).toContain('at 16,400,000 samples');
    } finally {
      await rm(parent, { recursive: true, force: true });
    }
  }, 300_000);

  it('removes a scratch folder of its own', async () => {
    const lines: string[] = [];
    const r = await runBenchData({
      ...benchDataDefaults(), samples: 512, ranks: [1], sampleBlocks: [], geometry: 'tiny', textTokens: 4, shardRows: 64, cacheSamples: 128, globalBatch: 16, keep: false,
      onProgress: (l) => lines.push(l),
    });
    const scratch = /^scratch (\S+);/.exec(lines[0])?.[1];
    expect(scratch).toBeDefined();
    expect(r.keptIn).toBeNull();
    expect(existsSync(scratch!)).toBe(false);
    expect(r.runs).toHaveLength(2);
  }, 300_000);
});

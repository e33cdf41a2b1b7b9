import * as tf from '@tensorflow/tfjs-core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Rng, UsageError } from '@smolrate/core';
import { initBackend } from '../backend.js';
import { imageTokenCount, presetConfig } from '../config.js';
import { MemoryBudgetError, MemoryMeter } from '../memory-meter.js';
import { parseBatchList, profiled, run, syntheticRow, type BenchReport } from './bench.js';

afterEach(() => vi.restoreAllMocks());

/** Captures stdout (the report) and silences stderr (progress lines). */
function captureOutput(): () => string {
  const chunks: string[] = [];
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => (chunks.push(String(chunk)), true));
  vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  return () => chunks.join('');
}

const positive = (n: unknown) => typeof n === 'number' && Number.isFinite(n) && n > 0;

describe('bench --preset tiny --batch 1 --repeats 1 --json', () => {
  it('reports every figure, positive, and leaves no tensors behind', async () => {
    await initBackend('auto');
    const tensorsBefore = tf.memory().numTensors;
    const out = captureOutput();
    expect(await run(['--preset', 'tiny', '--batch', '1', '--repeats', '1', '--json'])).toBe(0);
    const r = JSON.parse(out()) as BenchReport;
    expect(tf.memory().numTensors).toBe(tensorsBefore);

    expect(['tensorflow', 'tensorflow-gpu', 'wasm', 'cpu']).toContain(r.backend.name);
    expect(r.backend.description).toContain(r.backend.name);
    expect(r.model).toMatchObject({ preset: 'tiny', seed: 0 });
    const tiny = presetConfig('tiny');
    const n = imageTokenCount(tiny);
    expect(r.sequence).toEqual({ imageSize: tiny.regression.imageSize, imageTokens: n, blockTokens: 3, textTokens: 170, seqLen: n + 3 + 170 });
    expect(positive(r.macsPerImage.linearConv) && r.macsPerImage.all > r.macsPerImage.linearConv).toBe(true);

    expect(r.ceiling.linear.length).toBeGreaterThan(0);
    for (const m of [...r.ceiling.linear, ...r.ceiling.other]) {
      expect(m.shape).toMatch(/^\[[\d×]+\]ᵀ?·\[[\d×]+\]ᵀ?$/);
      expect([m.macs, m.calls, m.secondsPerCall, m.gmacPerSecond].every(positive)).toBe(true);
    }
    expect(r.ceiling.gmacPerSecond).toBe(Math.max(...r.ceiling.linear.map((m) => m.gmacPerSecond)));
    // The start, then one sample before and one after each timed section (forward batch 1, training).
    expect(r.ceiling.samples).toHaveLength(5);
    expect(r.ceiling.samples.every(positive)).toBe(true);

    expect(r.forward).toHaveLength(1);
    const f = r.forward[0];
    expect(f).toMatchObject({ batch: 1, mode: 'forward', repeats: 1 });
    expect(f.seconds).toHaveLength(1);
    for (const v of [f.secondsPerBatch, f.secondsPerImage, f.gmacPerSecond?.linearConv, f.gmacPerSecond?.all, f.ratioToCeiling?.linearConv, f.ratioToCeiling?.all]) {
      expect(positive(v)).toBe(true);
    }
    expect(f.ceilingGmacPerSecond).toBeCloseTo((r.ceiling.samples[1] + r.ceiling.samples[2]) / 2, 9);
    expect(f.ratioToCeiling!.linearConv).toBeCloseTo(f.gmacPerSecond!.linearConv / f.ceilingGmacPerSecond!, 9);
    // Both conventions describe the same run: their ratio is the MAC counts' ratio.
    expect(f.gmacPerSecond!.all / f.gmacPerSecond!.linearConv).toBeCloseTo(r.macsPerImage.all / r.macsPerImage.linearConv, 6);

    expect(r.kernels.length).toBeGreaterThan(0);
    expect(r.kernels.reduce((s, k) => s + k.share, 0)).toBeCloseTo(1, 6);
    // The vision tower's kernels are there, not only the decoder's (tf.profile reuses its result object).
    expect(r.kernels.some((k) => k.kernel.startsWith('Conv2D') || k.kernel.startsWith('other'))).toBe(true);
    expect(r.kernels.reduce((s, k) => s + k.seconds, 0)).toBeLessThanOrEqual(r.profileWallSeconds! * 1.001);

    const t = r.train!;
    expect(t).toMatchObject({ batch: 1, fits: true, repeats: 1 });
    for (const v of [t.secondsPerStep, t.samplesPerSecond, t.forwardMacsPerSample.linearConv, t.gmacPerSecond?.linearConv, t.gmacPerSecond?.all, t.ratioToCeiling?.all]) {
      expect(positive(v)).toBe(true);
    }
    expect(t.ceilingGmacPerSecond).toBeCloseTo((r.ceiling.samples[3] + r.ceiling.samples[4]) / 2, 9);
    expect(t.kernels.length).toBeGreaterThan(0);
    expect(positive(t.profileWallSeconds) && positive(r.profileWallSeconds)).toBe(true);

    if (r.backend.name === 'wasm' || r.backend.name === 'cpu') {
      expect(positive(r.memory.budget) && positive(r.memory.visionPerImage) && positive(r.memory.decoderPerRow)).toBe(true);
    }
  });

  it('prints a readable table without --json', async () => {
    const out = captureOutput();
    expect(await run(['--preset', 'tiny', '--batch', '1', '--repeats', '1', '--skip-train', '--text-tokens', '5'])).toBe(0);
    const text = out();
    expect(text).toMatch(/^smolrate-model bench — backend \S+/);
    expect(text).toContain(`= L ${imageTokenCount(presetConfig('tiny')) + 3 + 5}`);
    expect(text).toMatch(/ceiling = best of the above\s+\d/);
    expect(text).toMatch(/batch\s+mode\s+s\/batch\s+s\/image\s+ceiling\s+GMAC\/s Linear\/Conv\s+ratio\s+GMAC\/s all\s+ratio/);
    expect(text).not.toContain('training step');
  });
});

describe('options', () => {
  it('parses batch lists', () => {
    expect(parseBatchList('1,4')).toEqual([1, 4]);
    expect(parseBatchList(' 2, 2 ,8')).toEqual([2, 8]);
    for (const bad of ['', '1,,2', '0', '1.5', 'two']) expect(() => parseBatchList(bad)).toThrow(UsageError);
  });

  it('rejects unknown or bad options before any work', async () => {
    await expect(run(['--batchs', '1'])).rejects.toThrow('unknown option --batchs (see --help)');
    await expect(run(['--backend', 'gpu'])).rejects.toThrow(/backend must be one of/);
    await expect(run(['--preset', 'tiny', '--repeats', '0'])).rejects.toThrow('--repeats must be an integer ≥ 1, got 0');
    await expect(run(['--preset', 'huge'])).rejects.toThrow(/unknown model preset "huge"/);
    await expect(run(['--batch', '1', '--batches', '2'])).rejects.toThrow('give --batch or --batches, not both');
  });
});

describe('syntheticRow', () => {
  it('places the image block with the config ids, then BPE text ids', () => {
    for (const [preset, fake, global] of [['smolvlm2-256m', 49189, 49152], ['tiny', 1061, 1024]] as const) {
      const cfg = presetConfig(preset);
      const n = imageTokenCount(cfg);
      const row = syntheticRow(cfg, 20, new Rng(1));
      expect(row).toHaveLength(n + 3 + 20);
      expect([row[0], row[1], row[n + 2]]).toEqual([fake, global, fake]);
      expect(row.slice(2, n + 2).every((id) => id === cfg.imageTokenId)).toBe(true);
      expect(row.slice(n + 3).every((id) => id >= 3 && id < global)).toBe(true);
    }
  });
});

describe('profiled', () => {
  it('passes a kernel\'s out-of-memory error through tf.profile on wasm (not a TypeError, no unhandled rejection)', async () => {
    await initBackend('wasm');
    const x = tf.ones([4096]);
    const meter = MemoryMeter.install({ budget: 1024 })!;
    try {
      const err = await profiled(() => tf.tidy(() => tf.add(x, x).dataSync())).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MemoryBudgetError);
      // The engine is usable afterwards: profiling is off and the next profile works.
      meter.budget = undefined;
      const ok = await profiled(() => tf.tidy(() => tf.add(x, x).dataSync()[0]));
      expect(ok.result).toBe(2);
      expect(ok.kernels.map((k) => k.name)).toContain('Add');
    } finally {
      meter.uninstall();
      x.dispose();
    }
  });
});

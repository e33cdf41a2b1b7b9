/**
 * bench-scaling's simulated step on the tiny preset's parameters: real worker processes run the
 * trainer's DataParallelUpdate over the real Redis of the global setup (REDIS_URL); the workers
 * check that their replicas agree, and the report's arithmetic is checked here.
 */
import { describe, expect, it } from 'vitest';
import { UsageError } from '@smolrate/core';
import { expectedParameters, presetConfig } from '@smolrate/model';
import { formatSimulated, runSimulatedScaling } from './bench-scaling.js';
import { simulatedParams } from './bench-step.js';

describe('simulatedParams', () => {
  it('lays out the trainable parameters of a preset contiguously, in the model list order', () => {
    const { params, weights } = simulatedParams('tiny');
    const specs = expectedParameters(presetConfig('tiny')).filter((s) => s.trainable);
    expect(params.map((p) => p.name)).toEqual(specs.map((s) => s.name));
    expect(weights.length).toBe(specs.reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0));
    params.forEach((p, i) => expect(p.offset).toBe(i === 0 ? 0 : params[i - 1].offset + params[i - 1].data.length));
  });
});

describe('runSimulatedScaling', () => {
  it('times 1 and 2 workers of the real exchange + AdamW + all-gather with a slept compute and reports the parts', async () => {
    const points = await runSimulatedScaling({
      preset: 'tiny', workers: [1, 2], computeMsPerSample: [20], globalBatch: 4, steps: 3, zero: 1, gradDtype: 'f32', dataPlane: 'tcp',
      bucketBytes: 64 * 1024, redisUrl: process.env.REDIS_URL!,
    });
    expect(points.map((p) => p.workers)).toEqual([1, 2]);
    const [one, two] = points;
    expect(one.speedup).toBe(1);
    expect(two.speedup).toBeCloseTo(two.samplesPerSecond / one.samplesPerSecond, 12);
    expect(two.efficiency).toBeCloseTo(two.speedup / 2, 12);
    for (const p of points) {
      expect(p.samplesPerSecond).toBeCloseTo(4 / p.stepSeconds, 9);
      expect(p.computeMs).toBeGreaterThanOrEqual((20 * 4) / p.workers - 1); // the sleep
      expect(p.overheadMs).toBeCloseTo(p.stepSeconds * 1000 - p.computeMs, 6);
    }
    expect(two.stateBytes).toBeLessThan(one.stateBytes); // ZeRO-1: rank 0 holds part of the state
    expect(formatSimulated(points, { preset: 'tiny', globalBatch: 4 })).toMatch(/SIMULATED[\s\S]*\n\s+20 ms\s+2\s+[\d.]+/);
  }, 120_000);

  it('refuses fewer than 2 steps', async () => {
    await expect(
      runSimulatedScaling({ preset: 'tiny', workers: [1], computeMsPerSample: [0], globalBatch: 4, steps: 1, zero: 1, gradDtype: 'f32', dataPlane: 'tcp', bucketBytes: 1 << 20, redisUrl: null }),
    ).rejects.toBeInstanceOf(UsageError);
  });
});

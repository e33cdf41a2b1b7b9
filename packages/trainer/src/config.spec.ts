import { ConfigError } from '@smolrate/core';
import { describe, expect, it } from 'vitest';
import { checkResumeConfig, checkTrainerConfig, effectiveMicroBatch, featureCacheDir, resolveTrainerConfig } from './config.js';

const base = { data: '/data/shards', run: '/runs/x' };

describe('trainer config', () => {
  it('has the paper defaults', () => {
    const cfg = resolveTrainerConfig({ overrides: base });
    expect(cfg).toMatchObject({ globalBatch: 64, epochs: 5, peakLr: 4e-4, warmupFraction: 0.03, weightDecay: 0.01, optimizer: 'adamw8bit', resume: false });
    expect(featureCacheDir(cfg)).toBe('/runs/x/feature-cache');
    expect(cfg.featureDtype).toBe('f32');
    expect(resolveTrainerConfig({ overrides: { ...base, featureDtype: 'bf16' } }).featureDtype).toBe('bf16');
    expect(resolveTrainerConfig({ overrides: { ...base, featureDtype: 'f16' } }).featureDtype).toBe('f16');
    expect(() => resolveTrainerConfig({ overrides: { ...base, featureDtype: 'f8' } })).toThrow(/featureDtype/);
    expect(cfg.sampleBlock).toBe(1);
    expect(() => resolveTrainerConfig({ overrides: { ...base, sampleBlock: 0 } })).toThrow(/sampleBlock/);
    expect(effectiveMicroBatch(cfg, 4)).toBe(16);
  });

  it('parses CLI strings by field type, including nested keys', () => {
    const cfg = resolveTrainerConfig({ overrides: { ...base, peakLr: '1e-3', globalBatch: '32', 'collective.timeoutMs': '5000', resume: true } });
    expect([cfg.peakLr, cfg.globalBatch, cfg.collective.timeoutMs, cfg.resume]).toEqual([1e-3, 32, 5000, true]);
  });

  it('requires data and run, and names unknown keys', () => {
    expect(() => resolveTrainerConfig({ overrides: { run: '/r' } })).toThrow(/"data" is required/);
    expect(() => resolveTrainerConfig({ overrides: { data: '/d' } })).toThrow(/"run" is required/);
    expect(() => resolveTrainerConfig({ overrides: { ...base, peakLR: '1' } })).toThrow(/unknown config key "peakLR" \(did you mean "peakLr"\?\)/);
    expect(() => resolveTrainerConfig({ overrides: { ...base, optimizer: 'sgd' } })).toThrow(ConfigError);
  });

  it('checks globalBatch % (worldSize · microBatch) with both values in the message', () => {
    const cfg = resolveTrainerConfig({ overrides: { ...base, globalBatch: '64', microBatch: '6' } });
    expect(() => checkTrainerConfig(cfg, 4)).toThrow('globalBatch (64) must be divisible by worldSize × microBatch (4 × 6 = 24)');
    expect(() => checkTrainerConfig({ ...cfg, microBatch: 0 }, 3)).toThrow('globalBatch (64) must be divisible by worldSize (3)');
    expect(() => checkTrainerConfig({ ...cfg, microBatch: 8 }, 4)).not.toThrow();
  });

  describe('resume', () => {
    const saved = resolveTrainerConfig({ overrides: { ...base, stopAfterSteps: '3' } });

    it('refuses a key that defines the trajectory, naming it with both values', () => {
      expect(() => checkResumeConfig(saved, { ...saved, weightDecay: 0.1 }, 'ckpt/step-3')).toThrow(
        '--resume from ckpt/step-3 cannot change what the run was started with: weightDecay (--weight-decay): checkpoint 0.01, given 0.1',
      );
      // The features' element type changes what the model sees.
      expect(() => checkResumeConfig(saved, { ...saved, featureDtype: 'bf16' }, 'c')).toThrow('featureDtype (--feature-dtype): checkpoint "f32", given "bf16"');
      // Every difference at once, in schema order.
      expect(() => checkResumeConfig(saved, { ...saved, peakLr: 1e-3, optimizer: 'adamw32', data: '/elsewhere', preset: 'tiny', seed: 1, globalBatch: 32, warmupFraction: 0 }, 'c')).toThrow(
        /data \(--data\).*preset.*seed.*globalBatch \(--global-batch\).*peakLr.*warmupFraction.*optimizer \(--optimizer\): checkpoint "adamw8bit", given "adamw32"/,
      );
    });

    it('applies how the run executes and is driven', () => {
      const given = { ...saved, stopAfterSteps: 0, resume: true, patience: 9, evalEvery: 2, microBatch: 4, zero: 0, backend: 'cpu' as const, collective: { ...saved.collective, dataPlane: 'redis' as const } };
      expect(() => checkResumeConfig(saved, given, 'c')).not.toThrow();
    });

    it('does not compare keys an older checkpoint did not record', () => {
      const { gradDtype: _, ...older } = saved;
      expect(() => checkResumeConfig(older, { ...saved, gradDtype: 'bf16' }, 'c')).not.toThrow();
    });
  });
});

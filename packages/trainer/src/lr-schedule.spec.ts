import { ConfigError } from '@smolrate/core';
import { describe, expect, it } from 'vitest';
import { linearWarmupDecay, warmupStepsFor } from './lr-schedule.js';

describe('linearWarmupDecay', () => {
  it('warms up over ceil(3 %) of the steps from peak/W, then decays linearly to 0 at totalSteps', () => {
    const lr = linearWarmupDecay({ peakLr: 4e-4, totalSteps: 100 });
    expect(lr.warmupSteps).toBe(3); // 0.03 · 100 = 3.0000000000000004 in binary: still 3
    expect(lr(0)).toBe(4e-4 / 3);
    expect(lr(1)).toBe((4e-4 * 2) / 3);
    expect(lr(2)).toBe(4e-4); // last warm-up update reaches the peak
    expect(lr(3)).toBe(4e-4); // first decay update starts at the peak
    expect(lr(4)).toBe((4e-4 * 96) / 97);
    expect(lr(51)).toBe((4e-4 * 49) / 97);
    expect(lr(99)).toBe(4e-4 / 97); // the last update still moves
    expect(lr(100)).toBe(0);
    expect(lr(1000)).toBe(0);
  });

  it('is monotone up then down, and never 0 inside the run', () => {
    const lr = linearWarmupDecay({ peakLr: 1e-3, totalSteps: 1000 });
    expect(lr.warmupSteps).toBe(30);
    const wrong: number[] = [];
    for (let s = 1; s < 1000; s++) {
      const ok = (s < 30 ? lr(s) > lr(s - 1) : s > 30 ? lr(s) < lr(s - 1) : lr(s) === lr(s - 1)) && lr(s) > 0 && lr(s) <= 1e-3;
      if (!ok) wrong.push(s);
    }
    expect(wrong).toEqual([]);
  });

  it('rounds the warm-up up and honours warmupSteps and minLr', () => {
    expect(warmupStepsFor(50, 0.03)).toBe(2); // 1.5 → 2
    expect(warmupStepsFor(1, 0.03)).toBe(1);
    expect(warmupStepsFor(100, 0)).toBe(0);
    const a = linearWarmupDecay({ peakLr: 1, totalSteps: 10, warmupSteps: 0, minLr: 0.1 });
    expect(a(0)).toBe(1);
    expect(a(5)).toBe(0.1 + (0.9 * 5) / 10);
    expect(a(10)).toBe(0.1);
    expect(a(11)).toBe(0.1);
    const b = linearWarmupDecay({ peakLr: 2, totalSteps: 4, warmupFraction: 0.5 });
    expect([0, 1, 2, 3, 4].map(b)).toEqual([1, 2, 2, 1, 0]);
    const c = linearWarmupDecay({ peakLr: 2, totalSteps: 4, warmupSteps: 4 });
    expect([0, 1, 2, 3, 4].map(c)).toEqual([0.5, 1, 1.5, 2, 0]);
  });

  it('rejects bad settings and steps', () => {
    expect(() => linearWarmupDecay({ peakLr: 0, totalSteps: 10 })).toThrow(ConfigError);
    expect(() => linearWarmupDecay({ peakLr: 1, totalSteps: 0 })).toThrow(ConfigError);
    expect(() => linearWarmupDecay({ peakLr: 1, totalSteps: 10, warmupSteps: 11 })).toThrow(ConfigError);
    expect(() => linearWarmupDecay({ peakLr: 1, totalSteps: 10, warmupFraction: 1.5 })).toThrow(ConfigError);
    expect(() => linearWarmupDecay({ peakLr: 1, totalSteps: 10, minLr: 2 })).toThrow(ConfigError);
    const lr = linearWarmupDecay({ peakLr: 1, totalSteps: 10 });
    expect(() => lr(-1)).toThrow(RangeError);
    expect(() => lr(0.5)).toThrow(RangeError);
  });
});

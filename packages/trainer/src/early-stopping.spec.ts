import { CheckpointError, ConfigError } from '@smolrate/core';
import { describe, expect, it } from 'vitest';
import { EarlyStopping } from './early-stopping.js';

describe('EarlyStopping', () => {
  it("mode 'max': stops after `patience` evaluations without an improvement larger than minDelta", () => {
    const es = new EarlyStopping({ patience: 2, minDelta: 0.01, mode: 'max' });
    expect(es.update(0.5)).toEqual({ improved: true, stop: false }); // first value always improves
    expect(es.update(0.6)).toEqual({ improved: true, stop: false });
    expect(es.update(0.605)).toEqual({ improved: false, stop: false }); // within minDelta
    expect(es.update(0.62)).toEqual({ improved: true, stop: false }); // counter resets
    expect(es.best).toBe(0.62);
    expect(es.update(0.63)).toEqual({ improved: false, stop: false }); // 0.63 ≤ 0.62 + 0.01
    expect(es.update(0.1)).toEqual({ improved: false, stop: true });
    expect(es.shouldStop).toBe(true);
    expect(es.state()).toEqual({ patience: 2, minDelta: 0.01, mode: 'max', best: 0.62, bestIndex: 3, badCount: 2, updates: 6 });
  });

  it("mode 'min' and minDelta 0 (strict improvement)", () => {
    const es = new EarlyStopping({ patience: 1, mode: 'min' });
    expect(es.update(1)).toEqual({ improved: true, stop: false });
    expect(es.update(0.9)).toEqual({ improved: true, stop: false });
    expect(es.update(0.9)).toEqual({ improved: false, stop: true });
  });

  it('a non-finite metric never improves and counts towards patience', () => {
    const es = new EarlyStopping({ patience: 2 });
    expect(es.update(NaN)).toEqual({ improved: false, stop: false });
    expect(es.best).toBeNull();
    expect(es.update(0.3)).toEqual({ improved: true, stop: false });
    expect(es.update(Infinity)).toEqual({ improved: false, stop: false });
    expect(es.update(NaN)).toEqual({ improved: false, stop: true });
  });

  it('state survives JSON and the restored instance continues identically', () => {
    const a = new EarlyStopping({ patience: 3, minDelta: 0.001 });
    for (const m of [0.2, 0.4, 0.39]) a.update(m);
    const b = EarlyStopping.fromState(JSON.parse(JSON.stringify(a)));
    for (const m of [0.45, 0.44, 0.43, 0.449]) expect(b.update(m)).toEqual(a.update(m));
    expect(b.state()).toEqual(a.state());
    expect(b.shouldStop).toBe(true);
    const fresh = EarlyStopping.fromState(new EarlyStopping({ patience: 1 }).state());
    expect(fresh.update(0)).toEqual({ improved: true, stop: false });
  });

  it('rejects bad options and malformed state', () => {
    expect(() => new EarlyStopping({ patience: 0 })).toThrow(ConfigError);
    expect(() => new EarlyStopping({ patience: 2, minDelta: -1 })).toThrow(ConfigError);
    expect(() => new EarlyStopping({ patience: 2, mode: 'up' as 'max' })).toThrow(ConfigError);
    const good = new EarlyStopping({ patience: 2 });
    good.update(0.5);
    const s = good.state();
    expect(() => EarlyStopping.fromState({ ...s, patience: 0 })).toThrow(CheckpointError);
    expect(() => EarlyStopping.fromState({ ...s, badCount: 1 })).toThrow(CheckpointError);
    expect(() => EarlyStopping.fromState({ ...s, best: null })).toThrow(CheckpointError);
    expect(() => EarlyStopping.fromState({ ...s, updates: 1.5 })).toThrow(CheckpointError);
  });
});

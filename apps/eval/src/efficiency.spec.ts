import { readFileSync } from 'node:fs';
import { countMacs, loadTokenizer, presetConfig, TINY_TOKENIZER_URL } from '@smolrate/model';
import { describe, expect, it } from 'vitest';
import { ces, complexity, efficiency, efficiencyFactor, maximumTextTokens, meanTextTokens } from './efficiency.js';

describe('CES formula (docs/reference/data.md, the paper\'s 228 M / 68 G)', () => {
  it('228 M params and 68 G give C ≈ 0.881 and E ≈ 1.006', () => {
    // The model's exact count (228,266,113) with 68 G: the paper's rounded figures.
    const c = complexity(228_266_113, 68e9);
    expect(c).toBeCloseTo(0.881, 3);
    expect(efficiencyFactor(c)).toBeCloseTo(1.006, 3);
    expect(Math.abs(complexity(228e6, 68e9) - 0.881)).toBeLessThan(1e-3);
    // Paper: PLCC 0.39 → CES 0.39·1.006 ≈ 0.392 (reported as 0.40 after its own rounding of PLCC).
    expect(ces(0.39, efficiencyFactor(c))).toBeCloseTo(0.39 * 1.00634, 4);
  });
  it('caps the bonus at 1.10 for tiny models and applies the log penalty above C = 1', () => {
    expect(efficiencyFactor(1e-4)).toBe(1.1);
    expect(efficiencyFactor(1)).toBe(1);
    const c = complexity(1e9, 80e9); // sqrt(1)·sqrt(4) = 2
    expect(c).toBeCloseTo(2, 12);
    expect(efficiencyFactor(c)).toBeCloseTo(1 / (1 + 2 * Math.log(2)), 12);
    expect(efficiencyFactor(c)).toBeLessThan(1);
  });
  it('negative or missing PLCC scores 0; bad inputs are errors', () => {
    expect(ces(-0.3, 1.05)).toBe(0);
    expect(ces(null, 1.05)).toBe(0);
    expect(() => complexity(0, 1)).toThrow(/positive/);
    expect(() => efficiencyFactor(Number.NaN)).toThrow(/positive finite/);
  });
});

describe('efficiency of the 256M config', () => {
  it('uses the model counter: 228,266,113 params, Linear/Conv MACs for C, both conventions reported', () => {
    const cfg = presetConfig('smolvlm2-256m');
    const e = efficiency({ cfg, operationalTextTokens: 132, maximumTextTokens: 170, plcc: 0.39 });
    expect(e.params.total).toBe(228_266_113);
    expect(e.params.trainable).toBe(134_755_201);
    expect(e.macs.operational.linearConvMacs).toBe(countMacs(cfg, { textTokens: 132 }).linearConv.total);
    expect(e.macs.operational.allMacs).toBeGreaterThan(e.macs.operational.linearConvMacs);
    // ≈ 72 G at 170 text tokens (the paper's 100-character figure).
    expect(e.macs.maximum.linearConvMacs / 1e9).toBeCloseTo(72, 0);
    expect(e.C).toBeCloseTo(complexity(228_266_113, e.macs.operational.linearConvMacs), 12);
    expect(e.ces).toBeCloseTo(0.39 * e.E, 12);
    expect(e.convention).toMatch(/Linear\/Conv-only/);
  });
});

describe('token counts', () => {
  const tok = loadTokenizer(readFileSync(TINY_TOKENIZER_URL, 'utf8'));
  const cfg = presetConfig('tiny');
  it('maximum ≥ any item truncated to L, operational is the rounded mean', () => {
    const max = maximumTextTokens(tok, cfg);
    const short = meanTextTokens(tok, cfg, [{ title: 'a' }]);
    expect(max).toBeGreaterThan(short);
    const mean = meanTextTokens(tok, cfg, [{ title: 'a' }, { title: 'a', description: 'some longer description text here' }]);
    expect(mean).toBeGreaterThan(short);
    expect(() => meanTextTokens(tok, cfg, [])).toThrow(/at least one item/);
  });
});

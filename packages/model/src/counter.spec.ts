import { describe, expect, it } from 'vitest';
import { ConfigError } from '@smolrate/core';
import { presetConfig } from './config.js';
import { countMacs, countParameters, sequenceLength, textTokensForSequence } from './counter.js';

const full = presetConfig('smolvlm2-256m');
const G = 1e9;

describe('countParameters (docs/reference/model.md "Counts", 256M preset)', () => {
  const p = countParameters(full);

  it('reproduces the vision tower', () => {
    expect(p.vision).toEqual({ patch: 590_592, positions: 786_432, perLayer: 7_087_872, layers: 12, postLayerNorm: 1_536, total: 86_433_024 });
  });

  it('reproduces connector, text model, head and lm_head', () => {
    expect(p.connector).toBe(7_077_888);
    expect(p.text).toEqual({ embeddings: 28_385_280, perLayer: 3_540_096, layers: 30, norm: 576, total: 134_588_736 });
    expect(p.head).toBe(166_465);
    expect(p.lmHead).toBe(28_385_280);
  });

  it('reproduces the totals: model 228,266,113, trainable 134,755,201, file 256,484,928', () => {
    expect(p.total).toBe(228_266_113);
    expect(p.trainable).toBe(134_755_201);
    expect(p.frozen).toBe(86_433_024 + 7_077_888);
    expect(p.file).toBe(256_484_928);
    expect(p.checkpoint).toBe(256_484_928 + 166_465);
    // 1.03 GB float32 checkpoint with 471 tensors (docs/reference/model.md "Checkpoint tensors").
    expect(p.tensors).toEqual({ file: 471, checkpoint: 475 });
    expect(p.file * 4 / G).toBeCloseTo(1.03, 2);
  });

  it('drops lm_head when tied and follows the widths of another config', () => {
    const tied = presetConfig('smolvlm2-256m');
    tied.text.tieWordEmbeddings = true;
    const t = countParameters(tied);
    expect(t.lmHead).toBe(0);
    expect(t.file).toBe(p.file - 28_385_280);
    expect(t.tensors.file).toBe(470);

    const tiny = countParameters(presetConfig('tiny'));
    // tiny: vision 64 wide, 2 layers; text 64 wide, 4 heads × 16, 2 kv heads, 2 layers.
    expect(tiny.vision.patch).toBe(768 * 64 + 64);
    expect(tiny.vision.perLayer).toBe(4 * 64 + 4 * (64 * 64 + 64) + (64 * 128 + 128) + (128 * 64 + 64));
    expect(tiny.text.perLayer).toBe(2 * 64 + 64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 128);
    expect(tiny.connector).toBe(64 * 16 * 64);
    expect(tiny.head).toBe(64 * 32 + 32 + 33);
  });
});

describe('sequenceLength', () => {
  it('is 36 image + 3 block + text tokens at 384², 64 + 3 + text at 512²', () => {
    expect(sequenceLength(full, 0)).toBe(39);
    expect(sequenceLength(full, 170)).toBe(209);
    expect(sequenceLength(full, 170, 512)).toBe(237);
    expect(textTokensForSequence(full, 209)).toBe(170);
    expect(textTokensForSequence(full, 237, 512)).toBe(170);
  });

  it('rejects impossible lengths', () => {
    expect(() => sequenceLength(full, -1)).toThrow(ConfigError);
    expect(() => sequenceLength(full, 1.5)).toThrow(ConfigError);
    expect(() => textTokensForSequence(full, 38)).toThrow(/≥ 39/);
    expect(() => sequenceLength(full, 10, 400)).toThrow(ConfigError);
  });
});

describe('countMacs (docs/reference/model.md "Counts")', () => {
  const m384 = countMacs(full, { imageSize: 384, textTokens: 170 });
  const m512 = countMacs(full, { imageSize: 512, textTokens: 170 });

  it('vision at 384²: 55.38 G = 49.26 G Linear/Conv + 6.12 G attention; patch conv 0.34 G', () => {
    const c = m384.components;
    expect(m384.patches).toBe(576);
    expect(m384.imageTokens).toBe(36);
    expect(c.visionPatchConv).toBe(576 * 768 * 768);
    expect(c.visionPatchConv / G).toBeCloseTo(0.34, 2);
    expect(c.visionLinearConv / G).toBeCloseTo(49.26, 2);
    expect(c.visionAttention / G).toBeCloseTo(6.12, 2);
    expect(m384.all.vision / G).toBeCloseTo(55.38, 2);
    expect(m384.linearConv.vision).toBe(c.visionLinearConv);
    // exact integers behind the rounded figures
    expect(c.visionLinearConv).toBe(49_262_100_480);
    expect(c.visionAttention).toBe(6_115_295_232);
  });

  it('connector 0.255 G; decoder 106.17 M per token + 30·2·L²·576; head once', () => {
    expect(m384.components.connector).toBe(36 * 12288 * 576);
    expect(m384.components.connector / G).toBeCloseTo(0.255, 3);
    expect(m384.decoderLinearPerToken).toBe(106_168_320);
    expect(m384.seqLen).toBe(209);
    expect(m384.components.decoderLinear).toBe(209 * 106_168_320);
    expect(m384.components.decoderAttention).toBe(30 * 2 * 209 * 209 * 576);
    expect(m384.components.head).toBe(576 * 288 + 288);
  });

  it('totals add up in both conventions', () => {
    const c = m384.components;
    expect(m384.linearConv.total).toBe(c.visionLinearConv + c.connector + c.decoderLinear + c.head);
    expect(m384.all.total).toBe(m384.linearConv.total + c.visionAttention + c.decoderAttention);
    expect(m384.all.decoder).toBe(c.decoderLinear + c.decoderAttention);
  });

  it('vision at 512²: 106.90 G; 384² → 512² adds ≈ 41.5 G Linear/Conv (paper: 41 G)', () => {
    expect(m512.imageTokens).toBe(64);
    expect(m512.all.vision / G).toBeCloseTo(106.9, 2);
    const diff = m512.linearConv.total - m384.linearConv.total;
    expect(diff / G).toBeCloseTo(41.5, 1);
    // The paper's headline figures are Linear/Conv MACs at ≈170 text tokens (100-char fields).
    expect(Math.round(m384.linearConv.total / G)).toBe(72);
    expect(Math.round(m512.linearConv.total / G)).toBe(113);
  });

  it('accepts seqLen instead of textTokens, but not both', () => {
    const bySeq = countMacs(full, { imageSize: 384, seqLen: 209 });
    expect(bySeq).toEqual(m384);
    expect(() => countMacs(full, { textTokens: 1, seqLen: 40 })).toThrow(ConfigError);
    expect(() => countMacs(full, {})).toThrow(ConfigError);
  });
});

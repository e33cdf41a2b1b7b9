import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { ConfigError, UsageError } from '@smolrate/core';
import { presetConfig, toHfConfig } from '../config.js';
import { countParameters } from '../counter.js';
import { formatInspect, inspectReport, run } from './inspect.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'smolrate-inspect-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());

function captureStdout(): () => string {
  const chunks: string[] = [];
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    chunks.push(String(chunk));
    return true;
  });
  return () => chunks.join('');
}

describe('inspectReport', () => {
  it('defaults: full preset at 384², the assumed 170 text tokens, and the 512² comparison', () => {
    const r = inspectReport({});
    expect(r.model.source).toBe('preset smolvlm2-256m');
    expect(r.sequence).toMatchObject({ imageSize: 384, imageTokens: 36, blockTokens: 3, textTokens: 170, seqLen: 209 });
    expect(r.sequence.assumption).toMatch(/170 text tokens/);
    expect(r.parameters.total).toBe(228_266_113);
    expect(r.parameters.trainable).toBe(134_755_201);
    expect(r.macs.all.vision / 1e9).toBeCloseTo(55.38, 2);
    expect(r.comparison?.macs.imageSize).toBe(512);
    expect(r.comparison!.macs.all.vision / 1e9).toBeCloseTo(106.9, 2);
    expect(r.comparison!.delta.linearConv / 1e9).toBeCloseTo(41.5, 1);
  });

  it('--seq-len at 512² keeps the text tokens for the 384² comparison', () => {
    const r = inspectReport({ imageSize: 512, seqLen: 300 });
    expect(r.sequence).toMatchObject({ imageTokens: 64, textTokens: 233, seqLen: 300, assumption: null });
    expect(r.comparison?.macs).toMatchObject({ imageSize: 384, seqLen: 272, textTokens: 233 });
    expect(r.comparison!.delta.linearConv).toBe(r.macs.linearConv.total - r.comparison!.macs.linearConv.total);
  });

  it('reads an HF config.json, given the file or its directory', () => {
    const dir = path.join(tmp, 'ckpt');
    rmSync(dir, { recursive: true, force: true });
    const file = path.join(tmp, 'config.json');
    writeFileSync(file, JSON.stringify(toHfConfig(presetConfig('tiny'))));
    const byFile = inspectReport({ config: file, textTokens: 10 });
    expect(byFile.parameters).toEqual(countParameters(presetConfig('tiny')));
    expect(byFile.model.source).toBe(file);
    expect(inspectReport({ config: tmp, textTokens: 10 })).toEqual(byFile);
  });

  it('rejects contradictory or impossible options', () => {
    expect(() => inspectReport({ preset: 'tiny', config: tmp })).toThrow(UsageError);
    expect(() => inspectReport({ textTokens: 5, seqLen: 50 })).toThrow(UsageError);
    expect(() => inspectReport({ textTokens: -1 })).toThrow(/--text-tokens must be an integer ≥ 0/);
    expect(() => inspectReport({ imageSize: 400 })).toThrow(ConfigError);
    expect(() => inspectReport({ seqLen: 20 })).toThrow(ConfigError);
    expect(() => inspectReport({ preset: 'huge' })).toThrow(/unknown model preset "huge"/);
    expect(() => inspectReport({ config: path.join(tmp, 'missing.json') })).toThrow(/no such file/);
  });
});

describe('formatInspect', () => {
  it('names both conventions and prints the docs/reference/model.md figures', () => {
    const text = formatInspect(inspectReport({}));
    for (const s of ['228,266,113', '134,755,201', '256,484,928', '7,077,888', '12 × 7,087,872', '30 × 3,540,096']) expect(text).toContain(s);
    expect(text).toMatch(/Linear\/Conv only \(paper, CES\)\s+all \(\+ attention QKᵀ, AV\)/);
    expect(text).toMatch(/vision total\s+49\.262 G\s+55\.377 G/);
    expect(text).toMatch(/vision patch conv\s+339\.739 M/);
    expect(text).toMatch(/connector\s+254\.804 M/);
    expect(text).toMatch(/decoder Linear \(106\.168 M per token\)/);
    expect(text).toMatch(/decoder attention \(30·2·L²·576\)/);
    expect(text).toMatch(/vision MACs, all\s+55\.377 G\s+106\.904 G/);
    expect(text).toMatch(/total MACs, Linear\/Conv only \(paper\)\s+71\.706 G\s+113\.192 G\s+\+41\.486 G/);
    expect(text).toContain('assumed: 170 text tokens');
  });

  it('leaves out the comparison when the size is the only one', () => {
    const cfg = presetConfig('tiny');
    cfg.regression.imageSize = 512;
    const file = path.join(tmp, 'only512.json');
    writeFileSync(file, JSON.stringify(toHfConfig(cfg)));
    const r = inspectReport({ config: file, textTokens: 4 });
    expect(r.comparison).toBeNull();
    expect(formatInspect(r)).not.toContain(' vs ');
  });
});

describe('run', () => {
  it('--json prints the report', async () => {
    const out = captureStdout();
    expect(await run(['--json', '--image-size', '512', '--text-tokens', '100'])).toBe(0);
    expect(JSON.parse(out())).toEqual(JSON.parse(JSON.stringify(inspectReport({ imageSize: 512, textTokens: 100 }))));
  });

  it('rejects unknown options and stray arguments', async () => {
    await expect(run(['--image-sise', '384'])).rejects.toThrow('unknown option --image-sise (see --help)');
    await expect(run(['smolvlm2-256m'])).rejects.toThrow(UsageError);
  });
});

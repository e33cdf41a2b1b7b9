/**
 * Efficiency figures and the challenge's Comprehensive Efficiency Score (docs/reference/data.md "LoViF 2026"):
 *
 *   C    = sqrt(Params / 1e9) · sqrt(FLOPs / 20e9)
 *   E(C) = min(1 + 0.05·ln(1/C), 1.10)   if C ≤ 1
 *          1 / (1 + 2·ln C)              if C > 1
 *   CES  = max(0, PLCC) · E(C)
 *
 * Params = the rating model's parameters (vision + connector + text + head, no lm_head: 228 M for
 * the 256M model). "FLOPs" in CES = multiply-accumulates of Linear/Conv layers only, in G — the
 * paper's convention (its 228 M / 68 G → C ≈ 0.881). The counter's other convention (all MACs,
 * attention products included) is reported beside it, never used for CES.
 *
 * Two sequence lengths are counted:
 *  - operational: the evaluated items' mean prompt-text tokens (rounded to the nearest integer),
 *    from textTokenCount on each actual item — what the paper submitted (68 G at test-set length);
 *  - maximum: every field filled to the truncation length L. The token count of an L-character
 *    field is estimated by tokenizing a representative English product string (MAXIMUM_SAMPLE,
 *    repeated and cut to L code points) in all four fields; the tokenizer's own ratio on real text
 *    is what matters, and long non-English text can exceed it.
 */
import { ConfigError } from '@smolrate/core';
import { countMacs, countParameters, textTokenCount, type MacCounts, type ModelConfig, type PromptItem, type TextTokenizer } from '@smolrate/model';

export const CES_CONVENTION = 'CES uses Params = rating-model parameters (no lm_head) and FLOPs = Linear/Conv-only multiply-accumulates per forward at batch 1 (the paper\'s convention), in G';

/** Representative field text for the "maximum" count (see the file comment). */
export const MAXIMUM_SAMPLE =
  'Stainless steel insulated water bottle, 32 oz, leak-proof lid, keeps drinks cold for 24 hours and hot for 12. BPA-free, dishwasher safe, fits most cup holders. ';

export function complexity(params: number, flops: number): number {
  if (!(params > 0) || !(flops > 0)) throw new ConfigError(`complexity needs positive params and FLOPs, got ${params} and ${flops}`);
  return Math.sqrt(params / 1e9) * Math.sqrt(flops / 20e9);
}

export function efficiencyFactor(c: number): number {
  if (!(c > 0) || !Number.isFinite(c)) throw new ConfigError(`E(C) needs a positive finite C, got ${c}`);
  return c <= 1 ? Math.min(1 + 0.05 * Math.log(1 / c), 1.1) : 1 / (1 + 2 * Math.log(c));
}

/** max(0, PLCC)·E(C); a null PLCC (constant predictions) scores 0. */
export function ces(plcc: number | null, e: number): number {
  return Math.max(0, plcc ?? 0) * e;
}

export interface MacSummary {
  /** Prompt-text tokens (outside the image block) the count assumes. */
  textTokens: number;
  /** Merged sequence length (image tokens + 3 + text). */
  seqLen: number;
  /** Linear/Conv-only MACs per forward, batch 1 (the CES convention). */
  linearConvMacs: number;
  /** All MACs incl. attention products QKᵀ and AV. */
  allMacs: number;
}

export interface Efficiency {
  params: { total: number; trainable: number };
  imageSize: number;
  truncation: number;
  macs: { operational: MacSummary; maximum: MacSummary };
  /** C, E and CES from the operational Linear/Conv MACs. */
  C: number;
  E: number;
  /** max(0, PLCC)·E; null when no PLCC was given. */
  ces: number | null;
  convention: string;
}

function summary(m: MacCounts): MacSummary {
  return { textTokens: m.textTokens, seqLen: m.seqLen, linearConvMacs: m.linearConv.total, allMacs: m.all.total };
}

/** Prompt-text tokens with every field filled to L code points of MAXIMUM_SAMPLE. */
export function maximumTextTokens(tokenizer: TextTokenizer, cfg: ModelConfig): number {
  const L = cfg.regression.truncation;
  let s = MAXIMUM_SAMPLE;
  while ([...s].length < L) s += MAXIMUM_SAMPLE;
  const field = [...s].slice(0, L).join('');
  return textTokenCount(tokenizer, cfg, { title: field, description: field, features: field, category: field });
}

/** Mean prompt-text tokens of `items` (operational length), rounded to an integer. */
export function meanTextTokens(tokenizer: TextTokenizer, cfg: ModelConfig, items: readonly PromptItem[]): number {
  if (items.length === 0) throw new ConfigError('the operational MAC count needs at least one item');
  let s = 0;
  for (const it of items) s += textTokenCount(tokenizer, cfg, it);
  return Math.round(s / items.length);
}

export interface EfficiencyInput {
  cfg: ModelConfig;
  /** Mean prompt-text tokens of the evaluated items. */
  operationalTextTokens: number;
  /** Prompt-text tokens at full truncation length. */
  maximumTextTokens: number;
  plcc?: number | null;
}

export function efficiency(input: EfficiencyInput): Efficiency {
  const { cfg } = input;
  const p = countParameters(cfg);
  const imageSize = cfg.regression.imageSize;
  const op = countMacs(cfg, { imageSize, textTokens: input.operationalTextTokens });
  const max = countMacs(cfg, { imageSize, textTokens: input.maximumTextTokens });
  const C = complexity(p.total, op.linearConv.total);
  const E = efficiencyFactor(C);
  return {
    params: { total: p.total, trainable: p.trainable },
    imageSize,
    truncation: cfg.regression.truncation,
    macs: { operational: summary(op), maximum: summary(max) },
    C,
    E,
    ces: input.plcc === undefined ? null : ces(input.plcc, E),
    convention: CES_CONVENTION,
  };
}

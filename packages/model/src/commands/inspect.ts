/**
 * `smolrate-model inspect`: parameter counts per component and multiply-accumulates per forward
 * pass in both conventions (counter.ts), for a preset or an HF-style config.json — no weights.
 */
import { statSync } from 'node:fs';
import path from 'node:path';
import { ConfigError, flagBool, flagNumber, flagString, kebab, parseArgs, readConfigFile, UsageError } from '@smolrate/core';
import { fromHfConfig, presetConfig, type ModelConfig } from '../config.js';
import { countMacs, countParameters, DEFAULT_TEXT_TOKENS, type MacCounts, type ParamCounts } from '../counter.js';

export const summary = 'parameter and multiply-accumulate counts per component (no weights needed)';

export const usage = `usage: smolrate-model inspect [--preset NAME | --config PATH] [--image-size N]
                              [--text-tokens T | --seq-len L] [--json]

  --preset NAME      model preset: smolvlm2-256m (default) or tiny
  --config PATH      an HF-style config.json (or the checkpoint directory holding it);
                     replaces the preset
  --image-size N     input side in pixels (default: the config's regression.image_size, 384)
  --text-tokens T    prompt-text tokens in the sequence (default ${DEFAULT_TEXT_TOKENS}: the paper's prompt
                     with 100-character fields, as its 72 G / 113 G figures imply)
  --seq-len L        or the whole merged sequence length L (image + 3 block + text tokens)
  --json             print the report as JSON

MACs are per forward pass, batch 1, in two conventions: Linear/Conv layers only (the paper's,
also its CES "flops"), and all (adding the attention products QKᵀ and AV).`;

const KNOWN_FLAGS = ['preset', 'config', 'imageSize', 'textTokens', 'seqLen', 'json'];

export interface InspectOptions {
  preset?: string;
  config?: string;
  imageSize?: number;
  textTokens?: number;
  seqLen?: number;
}

export interface InspectReport {
  model: { source: string };
  sequence: { imageSize: number; imageTokens: number; blockTokens: number; textTokens: number; seqLen: number; assumption: string | null };
  parameters: ParamCounts;
  macs: MacCounts;
  /** The same text at the other of 384² / 512² (the position table's native size), when different. */
  comparison: { macs: MacCounts; delta: { linearConv: number; all: number } } | null;
}

function loadModelConfig(opts: InspectOptions): { cfg: ModelConfig; source: string } {
  if (opts.config !== undefined) {
    let file = opts.config;
    try {
      if (statSync(file).isDirectory()) file = path.join(file, 'config.json');
    } catch {
      throw new ConfigError(`--config ${file}: no such file or directory`);
    }
    return { cfg: fromHfConfig(readConfigFile(file)), source: file };
  }
  const name = opts.preset ?? 'smolvlm2-256m';
  return { cfg: presetConfig(name), source: `preset ${name}` };
}

function integerOption(name: string, value: number | undefined, min: number): number | undefined {
  if (value !== undefined && (!Number.isInteger(value) || value < min)) {
    throw new UsageError(`--${kebab(name)} must be an integer ≥ ${min}, got ${value}`);
  }
  return value;
}

export function inspectReport(opts: InspectOptions): InspectReport {
  if (opts.preset !== undefined && opts.config !== undefined) throw new UsageError('give --preset or --config, not both');
  if (opts.textTokens !== undefined && opts.seqLen !== undefined) throw new UsageError('give --text-tokens or --seq-len, not both');
  integerOption('imageSize', opts.imageSize, 1);
  integerOption('textTokens', opts.textTokens, 0);
  integerOption('seqLen', opts.seqLen, 1);
  const { cfg, source } = loadModelConfig(opts);
  const imageSize = opts.imageSize ?? cfg.regression.imageSize;
  const assumed = opts.textTokens === undefined && opts.seqLen === undefined;
  const macs = countMacs(cfg, opts.seqLen !== undefined ? { imageSize, seqLen: opts.seqLen } : { imageSize, textTokens: opts.textTokens ?? DEFAULT_TEXT_TOKENS });

  const other = imageSize === cfg.vision.imageSize ? cfg.regression.imageSize : cfg.vision.imageSize;
  let comparison: InspectReport['comparison'] = null;
  if (other !== imageSize) {
    const at = countMacs(cfg, { imageSize: other, textTokens: macs.textTokens });
    const [small, large] = other > imageSize ? [macs, at] : [at, macs];
    comparison = { macs: at, delta: { linearConv: large.linearConv.total - small.linearConv.total, all: large.all.total - small.all.total } };
  }
  return {
    model: { source },
    sequence: {
      imageSize,
      imageTokens: macs.imageTokens,
      blockTokens: macs.seqLen - macs.imageTokens - macs.textTokens,
      textTokens: macs.textTokens,
      seqLen: macs.seqLen,
      assumption: assumed
        ? `${DEFAULT_TEXT_TOKENS} text tokens: the paper's prompt with 100-character fields (no tokenizer run); set --text-tokens or --seq-len`
        : null,
    },
    parameters: countParameters(cfg),
    macs,
    comparison,
  };
}

const int = (n: number) => n.toLocaleString('en-US');

function macs(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(3)} G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(3)} M`;
  return int(n);
}

/** Left-aligned first column, right-aligned others. */
function table(rows: string[][], indent = '  '): string[] {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => indent + r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('   ').trimEnd());
}

export function formatInspect(r: InspectReport): string {
  const p = r.parameters;
  const m = r.macs;
  const c = m.components;
  const out: string[] = [];
  out.push(`Model: ${r.model.source}`, '');
  out.push('Parameters');
  out.push(
    ...table([
      ['component', 'parameters'],
      ['vision tower (frozen)', int(p.vision.total)],
      ['  patch embedding (conv)', int(p.vision.patch)],
      ['  position embedding', int(p.vision.positions)],
      [`  encoder layers (${p.vision.layers} × ${int(p.vision.perLayer)})`, int(p.vision.layers * p.vision.perLayer)],
      ['  post-LayerNorm', int(p.vision.postLayerNorm)],
      ['connector (frozen)', int(p.connector)],
      ['text model (trained)', int(p.text.total)],
      ['  token embeddings', int(p.text.embeddings)],
      [`  decoder layers (${p.text.layers} × ${int(p.text.perLayer)})`, int(p.text.layers * p.text.perLayer)],
      ['  final norm', int(p.text.norm)],
      ['regression head (trained)', int(p.head)],
      ['model total (without lm_head)', int(p.total)],
      ['trainable (text model + head)', int(p.trainable)],
      ['frozen (vision + connector)', int(p.frozen)],
      ['lm_head (stored, unused)', int(p.lmHead)],
      [`upstream checkpoint (${p.tensors.file} tensors)`, int(p.file)],
      [`smolrate checkpoint (${p.tensors.checkpoint} tensors)`, int(p.checkpoint)],
    ]),
    '  (the paper: 228 M parameters, 135 M trained)',
  );
  const s = r.sequence;
  out.push('', `Sequence at ${s.imageSize}²: ${s.imageTokens} image + ${s.blockTokens} image-block + ${s.textTokens} text tokens = L ${s.seqLen}`);
  if (s.assumption) out.push(`  assumed: ${s.assumption}`);
  out.push('', `MACs per forward pass, batch 1, ${s.imageSize}², L = ${s.seqLen}`);
  out.push(
    ...table([
      ['component', 'Linear/Conv only (paper, CES)', 'all (+ attention QKᵀ, AV)'],
      ['vision patch conv', macs(c.visionPatchConv), macs(c.visionPatchConv)],
      [`vision encoder Linear (${p.vision.layers} layers)`, macs(c.visionLinearConv - c.visionPatchConv), macs(c.visionLinearConv - c.visionPatchConv)],
      ['vision attention products', '—', macs(c.visionAttention)],
      ['connector', macs(c.connector), macs(c.connector)],
      [`decoder Linear (${macs(m.decoderLinearPerToken)} per token)`, macs(c.decoderLinear), macs(c.decoderLinear)],
      [`decoder attention (${p.text.layers}·2·L²·${c.decoderAttention / (p.text.layers * 2 * m.seqLen * m.seqLen)})`, '—', macs(c.decoderAttention)],
      ['regression head', macs(c.head), macs(c.head)],
      ['vision total', macs(m.linearConv.vision), macs(m.all.vision)],
      ['total', macs(m.linearConv.total), macs(m.all.total)],
    ]),
  );
  if (r.comparison) {
    const a = r.comparison.macs;
    const [lo, hi] = a.imageSize > m.imageSize ? [m, a] : [a, m];
    out.push('', `${lo.imageSize}² vs ${hi.imageSize}² (same ${m.textTokens} text tokens)`);
    out.push(
      ...table([
        ['', `${lo.imageSize}²`, `${hi.imageSize}²`, 'increase'],
        ['image tokens', String(lo.imageTokens), String(hi.imageTokens), `+${hi.imageTokens - lo.imageTokens}`],
        ['sequence length L', String(lo.seqLen), String(hi.seqLen), `+${hi.seqLen - lo.seqLen}`],
        ['vision MACs, Linear/Conv only', macs(lo.linearConv.vision), macs(hi.linearConv.vision), `+${macs(hi.linearConv.vision - lo.linearConv.vision)}`],
        ['vision MACs, all', macs(lo.all.vision), macs(hi.all.vision), `+${macs(hi.all.vision - lo.all.vision)}`],
        ['total MACs, Linear/Conv only (paper)', macs(lo.linearConv.total), macs(hi.linearConv.total), `+${macs(r.comparison.delta.linearConv)}`],
        ['total MACs, all', macs(lo.all.total), macs(hi.all.total), `+${macs(r.comparison.delta.all)}`],
      ]),
    );
  }
  out.push(
    '',
    'Conventions: one multiply-accumulate = one MAC (FLOPs ≈ 2 × MACs). The paper reports',
    'Linear/Conv MACs (72 G at 384², 113 G at 512²) and submitted that figure as "flops" for CES.',
  );
  return out.join('\n') + '\n';
}

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, ['json']);
  const unknown = Object.keys(args.flags).filter((k) => !KNOWN_FLAGS.includes(k));
  if (unknown.length > 0) throw new UsageError(`unknown option${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `--${kebab(k)}`).join(', ')} (see --help)`);
  if (args.positionals.length > 0) throw new UsageError(`unexpected argument "${args.positionals[0]}" (see --help)`);
  const opts: InspectOptions = {
    preset: flagString(args, 'preset'),
    config: flagString(args, 'config'),
    imageSize: flagNumber(args, 'imageSize'),
    textTokens: flagNumber(args, 'textTokens'),
    seqLen: flagNumber(args, 'seqLen'),
  };
  const report = inspectReport(opts);
  if (flagBool(args, 'json')) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  } else {
    process.stdout.write(formatInspect(report));
  }
  return 0;
}

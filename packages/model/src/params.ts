/**
 * The full, ordered list of parameter names and PyTorch shapes for a config — the names of the
 * HF SmolVLM2 checkpoint (docs/reference/model.md "Checkpoint tensors", in that listing's order) plus smolrate's
 * `regression_head.*`. The module tree in vision.ts / connector.ts / decoder.ts / head.ts builds
 * the same names independently; a test checks that the two agree, and a golden test pins the list
 * for the 256M preset.
 */
import { ConfigError } from '@smolrate/core';
import type { ModelConfig } from './config.js';
import { shapeSize } from './state-dict.js';

/** Which part of the model a parameter belongs to. `lm_head` is stored in checkpoints but unused. */
export type ParamGroup = 'vision' | 'connector' | 'text' | 'lm_head' | 'head';
/** How the PyTorch layout maps to tfjs: Linear [out,in] ↔ [in,out]; Conv2d [o,i,kh,kw] ↔ [kh,kw,i,o]. */
export type ParamLayout = 'linear' | 'conv' | 'plain';
/** Initial value family used by init.ts. */
export type ParamInit = 'normal' | 'ones' | 'zeros';

export interface ParamSpec {
  name: string;
  /** PyTorch shape (the checkpoint's). */
  shape: number[];
  group: ParamGroup;
  layout: ParamLayout;
  init: ParamInit;
  /** Trained by smolrate: the text model (incl. embed_tokens) and the regression head. */
  trainable: boolean;
}

export interface ExpectedParametersOptions {
  /** Include `lm_head.weight` (present in HF checkpoints, never used). Default false. */
  includeLmHead?: boolean;
  /** Include `regression_head.*`. Default true. */
  includeHead?: boolean;
}

export const VISION_PREFIX = 'model.vision_model';
export const CONNECTOR_PREFIX = 'model.connector';
export const TEXT_PREFIX = 'model.text_model';
export const LM_HEAD_NAME = 'lm_head.weight';
export const HEAD_PREFIX = 'regression_head';
export const IMAGE_CHANNELS = 3;

/** Side of the learned position grid: image_size / patch_size (512/16 = 32). */
export function positionGridSide(cfg: ModelConfig): number {
  const side = cfg.vision.imageSize / cfg.vision.patchSize;
  if (!Number.isInteger(side)) {
    throw new ConfigError(`vision_config.image_size ${cfg.vision.imageSize} must be a multiple of patch_size ${cfg.vision.patchSize}`);
  }
  return side;
}

export function expectedParameters(cfg: ModelConfig, options: ExpectedParametersOptions = {}): ParamSpec[] {
  const { includeLmHead = false, includeHead = true } = options;
  const out: ParamSpec[] = [];
  const push = (group: ParamGroup, name: string, shape: number[], layout: ParamLayout, init: ParamInit) =>
    out.push({ name, shape, group, layout, init, trainable: group === 'text' || group === 'head' });
  const linear = (group: ParamGroup, prefix: string, inF: number, outF: number, bias: boolean) => {
    push(group, `${prefix}.weight`, [outF, inF], 'linear', 'normal');
    if (bias) push(group, `${prefix}.bias`, [outF], 'plain', 'zeros');
  };
  const layerNorm = (prefix: string, dim: number) => {
    push('vision', `${prefix}.weight`, [dim], 'plain', 'ones');
    push('vision', `${prefix}.bias`, [dim], 'plain', 'zeros');
  };

  const v = cfg.vision;
  const D = v.hiddenSize;
  const grid = positionGridSide(cfg);
  const emb = `${VISION_PREFIX}.embeddings`;
  push('vision', `${emb}.patch_embedding.weight`, [D, IMAGE_CHANNELS, v.patchSize, v.patchSize], 'conv', 'normal');
  push('vision', `${emb}.patch_embedding.bias`, [D], 'plain', 'zeros');
  push('vision', `${emb}.position_embedding.weight`, [grid * grid, D], 'plain', 'normal');
  for (let i = 0; i < v.numLayers; i++) {
    const l = `${VISION_PREFIX}.encoder.layers.${i}`;
    layerNorm(`${l}.layer_norm1`, D);
    for (const p of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) linear('vision', `${l}.self_attn.${p}`, D, D, true);
    layerNorm(`${l}.layer_norm2`, D);
    linear('vision', `${l}.mlp.fc1`, D, v.intermediateSize, true);
    linear('vision', `${l}.mlp.fc2`, v.intermediateSize, D, true);
  }
  layerNorm(`${VISION_PREFIX}.post_layernorm`, D);

  const t = cfg.text;
  const T = t.hiddenSize;
  linear('connector', `${CONNECTOR_PREFIX}.modality_projection.proj`, D * cfg.scaleFactor ** 2, T, false);

  push('text', `${TEXT_PREFIX}.embed_tokens.weight`, [t.vocabSize, T], 'plain', 'normal');
  const qDim = t.numHeads * t.headDim;
  const kvDim = t.numKvHeads * t.headDim;
  for (let j = 0; j < t.numLayers; j++) {
    const l = `${TEXT_PREFIX}.layers.${j}`;
    push('text', `${l}.input_layernorm.weight`, [T], 'plain', 'ones');
    linear('text', `${l}.self_attn.q_proj`, T, qDim, false);
    linear('text', `${l}.self_attn.k_proj`, T, kvDim, false);
    linear('text', `${l}.self_attn.v_proj`, T, kvDim, false);
    linear('text', `${l}.self_attn.o_proj`, qDim, T, false);
    push('text', `${l}.post_attention_layernorm.weight`, [T], 'plain', 'ones');
    linear('text', `${l}.mlp.gate_proj`, T, t.intermediateSize, false);
    linear('text', `${l}.mlp.up_proj`, T, t.intermediateSize, false);
    linear('text', `${l}.mlp.down_proj`, t.intermediateSize, T, false);
  }
  push('text', `${TEXT_PREFIX}.norm.weight`, [T], 'plain', 'ones');

  if (includeLmHead) push('lm_head', LM_HEAD_NAME, [t.vocabSize, T], 'linear', 'normal');
  if (includeHead) {
    linear('head', `${HEAD_PREFIX}.fc1`, T, cfg.regression.hiddenSize, true);
    linear('head', `${HEAD_PREFIX}.fc2`, cfg.regression.hiddenSize, 1, true);
  }
  return out;
}

/** Sum of element counts, optionally restricted to some groups or to trainable parameters. */
export function totalParameters(specs: readonly ParamSpec[], filter: { groups?: ParamGroup[]; trainable?: boolean } = {}): number {
  let n = 0;
  for (const s of specs) {
    if (filter.groups && !filter.groups.includes(s.group)) continue;
    if (filter.trainable !== undefined && s.trainable !== filter.trainable) continue;
    n += shapeSize(s.shape);
  }
  return n;
}

/**
 * Parameter and multiply-accumulate (MAC) counts of the rating model, derived from a
 * ModelConfig alone (no weights), per component: sums over the parameters of its module tree
 * (params.ts), and for the Linear/Conv MACs one MAC per weight element and token.
 * docs/reference/model.md "Counts" gives the figures for the 256M preset that the golden tests pin.
 *
 * MAC conventions (docs/reference/data.md: "always say which one a number uses"):
 *  - `linearConv`: MACs of Linear and Conv layers only — the paper's convention; its 72 G
 *    (384², 100-char fields) and 113 G (512²) are this, and so is the "flops" figure it
 *    submitted for the challenge's CES (228 M params, 68 G → C ≈ 0.881).
 *  - `all`: additionally the attention products QKᵀ and AV (full L×L, the causal mask is not
 *    exploited; one MAC per product term).
 * Element-wise work (norms, activations, softmax, RoPE, pooling) is counted in neither.
 */
import { ConfigError } from '@smolrate/core';
import { imageTokenCount, type ModelConfig } from './config.js';
import { expectedParameters, TEXT_PREFIX, totalParameters, VISION_PREFIX, type ParamGroup, type ParamLayout } from './params.js';

/**
 * Prompt-text tokens assumed when no tokenizer run gives the real count: the paper's prompt with
 * 100-character fields. Inverting its Linear/Conv totals gives ≈ 173 (72 G at 384²) and ≈ 168
 * (113 G at 512²) text tokens; both figures are rounded to 1 G (± 5 tokens), so 170.
 */
export const DEFAULT_TEXT_TOKENS = 170;

/** `<fake_token_around_image>` + `<global-img>` before the image rows, `<fake_token_around_image>` after. */
export const IMAGE_BLOCK_TOKENS = 3;

export interface VisionParamCounts {
  /** Conv 16×16 stride 16, 3 → hidden, with bias. */
  patch: number;
  /** Learned position table, (imageSize/patch)² rows. */
  positions: number;
  /** One encoder layer: LN1, q/k/v/out (with bias), LN2, fc1, fc2. */
  perLayer: number;
  layers: number;
  postLayerNorm: number;
  total: number;
}

export interface TextParamCounts {
  embeddings: number;
  /** One decoder layer: input norm, q/k/v/o (no bias), post-attention norm, gate/up/down. */
  perLayer: number;
  layers: number;
  norm: number;
  total: number;
}

export interface ParamCounts {
  vision: VisionParamCounts;
  connector: number;
  text: TextParamCounts;
  /** Regression head: Linear(hidden, h) + Linear(h, 1), both with bias. */
  head: number;
  /** `lm_head.weight`: stored in the checkpoints, never used (0 when tied to the embeddings). */
  lmHead: number;
  /** The rating model: vision + connector + text + head (no lm_head). Paper: 228 M. */
  total: number;
  /** Trained by smolrate: text model (incl. embeddings) + head. Paper: 135 M. */
  trainable: number;
  /** Frozen (and cacheable per image): vision + connector. */
  frozen: number;
  /** The upstream HF checkpoint: vision + connector + text + lm_head (no regression head). */
  file: number;
  /** A smolrate checkpoint: `file` + the regression head. */
  checkpoint: number;
  /** Tensor counts of the same two files (471 for the upstream 256M checkpoint). */
  tensors: { file: number; checkpoint: number };
}

export function countParameters(cfg: ModelConfig): ParamCounts {
  // A tied lm_head is the embedding matrix: the upstream file does not store it.
  const specs = expectedParameters(cfg, { includeLmHead: !cfg.text.tieWordEmbeddings });
  const under = (prefix: string) => totalParameters(specs, { prefix });
  const of = (...groups: ParamGroup[]) => totalParameters(specs, { groups });
  const vision: VisionParamCounts = {
    patch: under(`${VISION_PREFIX}.embeddings.patch_embedding`),
    positions: under(`${VISION_PREFIX}.embeddings.position_embedding`),
    perLayer: under(`${VISION_PREFIX}.encoder.layers.0`),
    layers: cfg.vision.numLayers,
    postLayerNorm: under(`${VISION_PREFIX}.post_layernorm`),
    total: of('vision'),
  };
  const text: TextParamCounts = {
    embeddings: under(`${TEXT_PREFIX}.embed_tokens`),
    perLayer: under(`${TEXT_PREFIX}.layers.0`),
    layers: cfg.text.numLayers,
    norm: under(`${TEXT_PREFIX}.norm`),
    total: of('text'),
  };
  const head = of('head');
  const file = of('vision', 'connector', 'text', 'lm_head');
  const fileTensors = specs.filter((s) => s.group !== 'head').length;
  return {
    vision,
    connector: of('connector'),
    text,
    head,
    lmHead: of('lm_head'),
    total: of('vision', 'connector', 'text', 'head'),
    trainable: totalParameters(specs, { trainable: true }),
    frozen: of('vision', 'connector'),
    file,
    checkpoint: file + head,
    tensors: { file: fileTensors, checkpoint: specs.length },
  };
}

/** Length of the merged sequence for `textTokens` prompt-text tokens: image tokens + 3 block tokens + text. */
export function sequenceLength(cfg: ModelConfig, textTokens: number, imageSize = cfg.regression.imageSize): number {
  if (!Number.isInteger(textTokens) || textTokens < 0) throw new ConfigError(`text token count must be a non-negative integer, got ${textTokens}`);
  return imageTokenCount(cfg, imageSize) + IMAGE_BLOCK_TOKENS + textTokens;
}

/** Inverse of sequenceLength: prompt-text tokens in a merged sequence of `seqLen` tokens. */
export function textTokensForSequence(cfg: ModelConfig, seqLen: number, imageSize = cfg.regression.imageSize): number {
  const fixed = imageTokenCount(cfg, imageSize) + IMAGE_BLOCK_TOKENS;
  if (!Number.isInteger(seqLen) || seqLen < fixed) {
    throw new ConfigError(`sequence length must be an integer ≥ ${fixed} (the image block at ${imageSize}²), got ${seqLen}`);
  }
  return seqLen - fixed;
}

/** MACs of one forward pass (batch 1) per component. */
export interface MacComponents {
  /** Patch conv + encoder q/k/v/out/fc1/fc2 (Linear/Conv). */
  visionLinearConv: number;
  /** The patch-embedding conv alone (included in visionLinearConv). */
  visionPatchConv: number;
  /** Encoder QKᵀ and AV products. */
  visionAttention: number;
  /** modality_projection (Linear, per image token). */
  connector: number;
  /** Decoder q/k/v/o + gate/up/down over all L tokens. */
  decoderLinear: number;
  /** Decoder QKᵀ and AV products, 2·L²·(heads·headDim) per layer. */
  decoderAttention: number;
  /** Regression head on the pooled state (once per sequence). */
  head: number;
}

export interface MacTotals {
  vision: number;
  connector: number;
  decoder: number;
  head: number;
  total: number;
}

export interface MacCounts {
  imageSize: number;
  /** Vision patches, (imageSize/patch)². */
  patches: number;
  imageTokens: number;
  /** Tokens in the merged sequence. */
  seqLen: number;
  textTokens: number;
  components: MacComponents;
  /** Decoder Linear MACs per token (independent of L). */
  decoderLinearPerToken: number;
  /** Linear/Conv layers only — the paper's convention (and the "flops" it submitted for CES). */
  linearConv: MacTotals;
  /** Linear/Conv plus attention products. */
  all: MacTotals;
}

export interface MacOptions {
  imageSize?: number;
  /** Prompt-text tokens; the merged sequence adds image and block tokens. */
  textTokens?: number;
  /** Merged sequence length L (alternative to textTokens). */
  seqLen?: number;
}

export function countMacs(cfg: ModelConfig, options: MacOptions): MacCounts {
  const imageSize = options.imageSize ?? cfg.regression.imageSize;
  if (options.textTokens !== undefined && options.seqLen !== undefined) {
    throw new ConfigError('give either textTokens or seqLen, not both');
  }
  if (options.textTokens === undefined && options.seqLen === undefined) throw new ConfigError('countMacs needs textTokens or seqLen');
  const imageTokens = imageTokenCount(cfg, imageSize);
  const seqLen = options.seqLen ?? sequenceLength(cfg, options.textTokens!, imageSize);
  const textTokens = textTokensForSequence(cfg, seqLen, imageSize);

  // A Linear does one MAC per weight element and token; so does the patch conv (stride = kernel) per patch.
  const specs = expectedParameters(cfg);
  const weights = (group: ParamGroup, layout: ParamLayout) => totalParameters(specs, { groups: [group], layouts: [layout] });
  const v = cfg.vision;
  const side = imageSize / v.patchSize;
  const patches = side * side;
  const visionPatchConv = patches * weights('vision', 'conv');
  const visionLinearConv = visionPatchConv + patches * weights('vision', 'linear');
  // QKᵀ: P·P·(heads·headDim) and AV: the same; heads·headDim = hidden for SigLIP.
  const visionAttention = v.numLayers * 2 * patches * patches * v.hiddenSize;
  const connector = imageTokens * weights('connector', 'linear');

  const t = cfg.text;
  const decoderLinearPerToken = weights('text', 'linear');
  const decoderLinear = seqLen * decoderLinearPerToken;
  // GQA shares K/V across query heads but every query head still does its own products.
  const decoderAttention = t.numLayers * 2 * seqLen * seqLen * t.numHeads * t.headDim;
  const head = weights('head', 'linear');

  const components: MacComponents = { visionLinearConv, visionPatchConv, visionAttention, connector, decoderLinear, decoderAttention, head };
  const linearConv: MacTotals = {
    vision: visionLinearConv,
    connector,
    decoder: decoderLinear,
    head,
    total: visionLinearConv + connector + decoderLinear + head,
  };
  const all: MacTotals = {
    vision: visionLinearConv + visionAttention,
    connector,
    decoder: decoderLinear + decoderAttention,
    head,
    total: linearConv.total + visionAttention + decoderAttention,
  };
  return { imageSize, patches, imageTokens, seqLen, textTokens, components, decoderLinearPerToken, linearConv, all };
}

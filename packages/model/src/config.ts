/**
 * Model configuration: the HF `config.json` of SmolVLM2 (`vision_config`, `text_config`,
 * `scale_factor`, `image_token_id`, ...) plus smolrate's `regression` section.
 * Internally camelCase; `fromHfConfig` / `toHfConfig` convert. Presets: the real 256M dimensions
 * and a `tiny` model of the same structure for tests and the demo.
 */
import { ConfigError } from '@smolrate/core';

export interface VisionConfig {
  hiddenSize: number; // 768
  intermediateSize: number; // 3072
  numLayers: number; // 12
  numHeads: number; // 12 (head dim 64)
  patchSize: number; // 16
  /** Training resolution of the position table: (imageSize/patchSize)² learned positions. */
  imageSize: number; // 512 → 32×32 = 1024 positions
  layerNormEps: number; // 1e-6
  hiddenAct: string; // gelu_pytorch_tanh
}

export interface TextConfig {
  vocabSize: number; // 49280
  hiddenSize: number; // 576
  intermediateSize: number; // 1536
  numLayers: number; // 30
  numHeads: number; // 9
  numKvHeads: number; // 3
  headDim: number; // 64
  ropeTheta: number; // 100000
  rmsNormEps: number; // 1e-5
  maxPositionEmbeddings: number; // 8192
  padTokenId: number; // 2 (<|im_end|>)
  tieWordEmbeddings: boolean; // false: lm_head stored separately
}

export type PromptVariant = 'plain' | 'chat';

export interface RegressionConfig {
  /** Head hidden width; default text hidden / 2 (288 for the 256M model). */
  hiddenSize: number;
  dropout: number; // 0.1
  /** Truncation L: Unicode code points kept per metadata field. */
  truncation: number; // 100
  /** Input image side in pixels (fixed, no tiling). */
  imageSize: number; // 384
  prompt: PromptVariant;
}

export interface ModelConfig {
  vision: VisionConfig;
  text: TextConfig;
  scaleFactor: number; // 4 (pixel shuffle)
  imageTokenId: number; // 49190; the loader prefers the tokenizer's id for "<image>"
  regression: RegressionConfig;
}

/** Number of `<image>` tokens for an input side: (size/patch)² / scale². 384 → 36. */
export function imageTokenCount(cfg: ModelConfig, imageSize = cfg.regression.imageSize): number {
  const n = imageSize / cfg.vision.patchSize;
  if (!Number.isInteger(n) || n % cfg.scaleFactor !== 0) {
    throw new ConfigError(`image size ${imageSize} must be a multiple of patch ${cfg.vision.patchSize} × scale ${cfg.scaleFactor} = ${cfg.vision.patchSize * cfg.scaleFactor}`);
  }
  return (n / cfg.scaleFactor) ** 2;
}

export const PRESETS = {
  'smolvlm2-256m': (): ModelConfig => ({
    vision: { hiddenSize: 768, intermediateSize: 3072, numLayers: 12, numHeads: 12, patchSize: 16, imageSize: 512, layerNormEps: 1e-6, hiddenAct: 'gelu_pytorch_tanh' },
    text: {
      vocabSize: 49280, hiddenSize: 576, intermediateSize: 1536, numLayers: 30, numHeads: 9, numKvHeads: 3, headDim: 64,
      ropeTheta: 100000, rmsNormEps: 1e-5, maxPositionEmbeddings: 8192, padTokenId: 2, tieWordEmbeddings: false,
    },
    scaleFactor: 4,
    imageTokenId: 49190,
    regression: { hiddenSize: 288, dropout: 0.1, truncation: 100, imageSize: 384, prompt: 'plain' },
  }),
  /**
   * Same structure, small dimensions: 16-px patches on a 32×32 position table with pixel shuffle 4,
   * but a 192² input (12×12 patches, bucketed onto the table → 9 image tokens). 192² rather than
   * 384² because tfjs-wasm's batched matmul is slow for small head dims: at 384² the tiny vision
   * encoder's 576-token attention costs ~0.3 s per image on this 2-core machine, at 192² ~15× less,
   * which is what lets the demo's feature precompute finish in seconds. Shards still store 384²
   * JPEGs; they are resized at preprocessing. GQA ratio 2, and the vocabulary of the project's own
   * tiny tokenizer (1024 byte-level BPE tokens + the 128 SmolVLM added tokens at 1024–1151, the
   * real layout shifted down from 49152).
   */
  tiny: (): ModelConfig => ({
    vision: { hiddenSize: 64, intermediateSize: 128, numLayers: 2, numHeads: 4, patchSize: 16, imageSize: 512, layerNormEps: 1e-6, hiddenAct: 'gelu_pytorch_tanh' },
    text: {
      vocabSize: 1152, hiddenSize: 64, intermediateSize: 128, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16,
      ropeTheta: 100000, rmsNormEps: 1e-5, maxPositionEmbeddings: 2048, padTokenId: 2, tieWordEmbeddings: false,
    },
    scaleFactor: 4,
    imageTokenId: 1062,
    regression: { hiddenSize: 32, dropout: 0.1, truncation: 100, imageSize: 192, prompt: 'plain' },
  }),
} as const satisfies Record<string, () => ModelConfig>;

export function presetConfig(name: string): ModelConfig {
  const make = (PRESETS as Record<string, () => ModelConfig>)[name];
  if (!make) throw new ConfigError(`unknown model preset "${name}" (known: ${Object.keys(PRESETS).join(', ')})`);
  return make();
}

type Json = Record<string, unknown>;

function num(obj: Json, key: string, where: string, def?: number): number {
  const v = obj[key];
  if (v === undefined || v === null) {
    if (def !== undefined) return def;
    throw new ConfigError(`config.json: missing ${where}.${key}`);
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigError(`config.json: ${where}.${key} must be a number, got ${JSON.stringify(v)}`);
  return v;
}

/** Reads an HF SmolVLM / Idefics3 `config.json` (parsed), with smolrate's optional `regression` section. */
export function fromHfConfig(json: unknown): ModelConfig {
  if (typeof json !== 'object' || json === null) throw new ConfigError('config.json: expected an object');
  const root = json as Json;
  const v = (root.vision_config ?? {}) as Json;
  const t = (root.text_config ?? {}) as Json;
  if (typeof root.vision_config !== 'object' || typeof root.text_config !== 'object') {
    throw new ConfigError('config.json: expected "vision_config" and "text_config" sections (SmolVLM / Idefics3 format)');
  }
  const textHidden = num(t, 'hidden_size', 'text_config');
  const numHeads = num(t, 'num_attention_heads', 'text_config');
  const r = (root.regression ?? {}) as Json;
  const prompt = (r.prompt ?? 'plain') as string;
  if (prompt !== 'plain' && prompt !== 'chat') throw new ConfigError(`config.json: regression.prompt must be "plain" or "chat", got ${JSON.stringify(prompt)}`);
  return {
    vision: {
      hiddenSize: num(v, 'hidden_size', 'vision_config'),
      intermediateSize: num(v, 'intermediate_size', 'vision_config'),
      numLayers: num(v, 'num_hidden_layers', 'vision_config'),
      numHeads: num(v, 'num_attention_heads', 'vision_config'),
      patchSize: num(v, 'patch_size', 'vision_config'),
      imageSize: num(v, 'image_size', 'vision_config'),
      layerNormEps: num(v, 'layer_norm_eps', 'vision_config', 1e-6),
      hiddenAct: typeof v.hidden_act === 'string' ? v.hidden_act : 'gelu_pytorch_tanh',
    },
    text: {
      vocabSize: num(t, 'vocab_size', 'text_config'),
      hiddenSize: textHidden,
      intermediateSize: num(t, 'intermediate_size', 'text_config'),
      numLayers: num(t, 'num_hidden_layers', 'text_config'),
      numHeads,
      numKvHeads: num(t, 'num_key_value_heads', 'text_config', numHeads),
      headDim: num(t, 'head_dim', 'text_config', textHidden / numHeads),
      ropeTheta: num(t, 'rope_theta', 'text_config', 100000),
      rmsNormEps: num(t, 'rms_norm_eps', 'text_config', 1e-5),
      maxPositionEmbeddings: num(t, 'max_position_embeddings', 'text_config', 8192),
      padTokenId: num(t, 'pad_token_id', 'text_config', typeof root.pad_token_id === 'number' ? root.pad_token_id : 2),
      tieWordEmbeddings: Boolean(t.tie_word_embeddings ?? root.tie_word_embeddings ?? false),
    },
    scaleFactor: num(root, 'scale_factor', 'config', 4),
    imageTokenId: num(root, 'image_token_id', 'config', 49190),
    regression: {
      hiddenSize: num(r, 'hidden_size', 'regression', Math.floor(textHidden / 2)),
      dropout: num(r, 'dropout', 'regression', 0.1),
      truncation: num(r, 'truncation', 'regression', 100),
      imageSize: num(r, 'image_size', 'regression', 384),
      prompt,
    },
  };
}

/** HF-style `config.json` content (readable by transformers) with the `regression` section. */
export function toHfConfig(cfg: ModelConfig): Json {
  return {
    architectures: ['SmolVLMForConditionalGeneration'],
    model_type: 'smolvlm',
    image_token_id: cfg.imageTokenId,
    scale_factor: cfg.scaleFactor,
    tie_word_embeddings: cfg.text.tieWordEmbeddings,
    torch_dtype: 'float32',
    vision_config: {
      model_type: 'smolvlm_vision',
      hidden_size: cfg.vision.hiddenSize,
      intermediate_size: cfg.vision.intermediateSize,
      num_hidden_layers: cfg.vision.numLayers,
      num_attention_heads: cfg.vision.numHeads,
      patch_size: cfg.vision.patchSize,
      image_size: cfg.vision.imageSize,
      layer_norm_eps: cfg.vision.layerNormEps,
      hidden_act: cfg.vision.hiddenAct,
      num_channels: 3,
    },
    text_config: {
      model_type: 'llama',
      vocab_size: cfg.text.vocabSize,
      hidden_size: cfg.text.hiddenSize,
      intermediate_size: cfg.text.intermediateSize,
      num_hidden_layers: cfg.text.numLayers,
      num_attention_heads: cfg.text.numHeads,
      num_key_value_heads: cfg.text.numKvHeads,
      head_dim: cfg.text.headDim,
      rope_theta: cfg.text.ropeTheta,
      rms_norm_eps: cfg.text.rmsNormEps,
      max_position_embeddings: cfg.text.maxPositionEmbeddings,
      pad_token_id: cfg.text.padTokenId,
      hidden_act: 'silu',
      tie_word_embeddings: cfg.text.tieWordEmbeddings,
    },
    regression: {
      hidden_size: cfg.regression.hiddenSize,
      dropout: cfg.regression.dropout,
      truncation: cfg.regression.truncation,
      image_size: cfg.regression.imageSize,
      prompt: cfg.regression.prompt,
    },
  };
}

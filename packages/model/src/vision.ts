/**
 * The SigLIP-style vision encoder of SmolVLM2 (docs/reference/model.md "Forward pass" steps 2–5): patch conv,
 * bucketed learned positions, pre-LN encoder layers, post_layernorm. Frozen in smolrate.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '@smolrate/core';
import type { VisionConfig } from './config.js';
import { Linear, type Param, type ParamScope } from './layers.js';

/** RGB input of the patch conv. */
export const IMAGE_CHANNELS = 3;

/** √(2/π), the constant of the tanh form of GELU. */
const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/** gelu_pytorch_tanh: 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))). */
export function geluTanh(x: tf.Tensor): tf.Tensor {
  const cube = tf.mul(tf.mul(x, x), x);
  const inner = tf.mul(tf.add(x, tf.mul(cube, 0.044715)), SQRT_2_OVER_PI);
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
}

/**
 * Position ids of an n×n patch grid in the learned `grid`×`grid` table: per axis the bucket of
 * index i is ⌊grid·i/n⌋, and id = grid·bucket(r) + bucket(c) for patch t = r·n + c. This is the
 * original Idefics3 mapping (bucketize of i/n against boundaries k/grid), in integer arithmetic —
 * the float32 variant of some transformers releases ≥ 4.55 shifts ids (docs/reference/model.md step 3).
 */
export function visionPositionIds(n: number, grid: number): Int32Array {
  const bucket = (i: number) => Math.floor((grid * i) / n);
  const ids = new Int32Array(n * n);
  for (let r = 0; r < n; r++) for (let c = 0; c < n; c++) ids[r * n + c] = grid * bucket(r) + bucket(c);
  return ids;
}

/** nn.LayerNorm over the last axis: w·(x − mean)/√(var + eps) + b (biased variance). */
export class LayerNorm {
  readonly weight: Param;
  readonly bias: Param;

  constructor(
    scope: ParamScope,
    dim: number,
    readonly eps: number,
  ) {
    this.weight = scope.param('weight', [dim], 'ones');
    this.bias = scope.param('bias', [dim], 'zeros');
  }

  apply(x: tf.Tensor): tf.Tensor {
    const { mean, variance } = tf.moments(x, -1, true);
    const normalised = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, this.eps)));
    return tf.add(tf.mul(normalised, this.weight.value), this.bias.value);
  }
}

export class VisionEmbeddings {
  readonly patchEmbedding: { weight: Param; bias: Param };
  readonly positionEmbedding: Param;
  private readonly positionIdCache = new Map<number, Int32Array>();

  constructor(
    scope: ParamScope,
    private readonly cfg: VisionConfig,
    /** Side of the learned position table (image_size / patch_size = 32). */
    readonly grid: number,
  ) {
    const patch = scope.child('patch_embedding');
    const D = cfg.hiddenSize;
    this.patchEmbedding = {
      weight: patch.param('weight', [D, IMAGE_CHANNELS, cfg.patchSize, cfg.patchSize], 'normal', 'conv'),
      bias: patch.param('bias', [D], 'zeros'),
    };
    this.positionEmbedding = scope.child('position_embedding').param('weight', [grid * grid, D], 'normal');
  }

  positionIds(n: number): Int32Array {
    let ids = this.positionIdCache.get(n);
    if (!ids) {
      ids = visionPositionIds(n, this.grid);
      this.positionIdCache.set(n, ids);
    }
    return ids;
  }

  /** pixels [B, H, W, 3] (normalised) → [B, n², D], patch t = r·n + c. */
  apply(pixels: tf.Tensor4D): tf.Tensor3D {
    const [B, H, W, C] = pixels.shape;
    const p = this.cfg.patchSize;
    if (C !== IMAGE_CHANNELS || H !== W || H % p !== 0) {
      throw new ShapeError(`pixels: expected [B, S, S, 3] with S a multiple of ${p}, got [${pixels.shape.join(', ')}]`);
    }
    const n = H / p;
    const D = this.cfg.hiddenSize;
    const patches = tf.add(tf.conv2d(pixels, this.patchEmbedding.weight.value as tf.Tensor4D, p, 'valid'), this.patchEmbedding.bias.value); // [B, n, n, D]
    const positions = tf.gather(this.positionEmbedding.value, tf.tensor1d(this.positionIds(n), 'int32')); // [n², D]
    return tf.add(tf.reshape(patches, [B, n * n, D]), positions);
  }
}

/** Bidirectional multi-head self-attention with biases; scale 1/√head_dim. */
export class VisionAttention {
  readonly qProj: Linear;
  readonly kProj: Linear;
  readonly vProj: Linear;
  readonly outProj: Linear;
  readonly headDim: number;
  readonly scale: number;

  constructor(
    scope: ParamScope,
    readonly hidden: number,
    readonly numHeads: number,
  ) {
    this.qProj = new Linear(scope.child('q_proj'), hidden, hidden, { bias: true });
    this.kProj = new Linear(scope.child('k_proj'), hidden, hidden, { bias: true });
    this.vProj = new Linear(scope.child('v_proj'), hidden, hidden, { bias: true });
    this.outProj = new Linear(scope.child('out_proj'), hidden, hidden, { bias: true });
    this.headDim = hidden / numHeads;
    this.scale = 1 / Math.sqrt(this.headDim);
  }

  /** x [B, S, D] → [B, S, D]. */
  apply(x: tf.Tensor3D): tf.Tensor3D {
    const [B, S] = x.shape;
    const heads = (t: tf.Tensor) => tf.transpose(tf.reshape(t, [B, S, this.numHeads, this.headDim]), [0, 2, 1, 3]); // [B, H, S, hd]
    const q = heads(this.qProj.apply(x));
    const k = heads(this.kProj.apply(x));
    const v = heads(this.vProj.apply(x));
    const probs = tf.softmax(tf.mul(tf.matMul(q, k, false, true), this.scale)); // [B, H, S, S]
    const context = tf.reshape(tf.transpose(tf.matMul(probs, v), [0, 2, 1, 3]), [B, S, this.hidden]); // [B, S, D]
    return this.outProj.apply(context) as tf.Tensor3D;
  }
}

export class VisionMLP {
  readonly fc1: Linear;
  readonly fc2: Linear;

  constructor(scope: ParamScope, hidden: number, intermediate: number) {
    this.fc1 = new Linear(scope.child('fc1'), hidden, intermediate, { bias: true });
    this.fc2 = new Linear(scope.child('fc2'), intermediate, hidden, { bias: true });
  }

  apply(x: tf.Tensor3D): tf.Tensor3D {
    return this.fc2.apply(geluTanh(this.fc1.apply(x))) as tf.Tensor3D;
  }
}

/** Pre-LN: h = x + out_proj(MHA(LN1(x))); y = h + fc2(gelu_tanh(fc1(LN2(h)))). */
export class EncoderLayer {
  readonly layerNorm1: LayerNorm;
  readonly selfAttn: VisionAttention;
  readonly layerNorm2: LayerNorm;
  readonly mlp: VisionMLP;

  constructor(scope: ParamScope, cfg: VisionConfig) {
    this.layerNorm1 = new LayerNorm(scope.child('layer_norm1'), cfg.hiddenSize, cfg.layerNormEps);
    this.selfAttn = new VisionAttention(scope.child('self_attn'), cfg.hiddenSize, cfg.numHeads);
    this.layerNorm2 = new LayerNorm(scope.child('layer_norm2'), cfg.hiddenSize, cfg.layerNormEps);
    this.mlp = new VisionMLP(scope.child('mlp'), cfg.hiddenSize, cfg.intermediateSize);
  }

  apply(x: tf.Tensor3D): tf.Tensor3D {
    const h = tf.add(x, this.selfAttn.apply(this.layerNorm1.apply(x) as tf.Tensor3D));
    return tf.add(h, this.mlp.apply(this.layerNorm2.apply(h) as tf.Tensor3D));
  }
}

/** `model.vision_model`: embeddings → encoder layers → post_layernorm; [B, S, S, 3] → [B, n², D]. */
export class VisionTransformer {
  readonly embeddings: VisionEmbeddings;
  readonly layers: EncoderLayer[];
  readonly postLayernorm: LayerNorm;

  constructor(
    scope: ParamScope,
    readonly cfg: VisionConfig,
    grid: number,
  ) {
    if (cfg.hiddenAct !== 'gelu_pytorch_tanh') {
      throw new ConfigError(`vision hidden_act "${cfg.hiddenAct}" is not supported (only gelu_pytorch_tanh)`);
    }
    if (cfg.hiddenSize % cfg.numHeads !== 0) {
      throw new ConfigError(`vision hidden_size ${cfg.hiddenSize} is not divisible by num_attention_heads ${cfg.numHeads}`);
    }
    this.embeddings = new VisionEmbeddings(scope.child('embeddings'), cfg, grid);
    const encoder = scope.child('encoder').child('layers');
    this.layers = Array.from({ length: cfg.numLayers }, (_, i) => new EncoderLayer(encoder.child(i), cfg));
    this.postLayernorm = new LayerNorm(scope.child('post_layernorm'), cfg.hiddenSize, cfg.layerNormEps);
  }

  apply(pixels: tf.Tensor4D): tf.Tensor3D {
    let x = this.embeddings.apply(pixels);
    for (const layer of this.layers) x = layer.apply(x);
    return this.postLayernorm.apply(x) as tf.Tensor3D;
  }
}

/**
 * The Llama decoder of SmolVLM2 (= SmolLM2; docs/reference/model.md step 9–10): RMSNorm, RoPE (half-split
 * "rotate_half" layout), grouped-query attention with causal + padding mask, SwiGLU MLP.
 * Trained in smolrate, so every parameter here is a tf.Variable.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '@smolrate/core';
import type { TextConfig } from './config.js';
import { Linear, type Param, type ParamScope } from './layers.js';

/**
 * Added to the attention scores of masked (future or padding) keys. Any value whose exp underflows
 * to 0 after the softmax's max-subtraction gives the same probabilities as transformers'
 * `finfo(float32).min`; a finite value keeps fully masked rows (padding queries) NaN-free.
 */
export const MASK_VALUE = -1e9;

/** LlamaRMSNorm: w · x / √(mean(x²) + eps). */
export class RMSNorm {
  readonly weight: Param;

  constructor(
    scope: ParamScope,
    dim: number,
    readonly eps: number,
  ) {
    this.weight = scope.param('weight', [dim], 'ones');
  }

  apply(x: tf.Tensor): tf.Tensor {
    const meanSquare = tf.mean(tf.square(x), -1, true);
    return tf.mul(tf.mul(x, tf.rsqrt(tf.add(meanSquare, this.eps))), this.weight.value);
  }
}

/**
 * inv_freq[i] = θ^(−2i/d), i < d/2, rounded the way transformers computes it in float32
 * (`1 / base ** (arange(0, d, 2).float() / d)`), so the angles match the reference bit for bit
 * as far as the platform's pow allows.
 */
export function ropeInvFreq(headDim: number, theta: number): Float32Array {
  const f = Math.fround;
  const out = new Float32Array(headDim / 2);
  for (let i = 0; i < headDim / 2; i++) out[i] = f(1 / f(Math.pow(theta, f((2 * i) / headDim))));
  return out;
}

/**
 * cos / sin tables [L, d] for positions 0…L−1: angle(pos, i) = pos·inv_freq[i] (float32),
 * duplicated across the two halves (`cat(freqs, freqs)`), as in LlamaRotaryEmbedding.
 */
export function ropeTables(seqLen: number, headDim: number, theta: number): { cos: Float32Array; sin: Float32Array } {
  const invFreq = ropeInvFreq(headDim, theta);
  const half = headDim / 2;
  const cos = new Float32Array(seqLen * headDim);
  const sin = new Float32Array(seqLen * headDim);
  for (let pos = 0; pos < seqLen; pos++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(pos * invFreq[i]);
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      cos[pos * headDim + i] = c;
      cos[pos * headDim + half + i] = c;
      sin[pos * headDim + i] = s;
      sin[pos * headDim + half + i] = s;
    }
  }
  return { cos, sin };
}

/** rotate_half([a, b]) = [−b, a] on the two halves of the last axis. */
export function rotateHalf(x: tf.Tensor): tf.Tensor {
  const [a, b] = tf.split(x, 2, -1);
  return tf.concat([tf.neg(b), a], -1);
}

/** x' = x·cos + rotate_half(x)·sin; x [B, heads, L, d], cos/sin [L, d]. */
export function applyRope(x: tf.Tensor, cos: tf.Tensor, sin: tf.Tensor): tf.Tensor {
  return tf.add(tf.mul(x, cos), tf.mul(rotateHalf(x), sin));
}

/**
 * Additive attention bias [B, 1, L, L]: 0 where query i may attend key j (j ≤ i and key j is not
 * padding), MASK_VALUE elsewhere. attentionMask [B, L], 1 = token, 0 = padding.
 */
export function causalPaddingBias(attentionMask: tf.Tensor2D): tf.Tensor4D {
  const [B, L] = attentionMask.shape;
  const causal = tf.linalg.bandPart(tf.ones([L, L]), -1, 0); // [L, L], 1 on and below the diagonal
  const allowed = tf.mul(causal, tf.reshape(tf.cast(attentionMask, 'float32'), [B, 1, 1, L])); // [B, 1, L, L]
  return tf.mul(tf.sub(allowed, 1), -MASK_VALUE) as tf.Tensor4D; // (allowed − 1)·|MASK_VALUE|: 0 or MASK_VALUE, no −0
}

/**
 * softmax(q·kᵀ·scale + bias)·v where query head h reads kv head ⌊h/g⌋, g = heads/kvHeads.
 * Instead of materialising transformers' `repeat_kv`, the g consecutive query heads of each kv
 * head are stacked along the sequence axis, so one batched matmul serves the whole group.
 * q [B, H, L, d], k/v [B, KV, L, d], bias [B, 1, L, L] → [B, H, L, d].
 */
export function groupedQueryAttention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, bias: tf.Tensor, scale: number): tf.Tensor4D {
  const [B, H, L, d] = q.shape;
  const KV = k.shape[1];
  if (H % KV !== 0) throw new ShapeError(`attention: ${H} query heads is not a multiple of ${KV} kv heads`);
  const g = H / KV;
  const grouped = tf.reshape(q, [B * KV, g * L, d]); // head h = kv·g + j → batch kv, rows j·L…j·L+L−1
  const scores = tf.mul(tf.matMul(grouped, tf.reshape(k, [B * KV, L, d]), false, true), scale); // [B·KV, g·L, L]
  const probs = tf.softmax(tf.add(tf.reshape(scores, [B, H, L, L]), bias)); // [B, H, L, L]
  const context = tf.matMul(tf.reshape(probs, [B * KV, g * L, L]), tf.reshape(v, [B * KV, L, d])); // [B·KV, g·L, d]
  return tf.reshape(context, [B, H, L, d]);
}

export class DecoderAttention {
  readonly qProj: Linear;
  readonly kProj: Linear;
  readonly vProj: Linear;
  readonly oProj: Linear;
  readonly scale: number;

  constructor(
    scope: ParamScope,
    private readonly cfg: TextConfig,
  ) {
    const { hiddenSize: T, numHeads: H, numKvHeads: KV, headDim: d } = cfg;
    this.qProj = new Linear(scope.child('q_proj'), T, H * d, { bias: false });
    this.kProj = new Linear(scope.child('k_proj'), T, KV * d, { bias: false });
    this.vProj = new Linear(scope.child('v_proj'), T, KV * d, { bias: false });
    this.oProj = new Linear(scope.child('o_proj'), H * d, T, { bias: false });
    this.scale = 1 / Math.sqrt(d);
  }

  /** x [B, L, T], cos/sin [L, d], bias [B, 1, L, L] → [B, L, T]. */
  apply(x: tf.Tensor3D, cos: tf.Tensor, sin: tf.Tensor, bias: tf.Tensor): tf.Tensor3D {
    const [B, L] = x.shape;
    const { numHeads: H, numKvHeads: KV, headDim: d } = this.cfg;
    const heads = (t: tf.Tensor, n: number) => tf.transpose(tf.reshape(t, [B, L, n, d]), [0, 2, 1, 3]) as tf.Tensor4D; // [B, n, L, d]
    const q = applyRope(heads(this.qProj.apply(x), H), cos, sin) as tf.Tensor4D;
    const k = applyRope(heads(this.kProj.apply(x), KV), cos, sin) as tf.Tensor4D;
    const v = heads(this.vProj.apply(x), KV);
    const context = groupedQueryAttention(q, k, v, bias, this.scale); // [B, H, L, d]
    return this.oProj.apply(tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [B, L, H * d])) as tf.Tensor3D;
  }
}

/** SwiGLU: down_proj(silu(gate_proj(z)) ⊙ up_proj(z)). */
export class DecoderMLP {
  readonly gateProj: Linear;
  readonly upProj: Linear;
  readonly downProj: Linear;

  constructor(scope: ParamScope, hidden: number, intermediate: number) {
    this.gateProj = new Linear(scope.child('gate_proj'), hidden, intermediate, { bias: false });
    this.upProj = new Linear(scope.child('up_proj'), hidden, intermediate, { bias: false });
    this.downProj = new Linear(scope.child('down_proj'), intermediate, hidden, { bias: false });
  }

  apply(z: tf.Tensor3D): tf.Tensor3D {
    const gate = this.gateProj.apply(z);
    const silu = tf.mul(gate, tf.sigmoid(gate));
    return this.downProj.apply(tf.mul(silu, this.upProj.apply(z))) as tf.Tensor3D;
  }
}

/** h = x + o_proj(attn(RMSNorm(x))); y = h + mlp(RMSNorm(h)). */
export class DecoderLayer {
  readonly inputLayernorm: RMSNorm;
  readonly selfAttn: DecoderAttention;
  readonly postAttentionLayernorm: RMSNorm;
  readonly mlp: DecoderMLP;

  constructor(scope: ParamScope, cfg: TextConfig) {
    this.inputLayernorm = new RMSNorm(scope.child('input_layernorm'), cfg.hiddenSize, cfg.rmsNormEps);
    this.selfAttn = new DecoderAttention(scope.child('self_attn'), cfg);
    this.postAttentionLayernorm = new RMSNorm(scope.child('post_attention_layernorm'), cfg.hiddenSize, cfg.rmsNormEps);
    this.mlp = new DecoderMLP(scope.child('mlp'), cfg.hiddenSize, cfg.intermediateSize);
  }

  apply(x: tf.Tensor3D, cos: tf.Tensor, sin: tf.Tensor, bias: tf.Tensor): tf.Tensor3D {
    const h = tf.add(x, this.selfAttn.apply(this.inputLayernorm.apply(x) as tf.Tensor3D, cos, sin, bias));
    return tf.add(h, this.mlp.apply(this.postAttentionLayernorm.apply(h) as tf.Tensor3D));
  }
}

/** `model.text_model`: embed_tokens, decoder layers, final norm. */
export class TextModel {
  readonly embedTokens: Param;
  readonly layers: DecoderLayer[];
  readonly norm: RMSNorm;
  /** cos / sin [maxPositionEmbeddings, d]: built by buildRopeTables (the model does so when it is made), freed by disposeRopeTables. */
  private rope: { cos: tf.Tensor2D; sin: tf.Tensor2D } | null = null;

  constructor(
    scope: ParamScope,
    readonly cfg: TextConfig,
  ) {
    if (cfg.numHeads % cfg.numKvHeads !== 0) {
      throw new ConfigError(`text num_attention_heads ${cfg.numHeads} is not a multiple of num_key_value_heads ${cfg.numKvHeads}`);
    }
    if (cfg.headDim % 2 !== 0) throw new ConfigError(`text head_dim ${cfg.headDim} must be even (RoPE halves)`);
    this.embedTokens = scope.child('embed_tokens').param('weight', [cfg.vocabSize, cfg.hiddenSize], 'normal');
    const layers = scope.child('layers');
    this.layers = Array.from({ length: cfg.numLayers }, (_, j) => new DecoderLayer(layers.child(j), cfg));
    this.norm = new RMSNorm(scope.child('norm'), cfg.hiddenSize, cfg.rmsNormEps);
  }

  /**
   * Builds the RoPE tables once (a no-op when built). Not in the constructor: a module tree built
   * only to describe the model (params.ts buildModules) allocates no tensors.
   */
  buildRopeTables(): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
    if (this.rope) return this.rope;
    const { maxPositionEmbeddings: P, headDim, ropeTheta } = this.cfg;
    const tables = ropeTables(P, headDim, ropeTheta);
    this.rope = { cos: tf.keep(tf.tensor2d(tables.cos, [P, headDim])), sin: tf.keep(tf.tensor2d(tables.sin, [P, headDim])) };
    return this.rope;
  }

  /** Token embeddings, unscaled: ids [B, L] int32 → [B, L, T]. */
  embed(inputIds: tf.Tensor2D): tf.Tensor3D {
    return tf.gather(this.embedTokens.value, inputIds) as tf.Tensor3D;
  }

  /** inputs_embeds [B, L, T], attentionMask [B, L] → final-norm hidden states [B, L, T]; positions 0…L−1. */
  apply(inputsEmbeds: tf.Tensor3D, attentionMask: tf.Tensor2D): tf.Tensor3D {
    const L = inputsEmbeds.shape[1];
    if (L > this.cfg.maxPositionEmbeddings) {
      throw new ShapeError(`sequence length ${L} exceeds max_position_embeddings ${this.cfg.maxPositionEmbeddings}`);
    }
    const { cos, sin } = this.ropeFor(L);
    const bias = causalPaddingBias(attentionMask);
    let x = inputsEmbeds;
    for (const layer of this.layers) x = layer.apply(x, cos, sin, bias);
    return this.norm.apply(x) as tf.Tensor3D;
  }

  /**
   * cos / sin [L, d] for positions 0…L−1. A position's angles do not depend on L, so the table
   * for the longest allowed sequence serves every length as a slice (owned by the caller).
   */
  ropeFor(L: number): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
    const rope = this.buildRopeTables();
    return { cos: tf.slice(rope.cos, [0, 0], [L, -1]), sin: tf.slice(rope.sin, [0, 0], [L, -1]) };
  }

  /** Frees the RoPE tables (the parameters belong to the model that built this one). */
  disposeRopeTables(): void {
    if (this.rope) tf.dispose([this.rope.cos, this.rope.sin]);
    this.rope = null;
  }
}

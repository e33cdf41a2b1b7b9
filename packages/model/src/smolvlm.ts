/**
 * SmolVLM2 as a rating regressor (docs/reference/model.md "Forward pass"): frozen vision encoder + connector,
 * trained Llama decoder whose `<image>` token embeddings are replaced by the projected image
 * rows, and the mask-aware pooled regression head.
 *
 * Weights keep their PyTorch layouts in state dicts and are converted once at load (and back at
 * save). The trained parts (text model incl. embed_tokens, regression head) are tf.Variables; the
 * vision encoder and connector are plain tensors, so they never receive gradients.
 */
import * as tf from '@tensorflow/tfjs-core';
import { CheckpointError, ConfigError, createLogger, DataError, ShapeError, type Logger } from '@smolrate/core';
import type { ModelConfig } from './config.js';
import type { Connector } from './connector.js';
import type { TextModel } from './decoder.js';
import { registerModelGradients } from './gradients/index.js';
import { dropoutMask, maskedMeanPool, type RegressionHead } from './head.js';
import { initParameter, initStateDict } from './init.js';
import type { Param } from './layers.js';
import { buildModules, HEAD_PREFIX, LM_HEAD_NAME } from './params.js';
import type { EncodedBatch } from './prompt.js';
import { formatShape, sameShape, shapeSize, type StateDict } from './state-dict.js';
import type { VisionTransformer } from './vision.js';

/** The token side of a batch, host arrays as encodeBatch / packTokenRows (prompt.ts) give them. */
export type TokenBatch = Pick<EncodedBatch, 'batchSize' | 'seqLen' | 'inputIds' | 'lengths' | 'imagePositions'>;

export interface RegressorInputs {
  /** Projected image features [B, N, D_text] from `encodeImages` (e.g. a feature cache). */
  imageFeatures?: tf.Tensor3D;
  /** Normalised pixels [B, S, S, 3] (x/127.5 − 1), encoded in the same call. Exclusive with imageFeatures. */
  pixels?: tf.Tensor4D;
  /**
   * Right-padded ids with each row's length and the positions of its N `<image>` tokens
   * (N = image rows per item). The host knows them from tokenising, so the model never reads
   * ids or mask back from the device.
   */
  tokens: TokenBatch;
}

export interface ForwardOptions {
  /** Enables dropout in the head. Default false. */
  training?: boolean;
  /**
   * Seed of the dropout mask, required when training with dropout > 0: one number for the batch,
   * or one per row (a row's mask then depends only on its seed; see head.ts dropoutMask).
   */
  dropoutSeed?: number | readonly number[];
}

export interface RegressorOutput {
  /** Mask-aware mean of the last hidden states [B, D_text]. */
  pooled: tf.Tensor2D;
  /** Head output before the squashing [B]. */
  logit: tf.Tensor1D;
  /** 1 + 4·sigmoid(logit) ∈ (1, 5) [B]. */
  rating: tf.Tensor1D;
}

export interface LoadStateDictOptions {
  /** Missing or unexpected names are errors (except lm_head.weight, and a wholly absent regression head). Default true. */
  strict?: boolean;
  /** Seed for parameters that have to be initialised (an absent regression head). Default 0. */
  seed?: number;
  /** Receives each warning; default: a core logger named "model" at level warn. */
  onWarning?: (message: string) => void;
}

export interface LoadReport {
  warnings: string[];
  /** Parameters given a seeded initial value because the dict lacked them. */
  initialized: string[];
  /** Names in the dict that the model does not use (lm_head.weight; unexpected names when not strict). */
  ignored: string[];
}

export interface NamedVariable {
  name: string;
  variable: tf.Variable;
}

export interface LossAndGrads {
  /** Mean squared error of the ratings. */
  loss: number;
  /** Gradient of the loss for every trainable variable, in trainableVariables() order, tfjs layout. The caller disposes them. */
  grads: Map<string, tf.Tensor>;
}

interface InputPlan {
  batch: number;
  seqLen: number;
  /** [B·L] 1 for the first lengths[b] positions of row b, 0 for the padding after them. */
  attentionMask: Int32Array;
  /** Gather index into [token embeddings (B·L rows); image rows (B·N rows)], or null without images. */
  mergeIndex: Int32Array | null;
}

/**
 * Row indices that merge image features into token embeddings: with the token embeddings
 * flattened to B·L rows followed by the image features flattened to B·N rows, position (b, t)
 * takes row B·L + b·N + k if t is the k-th image position of row b, else its own row b·L + t.
 * Image positions must increase along a row, lie inside it and hold `<image>` ids.
 */
export function imageMergeIndex(tokens: TokenBatch, imageTokenId: number): Int32Array {
  const { batchSize: B, seqLen: L, inputIds, lengths, imagePositions } = tokens;
  const N = B > 0 ? imagePositions.length / B : 0;
  const index = Int32Array.from({ length: B * L }, (_, flat) => flat);
  for (let b = 0; b < B; b++) {
    for (let k = 0; k < N; k++) {
      const t = imagePositions[b * N + k];
      const after = k === 0 ? 0 : imagePositions[b * N + k - 1] + 1;
      if (t < after || t >= lengths[b] || inputIds[b * L + t] !== imageTokenId) {
        throw new ShapeError(`row ${b}: image position ${k} is ${t}, not an <image> token (id ${imageTokenId}) in [${after}, ${lengths[b]})`);
      }
      index[b * L + t] = B * L + b * N + k;
    }
  }
  return index;
}

/** [B, L, D] token embeddings + [B, N, D] image rows → merged [B, L, D] (see imageMergeIndex). */
export function mergeImageFeatures(tokenEmbeds: tf.Tensor3D, imageFeatures: tf.Tensor3D, mergeIndex: Int32Array): tf.Tensor3D {
  const [B, L, D] = tokenEmbeds.shape;
  const N = imageFeatures.shape[1];
  const rows = tf.concat([tf.reshape(tokenEmbeds, [B * L, D]), tf.reshape(imageFeatures, [B * N, D])], 0); // [B·L + B·N, D]
  return tf.reshape(tf.gather(rows, tf.tensor1d(mergeIndex, 'int32')), [B, L, D]);
}

let logger: Logger | null = null;
function modelLogger(): Logger {
  logger ??= createLogger({ name: 'model' });
  return logger;
}

export class SmolVLMRegressor {
  readonly visionModel: VisionTransformer;
  readonly connector: Connector;
  readonly textModel: TextModel;
  readonly regressionHead: RegressionHead;
  /** Every parameter, in module-tree (= checkpoint) order. */
  private readonly params: Param[];
  private readonly byName: Map<string, Param>;

  private constructor(readonly config: ModelConfig) {
    ({ visionModel: this.visionModel, connector: this.connector, textModel: this.textModel, regressionHead: this.regressionHead, params: this.params } = buildModules(config));
    this.byName = new Map(this.params.map((p) => [p.name, p]));
    this.textModel.buildRopeTables();
  }

  /** A model with seeded random weights (init.ts). */
  static fromSeed(config: ModelConfig, seed: number): SmolVLMRegressor {
    const model = new SmolVLMRegressor(config);
    model.loadStateDict(initStateDict(config, { seed }), { strict: true });
    return model;
  }

  /** A model loaded from a state dict (PyTorch layouts), e.g. an HF SmolVLM2 checkpoint or a smolrate one. */
  static fromStateDict(config: ModelConfig, dict: StateDict, options: LoadStateDictOptions = {}): { model: SmolVLMRegressor; report: LoadReport } {
    const model = new SmolVLMRegressor(config);
    try {
      return { model, report: model.loadStateDict(dict, options) };
    } catch (e) {
      model.dispose();
      throw e;
    }
  }

  /**
   * Loads weights. All problems (missing, unexpected, mis-shaped names) are collected into one
   * CheckpointError before anything is changed. `lm_head.weight` is accepted and ignored; a
   * regression head absent altogether (an HF checkpoint) gets a seeded init and a warning.
   */
  loadStateDict(dict: StateDict, options: LoadStateDictOptions = {}): LoadReport {
    const strict = options.strict ?? true;
    const seed = options.seed ?? 0;
    const problems: string[] = [];
    const report: LoadReport = { warnings: [], initialized: [], ignored: [] };

    for (const [name, t] of dict) {
      const p = this.byName.get(name);
      if (!p) {
        if (name === LM_HEAD_NAME) report.ignored.push(name);
        else if (strict) problems.push(`unexpected: ${name} ${formatShape(t.shape)}`);
        else {
          report.ignored.push(name);
          report.warnings.push(`ignored unexpected parameter ${name} ${formatShape(t.shape)}`);
        }
      } else if (!sameShape(t.shape, p.shape)) {
        problems.push(`shape mismatch: ${name} expected ${formatShape(p.shape)}, got ${formatShape(t.shape)}`);
      } else if (t.data.length !== shapeSize(t.shape)) {
        problems.push(`bad data: ${name} ${formatShape(t.shape)} needs ${shapeSize(t.shape)} values, has ${t.data.length}`);
      }
    }

    const isHead = (p: Param) => p.name.startsWith(`${HEAD_PREFIX}.`);
    const missing = this.params.filter((p) => !dict.has(p.name));
    const headAbsent = this.params.filter(isHead).every((p) => !dict.has(p.name));
    const toInit: Param[] = [];
    for (const p of missing) {
      if (headAbsent && isHead(p)) toInit.push(p);
      else if (strict) problems.push(`missing: ${p.name} ${formatShape(p.shape)}`);
      else if (!p.loaded) toInit.push(p);
    }
    if (problems.length > 0) {
      throw new CheckpointError(`state dict does not match the model (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n  ${problems.join('\n  ')}`);
    }

    for (const p of this.params) {
      const t = dict.get(p.name);
      if (t) p.load(t);
    }
    for (const p of toInit) {
      p.load(initParameter(p, seed));
      report.initialized.push(p.name);
    }
    if (headAbsent) report.warnings.push(`no ${HEAD_PREFIX}.* in the state dict: the regression head was initialised from seed ${seed}`);
    const others = report.initialized.filter((n) => !n.startsWith(`${HEAD_PREFIX}.`));
    if (others.length > 0) report.warnings.push(`${others.length} parameters missing from the state dict were initialised from seed ${seed}: ${others.join(', ')}`);

    const warn = options.onWarning ?? ((m: string) => modelLogger().warn(m));
    for (const w of report.warnings) warn(w);
    return report;
  }

  /** All weights in PyTorch layouts under their HF names (copies), module-tree order; no lm_head. */
  stateDict(): StateDict {
    const dict: StateDict = new Map();
    for (const p of this.params) dict.set(p.name, p.toState());
    return dict;
  }

  /** Name, PyTorch shape and trainability of every parameter, module-tree order. */
  namedParameters(): Array<{ name: string; shape: number[]; trainable: boolean }> {
    return this.params.map((p) => ({ name: p.name, shape: [...p.shape], trainable: p.trainable }));
  }

  /** The parameters themselves, module-tree order (their values are owned by the model). */
  parameters(): readonly Param[] {
    return this.params;
  }

  /** The trained variables (text model incl. embed_tokens, then the head), in module-tree order. */
  trainableVariables(): NamedVariable[] {
    return this.params.filter((p) => p.trainable).map((p) => ({ name: p.name, variable: p.variable }));
  }

  /** Normalised pixels [B, S, S, 3] → projected image features [B, (S/patch/scale)², D_text]. Frozen. */
  encodeImages(pixels: tf.Tensor4D): tf.Tensor3D {
    return tf.tidy(() => this.connector.apply(this.visionModel.apply(pixels)));
  }

  forward(inputs: RegressorInputs, options: ForwardOptions = {}): RegressorOutput {
    const plan = this.plan(inputs);
    const dropout = this.dropoutFor(plan, options);
    return tf.tidy(() => this.run(inputs, plan, dropout) as unknown as tf.TensorContainer) as unknown as RegressorOutput;
  }

  /** Final-norm decoder hidden states [B, L, D_text] (eval mode). */
  lastHiddenState(inputs: RegressorInputs): tf.Tensor3D {
    const plan = this.plan(inputs);
    return tf.tidy(() => this.hiddenStates(inputs, plan).hidden);
  }

  /**
   * MSE of the ratings against `targets` [B] and its gradients for the trainable variables only.
   * Training mode (dropout on, seeded by `dropoutSeed`) unless `training: false`.
   */
  lossAndGrads(batch: RegressorInputs, targets: tf.Tensor1D, options: ForwardOptions = {}): LossAndGrads {
    const plan = this.plan(batch);
    if (targets.rank !== 1 || targets.shape[0] !== plan.batch) {
      throw new ShapeError(`targets: expected [${plan.batch}], got [${targets.shape.join(', ')}]`);
    }
    const dropout = this.dropoutFor(plan, { ...options, training: options.training ?? true });
    registerModelGradients();
    const vars = this.trainableVariables();
    const { value, grads } = tf.variableGrads(
      () => tf.tidy(() => tf.mean(tf.square(tf.sub(this.run(batch, plan, dropout).rating, tf.cast(targets, 'float32'))))),
      vars.map((v) => v.variable),
    );
    const out = new Map<string, tf.Tensor>();
    try {
      const loss = value.dataSync()[0];
      for (const { name, variable } of vars) out.set(name, grads[variable.name] ?? tf.zerosLike(variable));
      return { loss, grads: out };
    } finally {
      value.dispose();
    }
  }

  dispose(): void {
    for (const p of this.params) p.dispose();
    this.textModel.disposeRopeTables();
  }

  /** Host-side checks of the batch, its mask and the image-merge index: no device reads. */
  private plan(inputs: RegressorInputs): InputPlan {
    const { tokens, imageFeatures, pixels } = inputs;
    const { batchSize: B, seqLen: L, inputIds, lengths, imagePositions } = tokens;
    if (inputIds.length !== B * L || lengths.length !== B) {
      throw new ShapeError(`tokens: ${inputIds.length} ids and ${lengths.length} lengths for [${B}, ${L}]`);
    }
    if (imageFeatures && pixels) throw new ShapeError('give either imageFeatures or pixels, not both');

    let imageRows = 0;
    if (imageFeatures) {
      const [fb, n, d] = imageFeatures.shape;
      if (imageFeatures.rank !== 3 || fb !== B || d !== this.config.text.hiddenSize) {
        throw new ShapeError(`imageFeatures: expected [${B}, N, ${this.config.text.hiddenSize}], got [${imageFeatures.shape.join(', ')}]`);
      }
      imageRows = n;
    } else if (pixels) {
      const [pb, h, w, c] = pixels.shape;
      const { patchSize } = this.config.vision;
      const s = this.config.scaleFactor;
      if (pixels.rank !== 4 || pb !== B || h !== w || c !== 3 || h % (patchSize * s) !== 0) {
        throw new ShapeError(`pixels: expected [${B}, S, S, 3] with S a multiple of ${patchSize * s}, got [${pixels.shape.join(', ')}]`);
      }
      imageRows = (h / patchSize / s) ** 2;
    }
    // Also without images: then the rows may hold no image positions.
    if (imagePositions.length !== B * imageRows) {
      throw new ShapeError(`tokens: ${imagePositions.length} <image> positions for ${B} rows, but ${imageRows} image rows per row are given`);
    }

    const { vocabSize } = this.config.text;
    for (let i = 0; i < inputIds.length; i++) {
      if (inputIds[i] < 0 || inputIds[i] >= vocabSize) throw new DataError(`inputIds: token id ${inputIds[i]} at [${Math.floor(i / L)}, ${i % L}] is outside [0, ${vocabSize})`);
    }
    // Positions run 0…L−1 over the row, so padding is on the right (docs/reference/model.md step 9).
    const attentionMask = new Int32Array(B * L);
    for (let b = 0; b < B; b++) {
      if (!(lengths[b] >= 1 && lengths[b] <= L)) throw new DataError(`tokens: row ${b} has length ${lengths[b]}, expected 1…${L}`);
      attentionMask.fill(1, b * L, b * L + lengths[b]);
    }
    const mergeIndex = imageRows > 0 ? imageMergeIndex(tokens, this.config.imageTokenId) : null;
    return { batch: B, seqLen: L, attentionMask, mergeIndex };
  }

  private dropoutFor(plan: InputPlan, options: ForwardOptions): Float32Array | null {
    const rate = this.config.regression.dropout;
    if (!options.training || rate === 0) return null;
    if (options.dropoutSeed === undefined) throw new ConfigError('training forward needs options.dropoutSeed (dropout masks are seeded explicitly)');
    return dropoutMask(options.dropoutSeed, plan.batch, this.regressionHead.hidden, rate);
  }

  /** Final-norm hidden states [B, L, D] and the mask [B, L] they were computed with. */
  private hiddenStates(inputs: RegressorInputs, plan: InputPlan): { hidden: tf.Tensor3D; mask: tf.Tensor2D } {
    const shape: [number, number] = [plan.batch, plan.seqLen];
    const mask = tf.tensor2d(plan.attentionMask, shape, 'int32');
    const tokenEmbeds = this.textModel.embed(tf.tensor2d(inputs.tokens.inputIds, shape, 'int32')); // [B, L, D], no scaling
    const features = inputs.imageFeatures ?? (inputs.pixels ? this.connector.apply(this.visionModel.apply(inputs.pixels)) : null);
    const embeds = features && plan.mergeIndex ? mergeImageFeatures(tokenEmbeds, features, plan.mergeIndex) : tokenEmbeds;
    return { hidden: this.textModel.apply(embeds, mask), mask };
  }

  private run(inputs: RegressorInputs, plan: InputPlan, dropout: Float32Array | null): RegressorOutput {
    const { hidden, mask } = this.hiddenStates(inputs, plan); // [B, L, D], [B, L]
    const pooled = maskedMeanPool(hidden, mask); // [B, D]
    const scale = dropout ? tf.tensor2d(dropout, [plan.batch, this.regressionHead.hidden]) : undefined;
    const { logit, rating } = this.regressionHead.apply(pooled, scale);
    return { pooled, logit, rating };
  }
}

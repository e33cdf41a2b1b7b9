/**
 * Building blocks shared by the modules: a named parameter that converts between the checkpoint's
 * PyTorch layout and tfjs's once, at load and at save; a scope that builds names from the module
 * tree (`model.text_model.layers.3.self_attn.q_proj.weight`); and Linear.
 */
import * as tf from '@tensorflow/tfjs-core';
import { CheckpointError, ShapeError } from '@smolrate/core';
import type { ParamGroup, ParamInit, ParamLayout } from './params.js';
import { assertStateTensor, formatShape, sameShape, shapeSize, type StateTensor } from './state-dict.js';

/** PyTorch shape → tfjs shape. */
export function tfjsShape(torchShape: readonly number[], layout: ParamLayout): number[] {
  if (layout === 'linear') {
    const [outF, inF] = torchShape;
    return [inF, outF];
  }
  if (layout === 'conv') {
    const [o, i, kh, kw] = torchShape;
    return [kh, kw, i, o];
  }
  return [...torchShape];
}

/** PyTorch-layout data → tfjs-layout data (a new array). */
export function toTfjsLayout(data: Float32Array, torchShape: readonly number[], layout: ParamLayout): Float32Array {
  const out = new Float32Array(data.length);
  if (layout === 'linear') {
    // [out, in] → [in, out]
    const [O, I] = torchShape;
    for (let o = 0; o < O; o++) for (let i = 0; i < I; i++) out[i * O + o] = data[o * I + i];
  } else if (layout === 'conv') {
    // [o, i, kh, kw] → [kh, kw, i, o]: the transpose [2,3,1,0] of docs/reference/model.md step 2
    const [O, I, KH, KW] = torchShape;
    for (let o = 0; o < O; o++)
      for (let i = 0; i < I; i++)
        for (let y = 0; y < KH; y++)
          for (let x = 0; x < KW; x++) out[((y * KW + x) * I + i) * O + o] = data[((o * I + i) * KH + y) * KW + x];
  } else {
    out.set(data);
  }
  return out;
}

/** tfjs-layout data → PyTorch-layout data (a new array); inverse of toTfjsLayout. */
export function toTorchLayout(data: Float32Array | Int32Array | Uint8Array, torchShape: readonly number[], layout: ParamLayout): Float32Array {
  const out = new Float32Array(data.length);
  if (layout === 'linear') {
    const [O, I] = torchShape;
    for (let o = 0; o < O; o++) for (let i = 0; i < I; i++) out[o * I + i] = data[i * O + o];
  } else if (layout === 'conv') {
    const [O, I, KH, KW] = torchShape;
    for (let o = 0; o < O; o++)
      for (let i = 0; i < I; i++)
        for (let y = 0; y < KH; y++)
          for (let x = 0; x < KW; x++) out[((o * I + i) * KH + y) * KW + x] = data[((y * KW + x) * I + i) * O + o];
  } else {
    out.set(data);
  }
  return out;
}

/**
 * One named parameter. Holds its value in the tfjs layout: a trainable `tf.Variable` for the
 * trained parts, a plain kept tensor for the frozen ones. Empty until loaded, so building the
 * module tree (e.g. to list or count the parameters of the 256M model) allocates no tensors.
 */
export class Param {
  private tensor: tf.Tensor | null = null;

  constructor(
    readonly name: string,
    /** PyTorch (checkpoint) shape. */
    readonly shape: number[],
    readonly layout: ParamLayout,
    readonly init: ParamInit,
    readonly group: ParamGroup,
  ) {}

  /** Trained by smolrate: the text model (incl. embed_tokens) and the regression head. */
  get trainable(): boolean {
    return this.group === 'text' || this.group === 'head';
  }

  get loaded(): boolean {
    return this.tensor !== null;
  }

  /** The value in the tfjs layout. */
  get value(): tf.Tensor {
    if (this.tensor === null) throw new CheckpointError(`parameter ${this.name} has not been loaded`);
    return this.tensor;
  }

  get variable(): tf.Variable {
    if (!this.trainable) throw new TypeError(`parameter ${this.name} is frozen: it has no variable`);
    return this.value as tf.Variable;
  }

  /** Sets the value from PyTorch-layout data (converted here, once). */
  load(t: StateTensor): void {
    assertStateTensor(this.name, t);
    if (!sameShape(t.shape, this.shape)) {
      throw new ShapeError(`${this.name}: expected shape ${formatShape(this.shape)}, got ${formatShape(t.shape)}`);
    }
    const shape = tfjsShape(this.shape, this.layout);
    const fresh = tf.tensor(toTfjsLayout(t.data, this.shape, this.layout), shape, 'float32');
    if (this.trainable) {
      if (this.tensor !== null) {
        (this.tensor as tf.Variable).assign(fresh);
      } else {
        this.tensor = tf.variable(fresh, true);
      }
      fresh.dispose(); // the variable holds its own reference to the data
    } else {
      this.tensor?.dispose();
      this.tensor = tf.keep(fresh);
    }
  }

  /** The value as PyTorch-layout data (a copy). */
  toState(): StateTensor {
    return { shape: [...this.shape], data: toTorchLayout(this.value.dataSync(), this.shape, this.layout) };
  }

  get size(): number {
    return shapeSize(this.shape);
  }

  dispose(): void {
    this.tensor?.dispose();
    this.tensor = null;
  }
}

/** Builds parameter names from the module tree and registers parameters in creation order. */
export class ParamScope {
  private constructor(
    private readonly registry: Param[],
    readonly prefix: string,
    readonly group: ParamGroup,
  ) {}

  static root(registry: Param[], prefix: string, group: ParamGroup): ParamScope {
    return new ParamScope(registry, prefix, group);
  }

  child(name: string | number): ParamScope {
    return new ParamScope(this.registry, this.prefix ? `${this.prefix}.${name}` : String(name), this.group);
  }

  param(name: string, shape: number[], init: ParamInit, layout: ParamLayout = 'plain'): Param {
    const p = new Param(this.prefix ? `${this.prefix}.${name}` : name, shape, layout, init, this.group);
    this.registry.push(p);
    return p;
  }
}

/** PyTorch nn.Linear: y = x·Wᵀ + b over the last axis (W held as tfjs [in, out]). */
export class Linear {
  readonly weight: Param;
  readonly bias: Param | null;

  constructor(
    scope: ParamScope,
    readonly inFeatures: number,
    readonly outFeatures: number,
    options: { bias: boolean },
  ) {
    this.weight = scope.param('weight', [outFeatures, inFeatures], 'normal', 'linear');
    this.bias = options.bias ? scope.param('bias', [outFeatures], 'zeros') : null;
  }

  apply(x: tf.Tensor): tf.Tensor {
    const lead = x.shape.slice(0, -1);
    const y = tf.matMul(tf.reshape(x, [-1, this.inFeatures]), this.weight.value as tf.Tensor2D); // [*, out]
    return tf.reshape(this.bias ? tf.add(y, this.bias.value) : y, [...lead, this.outFeatures]);
  }
}

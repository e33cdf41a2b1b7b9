/**
 * Gradient configs beyond gradients.ts's MODEL_GRADIENTS (the model's own trained path): the rest
 * of the ops the op probe (op-probe.ts) differentiates — element-wise math, reductions, slicing,
 * tiling, conv2d, comparisons — so any backend `initBackend` sets up can run a training step
 * built from them. tfjs-core's Node bundle registers no gradients at all (see gradients.ts); the
 * configs below follow tfjs-core 4.22's formulas (Apache-2.0, © Google LLC) on the public API,
 * except `StridedSlice` (no gradient upstream), a rank-generic `Tile`, and zero gradients for
 * comparisons / logic (upstream has only GreaterEqual, so `tf.where(tf.greater(x, 0), x, y)`
 * with x on the tape fails with "gradient function not found for Greater").
 * Registration only fills gaps: a gradient registered earlier (by gradients.ts, or by the
 * `@tensorflow/tfjs` union package that tfjs-node loads) stays.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { GradConfig, NamedAttrMap, Tensor } from '@tensorflow/tfjs-core';
import { registerModelGradients } from './gradients.js';

const bu = tf.backend_util;

/** Sums `dy` over the axes that broadcasting expanded, back to `shape`. */
function unbroadcast(dy: Tensor, shape: number[], outShape: number[]): Tensor {
  const axes = bu.getReductionAxes(shape, outShape);
  return tf.reshape(axes.length > 0 ? tf.sum(dy, axes) : dy, shape);
}

function binaryGrad(kernelName: string, derA: (dy: Tensor, a: Tensor, b: Tensor) => Tensor, derB: (dy: Tensor, a: Tensor, b: Tensor) => Tensor): GradConfig {
  return {
    kernelName,
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, saved) => {
      const [a, b] = saved;
      const g = dy as Tensor;
      const outShape = bu.assertAndGetBroadcastShape(a.shape, b.shape);
      return { a: () => unbroadcast(derA(g, a, b), a.shape, outShape), b: () => unbroadcast(derB(g, a, b), b.shape, outShape) };
    },
  };
}

/** d/dx of an element-wise op of the saved input x. */
function unaryFromInput(kernelName: string, der: (dy: Tensor, x: Tensor) => Tensor): GradConfig {
  return { kernelName, inputsToSave: ['x'], gradFunc: (dy, saved) => ({ x: () => der(dy as Tensor, saved[0]) }) };
}

/** d/dx of an element-wise op expressed with its saved output y. */
function unaryFromOutput(kernelName: string, der: (dy: Tensor, y: Tensor) => Tensor): GradConfig {
  return { kernelName, outputsToSave: [true], gradFunc: (dy, saved) => ({ x: () => der(dy as Tensor, saved[0]) }) };
}

/** Piecewise-constant ops: zero gradient. */
function zeroGrad(kernelName: string): GradConfig {
  return { kernelName, gradFunc: (dy) => ({ x: () => tf.zerosLike(dy as Tensor) }) };
}

/** Boolean-valued binary ops: zero gradient to both inputs. */
function zeroGrad2(kernelName: string): GradConfig {
  return { kernelName, inputsToSave: ['a', 'b'], gradFunc: (_dy, saved) => ({ a: () => tf.zerosLike(saved[0]), b: () => tf.zerosLike(saved[1]) }) };
}

const f32 = (x: Tensor) => tf.cast(x, 'float32');

function attrsOf<T>(attrs: NamedAttrMap): T {
  return attrs as unknown as T;
}

/** As tfjs-core's gradForMinAndMax: the gradient flows to every position equal to the extremum. */
function minMaxGrad(dy: Tensor, y: Tensor, x: Tensor, axes: number[]): Tensor {
  const yk = y.rank < x.rank ? tf.reshape(y, bu.expandShapeToKeepDim(y.shape, axes)) : y;
  const dyk = dy.rank < x.rank ? tf.reshape(dy, bu.expandShapeToKeepDim(dy.shape, axes)) : dy;
  return tf.mul(dyk, tf.cast(tf.equal(x, yk), dy.dtype));
}

/** Gradient of a product over `axes`: move them last, flatten, exclusive cumprods from both sides. */
function prodGrad(x: Tensor, dy: Tensor, axes: number[]): Tensor {
  const perm = bu.getAxesPermutation(axes, x.rank);
  const px = perm == null ? x : tf.transpose(x, perm);
  const shape = px.shape.slice();
  const removed = shape.splice(x.rank - axes.length, axes.length);
  shape.push(removed.reduce((p, c) => p * c, 1));
  const flat = tf.reshape(px, shape);
  const last = shape.length - 1;
  const dyShape = shape.slice();
  dyShape[last] = 1;
  const g = tf.mul(tf.reshape(dy, dyShape), tf.mul(tf.cumprod(flat, last, true, false), tf.cumprod(flat, last, true, true)));
  const back = tf.reshape(g, px.shape);
  return perm == null ? back : tf.transpose(back, bu.getUndoAxesPermutation(perm));
}

type ConvAttrs = {
  dilations?: number | [number, number];
  strides: number | [number, number];
  pad: 'valid' | 'same' | number;
  dataFormat: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
};

function conv2dBackpropFilter(x: Tensor, dy: Tensor, filterShape: number[], a: ConvAttrs): Tensor {
  // Not a public op in tfjs-core; the kernel is (wasm: wasm-kernels.ts).
  const attrs = { strides: a.strides, pad: a.pad, dataFormat: a.dataFormat, dimRoundingMode: a.dimRoundingMode, filterShape };
  return tf.engine().runKernel<Tensor>('Conv2DBackpropFilter', { x, dy }, attrs as unknown as NamedAttrMap);
}

const configs: GradConfig[] = [
  // --- arithmetic ---
  binaryGrad('FloorDiv', (dy, _a, b) => tf.div(dy, f32(b)), (dy, a, b) => tf.neg(tf.div(tf.mul(dy, f32(a)), f32(tf.square(b))))),
  binaryGrad('Mod', (dy) => dy, (dy, a, b) => tf.mul(dy, tf.neg(tf.floor(tf.div(a, b))))),
  binaryGrad('SquaredDifference', (dy, a, b) => tf.mul(dy, tf.mul(2, tf.sub(a, b))), (dy, a, b) => tf.mul(dy, tf.mul(2, tf.sub(b, a)))),
  binaryGrad('Maximum', (dy, a, b) => tf.mul(dy, f32(tf.greaterEqual(a, b))), (dy, a, b) => tf.mul(dy, f32(tf.less(a, b)))),
  binaryGrad('Minimum', (dy, a, b) => tf.mul(dy, f32(tf.lessEqual(a, b))), (dy, a, b) => tf.mul(dy, f32(tf.greater(a, b)))),
  {
    kernelName: 'Pow',
    inputsToSave: ['a', 'b'],
    outputsToSave: [true],
    gradFunc: (dy, saved) => {
      const [base, exp, y] = saved;
      const g = dy as Tensor;
      const outShape = bu.assertAndGetBroadcastShape(base.shape, exp.shape);
      return {
        a: () => {
          const e = f32(exp);
          return unbroadcast(tf.mul(g, tf.mul(e, tf.pow(base, tf.sub(e, 1)))), base.shape, outShape);
        },
        b: () => {
          const logBase = tf.where(tf.greater(base, 0), tf.log(base), tf.zerosLike(base));
          return unbroadcast(tf.mul(g, tf.mul(y, logBase)), exp.shape, outShape);
        },
      };
    },
  },
  {
    kernelName: 'AddN',
    saveAllInputs: true,
    gradFunc: (dy, saved) => Object.fromEntries(saved.map((_, i) => [String(i), () => (dy as Tensor).clone()])),
  },

  // --- element-wise math ---
  unaryFromInput('Abs', (dy, x) => tf.mul(dy, tf.step(f32(x), -1))),
  unaryFromOutput('Exp', (dy, y) => tf.mul(dy, y)),
  unaryFromInput('Expm1', (dy, x) => tf.mul(dy, tf.exp(x))),
  unaryFromInput('Log', (dy, x) => tf.div(dy, f32(x))),
  unaryFromInput('Log1p', (dy, x) => tf.div(dy, tf.add(x, 1))),
  unaryFromInput('Sqrt', (dy, x) => tf.div(dy, tf.mul(tf.sqrt(f32(x)), 2))),
  unaryFromInput('Reciprocal', (dy, x) => tf.div(dy, tf.neg(tf.square(x)))),
  unaryFromInput('Softplus', (dy, x) => tf.mul(dy, tf.sigmoid(x))),
  unaryFromInput('Erf', (dy, x) => tf.mul(dy, tf.mul(tf.exp(tf.neg(tf.square(x))), 2 / Math.sqrt(Math.PI)))),
  unaryFromInput('Sin', (dy, x) => tf.mul(tf.cos(f32(x)), dy)),
  unaryFromInput('Cos', (dy, x) => tf.mul(tf.neg(tf.sin(f32(x))), dy)),
  unaryFromInput('Tan', (dy, x) => tf.div(dy, tf.square(tf.cos(x)))),
  unaryFromInput('Relu6', (dy, x) => tf.mul(dy, f32(tf.mul(tf.lessEqual(x, 6), tf.step(x))))),
  unaryFromInput('Selu', (dy, x) =>
    tf.where(tf.greater(x, 0), tf.mul(dy, bu.SELU_SCALE), tf.mul(tf.mul(dy, bu.SELU_SCALEALPHA), tf.exp(f32(x))))),
  {
    kernelName: 'LeakyRelu',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const { alpha } = attrsOf<{ alpha: number }>(attrs);
      return { x: () => tf.where(tf.greater(saved[0], 0), dy as Tensor, tf.mul(dy as Tensor, alpha)) };
    },
  },
  {
    kernelName: 'Prelu',
    inputsToSave: ['x', 'alpha'],
    gradFunc: (dy, saved) => {
      const [x, alpha] = saved;
      const g = dy as Tensor;
      const mask = tf.greater(x, 0);
      return {
        x: () => tf.where(mask, g, tf.mul(g, alpha)),
        alpha: () => unbroadcast(tf.where(mask, tf.zerosLike(g), tf.mul(g, x)), alpha.shape, g.shape),
      };
    },
  },
  {
    kernelName: 'Elu',
    outputsToSave: [true],
    gradFunc: (dy, saved) => ({ x: () => tf.engine().runKernel<Tensor>('EluGrad', { dy: dy as Tensor, y: saved[0] }) }),
  },
  {
    kernelName: 'ClipByValue',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const { clipValueMin, clipValueMax } = attrsOf<{ clipValueMin: number; clipValueMax: number }>(attrs);
      const x = saved[0];
      return { x: () => tf.where(tf.logicalAnd(tf.greaterEqual(x, clipValueMin), tf.lessEqual(x, clipValueMax)), dy as Tensor, tf.zerosLike(dy as Tensor)) };
    },
  },
  ...['Ceil', 'Floor', 'Round', 'Sign', 'Step', 'IsNan', 'IsInf', 'IsFinite', 'OnesLike', 'ZerosLike', 'LogicalNot'].map(zeroGrad),
  ...['Greater', 'GreaterEqual', 'Less', 'LessEqual', 'Equal', 'NotEqual', 'LogicalAnd', 'LogicalOr', 'LogicalXor'].map(zeroGrad2),
  { kernelName: 'ArgMax', inputsToSave: ['x'], gradFunc: (_dy, saved) => ({ x: () => tf.zerosLike(saved[0]) }) },
  { kernelName: 'ArgMin', inputsToSave: ['x'], gradFunc: (_dy, saved) => ({ x: () => tf.zerosLike(saved[0]) }) },
  { kernelName: 'OneHot', inputsToSave: ['indices'], gradFunc: (_dy, saved) => ({ indices: () => tf.zeros(saved[0].shape, 'float32') }) },
  {
    kernelName: 'Select',
    inputsToSave: ['condition'],
    gradFunc: (dy, saved) => {
      const [condition] = saved;
      const g = dy as Tensor;
      return {
        condition: () => f32(tf.zerosLike(condition)),
        t: () => tf.mul(g, tf.cast(condition, g.dtype)),
        e: () => tf.mul(g, tf.cast(tf.logicalNot(condition), g.dtype)),
      };
    },
  },
  { kernelName: 'Identity', gradFunc: (dy) => ({ x: () => f32(dy as Tensor) }) },

  // --- reductions ---
  {
    kernelName: 'Max',
    inputsToSave: ['x'],
    outputsToSave: [true],
    gradFunc: (dy, saved, attrs) => {
      const [x, y] = saved;
      const axes = tf.util.parseAxisParam(attrsOf<{ reductionIndices: number | number[] }>(attrs).reductionIndices, x.shape);
      return { x: () => minMaxGrad(dy as Tensor, y, x, axes) };
    },
  },
  {
    kernelName: 'Min',
    inputsToSave: ['x'],
    outputsToSave: [true],
    gradFunc: (dy, saved, attrs) => {
      const [x, y] = saved;
      const axes = tf.util.parseAxisParam(attrsOf<{ axis: number | number[] }>(attrs).axis, x.shape);
      return { x: () => minMaxGrad(dy as Tensor, y, x, axes) };
    },
  },
  {
    kernelName: 'Prod',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved;
      const { axis } = attrsOf<{ axis?: number | number[] | null }>(attrs);
      const axes = axis == null ? x.shape.map((_, i) => i) : tf.util.parseAxisParam(axis, x.shape);
      return { x: () => prodGrad(x, dy as Tensor, axes) };
    },
  },
  {
    kernelName: 'Cumsum',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const { axis, exclusive, reverse } = attrsOf<{ axis: number; exclusive: boolean; reverse: boolean }>(attrs);
      const perm = bu.getAxesPermutation([axis], saved[0].rank);
      return {
        x: () => {
          const out = tf.cumsum(dy as Tensor, axis, exclusive, !reverse);
          return perm == null ? out : tf.transpose(out, perm);
        },
      };
    },
  },
  {
    // tf.logSoftmax is a customGrad op in 4.22; this covers a backend that runs the kernel.
    kernelName: 'LogSoftmax',
    outputsToSave: [true],
    gradFunc: (dy, saved, attrs) => {
      const { axis } = attrsOf<{ axis: number }>(attrs);
      return { logits: () => tf.sub(dy as Tensor, tf.mul(tf.sum(dy as Tensor, axis, true), tf.exp(saved[0]))) };
    },
  },

  // --- convolution ---
  {
    kernelName: 'Conv2D',
    inputsToSave: ['x', 'filter'],
    gradFunc: (dy, saved, attrs) => {
      const [x, filter] = saved;
      const a = attrsOf<ConvAttrs>(attrs);
      const d = a.dilations === undefined ? [1, 1] : typeof a.dilations === 'number' ? [a.dilations, a.dilations] : a.dilations;
      if (d.some((v) => v !== 1)) throw new Error(`gradient of conv2d: dilations > 1 are not supported, got [${d}]`);
      return {
        x: () =>
          tf.engine().runKernel<Tensor>('Conv2DBackpropInput', { dy: dy as Tensor, filter }, {
            strides: a.strides, pad: a.pad, dataFormat: a.dataFormat, dimRoundingMode: a.dimRoundingMode, inputShape: x.shape,
          } as unknown as NamedAttrMap),
        filter: () => conv2dBackpropFilter(x, dy as Tensor, filter.shape, a),
      };
    },
  },
  {
    kernelName: 'Conv2DBackpropInput',
    inputsToSave: ['dy', 'filter'],
    gradFunc: (ddx, saved, attrs) => {
      const [dy, filter] = saved;
      const a = attrsOf<ConvAttrs>(attrs);
      return {
        dy: () => tf.conv2d(ddx as tf.Tensor4D, filter as tf.Tensor4D, a.strides, a.pad, a.dataFormat, 1, a.dimRoundingMode),
        filter: () => conv2dBackpropFilter(ddx as Tensor, dy, filter.shape, a),
      };
    },
  },

  // --- shape and indexing ---
  { kernelName: 'ExpandDims', inputsToSave: ['input'], gradFunc: (dy, saved) => ({ input: () => tf.reshape(dy as Tensor, saved[0].shape) }) },
  {
    kernelName: 'Pack',
    saveAllInputs: true,
    gradFunc: (dy, _saved, attrs) => {
      const parts = tf.unstack(dy as Tensor, attrsOf<{ axis: number }>(attrs).axis);
      return Object.fromEntries(parts.map((t, i) => [String(i), () => t]));
    },
  },
  { kernelName: 'Unpack', gradFunc: (dy, _saved, attrs) => ({ value: () => tf.stack(dy as Tensor[], attrsOf<{ axis: number }>(attrs).axis) }) },
  {
    kernelName: 'Slice',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved;
      const { begin, size } = attrsOf<{ begin: number | number[]; size: number | number[] }>(attrs);
      const [b, s] = tf.slice_util.parseSliceParams(x, begin, size);
      const paddings = x.shape.map((dim, i) => [b[i], dim - b[i] - s[i]] as [number, number]);
      return { x: () => tf.pad(dy as Tensor, paddings) };
    },
  },
  {
    // Strided slicing is linear; its transpose scatters dy back to the flat positions that the
    // same slice picks out of an index ramp — every mask and (negative) stride handled alike.
    kernelName: 'StridedSlice',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved;
      return {
        x: () => {
          const ramp = tf.reshape(tf.range(0, x.size, 1, 'int32'), x.shape);
          const picked = tf.engine().runKernel<Tensor>('StridedSlice', { x: ramp }, attrs);
          const flat = tf.unsortedSegmentSum(tf.reshape(dy as Tensor, [-1]), tf.reshape(picked, [-1]), x.size);
          return tf.reshape(flat, x.shape);
        },
      };
    },
  },
  {
    kernelName: 'PadV2',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const begin = attrsOf<{ paddings: Array<[number, number]> }>(attrs).paddings.map((p) => p[0]);
      return { x: () => tf.slice(dy as Tensor, begin, saved[0].shape) };
    },
  },
  {
    kernelName: 'MirrorPad',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      // As upstream: only the interior is credited (reflected copies are not folded back).
      const begin = attrsOf<{ paddings: Array<[number, number]> }>(attrs).paddings.map((p) => p[0]);
      return { x: () => tf.slice(dy as Tensor, begin, saved[0].shape) };
    },
  },
  {
    kernelName: 'Reverse',
    gradFunc: (dy, _saved, attrs) => ({ x: () => tf.reverse(dy as Tensor, tf.util.parseAxisParam(attrsOf<{ dims: number | number[] }>(attrs).dims, (dy as Tensor).shape)) }),
  },
  {
    // Rank-generic (upstream: ranks ≤ 4, one slice + add per repetition): view dy as
    // [r0, s0, r1, s1, …] and sum the repetition axes.
    kernelName: 'Tile',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved;
      const { reps } = attrsOf<{ reps: number[] }>(attrs);
      return { x: () => tf.sum(tf.reshape(dy as Tensor, x.shape.flatMap((s, i) => [reps[i], s])), x.shape.map((_, i) => 2 * i)) };
    },
  },
  {
    kernelName: 'BroadcastTo',
    gradFunc: (dy, _saved, attrs) => {
      const { inputShape, shape } = attrsOf<{ inputShape: number[]; shape: number[] }>(attrs);
      const offset = shape.length - inputShape.length;
      const axes: number[] = [];
      for (let i = 0; i < shape.length; i++) if (i < offset || (inputShape[i - offset] === 1 && shape[i] > 1)) axes.push(i);
      return { x: () => tf.reshape(axes.length > 0 ? tf.sum(dy as Tensor, axes) : (dy as Tensor), inputShape) };
    },
  },
  {
    kernelName: 'UnsortedSegmentSum',
    inputsToSave: ['segmentIds'],
    gradFunc: (dy, saved) => {
      const [ids] = saved;
      return {
        x: () => {
          // Gather dy rows by segment id; negative ids (dropped by the forward) get 0.
          const gathered = tf.gather(dy as Tensor, tf.maximum(ids, tf.zerosLike(ids)));
          let keep = tf.greaterEqual(ids, tf.scalar(0, 'int32'));
          while (keep.rank < gathered.rank) keep = tf.expandDims(keep, keep.rank);
          return tf.where(tf.logicalAnd(keep, tf.ones(gathered.shape, 'bool')), gathered, tf.zerosLike(gathered));
        },
      };
    },
  },
];

/** Kernel names whose gradients this file supplies (beyond MODEL_GRADIENTS). */
export const TRAINING_GRADIENT_KERNELS: readonly string[] = configs.map((c) => c.kernelName);

/**
 * Registers MODEL_GRADIENTS (gradients.ts) and the configs above wherever a kernel has no
 * gradient yet. Idempotent; returns the kernel names this call registered from this file.
 */
export function registerTrainingGradients(): string[] {
  registerModelGradients();
  const added: string[] = [];
  for (const config of configs) {
    if (tf.getGradient(config.kernelName) != null) continue;
    tf.registerGradient(config);
    added.push(config.kernelName);
  }
  return added;
}

/**
 * Single-core throughput of the AdamW8bit update (the wasm kernels of adamw-kernel.ts) on one
 * large tensor: the 8-bit path (block-wise 8-bit m and v), the fp32-state path, the copy overhead
 * of streaming the tensors through wasm memory (the same copies without the kernel), and a plain
 * memory-bandwidth baseline (Float32Array/Uint8Array `set` of every array the 8-bit step reads
 * and writes, once). Prints params/s, ratios and the time of a full 134,755,201-parameter step.
 *
 * The pre-kernel JS loops are not timed here: they are the specs' reference oracle and live in
 * tests/adamw-reference.ts (outside the shipped sources); `npx tsx
 * packages/trainer/tests/bench-reference.ts` times them on the same inputs.
 */
import { flagNumber, parseArgs, Rng, UsageError, type CommandSpec } from '@smolrate/core';
import { step8bitKernel, stepFp32Kernel, stepScalars, type Q8State, type StepScalars } from './adamw-kernel.js';
import { SIGNED_CODE, UNSIGNED_CODE } from './quant-tables.js';

/** Trainable parameters of the full model (one optimizer step updates all of them). */
export const FULL_MODEL_PARAMS = 134_755_201;

export interface BenchOptimizerOptions {
  params: number;
  blockSize: number;
  repeats: number;
}

export interface BenchTiming {
  /** Fastest repeat, seconds per step over `params` elements. */
  bestSeconds: number;
  medianSeconds: number;
  /** params / bestSeconds. */
  paramsPerSecond: number;
}

export interface BenchOptimizerResult extends BenchOptimizerOptions {
  wasm8bit: BenchTiming;
  wasmFp32: BenchTiming;
  /** The 8-bit step's copies into and out of wasm memory, without the kernel. */
  copyOnly8bit: BenchTiming;
  copyOnlyFp32: BenchTiming;
  /** One `set` of each array the 8-bit step touches (param, grad, codes): the bandwidth floor. */
  memcpyBaseline: BenchTiming;
  /** copyOnly / step time. */
  copyShare8bit: number;
  copyShareFp32: number;
  /** step time / memcpy baseline time. */
  wasm8bitVsMemcpy: number;
  wasmFp32VsMemcpy: number;
  /** Seconds for a FULL_MODEL_PARAMS step, all-8-bit and all-fp32 state. */
  fullStep8bitSeconds: number;
  fullStepFp32Seconds: number;
}

/** Seeded inputs of the benchmark: a realistic parameter, gradient and (non-zero) moment state. */
export interface BenchInputs {
  param: Float32Array;
  grad: Float32Array;
  q8: Q8State;
  m: Float32Array;
  v: Float32Array;
  scalars: (t: number) => StepScalars;
}


/** AdamW8bit's scalars of step t for lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 1e-2. */
const defaultScalars = (t: number): StepScalars => stepScalars(t, 1e-3, { betas: [0.9, 0.999], eps: 1e-8, weightDecay: 1e-2 });

export function makeBenchInputs(params: number, blockSize: number, seed = 1): BenchInputs {
  const rng = new Rng(seed, 'bench-optimizer');
  const param = new Float32Array(params);
  const grad = new Float32Array(params);
  for (let i = 0; i < params; i++) {
    param[i] = 0.02 * rng.normal();
    grad[i] = 1e-3 * rng.normal();
  }
  const blocks = Math.ceil(params / blockSize);
  const q8: Q8State = {
    mCodes: new Uint8Array(params).fill(SIGNED_CODE.zeroCode),
    vCodes: new Uint8Array(params).fill(UNSIGNED_CODE.zeroCode),
    mAbsmax: new Float32Array(blocks),
    vAbsmax: new Float32Array(blocks),
  };
  const m = new Float32Array(params);
  const v = new Float32Array(params);
  // Two warm-up steps so the timed ones start from a populated state (and the kernel is compiled).
  for (let t = 1; t <= 2; t++) {
    step8bitKernel(param.slice(), grad, q8, blockSize, defaultScalars(t));
    stepFp32Kernel(param.slice(), grad, m, v, defaultScalars(t));
  }
  return { param, grad, q8, m, v, scalars: (t) => defaultScalars(t + 2) };
}

/** Times `fn(i)` `repeats` times (after one untimed call). */
export function timeRepeats(params: number, repeats: number, fn: (i: number) => void): BenchTiming {
  fn(0);
  const secs: number[] = [];
  for (let i = 1; i <= repeats; i++) {
    const t0 = process.hrtime.bigint();
    fn(i);
    secs.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  secs.sort((a, b) => a - b);
  const bestSeconds = secs[0];
  const mid = secs.length >> 1;
  const medianSeconds = secs.length % 2 === 1 ? secs[mid] : (secs[mid - 1] + secs[mid]) / 2;
  return { bestSeconds, medianSeconds, paramsPerSecond: params / bestSeconds };
}

function runOptimizerBench(opts: BenchOptimizerOptions): BenchOptimizerResult {
  const { params, blockSize, repeats } = opts;
  const inp = makeBenchInputs(params, blockSize);
  const { param, grad, q8, m, v } = inp;
  // Every step updates the state in place (a real training sequence), from the same gradient.
  const wasm8bit = timeRepeats(params, repeats, (i) => step8bitKernel(param, grad, q8, blockSize, inp.scalars(i + 1)));
  const wasmFp32 = timeRepeats(params, repeats, (i) => stepFp32Kernel(param, grad, m, v, inp.scalars(i + 1)));
  const copyOnly8bit = timeRepeats(params, repeats, () => step8bitKernel(param, grad, q8, blockSize, null));
  const copyOnlyFp32 = timeRepeats(params, repeats, () => stepFp32Kernel(param, grad, m, v, null));
  const dst = { p: new Float32Array(params), g: new Float32Array(params), mc: new Uint8Array(params), vc: new Uint8Array(params) };
  const memcpyBaseline = timeRepeats(params, repeats, () => {
    dst.p.set(param);
    dst.g.set(grad);
    dst.mc.set(q8.mCodes);
    dst.vc.set(q8.vCodes);
  });
  return {
    ...opts,
    wasm8bit,
    wasmFp32,
    copyOnly8bit,
    copyOnlyFp32,
    memcpyBaseline,
    copyShare8bit: copyOnly8bit.bestSeconds / wasm8bit.bestSeconds,
    copyShareFp32: copyOnlyFp32.bestSeconds / wasmFp32.bestSeconds,
    wasm8bitVsMemcpy: wasm8bit.bestSeconds / memcpyBaseline.bestSeconds,
    wasmFp32VsMemcpy: wasmFp32.bestSeconds / memcpyBaseline.bestSeconds,
    fullStep8bitSeconds: FULL_MODEL_PARAMS / wasm8bit.paramsPerSecond,
    fullStepFp32Seconds: FULL_MODEL_PARAMS / wasmFp32.paramsPerSecond,
  };
}

function formatOptimizerBench(r: BenchOptimizerResult): string {
  const row = (name: string, t: BenchTiming, note: string) =>
    `${name.padEnd(34)}${(t.bestSeconds * 1e3).toFixed(1).padStart(9)}${(t.medianSeconds * 1e3).toFixed(1).padStart(11)}` +
    `${(t.paramsPerSecond / 1e6).toFixed(1).padStart(12)}  ${note}`;
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  return [
    `AdamW update, ${r.params.toLocaleString('en-US')} params, blockSize ${r.blockSize}, ${r.repeats} repeats, one core`,
    `${'path'.padEnd(34)}${'best ms'.padStart(9)}${'median ms'.padStart(11)}${'M params/s'.padStart(12)}`,
    row('8-bit state (wasm kernel)', r.wasm8bit, `${r.wasm8bitVsMemcpy.toFixed(1)}x memcpy`),
    row('fp32 state (wasm kernel)', r.wasmFp32, `${r.wasmFp32VsMemcpy.toFixed(1)}x memcpy`),
    row('  copies only, 8-bit step', r.copyOnly8bit, `${pct(r.copyShare8bit)} of the 8-bit step`),
    row('  copies only, fp32 step', r.copyOnlyFp32, `${pct(r.copyShareFp32)} of the fp32 step`),
    row('memcpy baseline (param+grad+codes)', r.memcpyBaseline, 'TypedArray.set, 10 bytes/param'),
    `full ${FULL_MODEL_PARAMS.toLocaleString('en-US')}-param step: ${r.fullStep8bitSeconds.toFixed(3)} s with 8-bit state, ` +
      `${r.fullStepFp32Seconds.toFixed(3)} s with fp32 state`,
  ].join('\n');
}

export const benchOptimizerCommand: CommandSpec = {
  summary: 'single-core throughput of the AdamW8bit update kernels (params/s, copy overhead, full-model step time)',
  usage: [
    'options:',
    '  --params N        elements of the benchmark tensor (default 16777216 = 16 Mi)',
    '  --block-size N    8-bit absmax block (default 256)',
    '  --repeats N       timed steps per path after one warm-up (default 5; best and median reported)',
    '  --json            print JSON',
  ].join('\n'),
  async run(argv) {
    const args = parseArgs(argv, ['json']);
    const params = flagNumber(args, 'params', 16 * 1024 * 1024)!;
    const blockSize = flagNumber(args, 'blockSize', 256)!;
    const repeats = flagNumber(args, 'repeats', 5)!;
    for (const [name, value] of [
      ['params', params],
      ['block-size', blockSize],
      ['repeats', repeats],
    ] as const) {
      if (!Number.isSafeInteger(value) || value < 1) throw new UsageError(`--${name} must be a positive integer, got ${value}`);
    }
    const result = runOptimizerBench({ params, blockSize, repeats });
    process.stdout.write((args.flags.json === true ? JSON.stringify(result, null, 2) : formatOptimizerBench(result)) + '\n');
    return 0;
  },
};

/**
 * The JS reference loops (adamw-reference.ts, the specs' oracle for the wasm kernel) against the
 * kernel, on the inputs of `bench-optimizer`, plus a byte-identity check of
 * one step of each path at that size. Not a test; run with
 *   npx tsx packages/trainer/tests/bench-reference.ts [--params N] [--block-size N] [--repeats N]
 */
import { flagNumber, parseArgs } from '@smolrate/core';
import { step8bitKernel, stepFp32Kernel, type Q8State } from '../src/adamw-kernel.js';
import { FULL_MODEL_PARAMS, makeBenchInputs, timeRepeats, type BenchTiming } from '../src/bench-optimizer.js';
import { step8bitReference, stepFp32Reference } from './adamw-reference.js';

const args = parseArgs(process.argv.slice(2));
const params = flagNumber(args, 'params', 16 * 1024 * 1024)!;
const blockSize = flagNumber(args, 'blockSize', 256)!;
const repeats = flagNumber(args, 'repeats', 3)!;

const inp = makeBenchInputs(params, blockSize);
const copyQ8 = (s: Q8State): Q8State => ({ mCodes: s.mCodes.slice(), vCodes: s.vCodes.slice(), mAbsmax: s.mAbsmax.slice(), vAbsmax: s.vAbsmax.slice() });
const same = (a: Float32Array | Uint8Array, b: Float32Array | Uint8Array) =>
  Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;

// Byte identity of one step at this size.
const pW = inp.param.slice();
const pR = inp.param.slice();
const qW = copyQ8(inp.q8);
const qR = copyQ8(inp.q8);
step8bitKernel(pW, inp.grad, qW, blockSize, inp.scalars(1));
step8bitReference(pR, inp.grad, qR, blockSize, inp.scalars(1));
const identical8 = same(pW, pR) && same(qW.mCodes, qR.mCodes) && same(qW.vCodes, qR.vCodes) && same(qW.mAbsmax, qR.mAbsmax) && same(qW.vAbsmax, qR.vAbsmax);
const [p2W, p2R, mW, mR, vW, vR] = [inp.param.slice(), inp.param.slice(), inp.m.slice(), inp.m.slice(), inp.v.slice(), inp.v.slice()];
stepFp32Kernel(p2W, inp.grad, mW, vW, inp.scalars(1));
stepFp32Reference(p2R, inp.grad, mR, vR, inp.scalars(1));
const identicalFp32 = same(p2W, p2R) && same(mW, mR) && same(vW, vR);

const { param, grad, q8, m, v } = inp;
const js8 = timeRepeats(params, repeats, (i) => step8bitReference(param, grad, q8, blockSize, inp.scalars(i + 1)));
const wasm8 = timeRepeats(params, repeats, (i) => step8bitKernel(param, grad, q8, blockSize, inp.scalars(i + 1)));
const jsFp32 = timeRepeats(params, repeats, (i) => stepFp32Reference(param, grad, m, v, inp.scalars(i + 1)));
const wasmFp32 = timeRepeats(params, repeats, (i) => stepFp32Kernel(param, grad, m, v, inp.scalars(i + 1)));

const row = (name: string, t: BenchTiming) =>
  `${name.padEnd(22)}${(t.bestSeconds * 1e3).toFixed(1).padStart(9)} ms ${(t.paramsPerSecond / 1e6).toFixed(1).padStart(8)} M params/s ` +
  `${(FULL_MODEL_PARAMS / t.paramsPerSecond).toFixed(3).padStart(7)} s per ${FULL_MODEL_PARAMS.toLocaleString('en-US')}-param step`;
console.log(`${params.toLocaleString('en-US')} params, blockSize ${blockSize}, best of ${repeats}`);
console.log(row('8-bit JS reference', js8));
console.log(row('8-bit wasm kernel', wasm8));
console.log(row('fp32 JS reference', jsFp32));
console.log(row('fp32 wasm kernel', wasmFp32));
console.log(`speed-up: 8-bit ${(js8.bestSeconds / wasm8.bestSeconds).toFixed(1)}x, fp32 ${(jsFp32.bestSeconds / wasmFp32.bestSeconds).toFixed(1)}x`);
console.log(`byte-identical one step: 8-bit ${identical8 ? 'yes' : 'NO'}, fp32 ${identicalFp32 ? 'yes' : 'NO'}`);
if (!identical8 || !identicalFp32) process.exitCode = 1;

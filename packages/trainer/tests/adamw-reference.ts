/**
 * The reference oracle for the wasm AdamW kernel (src/adamw-kernel.ts): the plain-JS float32 loops
 * that AdamW8bit ran before the kernel existed, kept verbatim (Math.fround after every operation,
 * `lookupCode` for the requantisation). Only the specs use them; the optimizer runs the wasm
 * kernel, which must reproduce these loops byte for byte.
 */
import { lookupCode, SIGNED_CODE, UNSIGNED_CODE } from '../src/quant-tables.js';
import type { Q8State, StepScalars } from '../src/adamw-kernel.js';

const f = Math.fround;

/**
 * The update with fp32 moments (bitsandbytes `kOptimizer32bit2State`, ADAM branch): the same
 * arithmetic as the 8-bit kernel without the quantisation.
 */
export function stepFp32Reference(param: Float32Array, grad: Float32Array, mState: Float32Array, vState: Float32Array, sc: StepScalars): void {
  const { beta1, beta2, oneMinusBeta1, oneMinusBeta2, stepSize, epsC2, decay } = sc;
  for (let j = 0; j < param.length; j++) {
    const g = grad[j];
    if (g - g !== 0) {
      // NaN or ±Inf: moments reset, parameter untouched (docs/reference/optimizer.md).
      mState[j] = 0;
      vState[j] = 0;
      continue;
    }
    const v = f(f(beta2 * vState[j]) + f(f(oneMinusBeta2 * g) * g));
    const m = f(f(beta1 * mState[j]) + f(oneMinusBeta1 * g));
    vState[j] = v;
    mState[j] = m;
    const p = f(param[j] + f(stepSize * f(m / f(f(Math.sqrt(v)) + epsC2))));
    param[j] = f(p * decay);
  }
}

/**
 * The 8-bit update (bitsandbytes `kOptimizerStatic8bit2StateBlockwise`), block by block: new
 * moments from the codes dequantised with the previous absmax, the new absmax, the parameter
 * update, then requantisation with the new absmax.
 */
export function step8bitReference(param: Float32Array, grad: Float32Array, st: Q8State, blockSize: number, sc: StepScalars): void {
  // Per-block scratch (AdamW8bit kept two of blockSize elements; a block never exceeds the tensor).
  const mNew = new Float32Array(Math.min(blockSize, param.length));
  const vNew = new Float32Array(Math.min(blockSize, param.length));
  const { beta1, beta2, oneMinusBeta1, oneMinusBeta2, stepSize, epsC2, decay } = sc;
  const { mCodes, vCodes, mAbsmax, vAbsmax } = st;
  const mTable = SIGNED_CODE.table;
  const vTable = UNSIGNED_CODE.table;
  const mMids = SIGNED_CODE.midpoints;
  const vMids = UNSIGNED_CODE.midpoints;
  const mBuckets = SIGNED_CODE.bucketStart;
  const vBuckets = UNSIGNED_CODE.bucketStart;
  const mZero = SIGNED_CODE.zeroCode;
  const vZero = UNSIGNED_CODE.zeroCode;
  const n = param.length;
  for (let b = 0, start = 0; start < n; b++, start += blockSize) {
    const len = Math.min(blockSize, n - start);
    const mScale = mAbsmax[b];
    const vScale = vAbsmax[b];
    let mMax = 0;
    let vMax = 0;
    for (let i = 0; i < len; i++) {
      const j = start + i;
      const g = grad[j];
      let m = 0;
      let v = 0;
      if (g - g === 0) {
        v = f(f(beta2 * f(vTable[vCodes[j]] * vScale)) + f(f(oneMinusBeta2 * g) * g));
        m = f(f(beta1 * f(mTable[mCodes[j]] * mScale)) + f(oneMinusBeta1 * g));
      }
      mNew[i] = m;
      vNew[i] = v;
      const a = Math.abs(m);
      if (a > mMax) mMax = a;
      if (v > vMax) vMax = v;
    }
    mAbsmax[b] = mMax;
    vAbsmax[b] = vMax;
    for (let i = 0; i < len; i++) {
      const j = start + i;
      const g = grad[j];
      const m = mNew[i];
      const v = vNew[i];
      if (g - g === 0) {
        const p = f(param[j] + f(stepSize * f(m / f(f(Math.sqrt(v)) + epsC2))));
        param[j] = f(p * decay);
      }
      if (mMax === 0) {
        mCodes[j] = mZero;
      } else {
        let c = lookupCode(mBuckets, mMids, f(m / mMax));
        // Keep the sign of m: a tiny negative moment that rounded to the zero code (or any code of
        // the other sign) moves one code towards its sign (bitsandbytes does the same).
        if (m < 0 ? c >= mZero : m > 0 && c < mZero) c += m < 0 ? -1 : 1;
        mCodes[j] = c;
      }
      vCodes[j] = vMax === 0 ? vZero : lookupCode(vBuckets, vMids, f(v / vMax));
    }
  }
}

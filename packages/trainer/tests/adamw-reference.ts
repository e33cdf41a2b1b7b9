/**
 * The reference oracle for the wasm AdamW kernel (src/adamw-kernel.ts): plain-JS float32 loops
 * (Math.fround after every operation), the 8-bit one built from the tested block quantiser of
 * quant-tables.ts. Only the specs use them; the optimizer runs the wasm kernel, which must
 * reproduce these loops byte for byte.
 */
import { dequantize, quantizeBlockwise, SIGNED_CODE, UNSIGNED_CODE } from '../src/quant-tables.js';
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
 * The 8-bit update (bitsandbytes `kOptimizerStatic8bit2StateBlockwise`): the moments dequantised
 * with the previous absmax, the fp32 update of them and of the parameter, then block-wise
 * requantisation of the new moments with their new absmax.
 */
export function step8bitReference(param: Float32Array, grad: Float32Array, st: Q8State, blockSize: number, sc: StepScalars): void {
  const m = dequantize(SIGNED_CODE, st.mCodes, st.mAbsmax, blockSize);
  const v = dequantize(UNSIGNED_CODE, st.vCodes, st.vAbsmax, blockSize);
  stepFp32Reference(param, grad, m, v, sc);
  const qm = quantizeBlockwise(SIGNED_CODE, m, blockSize);
  const qv = quantizeBlockwise(UNSIGNED_CODE, v, blockSize);
  st.mCodes.set(qm.codes);
  st.mAbsmax.set(qm.absmax);
  st.vCodes.set(qv.codes);
  st.vAbsmax.set(qv.absmax);
}

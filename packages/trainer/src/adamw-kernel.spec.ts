import { Rng } from '@smolrate/core';
import { describe, expect, it } from 'vitest';
import { step8bitReference, stepFp32Reference } from '../tests/adamw-reference.js';
import {
  KERNEL_CHUNK_ELEMENTS,
  packedLookup,
  step8bitKernel,
  stepFp32Kernel,
  stepScalars,
  type Q8State,
  type StepScalars,
} from './adamw-kernel.js';
import { AdamW8bit } from './adamw8bit.js';
import { fromOrderKey, nearestCode, orderKey, quantizeBlockwise, SIGNED_CODE, UNSIGNED_CODE, type QuantCode } from './quant-tables.js';

const f = Math.fround;

const scalars = (t: number, lr: number, weightDecay = 1e-2, betas: [number, number] = [0.9, 0.999], eps = 1e-8): StepScalars =>
  stepScalars(t, lr, { betas, eps, weightDecay });

const bytesOf = (a: Float32Array | Uint8Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** Byte equality with a readable first difference. */
function expectSameBytes(actual: Float32Array | Uint8Array, expected: Float32Array | Uint8Array, what: string): void {
  expect(actual.length, what).toBe(expected.length);
  if (Buffer.compare(bytesOf(actual), bytesOf(expected)) === 0) return;
  const a = actual instanceof Float32Array ? new Uint32Array(actual.buffer, actual.byteOffset, actual.length) : actual;
  const e = expected instanceof Float32Array ? new Uint32Array(expected.buffer, expected.byteOffset, expected.length) : expected;
  let i = 0;
  while (a[i] === e[i]) i++;
  let count = 0;
  for (let j = 0; j < a.length; j++) if (a[j] !== e[j]) count++;
  expect.fail(
    `${what}: ${count} of ${a.length} elements differ; first at ${i}: wasm ${actual[i]} (0x${a[i].toString(16)}), ` +
      `reference ${expected[i]} (0x${e[i].toString(16)})`,
  );
}

const u32 = new Uint32Array(1);
const asF32 = new Float32Array(u32.buffer);
function fromBits(bits: number): number {
  u32[0] = bits >>> 0;
  return asF32[0];
}
function bitsOf(x: number): number {
  asF32[0] = x;
  return u32[0];
}

/** Special float32 values (NaN payloads of both signs, quiet and signalling, ±Inf, ±0, subnormals, huge). */
const SPECIAL_BITS = [
  0x7fc00000, 0xffc00000, 0x7fc12345, 0xffdeadbe, 0x7f800001, 0xff800123, 0x7fbfffff, 0x7f800000, 0xff800000, 0x00000000,
  0x80000000, 0x00000001, 0x80000001, 0x007fffff, 0x807fffff, 0x7f7fffff, 0xff7fffff, 0x00800000, 0x80800000,
];

function special(rng: Rng): number {
  return fromBits(SPECIAL_BITS[rng.int(SPECIAL_BITS.length)]);
}

/** Normal-ish values at a random scale, with a share of special values. */
function values(rng: Rng, n: number, scale: number, specialShare: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.next() < specialShare ? special(rng) : scale * rng.normal();
  return a;
}

const logUniform = (rng: Rng, lo: number, hi: number) => Math.exp(Math.log(lo) + rng.next() * (Math.log(hi) - Math.log(lo)));

type StateKind = 'realistic' | 'random' | 'hostile';

function q8State(rng: Rng, n: number, bs: number, kind: StateKind): Q8State {
  const blocks = Math.ceil(n / bs);
  if (kind === 'realistic') {
    const m = values(rng, n, logUniform(rng, 1e-8, 1), 0);
    const v = values(rng, n, 1, 0).map((x) => f(x * x * logUniform(rng, 1e-12, 1)));
    const qm = quantizeBlockwise(SIGNED_CODE, m, bs);
    const qv = quantizeBlockwise(UNSIGNED_CODE, v, bs);
    return { mCodes: qm.codes, mAbsmax: qm.absmax, vCodes: qv.codes, vAbsmax: qv.absmax };
  }
  const mCodes = new Uint8Array(n);
  const vCodes = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    mCodes[i] = rng.int(256);
    vCodes[i] = rng.int(256);
  }
  const absmax = () => {
    const a = new Float32Array(blocks);
    for (let b = 0; b < blocks; b++) {
      const r = rng.next();
      a[b] = kind === 'hostile' && r < 0.3 ? (r < 0.15 ? special(rng) : -logUniform(rng, 1e-30, 1e30)) : r < 0.35 ? 0 : logUniform(rng, 1e-20, 10);
    }
    return a;
  };
  return { mCodes, vCodes, mAbsmax: absmax(), vAbsmax: absmax() };
}

const copyState = (s: Q8State): Q8State => ({
  mCodes: s.mCodes.slice(),
  vCodes: s.vCodes.slice(),
  mAbsmax: s.mAbsmax.slice(),
  vAbsmax: s.vAbsmax.slice(),
});

/** Runs `steps` 8-bit steps with wasm and with the reference from the same inputs; all outputs must be byte-identical. */
function compare8bit(param: Float32Array, grads: Float32Array[], st: Q8State, bs: number, sc: (t: number) => StepScalars, what: string): void {
  const pW = param.slice();
  const pR = param.slice();
  const sW = copyState(st);
  const sR = copyState(st);
  grads.forEach((g, t) => {
    step8bitKernel(pW, g, sW, bs, sc(t + 1));
    step8bitReference(pR, g, sR, bs, sc(t + 1));
    const at = `${what}, step ${t + 1}`;
    expectSameBytes(pW, pR, `${at}: param`);
    expectSameBytes(sW.mCodes, sR.mCodes, `${at}: mCodes`);
    expectSameBytes(sW.vCodes, sR.vCodes, `${at}: vCodes`);
    expectSameBytes(sW.mAbsmax, sR.mAbsmax, `${at}: mAbsmax`);
    expectSameBytes(sW.vAbsmax, sR.vAbsmax, `${at}: vAbsmax`);
  });
}

function compareFp32(param: Float32Array, grads: Float32Array[], m: Float32Array, v: Float32Array, sc: (t: number) => StepScalars, what: string): void {
  const [pW, pR, mW, mR, vW, vR] = [param.slice(), param.slice(), m.slice(), m.slice(), v.slice(), v.slice()];
  grads.forEach((g, t) => {
    stepFp32Kernel(pW, g, mW, vW, sc(t + 1));
    stepFp32Reference(pR, g, mR, vR, sc(t + 1));
    const at = `${what}, step ${t + 1}`;
    expectSameBytes(pW, pR, `${at}: param`);
    expectSameBytes(mW, mR, `${at}: m`);
    expectSameBytes(vW, vR, `${at}: v`);
  });
}

/** Random hyper-parameters, lr 0 and weight decay 0 included. */
function randomScalars(rng: Rng): (t: number) => StepScalars {
  const r = rng.next();
  const lr = r < 0.15 ? 0 : logUniform(rng, 1e-6, 1);
  const wd = rng.next() < 0.25 ? 0 : logUniform(rng, 1e-4, 0.5);
  const betas: [number, number] = rng.next() < 0.5 ? [0.9, 0.999] : [rng.next() * 0.99, 0.9 + rng.next() * 0.0999];
  const eps = logUniform(rng, 1e-12, 1e-3);
  const t0 = rng.int(1000);
  return (t) => scalars(t0 + t, lr, wd, betas, eps);
}

// 65_536 / 100 is not whole: chunks of 655 blocks. 100_000 > the chunk: one block per chunk.
// 3e9 does not fit an i32: one block per tensor.
const BLOCK_SIZES = [256, 2048, 64, 100, 1, 3, 17, 4096, 100_000, 3_000_000_000];

describe('wasm 8-bit AdamW kernel vs the JS reference (byte for byte)', () => {
  it.each(BLOCK_SIZES)('blockSize %i: random tensors, states, hyper-parameters and special values', (bs) => {
    const rng = new Rng(20240601, 'adamw-kernel-8bit', bs);
    const sizes = [0, 1, 5, 15, 16, 17, bs - 1, bs, bs + 1, 3 * bs + 7, KERNEL_CHUNK_ELEMENTS + 3 * bs + 5, 2 * KERNEL_CHUNK_ELEMENTS + 1].filter(
      (n) => n >= 0 && n <= 400_000,
    );
    for (const n of sizes) {
      for (const kind of ['realistic', 'random', 'hostile'] as const) {
        const specials = kind === 'realistic' ? 0.001 : 0.05;
        const param = values(rng, n, logUniform(rng, 1e-3, 10), specials);
        const grads = [0, 1, 2].map(() => values(rng, n, logUniform(rng, 1e-10, kind === 'hostile' ? 1e25 : 10), specials));
        compare8bit(param, grads, q8State(rng, n, bs, kind), bs, randomScalars(rng), `bs ${bs}, n ${n}, ${kind} state`);
      }
    }
  });

  it('edge cases: all-zero blocks, all-non-finite blocks, tiny negative moments, short last block, lr 0, weight decay 0', () => {
    const rng = new Rng(7, 'adamw-kernel-edges');
    for (const bs of [256, 64, 2048, 100]) {
      const n = 5 * bs + 37; // short last block
      const param = values(rng, n, 0.1, 0);
      const st: Q8State = {
        mCodes: new Uint8Array(n).fill(SIGNED_CODE.zeroCode),
        vCodes: new Uint8Array(n).fill(UNSIGNED_CODE.zeroCode),
        mAbsmax: new Float32Array(6),
        vAbsmax: new Float32Array(6),
      };
      const g = values(rng, n, 0.01, 0);
      g.fill(0, 0, bs); // block 0: zero gradient on zero state → absmax 0, zero codes
      g.fill(NaN, bs, 2 * bs); // block 1: all NaN
      for (let i = 2 * bs; i < 3 * bs; i++) g[i] = [Infinity, -Infinity, NaN, fromBits(0xff800001)][i % 4]; // block 2: all non-finite
      // Block 3: one large gradient and many tiny negative ones → tiny negative m rounds to the
      // zero code and must be nudged to the first negative code (and tiny positive ones not).
      for (let i = 3 * bs; i < 4 * bs; i++) g[i] = i % 3 === 0 ? -1e-9 : i % 3 === 1 ? 1e-9 : -0;
      g[3 * bs + 5] = 1;
      for (let i = 4 * bs; i < 4 * bs + 10; i++) g[i] = NaN; // sprinkled in block 4
      const g2 = values(rng, n, 0.01, 0.01);
      const g3 = g.slice();
      for (const [lr, wd] of [
        [1e-3, 1e-2],
        [0, 1e-2],
        [1e-3, 0],
        [0, 0],
        [1, 1], // decay exactly 0
      ]) {
        compare8bit(param, [g, g2, g3], st, bs, (t) => scalars(t, lr, wd), `edges bs ${bs}, lr ${lr}, wd ${wd}`);
      }
      // The nudge really happened (the case is exercised, not vacuous).
      const s = copyState(st);
      step8bitKernel(param.slice(), g, s, bs, scalars(1, 1e-3));
      expect(s.mCodes[3 * bs]).toBe(SIGNED_CODE.zeroCode - 1);
      expect(s.mCodes[3 * bs + 1]).toBe(SIGNED_CODE.zeroCode);
      expect(s.mAbsmax[0]).toBe(0);
      expect(s.mAbsmax[1]).toBe(0);
      expect([...s.mCodes.subarray(bs, 3 * bs)].every((c) => c === SIGNED_CODE.zeroCode)).toBe(true);
    }
  });

  it('overflowing moments: v = Inf in a block (absmax Inf, Inf/Inf lookups), NaN parameters with NaN updates', () => {
    const rng = new Rng(8, 'adamw-kernel-overflow');
    const bs = 256;
    const n = 4 * bs;
    const param = values(rng, n, 1, 0.2);
    const g = values(rng, n, 1, 0);
    for (let i = 0; i < n; i += 7) g[i] = (i & 8 ? -1 : 1) * 3e38; // g² overflows; m near the float max
    const st = q8State(rng, n, bs, 'hostile');
    st.mAbsmax.set([NaN, Infinity, -1, 3e38]);
    st.vAbsmax.set([-Infinity, NaN, Infinity, -0]);
    compare8bit(param, [g, g, values(rng, n, 1, 0.3)], st, bs, (t) => scalars(t, 1e-3), 'overflow');
  });
});

describe('the kernels without scalars (the benchmark\'s copy overhead)', () => {
  it('stream every chunk in and out and change nothing', () => {
    const rng = new Rng(12, 'adamw-kernel-copies');
    const n = 2 * KERNEL_CHUNK_ELEMENTS + 300;
    const [param, grad, m, v] = [0, 1, 2, 3].map(() => values(rng, n, 1, 0.01));
    const st = q8State(rng, n, 256, 'random');
    const before = [param, grad, m, v, st.mCodes, st.vCodes, st.mAbsmax, st.vAbsmax].map((a) => a.slice());
    step8bitKernel(param, grad, st, 256, null);
    stepFp32Kernel(param, grad, m, v, null);
    [param, grad, m, v, st.mCodes, st.vCodes, st.mAbsmax, st.vAbsmax].forEach((a, i) => expectSameBytes(a, before[i], `array ${i}`));
  });
});

describe('wasm fp32-state AdamW kernel vs the JS reference (byte for byte)', () => {
  it.each([0, 1, 3, 4, 17, 4095, 4096, KERNEL_CHUNK_ELEMENTS - 1, KERNEL_CHUNK_ELEMENTS, 2 * KERNEL_CHUNK_ELEMENTS + 13])('n = %i', (n) => {
    const rng = new Rng(99, 'adamw-kernel-fp32', n);
    for (const hostile of [false, true]) {
      const share = hostile ? 0.05 : 0.001;
      const param = values(rng, n, 0.1, share);
      const m = values(rng, n, 1e-3, share);
      const v = hostile ? values(rng, n, 1e-6, share) : values(rng, n, 1e-3, 0).map((x) => f(x * x));
      const grads = [0, 1, 2].map(() => values(rng, n, logUniform(rng, 1e-8, hostile ? 1e25 : 1), share));
      compareFp32(param, grads, m, v, randomScalars(rng), `fp32 n ${n}${hostile ? ' hostile' : ''}`);
      compareFp32(param, grads, m, v, (t) => scalars(t, 0, 0), `fp32 n ${n}, lr 0${hostile ? ' hostile' : ''}`);
    }
  });
});

describe('AdamW8bit runs the kernels', () => {
  it('its steps (8-bit and fp32-state tensors, a ZeRO slice) equal the reference loops byte for byte', () => {
    const rng = new Rng(11, 'adamw-kernel-optimizer');
    const lr = 2e-3;
    const wd = 0.05;
    const opt = new AdamW8bit({ lr, weightDecay: wd, fp32StateFor: (name) => name === 'emb' });
    const tensors = { big: 10_000, emb: 6000, small: 100, slice: 2 * 256 + 40 };
    const ref = new Map<string, { p: Float32Array; q8?: Q8State; m?: Float32Array; v?: Float32Array }>();
    const params = new Map<string, Float32Array>();
    for (const [name, n] of Object.entries(tensors)) {
      const p = values(rng, n, 0.1, 0);
      params.set(name, p);
      const blocks = Math.ceil(n / 256);
      const eightBit = name === 'big' || name === 'slice';
      ref.set(name, {
        p: p.slice(),
        ...(eightBit
          ? {
              q8: {
                mCodes: new Uint8Array(n).fill(SIGNED_CODE.zeroCode),
                vCodes: new Uint8Array(n).fill(UNSIGNED_CODE.zeroCode),
                mAbsmax: new Float32Array(blocks),
                vAbsmax: new Float32Array(blocks),
              },
            }
          : { m: new Float32Array(n), v: new Float32Array(n) }),
      });
    }
    for (let t = 1; t <= 4; t++) {
      for (const [name, n] of Object.entries(tensors)) {
        const g = values(rng, n, 0.01, 0.01);
        const r = ref.get(name)!;
        if (name === 'slice') opt.stepSlice(name, params.get(name)!, g, { offset: 4096, total: 4096 + n });
        else opt.step(name, params.get(name)!, g);
        if (r.q8) step8bitReference(r.p, g, r.q8, 256, scalars(t, lr, wd));
        else stepFp32Reference(r.p, g, r.m!, r.v!, scalars(t, lr, wd));
        expectSameBytes(params.get(name)!, r.p, `${name} step ${t}: param`);
      }
    }
    const state = opt.exportState();
    const buf = (name: string, kind: string) => state.buffers.find((b) => b.name === name && b.kind === kind)!.data;
    for (const [name, r] of ref) {
      if (r.q8) {
        expect(opt.stateKind(name)).toBe('8bit');
        expectSameBytes(buf(name, 'm.codes'), r.q8.mCodes, `${name} m.codes`);
        expectSameBytes(buf(name, 'v.codes'), r.q8.vCodes, `${name} v.codes`);
        expectSameBytes(buf(name, 'm.absmax'), r.q8.mAbsmax, `${name} m.absmax`);
        expectSameBytes(buf(name, 'v.absmax'), r.q8.vAbsmax, `${name} v.absmax`);
      } else {
        expect(opt.stateKind(name)).toBe('fp32');
        expectSameBytes(buf(name, 'm'), r.m!, `${name} m`);
        expectSameBytes(buf(name, 'v'), r.v!, `${name} v`);
      }
    }
  });
});

describe('the packed requantisation lookup equals nearestCode', () => {
  function packedCode(pack: Uint32Array, x: number): number {
    const key = orderKey(x);
    const e = pack[key >>> 16];
    return (e & 255) + ((key & 0xffff) > e >>> 16 ? 1 : 0);
  }

  it.each([
    ['signed', SIGNED_CODE],
    ['unsigned', UNSIGNED_CODE],
  ] as Array<[string, QuantCode]>)('%s code: every bucket edge, every midpoint ± 3 ulp, random bit patterns', (_name, code) => {
    const pack = packedLookup(code);
    const check = (x: number) => {
      // Only quiet NaNs reach the lookup (they come out of arithmetic); every other pattern is possible.
      if (Number.isNaN(x) && (bitsOf(x) & 0x400000) === 0) return;
      const want = nearestCode(code, x);
      if (packedCode(pack, x) !== want) expect.fail(`x = ${x} (0x${bitsOf(x).toString(16)}): packed ${packedCode(pack, x)}, nearestCode ${want}`);
    };
    for (let b = 0; b < 65536; b++) {
      const lo = b * 65536;
      for (const k of [lo, lo + 1, lo + 0x7fff, lo + 0xfffe, lo + 0xffff]) check(fromOrderKey(k));
    }
    for (const mid of code.midpoints) {
      const bits = bitsOf(mid);
      for (let d = -3; d <= 3; d++) check(fromBits(bits + d));
    }
    for (const t of code.table) check(t);
    const rng = new Rng(5, 'packed-lookup', code.signed ? 1 : 0);
    for (let i = 0; i < 300_000; i++) {
      check(fromBits(((rng.int(65536) << 16) | rng.int(65536)) >>> 0));
      check(f((rng.next() * 2 - 1) * Math.pow(10, -8 * rng.next())));
    }
  });
});

import { CheckpointError, ConfigError, Rng, ShapeError } from '@smolrate/core';
import { describe, expect, it } from 'vitest';
import { AdamW32 } from './adamw32.js';
import { ADAMW_DEFAULTS, checkLr, resolveAdamWHyper } from './adamw-options.js';
import { AdamW8bit } from './adamw8bit.js';
import { SIGNED_CODE, UNSIGNED_CODE } from './quant-tables.js';

const LR = 1e-3;
const WD = 1e-2;

function randn(rng: Rng, n: number, scale: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = scale * rng.normal();
  return a;
}

function meanAbsDiff(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]);
  return s / a.length;
}

/** bitsandbytes' relative error: mean of |a − b| / (|b| + 1e-9). */
function meanRelErr(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]) / (Math.abs(b[i]) + 1e-9);
  return s / a.length;
}

function meanAbs(a: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i]);
  return s / a.length;
}

const bitsOf = (a: Float32Array) => new Uint32Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));

describe('AdamW8bit against fp32 AdamW (docs/reference/optimizer.md "Testing", as bitsandbytes tests it)', () => {
  // Sizes ≥ 4096 (8-bit state), one of them not a multiple of 256 (a short last block).
  it.each([4096, 10_000, 25_000])('n = %i: re-synced every step, 50 steps', (n) => {
    const rng = new Rng(1234, 'adamw8bit-vs-fp32', n);
    const p8 = randn(rng, n, 0.1);
    const p32 = p8.slice();
    const opt8 = new AdamW8bit({ lr: LR, weightDecay: WD });
    const ref = new AdamW32({ lr: LR, weightDecay: WD });
    let worstErr = 0;
    let worstRel = 0;
    let worstStateErr = 0;
    for (let step = 0; step < 50; step++) {
      const g = randn(rng, n, 0.01);
      const before = p8.slice();
      opt8.step('w', p8, g);
      ref.step('w', p32, g);
      expect(opt8.stateKind('w')).toBe('8bit');

      const err = meanAbsDiff(p8, p32);
      const rel = meanRelErr(p8, p32);
      expect(err).toBeLessThan(6e-5); // bitsandbytes' bounds
      expect(rel).toBeLessThan(6e-4);
      // Tighter: with the states re-synced, only the decay order (bitsandbytes decays after the
      // update, torch before: λ·|u| with λ = lr·wd = 1e-5, |u| ≈ lr) and rounding remain, ≈ 1e-8.
      expect(err).toBeLessThan(2e-8 + LR * WD * meanAbsDiff(p32, before));
      worstErr = Math.max(worstErr, err);
      worstRel = Math.max(worstRel, rel);

      // The 8-bit moments are the fp32 ones up to quantisation (≈ 1 % mean relative error), and a
      // negative first moment stays negative (the sign fix).
      const q = opt8.dequantizedState('w');
      const r = ref.dequantizedState('w');
      expect(q.step).toBe(step + 1);
      const mErr = meanAbsDiff(q.m, r.m) / meanAbs(r.m);
      const vErr = meanAbsDiff(q.v, r.v) / meanAbs(r.v);
      expect(mErr).toBeLessThan(0.02);
      expect(vErr).toBeLessThan(0.02);
      worstStateErr = Math.max(worstStateErr, mErr, vErr);
      let signFlips = 0;
      let negativeV = 0;
      for (let i = 0; i < n; i++) {
        if (Math.abs(r.m[i]) > 1e-9 && Math.sign(q.m[i]) !== Math.sign(r.m[i])) signFlips++;
        if (!(q.v[i] >= 0)) negativeV++;
      }
      expect(signFlips).toBe(0);
      expect(negativeV).toBe(0);

      // Re-sync: parameters and dequantised states into the reference.
      p32.set(p8);
      ref.setState('w', q);
    }
    console.log(
      `AdamW8bit n=${n} re-synced: max per-step mean|Δp| ${worstErr.toExponential(2)}, ` +
        `mean rel err ${worstRel.toExponential(2)}, moment quantisation err ${worstStateErr.toExponential(2)}`,
    );
  });

  it('without re-syncing drifts ≈ 1e-4 mean |Δp| in 50 steps (expected: the states are 8-bit)', () => {
    const n = 10_000;
    const rng = new Rng(99, 'drift');
    const p8 = randn(rng, n, 0.1);
    const p32 = p8.slice();
    const opt8 = new AdamW8bit();
    const ref = new AdamW32();
    for (let step = 0; step < 50; step++) {
      const g = randn(rng, n, 0.01);
      opt8.step('w', p8, g);
      ref.step('w', p32, g);
    }
    const drift = meanAbsDiff(p8, p32);
    console.log(`AdamW8bit n=${n} un-synced drift after 50 steps: mean|Δp| ${drift.toExponential(2)}`);
    // Far above the fp32 rounding level (≈ 1e-7), so the 8-bit state is really in use; far below
    // the update scale (50·lr).
    expect(drift).toBeGreaterThan(3e-5);
    expect(drift).toBeLessThan(3e-4);
  });
});

describe('AdamW8bit small tensors (< 4096 elements: fp32 state)', () => {
  it.each([1, 100, 4095])('n = %i matches fp32 AdamW to float32 rounding (weight decay 0)', (n) => {
    const rng = new Rng(5, 'small', n);
    const p8 = randn(rng, n, 0.1);
    const p32 = p8.slice();
    const opt8 = new AdamW8bit({ weightDecay: 0 });
    const ref = new AdamW32({ weightDecay: 0 });
    let worst = 0;
    for (let step = 0; step < 50; step++) {
      const g = randn(rng, n, 0.01);
      opt8.step('b', p8, g);
      ref.step('b', p32, g);
      expect(opt8.stateKind('b')).toBe('fp32');
      // Errors in units of the parameter's size (floored at the update size lr): a few float32 ulps.
      for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(p8[i] - p32[i]) / (Math.abs(p32[i]) + LR));
    }
    console.log(`AdamW8bit fp32-state n=${n}: 50 un-synced steps, max |Δp|/(|p|+lr) ${worst.toExponential(2)}`);
    expect(worst).toBeLessThan(1e-5);
    const a = opt8.dequantizedState('b');
    const b = ref.dequantizedState('b');
    let worstV = 0;
    for (let i = 0; i < n; i++) worstV = Math.max(worstV, Math.abs(a.v[i] - b.v[i]) / b.v[i]);
    expect(worstV).toBeLessThan(1e-6);
  });

  it('with weight decay differs from torch-order AdamW by exactly the decay order, λ·|update|, per step', () => {
    const n = 1000;
    const rng = new Rng(6, 'small-wd');
    const p8 = randn(rng, n, 0.1);
    const p32 = p8.slice();
    const opt8 = new AdamW8bit({ lr: LR, weightDecay: WD });
    const ref = new AdamW32({ lr: LR, weightDecay: WD });
    for (let step = 0; step < 20; step++) {
      const g = randn(rng, n, 0.01);
      const before = p8.slice();
      opt8.step('b', p8, g);
      ref.step('b', p32, g);
      let outside = 0;
      for (let i = 0; i < n; i++) {
        const update = Math.abs(p32[i] - before[i]);
        const bound = LR * WD * update * 1.1 + 4e-7 * (Math.abs(before[i]) + LR);
        if (!(Math.abs(p8[i] - p32[i]) <= bound)) outside++;
      }
      expect(outside, `step ${step}`).toBe(0);
      p32.set(p8);
      ref.setState('b', opt8.dequantizedState('b'));
    }
  });

  it('golden first step: bias-corrected update, then decoupled decay (docs/reference/optimizer.md order)', () => {
    const p = Float32Array.from([0.5, -0.25, 0.1]);
    const g = Float32Array.from([0.02, -0.03, 0]);
    new AdamW8bit({ lr: 1e-2, weightDecay: 0.1 }).step('p', p, g);
    // t = 1: m̂ = g, sqrt(v̂) = |g|, so p ← (p − lr·g/(|g| + eps)) · (1 − lr·wd). The torch order
    // (decay first) would give 0.4895000005 for p[0]: 1e-5 away, 300 float32 ulps.
    expect(p[0]).toBeCloseTo((0.5 - (1e-2 * 0.02) / (0.02 + 1e-8)) * (1 - 1e-3), 7);
    expect(p[1]).toBeCloseTo((-0.25 + (1e-2 * 0.03) / (0.03 + 1e-8)) * (1 - 1e-3), 7);
    expect(p[2]).toBeCloseTo(0.1 * (1 - 1e-3), 7); // zero gradient: decay only
  });

  it('an 8-bit tensor and an fp32-state tensor take bit-identical first steps (zero state quantises exactly)', () => {
    const n = 5000;
    const rng = new Rng(8, 'first-step');
    const p = randn(rng, n, 0.1);
    const g = randn(rng, n, 0.01);
    const a = p.slice();
    const b = p.slice();
    const opt = new AdamW8bit({ fp32StateFor: (name) => name === 'fp32' });
    opt.step('q8', a, g);
    opt.step('fp32', b, g);
    expect(opt.stateKind('q8')).toBe('8bit');
    expect(opt.stateKind('fp32')).toBe('fp32');
    expect(bitsOf(a)).toEqual(bitsOf(b));
  });
});

describe('AdamW8bit non-finite gradients', () => {
  it('zero m and v and leave the parameter untouched; other elements as with a zero gradient', () => {
    const n = 4096 + 300;
    const rng = new Rng(11, 'nonfinite');
    const p0 = randn(rng, n, 0.1);
    const bad = [3, 700, 4200];
    const gBad = randn(rng, n, 0.01);
    const gZero = gBad.slice();
    gBad[3] = NaN;
    gBad[700] = Infinity;
    gBad[4200] = -Infinity;
    for (const i of bad) gZero[i] = 0;

    const a = p0.slice();
    const b = p0.slice();
    const optA = new AdamW8bit();
    const optB = new AdamW8bit();
    optA.step('w', a, gBad);
    optB.step('w', b, gZero);
    for (const i of bad) {
      expect(a[i]).toBe(p0[i]); // untouched: not even decayed
      expect(b[i]).not.toBe(p0[i]); // a zero gradient still decays the parameter
      const s = optA.dequantizedState('w');
      expect(s.m[i]).toBe(0);
      expect(s.v[i]).toBe(0);
    }
    // Every other element bit for bit equal.
    const aRest = a.slice();
    const bRest = b.slice();
    for (const i of bad) aRest[i] = bRest[i] = 0;
    expect(bitsOf(aRest)).toEqual(bitsOf(bRest));
    expect(optA.serialize().equals(optB.serialize())).toBe(true); // identical state, byte for byte

    // After moments have built up, a NaN resets them.
    const g2 = randn(rng, n, 0.01);
    optA.step('w', a, g2);
    const g3 = randn(rng, n, 0.01);
    g3[5] = NaN;
    const before = a[5];
    optA.step('w', a, g3);
    expect(a[5]).toBe(before);
    expect(optA.dequantizedState('w').m[5]).toBe(0);
    expect(optA.dequantizedState('w').v[5]).toBe(0);
  });

  it('an all-NaN block and an all-NaN small tensor stay finite and untouched', () => {
    const n = 4096;
    const rng = new Rng(12, 'nan-block');
    const p = randn(rng, n, 0.1);
    const p0 = p.slice();
    const g = randn(rng, n, 0.01);
    g.fill(NaN, 256, 512);
    const small = randn(rng, 10, 0.1);
    const small0 = small.slice();
    const opt = new AdamW8bit();
    opt.step('w', p, g);
    opt.step('s', small, new Float32Array(10).fill(NaN));
    expect(opt.exportState().buffers.find((b) => b.name === 'w' && b.kind === 'm.absmax')!.data[1]).toBe(0);
    expect(bitsOf(p.subarray(256, 512))).toEqual(bitsOf(p0.subarray(256, 512)));
    expect(small).toEqual(small0);
    // The zero-absmax block must not poison the next step with 0/0.
    opt.step('w', p, randn(rng, n, 0.01));
    opt.step('s', small, randn(rng, 10, 0.01));
    expect(p.every(Number.isFinite)).toBe(true);
    expect(small.every(Number.isFinite)).toBe(true);
    expect(small).not.toEqual(small0);
  });
});

describe('AdamW8bit requantisation', () => {
  it('keeps a tiny negative first moment negative (sign fix) and a tiny positive one at zero', () => {
    const n = 4096;
    const g = new Float32Array(n);
    g[0] = 1; // absmax of block 0 becomes 0.1 (= (1 − β1)·g)
    g[1] = -1e-9; // m/absmax = −1e-9: nearest code is the zero code, moved to the smallest negative
    g[2] = 1e-9; // a tiny positive m rounds to zero: zero has the same sign bit, no move
    const opt = new AdamW8bit();
    opt.step('w', new Float32Array(n), g);
    const { m, v } = opt.dequantizedState('w');
    const absmax = Math.fround(Math.fround(1 - Math.fround(0.9)) * 1);
    expect(m[0]).toBe(Math.fround(SIGNED_CODE.table[255] * absmax));
    expect(m[1]).toBe(Math.fround(SIGNED_CODE.table[126] * absmax));
    expect(m[1]).toBeLessThan(0);
    expect(m[2]).toBe(0);
    expect(m[3]).toBe(0);
    expect(v[0]).toBeGreaterThan(0);
    expect(v[1]).toBe(0); // v = 1e-21 ≪ absmax: the zero code (no sign fix for v)
  });
});

describe('AdamW8bit state, options and slices', () => {
  it('keeps one step count per parameter (bias correction)', () => {
    const rng = new Rng(13, 'steps');
    const a = randn(rng, 5000, 0.1);
    const b = randn(rng, 5000, 0.1);
    const b2 = b.slice();
    const opt = new AdamW8bit();
    for (let i = 0; i < 3; i++) opt.step('a', a, randn(rng, 5000, 0.01));
    const g = randn(rng, 5000, 0.01);
    opt.step('b', b, g);
    new AdamW8bit().step('b', b2, g);
    expect(bitsOf(b)).toEqual(bitsOf(b2));
    expect(opt.dequantizedState('a').step).toBe(3);
    expect(opt.dequantizedState('b').step).toBe(1);
  });

  it('uses the lr given to step, else the one from setLr', () => {
    const rng = new Rng(14, 'lr');
    const p = randn(rng, 100, 0.1);
    const g = randn(rng, 100, 0.01);
    const x = p.slice();
    const y = p.slice();
    const z = p.slice();
    new AdamW8bit({ lr: 5e-4 }).step('p', x, g);
    const o = new AdamW8bit();
    o.setLr(5e-4);
    expect(o.lr).toBe(5e-4);
    o.step('p', y, g);
    new AdamW8bit().step('p', z, g, 5e-4);
    expect(y).toEqual(x);
    expect(z).toEqual(x);
    const w = p.slice();
    new AdamW8bit().step('p', w, g, 0); // lr 0: nothing moves
    expect(w).toEqual(p);
  });

  it('fp32StateFor keeps a large (embedding) tensor in fp32; stateBytes ≈ 2.03 bytes/param for 8-bit', () => {
    const rng = new Rng(15, 'embed');
    const opt = new AdamW8bit({ fp32StateFor: (name) => name.endsWith('embed_tokens.weight') });
    const embed = randn(rng, 8192, 0.1);
    const w = randn(rng, 10_000, 0.1);
    const bias = randn(rng, 64, 0.1);
    opt.step('model.text_model.embed_tokens.weight', embed, randn(rng, 8192, 0.01));
    opt.step('model.text_model.layers.0.mlp.up_proj.weight', w, randn(rng, 10_000, 0.01));
    opt.step('regression_head.0.bias', bias, randn(rng, 64, 0.01));
    expect(opt.stateKind('model.text_model.embed_tokens.weight')).toBe('fp32');
    expect(opt.stateKind('model.text_model.layers.0.mlp.up_proj.weight')).toBe('8bit');
    expect(opt.stateKind('regression_head.0.bias')).toBe('fp32');
    const q8 = 2 * 10_000 + 2 * 4 * Math.ceil(10_000 / 256);
    expect(opt.stateBytes()).toBe(8 * 8192 + q8 + 8 * 64);
    expect(q8 / 10_000).toBeCloseTo(2.03, 2);

    // The embedding's fp32 state follows the fp32 path: equal to a small tensor's arithmetic, i.e.
    // fp32 AdamW to rounding (weight decay 0 isolates rounding).
    const e8 = randn(rng, 8192, 0.1);
    const e32 = e8.slice();
    const o8 = new AdamW8bit({ weightDecay: 0, fp32StateFor: () => true });
    const o32 = new AdamW32({ weightDecay: 0 });
    for (let s = 0; s < 10; s++) {
      const g = randn(rng, 8192, 0.01);
      o8.step('embed', e8, g);
      o32.step('embed', e32, g);
    }
    let worst = 0;
    for (let i = 0; i < 8192; i++) worst = Math.max(worst, Math.abs(e8[i] - e32[i]) / (Math.abs(e32[i]) + LR));
    expect(worst).toBeLessThan(1e-5);
  });

  it('ZeRO slices on 256-element boundaries reproduce the unsharded update bit for bit', () => {
    const n = 10_000;
    const rng = new Rng(16, 'zero');
    const full = randn(rng, n, 0.1);
    const sharded = full.slice();
    const whole = new AdamW8bit();
    const rank0 = new AdamW8bit();
    const rank1 = new AdamW8bit();
    const cut = 256 * 7; // rank 0 holds 1792 elements: below 4096, still 8-bit (the full tensor decides)
    for (let s = 0; s < 5; s++) {
      const g = randn(rng, n, 0.01);
      whole.step('w', full, g);
      rank0.stepSlice('w', sharded.subarray(0, cut), g.subarray(0, cut), { offset: 0, total: n });
      rank1.stepSlice('w', sharded.subarray(cut), g.subarray(cut), { offset: cut, total: n });
    }
    expect(rank0.stateKind('w')).toBe('8bit');
    expect(bitsOf(sharded)).toEqual(bitsOf(full));
    const w = whole.dequantizedState('w');
    const s0 = rank0.dequantizedState('w');
    const s1 = rank1.dequantizedState('w');
    expect(bitsOf(s0.m)).toEqual(bitsOf(w.m.subarray(0, cut)));
    expect(bitsOf(s1.v)).toEqual(bitsOf(w.v.subarray(cut)));
    expect(rank0.stateBytes() + rank1.stateBytes()).toBe(whole.stateBytes());

    const bad = new AdamW8bit();
    expect(() => bad.stepSlice('w', full.subarray(100, 612), full.subarray(100, 612), { offset: 100, total: n })).toThrow(ShapeError);
    expect(() => bad.stepSlice('w', full.subarray(0, 300), full.subarray(0, 300), { offset: 0, total: n })).toThrow(ShapeError);
    expect(() => bad.stepSlice('w', full, full, { offset: 256, total: n })).toThrow(ShapeError);
  });

  it('rejects bad options and shapes', () => {
    expect(() => new AdamW8bit({ lr: -1 })).toThrow(ConfigError);
    expect(() => new AdamW8bit({ betas: [0.9, 1] })).toThrow(ConfigError);
    expect(() => new AdamW8bit({ eps: 0 })).toThrow(ConfigError);
    expect(() => new AdamW8bit({ blockSize: 0 })).toThrow(ConfigError);
    expect(() => new AdamW8bit().setLr(NaN)).toThrow(ConfigError);
    expect(() => new AdamW8bit().step('w', new Float32Array(1), new Float32Array(1), -1)).toThrow(/step lr/);
    expect(resolveAdamWHyper({ lr: 0 })).toEqual({ ...ADAMW_DEFAULTS, lr: 0 });
    expect(() => checkLr(Infinity, 'peak lr')).toThrow(/optimizer peak lr must be a finite number >= 0, got Infinity/);
    const opt = new AdamW8bit();
    expect(() => opt.step('w', new Float32Array(10), new Float32Array(9))).toThrow(ShapeError);
    opt.step('w', new Float32Array(10), new Float32Array(10));
    expect(() => opt.step('w', new Float32Array(11), new Float32Array(11))).toThrow(ShapeError);
    expect(() => opt.dequantizedState('missing')).toThrow(RangeError);
  });
});

describe('AdamW8bit serialisation (optimizer.bin)', () => {
  function trained(): { opt: AdamW8bit; params: Record<string, Float32Array>; rng: Rng } {
    const rng = new Rng(21, 'serialize');
    const params: Record<string, Float32Array> = {
      'a.weight': randn(rng, 6000, 0.1), // 8-bit, short last block
      'b.bias': randn(rng, 50, 0.1), // fp32 (small)
      'embed.weight': randn(rng, 4096, 0.1), // fp32 (forced)
    };
    const opt = new AdamW8bit({ lr: 4e-4, fp32StateFor: (n) => n.startsWith('embed') });
    for (let s = 0; s < 7; s++) for (const [name, p] of Object.entries(params)) opt.step(name, p, randn(rng, p.length, 0.01));
    return { opt, params, rng };
  }

  it('round-trips bit-exactly: stepping after deserialize equals stepping uninterrupted', () => {
    const { opt, params, rng } = trained();
    const bytes = opt.serialize();
    expect(opt.serialize().equals(bytes)).toBe(true); // deterministic
    const restored = AdamW8bit.deserialize(bytes, { fp32StateFor: (n) => n.startsWith('embed') });
    expect(restored.serialize().equals(bytes)).toBe(true);
    expect(restored.options).toEqual(opt.options);
    const copies = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, v.slice()]));
    for (let s = 0; s < 5; s++) {
      for (const name of Object.keys(params)) {
        const g = randn(rng, params[name].length, 0.01);
        opt.step(name, params[name], g);
        restored.step(name, copies[name], g);
      }
    }
    for (const name of Object.keys(params)) expect(bitsOf(copies[name])).toEqual(bitsOf(params[name]));
    expect(restored.serialize().equals(opt.serialize())).toBe(true);
    expect(restored.dequantizedState('a.weight').step).toBe(12);
  });

  it('exportState / importState round-trip and are snapshots', () => {
    const { opt } = trained();
    const state = opt.exportState();
    expect(JSON.parse(JSON.stringify(state.meta))).toEqual(state.meta);
    expect(state.meta.params.map((p) => [p.name, p.kind, p.length, p.step])).toEqual([
      ['a.weight', '8bit', 6000, 7],
      ['b.bias', 'fp32', 50, 7],
      ['embed.weight', 'fp32', 4096, 7],
    ]);
    const other = new AdamW8bit({ lr: 1 });
    other.importState(state);
    expect(other.serialize().equals(opt.serialize())).toBe(true);
    expect(other.lr).toBe(4e-4);
    (state.buffers[0].data as Uint8Array)[0] ^= 1; // mutating the snapshot changes neither
    expect(other.serialize().equals(opt.serialize())).toBe(true);
    // The exported buffers are the live state: codes of the tables times per-block absmax.
    const buf = (kind: string) => opt.exportState().buffers.find((x) => x.name === 'a.weight' && x.kind === kind)!.data;
    const codes = buf('v.codes');
    const absmax = buf('v.absmax');
    expect(codes).toBeInstanceOf(Uint8Array);
    expect(absmax.length).toBe(Math.ceil(6000 / 256));
    const v = opt.dequantizedState('a.weight').v;
    let mismatches = 0;
    for (let i = 0; i < 6000; i++) if (v[i] !== Math.fround(UNSIGNED_CODE.table[codes[i]] * absmax[Math.floor(i / 256)])) mismatches++;
    expect(mismatches).toBe(0);
  });

  it('rejects truncated, corrupted and mismatched input with CheckpointError', () => {
    const { opt } = trained();
    const bytes = opt.serialize();
    const flipped = Buffer.from(bytes);
    flipped[flipped.length - 100] ^= 0x10;
    const badMagic = Buffer.from(bytes);
    badMagic[0] = 0x41;
    for (const bad of [bytes.subarray(0, bytes.length - 1), bytes.subarray(0, 20), Buffer.alloc(0), flipped, badMagic]) {
      expect(() => AdamW8bit.deserialize(bad)).toThrow(CheckpointError);
    }
    expect(() => AdamW8bit.deserialize(Buffer.concat([bytes, Buffer.alloc(64)]))).toThrow(CheckpointError);
    expect(() => AdamW8bit.deserialize(new AdamW32().serialize())).toThrow(CheckpointError);

    const state = opt.exportState();
    const target = new AdamW8bit();
    const short = { ...state, buffers: state.buffers.map((b, i) => (i === 0 ? { ...b, data: b.data.subarray(1) } : b)) };
    expect(() => target.importState(short)).toThrow(CheckpointError);
    expect(() => target.importState({ ...state, buffers: state.buffers.slice(1) })).toThrow(CheckpointError);
    const badHyper = { ...state, meta: { ...state.meta, hyper: { ...state.meta.hyper, blockSize: -1 } } };
    expect(() => target.importState(badHyper)).toThrow(CheckpointError);
    expect(target.names()).toEqual([]); // a failed import changes nothing
  });
});

describe('AdamW32', () => {
  it('is textbook AdamW: first step moves each parameter by ≈ lr·sign(g) after decay', () => {
    const p = Float32Array.from([0.5, -0.25, 0.1]);
    const g = Float32Array.from([0.02, -0.03, 0]);
    const opt = new AdamW32({ lr: 1e-2, weightDecay: 0.1 });
    opt.step('p', p, g);
    // m̂ = g, v̂ = g², update = lr · g / (|g| + eps)
    expect(p[0]).toBeCloseTo(0.5 * (1 - 1e-3) - 1e-2, 7);
    expect(p[1]).toBeCloseTo(-0.25 * (1 - 1e-3) + 1e-2, 7);
    expect(p[2]).toBeCloseTo(0.1 * (1 - 1e-3), 7);
    expect(opt.stateBytes()).toBe(24);
  });

  it('serialises, and setState installs moments and step', () => {
    const rng = new Rng(31, 'adamw32');
    const p = randn(rng, 300, 0.1);
    const opt = new AdamW32();
    for (let s = 0; s < 3; s++) opt.step('p', p, randn(rng, 300, 0.01));
    const restored = AdamW32.deserialize(opt.serialize());
    const q = p.slice();
    const g = randn(rng, 300, 0.01);
    opt.step('p', p, g);
    restored.step('p', q, g);
    expect(bitsOf(q)).toEqual(bitsOf(p));

    const copy = new AdamW32();
    copy.setState('p', opt.dequantizedState('p'));
    const r = p.slice();
    const g2 = randn(rng, 300, 0.01);
    opt.step('p', p, g2);
    copy.step('p', r, g2);
    expect(bitsOf(r)).toEqual(bitsOf(p));
    expect(() => AdamW32.deserialize(new AdamW8bit().serialize())).toThrow(CheckpointError);
    const eightBit = new AdamW8bit();
    eightBit.step('w', randn(rng, 4096, 0.1), randn(rng, 4096, 0.01));
    const state = eightBit.exportState();
    expect(() => copy.importState({ ...state, meta: { ...state.meta, optimizer: 'AdamW32' } })).toThrow(/fp32 state only/);
    expect(copy.stateKind('p')).toBe('fp32'); // unchanged
  });
});

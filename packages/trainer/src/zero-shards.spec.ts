import { CheckpointError, Rng, ShapeError } from '@smolrate/core';
import { describe, expect, it } from 'vitest';
import { AdamW32 } from './adamw32.js';
import { AdamW8bit } from './adamw8bit.js';
import { decodeOptimizerState, encodeOptimizerState, mergeOptimizerStates, sliceOptimizerState, type OptimizerName } from './optimizer-state-file.js';
import { ownedSlices, planZeroShards, type FlatParam } from './zero-shards.js';

/** A parameter list shaped like the model's: small fp32-state tensors and large 8-bit ones. */
const SIZES: Array<[string, number]> = [
  ['embed_tokens.weight', 9_000],
  ['layers.0.q.weight', 5_000],
  ['layers.0.norm.weight', 64],
  ['layers.0.mlp.weight', 12_345],
  ['head.bias', 1],
  ['head.weight', 4_097],
];

function layout(sizes = SIZES): FlatParam[] {
  let offset = 0;
  return sizes.map(([name, length]) => {
    const p = { name, offset, length };
    offset += length;
    return p;
  });
}

const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');

describe('planZeroShards', () => {
  it('cuts the flat buffer into N contiguous, block-aligned segments that cover it once', () => {
    const params = layout();
    const size = params.reduce((a, p) => a + p.length, 0);
    for (const n of [1, 2, 3, 4, 7]) {
      const plan = planZeroShards(params, n, 256);
      expect(plan.bounds[0]).toBe(0);
      expect(plan.bounds[n]).toBe(size);
      for (let r = 0; r < n; r++) {
        expect(plan.bounds[r + 1]).toBeGreaterThanOrEqual(plan.bounds[r]);
        // Nearly equal: within one block (or one parameter end) of the ideal cut.
        if (r > 0) expect(Math.abs(plan.bounds[r] - (r * size) / n)).toBeLessThan(257);
        const covered = plan.parts[r].reduce((a, p) => a + p.flatEnd - p.flatStart, 0);
        expect(covered).toBe(plan.bounds[r + 1] - plan.bounds[r]);
        for (const p of plan.parts[r]) {
          expect(p.offset % 256).toBe(0);
          const end = p.offset + p.flatEnd - p.flatStart;
          expect(end === p.total || end % 256 === 0).toBe(true);
        }
      }
    }
    expect(planZeroShards(params, 1, 256).parts[0].map((p) => [p.name, p.offset, p.flatEnd - p.flatStart])).toEqual(SIZES.map(([n, l]) => [n, 0, l]));
  });

  it('allows empty segments when there are more ranks than blocks, and rejects bad layouts', () => {
    const plan = planZeroShards(layout([['a', 300]]), 4, 256);
    expect(plan.bounds).toEqual([0, 0, 256, 256, 300]);
    expect(plan.parts.map((p) => p.length)).toEqual([0, 1, 0, 1]);
    expect(() => planZeroShards([{ name: 'a', offset: 1, length: 3 }], 2, 256)).toThrow(ShapeError);
    expect(() => planZeroShards(layout(), 0, 256)).toThrow(ShapeError);
  });
});

type Opt = AdamW8bit | AdamW32;
const makers: Array<[OptimizerName, () => Opt]> = [
  ['AdamW8bit', () => new AdamW8bit({ fp32StateFor: (n) => n.startsWith('embed') })],
  ['AdamW32', () => new AdamW32()],
];

describe.each(makers)('ZeRO-1 with %s', (name, make) => {
  const params = layout();
  const size = params.reduce((a, p) => a + p.length, 0);

  /** `steps` updates of a flat parameter buffer, unsharded and by the ranks of `plan`. */
  function run(n: number, steps: number, from?: { weights: Float32Array; state: Uint8Array }) {
    const rng = new Rng(7, 'zero-spec');
    const init = new Float32Array(size).map(() => rng.normal() * 0.1);
    const plan = planZeroShards(params, n, 256);
    const weights = from ? from.weights.slice() : init.slice();
    const opts = plan.parts.map((_, r) => {
      const o = make();
      if (from) o.importState(n === 1 ? decodeOptimizerState(from.state) : sliceOptimizerState(decodeOptimizerState(from.state), name, ownedSlices(plan, r)));
      return o;
    });
    for (let s = 0; s < steps; s++) {
      const g = new Float32Array(size).map(() => rng.normal() * 0.01);
      if (s === 1) g[3] = Number.NaN; // a non-finite element resets its moments: the same in a slice
      plan.parts.forEach((parts, r) => {
        for (const p of parts) {
          opts[r].stepSlice(p.name, weights.subarray(p.flatStart, p.flatEnd), g.subarray(p.flatStart, p.flatEnd), { offset: p.offset, total: p.total }, 1e-3);
        }
      });
    }
    return { weights, opts, plan };
  }

  it('N ranks stepping their slices give the weights of one optimizer; the merged state has its exact bytes', () => {
    const one = run(1, 4);
    const oneBytes = one.opts[0].serialize();
    for (const n of [2, 3, 4]) {
      const many = run(n, 4);
      expect(bits(many.weights)).toBe(bits(one.weights));
      const merged = encodeOptimizerState(mergeOptimizerStates(many.opts.map((o) => decodeOptimizerState(o.serialize())), name));
      expect(merged.equals(oneBytes), `merged state of ${n} ranks`).toBe(true);
      // The state is divided between the ranks: each holds a part, together the whole (plus at
      // most one absmax pair per cut that splits an 8-bit block row).
      const bytes = many.opts.map((o) => o.stateBytes());
      for (const b of bytes) expect(b).toBeLessThan(one.opts[0].stateBytes());
      const total = bytes.reduce((a, b) => a + b, 0);
      expect(total).toBeGreaterThanOrEqual(one.opts[0].stateBytes());
      expect(total).toBeLessThanOrEqual(one.opts[0].stateBytes() + 8 * (n - 1));
    }
  });

  it('a checkpoint of N ranks resumes on M ranks exactly as an uninterrupted run', () => {
    for (const [n, m] of [[2, 3], [4, 1], [3, 2]]) {
      const first = run(n, 2);
      const state = encodeOptimizerState(mergeOptimizerStates(first.opts.map((o) => decodeOptimizerState(o.serialize())), name));
      // Three more steps from the checkpoint with M ranks; the gradient stream is re-drawn, so
      // compare against an M-rank continuation of a 1-rank run of the same first two steps.
      const ref = run(1, 2);
      const refState = ref.opts[0].serialize();
      expect(Buffer.from(state).equals(refState)).toBe(true);
      const a = run(m, 3, { weights: first.weights, state });
      const b = run(1, 3, { weights: ref.weights, state: refState });
      expect(bits(a.weights)).toBe(bits(b.weights));
    }
  });

  it('refuses slices that overlap, leave a gap or are not block-aligned', () => {
    const many = run(2, 1);
    const states = many.opts.map((o) => decodeOptimizerState(o.serialize()));
    expect(() => mergeOptimizerStates([states[0]], name)).toThrow(CheckpointError); // a gap
    expect(() => mergeOptimizerStates([states[0], states[0], states[1]], name)).toThrow(CheckpointError); // overlap
    const full = mergeOptimizerStates(states, name);
    expect(() => sliceOptimizerState(states[1], name, ownedSlices(many.plan, 1))).toThrow(CheckpointError); // already a slice
    if (name === 'AdamW8bit') {
      expect(() => sliceOptimizerState(full, name, new Map([['layers.0.mlp.weight', { offset: 100, length: 256 }]]))).toThrow(CheckpointError);
    }
    expect(() => sliceOptimizerState(full, name, new Map([['head.weight', { offset: 0, length: 5_000 }]]))).toThrow(CheckpointError);
  });
});

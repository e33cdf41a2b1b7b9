import { CheckpointError, ConfigError, permutation, seedFrom } from '@smolrate/core';
import { describe, expect, it } from 'vitest';
import { dropoutSeeds, GlobalSampler, type GlobalSamplerOptions } from './sampler.js';

const BASE = { numSamples: 37, seed: 1234, globalBatch: 8, microBatch: 2 } as const;

function samplers(worldSize: number, options: Partial<GlobalSamplerOptions> = {}): GlobalSampler[] {
  return Array.from({ length: worldSize }, (_, rank) => new GlobalSampler({ ...BASE, ...options, worldSize, rank }));
}

describe('GlobalSampler', () => {
  it('drops the last partial global batch: every rank has the same full steps', () => {
    for (const w of [1, 2, 4]) {
      for (const s of samplers(w)) {
        expect(s.stepsPerEpoch).toBe(4); // floor(37 / 8)
        expect(s.droppedPerEpoch).toBe(5);
        expect(s.rankBatchSize).toBe(8 / w);
        expect(s.accumulationSteps).toBe(8 / w / 2);
        for (let step = 0; step < s.stepsPerEpoch; step++) expect(s.rankSlice(0, step)).toHaveLength(8 / w);
      }
    }
    expect(() => samplers(1)[0].rankSlice(0, 4)).toThrow(RangeError);
  });

  it('partitions each global batch: rank slices are disjoint, contiguous and cover it in rank order', () => {
    for (const w of [2, 4]) {
      const ranks = samplers(w);
      for (let epoch = 0; epoch < 3; epoch++) {
        for (let step = 0; step < ranks[0].stepsPerEpoch; step++) {
          const global = ranks[0].globalBatch(epoch, step);
          const slices = ranks.map((r) => r.rankSlice(epoch, step));
          const union = slices.flatMap((s) => [...s]);
          expect(new Set(union).size).toBe(union.length); // disjoint
          expect(union).toEqual([...global]); // union = the global batch, in order
        }
      }
    }
  });

  it('visits distinct samples within an epoch and all of them but the dropped tail', () => {
    const s = samplers(1)[0];
    for (let epoch = 0; epoch < 3; epoch++) {
      const seen = Array.from({ length: s.stepsPerEpoch }, (_, step) => [...s.globalBatch(epoch, step)]).flat();
      expect(seen).toHaveLength(32);
      expect(new Set(seen).size).toBe(32);
      expect(seen.every((i) => i >= 0 && i < 37)).toBe(true);
      expect([...s.epochOrder(epoch)].sort((a, b) => a - b)).toEqual(Array.from({ length: 37 }, (_, i) => i));
    }
  });

  it('is deterministic, and the order depends on seed and epoch', () => {
    const a = new GlobalSampler({ ...BASE, worldSize: 2, rank: 1 });
    const b = new GlobalSampler({ ...BASE, worldSize: 2, rank: 1 });
    for (let step = 0; step < 4; step++) expect(b.rankSlice(2, step)).toEqual(a.rankSlice(2, step));
    expect(a.epochOrder(0)).not.toEqual(a.epochOrder(1));
    expect(a.globalBatch(0, 0)).not.toEqual(a.globalBatch(1, 0));
    const other = new GlobalSampler({ ...BASE, seed: 1235 });
    expect(other.epochOrder(0)).not.toEqual(a.epochOrder(0));
    // Returned arrays are copies: a caller cannot corrupt the cached order.
    a.globalBatch(0, 0).fill(0);
    expect(a.globalBatch(0, 0)).toEqual(b.globalBatch(0, 0));
  });

  it('gives the same global batches for worldSize 1, 2 and 4', () => {
    const [one] = samplers(1);
    for (const w of [2, 4]) {
      const ranks = samplers(w);
      for (let epoch = 0; epoch < 3; epoch++) {
        for (let step = 0; step < 4; step++) {
          expect(ranks[w - 1].globalBatch(epoch, step)).toEqual(one.globalBatch(epoch, step));
          expect(ranks.flatMap((r) => [...r.rankSlice(epoch, step)])).toEqual([...one.globalBatch(epoch, step)]);
        }
      }
    }
  });

  it('splits a rank slice into micro-batches', () => {
    const s = new GlobalSampler({ ...BASE, globalBatch: 16, numSamples: 40, worldSize: 2, rank: 1, microBatch: 4 });
    const chunks = s.microBatches(1, 1);
    expect(chunks.map((c) => c.length)).toEqual([4, 4]);
    expect(chunks.flatMap((c) => [...c])).toEqual([...s.rankSlice(1, 1)]);
  });

  it('rejects a global batch not divisible by worldSize · microBatch, naming both values', () => {
    expect(() => new GlobalSampler({ numSamples: 100, seed: 1, globalBatch: 64, worldSize: 4, rank: 0, microBatch: 3 })).toThrow(ConfigError);
    expect(() => new GlobalSampler({ numSamples: 100, seed: 1, globalBatch: 64, worldSize: 4, rank: 0, microBatch: 3 })).toThrow(
      'globalBatch (64) must be divisible by worldSize × microBatch (4 × 3 = 12)',
    );
    expect(() => new GlobalSampler({ numSamples: 100, seed: 1, globalBatch: 10, worldSize: 4, rank: 0 })).toThrow('globalBatch (10) must be divisible by worldSize (4)');
    expect(() => new GlobalSampler({ numSamples: 100, seed: 1, globalBatch: 64, worldSize: 4, rank: 4 })).toThrow(ConfigError);
    expect(() => new GlobalSampler({ numSamples: 7, seed: 1, globalBatch: 8 })).toThrow(/larger than the split/);
    expect(() => new GlobalSampler({ numSamples: 100, seed: 1.5, globalBatch: 8 })).toThrow(ConfigError);
  });

  it('walks cursors across epochs and maps them to global steps', () => {
    const s = samplers(1)[0];
    let c = { epoch: 0, step: 0 };
    for (let g = 0; g < 10; g++) {
      expect(s.globalStep(c)).toBe(g);
      expect(s.cursorAt(g)).toEqual(c);
      c = s.advance(c);
    }
    expect(c).toEqual({ epoch: 2, step: 2 });
    const steps = [...s.steps({ epoch: 1, step: 3 }, 3)];
    expect(steps.map((x) => x.cursor)).toEqual([{ epoch: 1, step: 3 }, ...[0, 1, 2, 3].map((step) => ({ epoch: 2, step }))]);
    expect(steps[0].indices).toEqual(s.rankSlice(1, 3));
    expect(steps[1].globalStep).toBe(8);
  });

  it('resumes at a saved cursor exactly, on another world size too', () => {
    const uninterrupted = [...samplers(1)[0].steps({ epoch: 0, step: 0 }, 3)].map((x) => [...x.indices]);

    // Run 7 steps on 2 ranks, checkpoint (through JSON), resume on 4 ranks.
    const before = samplers(2);
    let cursor = { epoch: 0, step: 0 };
    const seen: number[][] = [];
    for (let i = 0; i < 7; i++) {
      seen.push(before.flatMap((r) => [...r.rankSlice(cursor.epoch, cursor.step)]));
      cursor = before[0].advance(cursor);
    }
    const saved = JSON.parse(JSON.stringify(before[0].state(cursor)));
    expect(saved).toEqual({ epoch: 1, step: 3, samplesConsumed: 56, seed: 1234, numSamples: 37, globalBatch: 8 });

    const after = samplers(4);
    const resumed = after.map((r) => r.resume(saved));
    expect(resumed).toEqual([cursor, cursor, cursor, cursor]);
    const iters = after.map((r, k) => r.steps(resumed[k], 3));
    for (;;) {
      const next = iters.map((it) => it.next());
      if (next[0].done) break;
      seen.push(next.flatMap((n) => [...(n.value as { indices: Uint32Array }).indices]));
    }
    expect(seen).toEqual(uninterrupted);
  });

  it('refuses a saved state of a different order', () => {
    const s = samplers(1)[0];
    const state = s.state({ epoch: 1, step: 2 });
    expect(() => s.resume({ ...state, seed: 1 })).toThrow(CheckpointError);
    expect(() => s.resume({ ...state, numSamples: 36 })).toThrow(/numSamples: checkpoint 36, now 37/);
    expect(() => s.resume({ ...state, globalBatch: 16 })).toThrow(CheckpointError);
    expect(() => s.resume({ ...state, step: 4 })).toThrow(/outside an epoch of 4 steps/);
    expect(() => s.resume({ ...state, samplesConsumed: 1 })).toThrow(CheckpointError);
    expect(() => s.resume({ ...state, epoch: -1 })).toThrow(CheckpointError);
    expect(() => s.resume(null)).toThrow(CheckpointError);
    expect(s.resume(state)).toEqual({ epoch: 1, step: 2 });
  });

  it('sampleBlock K shuffles blocks of K consecutive indices, each in order (the last one shorter); K = 1 is the plain shuffle', () => {
    const plain = new GlobalSampler({ ...BASE });
    expect([...new GlobalSampler({ ...BASE, sampleBlock: 1 }).epochOrder(2)]).toEqual([...plain.epochOrder(2)]);
    expect([...plain.epochOrder(2)]).toEqual([...permutation(37, BASE.seed, 'epoch', 2)]);
    const k = 4;
    const s = new GlobalSampler({ ...BASE, sampleBlock: k });
    for (const epoch of [0, 1]) {
      const order = [...s.epochOrder(epoch)];
      expect([...order].sort((a, b) => a - b)).toEqual([...Array(37).keys()]);
      const blocks: number[][] = [];
      for (const i of order) {
        const last = blocks.at(-1);
        if (last !== undefined && Math.floor(last[0] / k) === Math.floor(i / k)) last.push(i);
        else blocks.push([i]);
      }
      expect(blocks).toHaveLength(Math.ceil(37 / k)); // each block appears once, whole
      for (const b of blocks) expect(b).toEqual(Array.from({ length: Math.min(k, 37 - b[0]) }, (_, j) => b[0] + j));
      expect(blocks.map((b) => b[0] / k)).toEqual([...permutation(Math.ceil(37 / k), BASE.seed, 'epoch-blocks', epoch)]);
    }
    expect([...s.epochOrder(0)]).not.toEqual([...s.epochOrder(1)]);
    // Resuming needs the same K (the order depends on it); states from before the option mean 1.
    const state = s.state({ epoch: 1, step: 2 });
    expect(state.sampleBlock).toBe(k);
    expect(s.resume(state)).toEqual({ epoch: 1, step: 2 });
    expect(() => plain.resume(state)).toThrow(/sampleBlock: checkpoint 4, now 1/);
    const { sampleBlock: _, ...old } = plain.state({ epoch: 1, step: 2 });
    expect(plain.resume(old)).toEqual({ epoch: 1, step: 2 });
    expect(() => s.resume(old)).toThrow(/sampleBlock: checkpoint 1, now 4/);
    expect(() => new GlobalSampler({ ...BASE, sampleBlock: 0 })).toThrow(ConfigError);
  });

  it('seeds dropout by global step and global index, independently of the rank split', () => {
    const [one] = samplers(1);
    const ranks = samplers(4);
    const g = one.globalStep({ epoch: 1, step: 2 });
    const all = dropoutSeeds(7, g, one.globalBatch(1, 2));
    expect(ranks.flatMap((r) => dropoutSeeds(7, g, r.rankSlice(1, 2)))).toEqual(all);
    const i = one.globalBatch(1, 2)[3];
    expect(all[3]).toBe(seedFrom(7, 'dropout', g, i));
    expect(new Set(all).size).toBe(all.length);
    expect(dropoutSeeds(7, g + 1, one.globalBatch(1, 2))).not.toEqual(all);
  });
});

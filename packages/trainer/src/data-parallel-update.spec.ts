/**
 * DataParallelUpdate — the exchange, norm, clipping, sharded AdamW and all-gather of every
 * training step — on one rank (LocalCollective) and on 2 and 3 in-process ranks over the real
 * Redis of the vitest global setup (REDIS_URL), tcp and redis data planes: ZeRO-1 gives the
 * bytes of ZeRO-0 and of one optimizer stepping the mean gradient.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AdamW8bit } from './adamw8bit.js';
import { LocalCollective, type Collective } from './collective.js';
import { DataParallelUpdate, type HostParam } from './data-parallel-update.js';
import { Watermark } from './grad-transport.js';
import { RedisCollective } from './redis-collective.js';
import { rankArray, rankOrderMean } from '../tests/collective-fixtures.js';

const SIZES = [700, 3, 1300, 257, 90];
const BLOCK = 64;

function layout(): { params: HostParam[]; weights: Float32Array } {
  const total = SIZES.reduce((a, b) => a + b, 0);
  const weights = rankArray(7, 99, total).map((x) => x * 1e-3);
  let off = 0;
  const params = SIZES.map((n, i) => {
    const p = { name: i === 0 ? 'embed_tokens.weight' : `p${i}`, offset: off, data: weights.subarray(off, off + n) };
    off += n;
    return p;
  });
  return { params, weights };
}

const optimizer = () => new AdamW8bit({ lr: 1e-2, weightDecay: 0.01, blockSize: BLOCK, fp32StateFor: (n) => n.startsWith('embed') });
const gradOf = (rank: number, step: number, n: number) => rankArray(100 + step, rank, n + 1);

/** Every rank runs `steps` updates of its own gradients; returns each rank's weights and the reported norms/losses. */
async function runRanks(cs: Collective[], steps: number, zero: number, gradClip = 0) {
  return Promise.all(
    cs.map(async (c) => {
      const { params, weights } = layout();
      const u = new DataParallelUpdate({ collective: c, params, weights, zero, blockSize: BLOCK, gradDtype: 'f32', gradClip });
      const opt = optimizer();
      const reported: Array<{ loss: number; gradNorm: number }> = [];
      for (let step = 0; step < steps; step++) {
        const g = gradOf(c.rank, step, weights.length);
        const ready = new Watermark();
        const ex = u.exchange(ready);
        for (let lo = 0; lo < g.length; lo += 500) {
          u.flat.set(g.subarray(lo, Math.min(lo + 500, g.length)), lo);
          ready.advance(Math.min(lo + 500, g.length));
          await Promise.resolve();
        }
        const r = await u.apply(ex, opt, 1e-2, step);
        reported.push({ loss: r.loss, gradNorm: r.gradNorm });
      }
      return { weights, reported, sharded: u.sharded };
    }),
  );
}

/** One optimizer stepping the rank-order mean of the N ranks' gradients, clipped as the update clips. */
function reference(n: number, steps: number, gradClip = 0) {
  const { params, weights } = layout();
  const opt = optimizer();
  const reported: Array<{ loss: number; gradNorm: number }> = [];
  for (let step = 0; step < steps; step++) {
    const mean = rankOrderMean([...Array(n).keys()].map((r) => gradOf(r, step, weights.length)));
    let sq = 0;
    for (let i = 0; i < weights.length; i++) sq += mean[i] * mean[i];
    const norm = Math.sqrt(sq);
    if (gradClip > 0 && norm > gradClip) for (let i = 0; i < weights.length; i++) mean[i] *= gradClip / norm;
    for (const p of params) opt.step(p.name, p.data, mean.subarray(p.offset, p.offset + p.data.length), 1e-2);
    reported.push({ loss: mean[weights.length], gradNorm: norm });
  }
  return { weights, reported };
}

const connect = (n: number, dataPlane: 'tcp' | 'redis') => {
  const runId = `dpu-${randomBytes(4).toString('hex')}`;
  return Promise.all([...Array(n).keys()].map((rank) => RedisCollective.connect({ url: process.env.REDIS_URL!, runId, rank, worldSize: n, dataPlane, chunkBytes: 256, timeoutMs: 20_000 })));
};

describe('DataParallelUpdate', () => {
  it('one rank: steps every parameter with the gradient, reports the loss and the norm, clips', async () => {
    for (const clip of [0, 0.5]) {
      const [got] = await runRanks([new LocalCollective()], 3, 1, clip);
      const want = reference(1, 3, clip);
      expect(got.sharded).toBe(false);
      expect(Buffer.from(got.weights.buffer).equals(Buffer.from(want.weights.buffer))).toBe(true);
      got.reported.forEach((r, i) => {
        expect(r.loss).toBe(want.reported[i].loss);
        expect(r.gradNorm).toBeCloseTo(want.reported[i].gradNorm, 10);
      });
    }
  });

  it('2 ranks with clipping: the ranks agree bit for bit; the weights match one optimizer to float rounding of the norm', async () => {
    const cs = await connect(2, 'tcp');
    try {
      const got = await runRanks(cs, 3, 1, 0.05);
      const want = reference(2, 3, 0.05);
      expect(Buffer.from(got[0].weights.buffer).equals(Buffer.from(got[1].weights.buffer))).toBe(true);
      expect(want.reported.every((r) => r.gradNorm > 0.05)).toBe(true); // clipping did happen
      let maxAbs = 0;
      for (let i = 0; i < want.weights.length; i++) maxAbs = Math.max(maxAbs, Math.abs(got[0].weights[i] - want.weights[i]));
      expect(maxAbs).toBeLessThan(1e-5);
    } finally {
      await Promise.all(cs.map((c) => c.close()));
    }
  });

  for (const dataPlane of ['tcp', 'redis'] as const) {
    it(`2 and 3 ranks over ${dataPlane}: ZeRO-1 and ZeRO-0 give every rank the bytes of one optimizer on the mean gradient`, async () => {
      for (const n of [2, 3]) {
        for (const zero of [1, 0]) {
          const cs = await connect(n, dataPlane);
          try {
            const got = await runRanks(cs, 3, zero);
            const want = reference(n, 3);
            for (const g of got) {
              expect(g.sharded).toBe(zero === 1);
              expect(Buffer.from(g.weights.buffer).equals(Buffer.from(want.weights.buffer))).toBe(true);
              g.reported.forEach((r, i) => {
                expect(r.loss).toBe(want.reported[i].loss);
                expect(r.gradNorm).toBeCloseTo(want.reported[i].gradNorm, 10);
              });
            }
          } finally {
            await Promise.all(cs.map((c) => c.close()));
          }
        }
      }
    });
  }
});

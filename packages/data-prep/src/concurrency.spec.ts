import { describe, expect, it } from 'vitest';
import { forEachPool, mapOrdered } from './concurrency.js';

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('mapOrdered', () => {
  it('yields in input order with at most `limit` calls in flight', async () => {
    let inFlight = 0;
    let most = 0;
    const out: number[] = [];
    // Later items finish first: the output must still be in input order.
    for await (const v of mapOrdered([5, 4, 3, 2, 1, 0, 6, 7], 3, async (x) => {
      inFlight++;
      most = Math.max(most, inFlight);
      await tick(x * 3);
      inFlight--;
      return x * 10;
    })) {
      out.push(v);
    }
    expect(out).toEqual([50, 40, 30, 20, 10, 0, 60, 70]);
    expect(most).toBe(3);
  });

  it('rejects with the first error only after the calls in flight settle', async () => {
    let settled = 0;
    const run = async () => {
      for await (const _ of mapOrdered([0, 1, 2, 3], 4, async (x) => {
        await tick(x === 0 ? 1 : 20);
        settled++;
        if (x === 0) throw new Error('bad 0');
        return x;
      })) {
        // consume
      }
    };
    await expect(run()).rejects.toThrow('bad 0');
    expect(settled).toBe(4);
  });
});

describe('forEachPool', () => {
  it('runs everything with bounded concurrency and reports the first error', async () => {
    let inFlight = 0;
    let most = 0;
    const seen: number[] = [];
    await forEachPool([1, 2, 3, 4, 5, 6], 2, async (x) => {
      inFlight++;
      most = Math.max(most, inFlight);
      await tick(2);
      seen.push(x);
      inFlight--;
    });
    expect(seen.sort()).toEqual([1, 2, 3, 4, 5, 6]);
    expect(most).toBe(2);
    await expect(forEachPool([1, 2, 3], 2, async (x) => {
      if (x === 2) throw new Error('two');
    })).rejects.toThrow('two');
  });
});

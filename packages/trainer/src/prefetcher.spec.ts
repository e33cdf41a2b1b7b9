import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError } from '@smolrate/core';
import { describe, expect, it } from 'vitest';
import { Prefetcher } from './prefetcher.js';

/** A build that finishes after a delay chosen so that later keys often finish first. */
function tracked(delays: (k: number) => number, fail?: (k: number) => Error | null) {
  const state = { running: 0, maxRunning: 0, started: [] as number[] };
  const build = async (k: number): Promise<string> => {
    state.started.push(k);
    state.running++;
    state.maxRunning = Math.max(state.maxRunning, state.running);
    try {
      await sleep(delays(k));
      const e = fail?.(k);
      if (e) throw e;
      return `item ${k}`;
    } finally {
      state.running--;
    }
  };
  return { state, build };
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

describe('Prefetcher', () => {
  it('returns items in key order while builds finish out of order', async () => {
    const { state, build } = tracked((k) => [30, 5, 20, 1, 12, 3, 8, 0][k % 8]);
    const p = new Prefetcher({ keys: range(12), build, depth: 3 });
    const got: string[] = [];
    for await (const item of p) got.push(item);
    expect(got).toEqual(range(12).map((k) => `item ${k}`));
    expect(state.started).toEqual(range(12));
  });

  it('keeps `depth` builds ahead of the consumer, no more', async () => {
    const { state, build } = tracked(() => 5);
    const p = new Prefetcher({ keys: range(10), build, depth: 2 });
    const first = await p.next();
    expect(first).toEqual({ done: false, value: 'item 0' });
    // While the consumer "computes" step 0, items 1 and 2 are already in flight.
    expect(p.inFlight).toBe(2);
    expect(state.started).toEqual([0, 1, 2]);
    await sleep(30);
    expect(state.started).toEqual([0, 1, 2]); // nothing beyond depth while the consumer is busy
    for (let i = 0; i < 9; i++) await p.next();
    expect(await p.next()).toEqual({ done: true, value: undefined });
    expect(state.maxRunning).toBeLessThanOrEqual(3);

    // depth 0: strictly one at a time.
    const seq = tracked(() => 1);
    const q = new Prefetcher({ keys: range(4), build: seq.build, depth: 0 });
    for await (const _ of q) expect(q.inFlight).toBe(0);
    expect(seq.state.maxRunning).toBe(1);
    expect(() => new Prefetcher({ keys: [], build: seq.build, depth: -1 })).toThrow(ConfigError);
  });

  it('delivers the items before a failure, then throws its error, then stops', async () => {
    const boom = new Error('shard 3 is corrupt');
    // Key 4 fails too, and sooner than key 3: only key 3's error may surface, and key 4's
    // rejection must not be reported as unhandled (vitest fails the run if it is).
    const { state, build } = tracked(
      (k) => (k === 3 ? 20 : 1),
      (k) => (k === 3 ? boom : k === 4 ? new Error('later failure') : null),
    );
    const p = new Prefetcher({ keys: range(10), build, depth: 3 });
    const got: string[] = [];
    const err = await (async () => {
      try {
        for await (const item of p) got.push(item);
      } catch (e) {
        return e;
      }
      return null;
    })();
    expect(got).toEqual(['item 0', 'item 1', 'item 2']);
    expect(err).toBe(boom);
    expect(await p.next()).toEqual({ done: true, value: undefined });
    const startedAtFailure = state.started.length;
    await sleep(40);
    expect(state.started.length).toBe(startedAtFailure);
    expect(Math.max(...state.started)).toBeLessThanOrEqual(6);
  });

  it('surfaces an error of the key source at its place in the order', async () => {
    function* keys() {
      yield 0;
      yield 1;
      throw new Error('sampler broke');
    }
    const { build } = tracked(() => 1);
    const p = new Prefetcher({ keys: keys(), build, depth: 4 });
    expect((await p.next()).value).toBe('item 0');
    expect((await p.next()).value).toBe('item 1');
    await expect(p.next()).rejects.toThrow('sampler broke');
    expect((await p.next()).done).toBe(true);
  });

  it('stops pulling keys when the consumer breaks out', async () => {
    let pulled = 0;
    let closed = false;
    function* keys() {
      try {
        for (let k = 0; ; k++) {
          pulled++;
          yield k;
        }
      } finally {
        closed = true;
      }
    }
    const { build } = tracked(() => 1);
    const p = new Prefetcher({ keys: keys(), build, depth: 2 });
    for await (const item of p) if (item === 'item 4') break;
    expect(closed).toBe(true);
    expect(pulled).toBe(7); // item 4 consumed, 5 and 6 were in flight
    expect((await p.next()).done).toBe(true);
  });
});

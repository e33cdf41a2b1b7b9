import { Rng } from '@smolrate/core';
import { describe, expect, it } from 'vitest';
import { BoundedHeap } from './bounded-heap.js';

describe('BoundedHeap', () => {
  it('keeps exactly the best `capacity` items under a total order, whatever the arrival order', () => {
    const rng = new Rng(7, 'heap');
    for (let trial = 0; trial < 40; trial++) {
      const n = rng.int(200);
      const cap = rng.int(30);
      const values = Array.from({ length: n }, () => ({ v: rng.int(10), id: rng.int(1_000_000) }));
      const order = (a: { v: number; id: number }, b: { v: number; id: number }) => b.v - a.v || a.id - b.id;
      const heap = new BoundedHeap(cap, order);
      let left = 0;
      for (const x of values) if (heap.offer(x) !== undefined) left++;
      const expected = [...values].sort(order).slice(0, cap);
      expect(heap.sorted()).toEqual(expected);
      expect(heap.size).toBe(Math.min(cap, n));
      expect(left).toBe(Math.max(0, n - cap));
    }
  });

  it('reports what left: the displaced worst item, or the newcomer itself', () => {
    const heap = new BoundedHeap<number>(2, (a, b) => a - b); // keep the 2 smallest
    expect(heap.offer(5)).toBeUndefined();
    expect(heap.offer(3)).toBeUndefined();
    expect(heap.peekWorst()).toBe(5);
    expect(heap.accepts(9)).toBe(false);
    expect(heap.offer(9)).toBe(9);
    expect(heap.offer(1)).toBe(5);
    expect(heap.sorted()).toEqual([1, 3]);
  });

  it('with capacity 0 keeps nothing; rejects a bad capacity', () => {
    const heap = new BoundedHeap<number>(0, (a, b) => a - b);
    expect(heap.accepts(1)).toBe(false);
    expect(heap.offer(1)).toBe(1);
    expect(heap.size).toBe(0);
    expect(() => new BoundedHeap<number>(-1, (a, b) => a - b)).toThrow(RangeError);
  });
});

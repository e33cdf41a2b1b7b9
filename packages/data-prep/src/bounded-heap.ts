/**
 * The best `capacity` items of a stream under a total order, in O(capacity) memory and
 * O(log capacity) per offer: a binary heap whose root is the worst item held, so a newcomer only
 * has to beat the root. `compare(a, b) < 0` means a ranks before (is better than) b; with a
 * total order (ties broken by a unique key) the kept set does not depend on arrival order.
 */
export class BoundedHeap<T> {
  private readonly heap: T[] = [];

  constructor(
    readonly capacity: number,
    private readonly compare: (a: T, b: T) => number,
  ) {
    if (!Number.isSafeInteger(capacity) || capacity < 0) throw new RangeError(`BoundedHeap: capacity must be a non-negative integer, got ${capacity}`);
  }

  get size(): number {
    return this.heap.length;
  }

  /** The worst item held (the next to go), if any. */
  peekWorst(): T | undefined {
    return this.heap[0];
  }

  /** Whether `item` would be kept if offered now. */
  accepts(item: T): boolean {
    if (this.heap.length < this.capacity) return true;
    return this.capacity > 0 && this.compare(item, this.heap[0]) < 0;
  }

  /**
   * Offers `item`. Returns what left the heap: the displaced worst item, `item` itself when it
   * was not good enough, or undefined when nothing left (the heap was not full).
   */
  offer(item: T): T | undefined {
    const h = this.heap;
    if (h.length < this.capacity) {
      h.push(item);
      this.siftUp(h.length - 1);
      return undefined;
    }
    if (!this.accepts(item)) return item;
    const out = h[0];
    h[0] = item;
    this.siftDown(0);
    return out;
  }

  /** The items held, best first (a sorted copy; the heap is unchanged). */
  sorted(): T[] {
    return [...this.heap].sort(this.compare);
  }

  /** The items held, in no particular order. */
  values(): readonly T[] {
    return this.heap;
  }

  // "Worse" sits nearer the root: parent is never better than its children.
  private worse(i: number, j: number): boolean {
    return this.compare(this.heap[i], this.heap[j]) > 0;
  }

  private siftUp(i: number): void {
    const h = this.heap;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.worse(i, parent)) break;
      [h[i], h[parent]] = [h[parent], h[i]];
      i = parent;
    }
  }

  private siftDown(i: number): void {
    const h = this.heap;
    const n = h.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const w = r < n && this.worse(r, l) ? r : l;
      if (!this.worse(w, i)) break;
      [h[i], h[w]] = [h[w], h[i]];
      i = w;
    }
  }
}

/**
 * A least-recently-used map bounded by a byte budget (each entry states its own size). Used for
 * decoded shards (shard-dataset.ts) and for image features read from the cache (feature-cache.ts).
 * The entry just inserted is never evicted, even when it alone is over the budget: a caller that
 * asked for it gets it; it simply does not stay once something else arrives.
 */
export class ByteLru<K, V> {
  private readonly entries = new Map<K, { value: V; bytes: number }>();
  private total = 0;
  /** Entries dropped to stay within the budget, since construction. */
  evictions = 0;

  constructor(readonly maxBytes: number) {
    if (!(maxBytes >= 0)) throw new RangeError(`ByteLru: maxBytes must be ≥ 0, got ${maxBytes}`);
  }

  get size(): number {
    return this.entries.size;
  }

  /** Sum of the sizes of the entries held. */
  get bytes(): number {
    return this.total;
  }

  has(key: K): boolean {
    return this.entries.has(key);
  }

  /** The value, marked most recently used; undefined when absent. */
  get(key: K): V | undefined {
    const e = this.entries.get(key);
    if (e === undefined) return undefined;
    // Map iteration order is insertion order: re-inserting moves the entry to the young end.
    this.entries.delete(key);
    this.entries.set(key, e);
    return e.value;
  }

  set(key: K, value: V, bytes: number): void {
    if (!(bytes >= 0)) throw new RangeError(`ByteLru: entry size must be ≥ 0, got ${bytes}`);
    const old = this.entries.get(key);
    if (old !== undefined) {
      this.total -= old.bytes;
      this.entries.delete(key);
    }
    this.entries.set(key, { value, bytes });
    this.total += bytes;
    for (const [k, e] of this.entries) {
      if (this.total <= this.maxBytes || k === key) break;
      this.entries.delete(k);
      this.total -= e.bytes;
      this.evictions++;
    }
  }

  delete(key: K): boolean {
    const e = this.entries.get(key);
    if (e === undefined) return false;
    this.entries.delete(key);
    this.total -= e.bytes;
    return true;
  }

  clear(): void {
    this.entries.clear();
    this.total = 0;
  }
}

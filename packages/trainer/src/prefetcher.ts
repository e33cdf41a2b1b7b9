/**
 * Keeps up to `depth` future items in flight while the consumer works on the current one, so
 * batch t+1 is read, decoded and tokenised while step t computes (the data work awaits I/O and
 * the thread pool; the model's forward/backward holds the main thread in between). Items come
 * back strictly in key order whatever order their builds finish in.
 *
 * Errors: a failed build is thrown by the `next()` that would have returned that item — items
 * before it are delivered normally — and the prefetcher then stops (later `next()` calls report
 * done, nothing more is started). Failures of builds that were still in flight and never
 * requested are swallowed, never left as unhandled rejections.
 *
 *   const batches = new Prefetcher({ keys: sampler.steps(cursor), build: (s) => builder.build(s.indices), depth: 2 });
 *   for await (const batch of batches) { ... }   // `break` closes it
 */
import { ConfigError } from '@smolrate/core';

export interface PrefetcherOptions<K, T> {
  /** What to build, in order (e.g. GlobalSampler.steps()). Pulled lazily, at most `depth` ahead. */
  keys: Iterable<K>;
  build: (key: K) => Promise<T>;
  /** Items built ahead of the one being consumed. Default 2. */
  depth?: number;
}

export class Prefetcher<K, T> implements AsyncIterableIterator<T> {
  readonly depth: number;
  private readonly keys: Iterator<K>;
  private readonly build: (key: K) => Promise<T>;
  private readonly queue: Array<Promise<T>> = [];
  private exhausted = false;
  private closed = false;
  private busy = false;
  /** Builds started so far. */
  started = 0;

  constructor(options: PrefetcherOptions<K, T>) {
    const depth = options.depth ?? 2;
    if (!Number.isSafeInteger(depth) || depth < 0) throw new ConfigError(`prefetcher: depth must be a non-negative integer, got ${depth}`);
    this.depth = depth;
    this.keys = options.keys[Symbol.iterator]();
    this.build = options.build;
  }

  /** Builds started and not yet handed out. */
  get inFlight(): number {
    return this.queue.length;
  }

  async next(): Promise<IteratorResult<T, undefined>> {
    if (this.busy) throw new Error('prefetcher: next() called before the previous call settled');
    if (this.closed) return { done: true, value: undefined };
    this.busy = true;
    try {
      this.fill(1);
      const head = this.queue.shift();
      if (head === undefined) {
        this.closed = true;
        return { done: true, value: undefined };
      }
      this.fill(this.depth); // the next `depth` items build while the caller awaits / uses this one
      try {
        return { done: false, value: await head };
      } catch (e) {
        this.stop();
        throw e;
      }
    } finally {
      this.busy = false;
    }
  }

  /** Stops: nothing new is started; results of builds still in flight are dropped. */
  async return(): Promise<IteratorResult<T, undefined>> {
    this.stop();
    return { done: true, value: undefined };
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  private stop(): void {
    this.closed = true;
    this.queue.length = 0; // each queued promise already has a handler (see start)
    if (!this.exhausted) {
      this.exhausted = true;
      this.keys.return?.();
    }
  }

  /** Starts builds until `target` are queued or the keys run out. */
  private fill(target: number): void {
    while (!this.exhausted && this.queue.length < target) {
      let r: IteratorResult<K>;
      try {
        r = this.keys.next();
      } catch (e) {
        // A failing key source fails at its place in the order, like a failing build.
        this.exhausted = true;
        this.start(Promise.reject(e));
        return;
      }
      if (r.done) {
        this.exhausted = true;
        return;
      }
      const key = r.value;
      this.start(Promise.resolve().then(() => this.build(key)));
    }
  }

  private start(p: Promise<T>): void {
    p.catch(() => undefined); // handled when (if) it is requested
    this.queue.push(p);
    this.started++;
  }
}

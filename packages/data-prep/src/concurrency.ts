/**
 * Bounded concurrency for the pipeline's I/O: at most `limit` calls in flight, results in input
 * order (`mapOrdered`, for rows that must keep their chunk order) or as they come (`forEachPool`).
 */

/**
 * Yields `fn(item, i)` for each item in input order, running up to `limit` calls ahead. Memory is
 * bounded by `limit` pending results. The first error rejects the iteration once the calls
 * already started have settled (no call is left running in the background).
 */
export async function* mapOrdered<T, R>(items: Iterable<T>, limit: number, fn: (item: T, index: number) => Promise<R>): AsyncGenerator<R> {
  const n = Math.max(1, Math.floor(limit));
  const it = items[Symbol.iterator]();
  const pending: Array<Promise<R>> = [];
  let index = 0;
  let done = false;
  const fill = (): void => {
    while (!done && pending.length < n) {
      const next = it.next();
      if (next.done) {
        done = true;
        break;
      }
      const p = fn(next.value, index++);
      p.catch(() => undefined); // observed below, in order; avoid an unhandled rejection meanwhile
      pending.push(p);
    }
  };
  try {
    fill();
    while (pending.length > 0) {
      const value = await pending[0];
      pending.shift();
      fill();
      yield value;
    }
  } finally {
    // On an error or an early return, wait for the calls in flight before giving up.
    await Promise.allSettled(pending);
  }
}

/** Runs `fn` over `items` with at most `limit` in flight; rejects with the first error after all settle. */
export async function forEachPool<T>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  const n = Math.max(1, Math.min(Math.floor(limit), items.length));
  let next = 0;
  let firstError: { e: unknown } | undefined;
  const lane = async (): Promise<void> => {
    while (firstError === undefined && next < items.length) {
      const i = next++;
      try {
        await fn(items[i], i);
      } catch (e) {
        firstError ??= { e };
      }
    }
  };
  await Promise.all(Array.from({ length: n }, lane));
  if (firstError !== undefined) throw firstError.e;
}

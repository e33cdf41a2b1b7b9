import { CollectiveError } from '@smolrate/core';

/** Promises started now and awaited later; the first failure is visible at once. */
export class TaskGroup {
  private readonly all: Promise<void>[] = [];
  private failed = false;
  private err: unknown;
  add(p: Promise<unknown>): void {
    this.all.push(
      p.then(
        () => undefined,
        (e: unknown) => {
          if (!this.failed) [this.failed, this.err] = [true, e];
        },
      ),
    );
  }
  get error(): unknown {
    return this.failed ? (this.err ?? new CollectiveError('a collective step failed')) : undefined;
  }
  async settle(): Promise<void> {
    await Promise.all(this.all);
    if (this.failed) throw this.error;
  }
}

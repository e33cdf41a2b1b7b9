/**
 * A byte stream that survives connection loss: when the underlying HTTP body fails with a
 * transient error (reset, timeout) or ends early, it reopens the object at the byte it had
 * reached (a ranged GET) and carries on, up to the retry policy's attempts. Without this, one
 * dropped socket late in a multi-GB shard download throws the whole transfer away.
 */
import { Readable } from 'node:stream';
import { backoffDelay, resolveRetryOptions, type ResolvedRetryOptions, type RetryOptions } from './retry.js';

export interface ResumableReadOptions {
  /** Bytes the whole stream must deliver (e.g. Content-Length); an earlier end counts as a failure. */
  expectedLength?: number;
  /**
   * Deliver at most this many bytes, dropping the rest of the body. Guards against servers that
   * send more than the range asked for (s3rver answers `bytes=0-0` with the whole object).
   */
  limit?: number;
  /** Opens the data again starting `offset` bytes into this stream. */
  reopen: (offset: number) => Promise<Readable>;
  retry?: RetryOptions;
  /** Turns the final error into the caller's error type. */
  mapError?: (error: unknown) => Error;
}

class PrematureEndError extends Error {
  // Classified like a reset socket by isTransientNetworkError.
  readonly code = 'ERR_STREAM_PREMATURE_CLOSE';
}

class ResumableReadStream extends Readable {
  private body: Readable | undefined;
  private offset = 0;
  /** Consecutive failures without a byte of progress in between. */
  private failures = 0;
  private wantsData = false;
  private readonly waiting = new AbortController();
  private readonly policy: ResolvedRetryOptions;

  constructor(
    first: Readable,
    private readonly opts: ResumableReadOptions,
  ) {
    super();
    this.policy = resolveRetryOptions(opts.retry);
    this.attach(first);
  }

  override _read(): void {
    this.wantsData = true;
    this.body?.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.waiting.abort();
    this.detach();
    callback(error);
  }

  private attach(body: Readable): void {
    this.body = body;
    const limit = this.opts.limit;
    body.on('data', (chunk: Buffer) => {
      // Only on overshoot: a body that ends exactly at the limit ends normally (socket reused).
      if (limit !== undefined && this.offset + chunk.length > limit) {
        const last = chunk.subarray(0, limit - this.offset);
        this.offset = limit;
        this.detach();
        if (last.length > 0) this.push(last);
        this.push(null);
        return;
      }
      this.offset += chunk.length;
      this.failures = 0;
      if (!this.push(chunk)) {
        this.wantsData = false;
        body.pause();
      }
    });
    body.once('end', () => {
      // Ending short of a known length is a dropped connection, not the end of the object.
      const expected =
      this.opts.limit !== undefined && this.opts.expectedLength !== undefined
        ? Math.min(this.opts.limit, this.opts.expectedLength)
        : (this.opts.expectedLength ?? this.opts.limit);
      if (expected !== undefined && this.offset < expected) {
        this.fail(new PrematureEndError(`stream ended after ${this.offset} of ${expected} bytes`));
      } else {
        this.body = undefined;
        this.push(null);
      }
    });
    body.on('error', (e) => this.fail(e));
    if (this.wantsData) body.resume();
    else body.pause();
  }

  private detach(): void {
    const body = this.body;
    if (body === undefined) return;
    this.body = undefined;
    body.removeAllListeners('data');
    body.removeAllListeners('end');
    body.removeAllListeners('error');
    body.on('error', () => undefined); // late errors from a body we have given up on
    body.destroy();
  }

  private fail(error: unknown): void {
    this.detach();
    if (this.destroyed) return;
    this.failures += 1;
    const { policy } = this;
    if (this.failures >= policy.attempts || !policy.retryable(error)) {
      this.destroy(this.mapError(error));
      return;
    }
    const delayMs = backoffDelay(this.failures, policy);
    policy.onRetry?.({ attempt: this.failures, delayMs, error });
    policy
      .sleep(delayMs, this.waiting.signal)
      .then(() => this.opts.reopen(this.offset))
      .then(
        (body) => {
          if (this.destroyed) body.destroy();
          else this.attach(body);
        },
        (e) => {
          if (!this.destroyed) this.destroy(this.mapError(e));
        },
      );
  }

  private mapError(e: unknown): Error {
    if (this.opts.mapError) return this.opts.mapError(e);
    return e instanceof Error ? e : new Error(String(e));
  }
}

/** Wraps the first response body `first` in a stream that resumes after transient failures. */
export function resumableReadStream(first: Readable, opts: ResumableReadOptions): Readable {
  return new ResumableReadStream(first, opts);
}

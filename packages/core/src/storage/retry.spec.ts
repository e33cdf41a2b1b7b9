import { describe, expect, it } from 'vitest';
import { backoffDelay, isTransientNetworkError, resolveRetryOptions, withRetry, type RetryInfo } from './retry.js';
import { isTransientS3Error, toStorageError } from './s3-errors.js';
import { S3RetryStrategy } from './s3-retry-strategy.js';
import { NotFoundError, PermissionError, StorageError } from '../errors.js';

function errno(code: string): Error {
  return Object.assign(new Error(code), { code });
}
function s3Error(name: string, status: number): Error {
  return Object.assign(new Error(name), { name, $metadata: { httpStatusCode: status } });
}

/** A call that fails with `failures` in order, then returns 'ok'. */
function flaky(failures: unknown[]) {
  let calls = 0;
  const fn = async (attempt: number) => {
    calls += 1;
    expect(attempt).toBe(calls);
    if (calls <= failures.length) throw failures[calls - 1];
    return 'ok';
  };
  return { fn, calls: () => calls };
}

const noSleep = { sleep: async () => undefined, random: () => 0.5 };

describe('withRetry', () => {
  it('retries a transient failure sequence and returns the eventual result', async () => {
    const f = flaky([errno('ECONNRESET'), s3Error('InternalError', 500), s3Error('SlowDown', 503)]);
    const slept: number[] = [];
    const seen: RetryInfo[] = [];
    const result = await withRetry(f.fn, {
      attempts: 4,
      baseDelayMs: 100,
      maxDelayMs: 250,
      random: () => 0.5,
      sleep: async (ms) => void slept.push(ms),
      onRetry: (info) => seen.push(info),
    });
    expect(result).toBe('ok');
    expect(f.calls()).toBe(4);
    // Half of the capped exponential: min(250, 100·2^(n-1)) / 2.
    expect(slept).toEqual([50, 100, 125]);
    expect(seen.map((s) => s.attempt)).toEqual([1, 2, 3]);
  });

  it('gives up after the configured attempts and rethrows the last error unchanged', async () => {
    const last = s3Error('ServiceUnavailable', 503);
    const f = flaky([errno('ETIMEDOUT'), errno('EPIPE'), last, errno('ECONNRESET')]);
    await expect(withRetry(f.fn, { attempts: 3, ...noSleep })).rejects.toBe(last);
    expect(f.calls()).toBe(3);
  });

  it('does not retry a permanent error', async () => {
    const denied = s3Error('AccessDenied', 403);
    const f = flaky([denied]);
    await expect(withRetry(f.fn, { attempts: 5, ...noSleep })).rejects.toBe(denied);
    expect(f.calls()).toBe(1);
  });

  it('uses a custom retryable predicate', async () => {
    const f = flaky([new Error('flaky'), new Error('flaky')]);
    const result = await withRetry(f.fn, { retryable: (e) => (e as Error).message === 'flaky', ...noSleep });
    expect(result).toBe('ok');
    expect(f.calls()).toBe(3);
  });

  it('waits for real by default and stops waiting when aborted', async () => {
    const ac = new AbortController();
    const f = flaky([errno('ECONNRESET'), errno('ECONNRESET')]);
    const t0 = Date.now();
    setTimeout(() => ac.abort(), 30);
    await expect(withRetry(f.fn, { attempts: 3, baseDelayMs: 10_000, random: () => 0.99, signal: ac.signal })).rejects.toThrow(
      /abort/i,
    );
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(f.calls()).toBe(1);
  });

  it('rejects a nonsensical attempt count', () => {
    expect(() => resolveRetryOptions({ attempts: 0 })).toThrow(RangeError);
  });
});

describe('backoffDelay', () => {
  it('is full jitter over a capped exponential', () => {
    const o = { baseDelayMs: 100, maxDelayMs: 1000 };
    expect([1, 2, 3, 4, 5, 10].map((n) => backoffDelay(n, { ...o, random: () => 0.999999 }))).toEqual([
      99, 199, 399, 799, 999, 999,
    ]);
    expect(backoffDelay(3, { ...o, random: () => 0 })).toBe(0);
  });
});

describe('error classification', () => {
  it('calls socket failures, 5xx and 429 transient, other statuses not', () => {
    for (const e of [errno('ECONNRESET'), errno('ETIMEDOUT'), errno('EAI_AGAIN'), s3Error('X', 500), s3Error('X', 503), s3Error('X', 429)]) {
      expect(isTransientNetworkError(e), (e as Error).message).toBe(true);
    }
    for (const e of [errno('ENOENT'), s3Error('X', 400), s3Error('X', 403), s3Error('X', 404), s3Error('X', 501), new Error('x'), null, 'x']) {
      expect(isTransientNetworkError(e)).toBe(false);
    }
    expect(isTransientNetworkError(new Error('wrapped', { cause: errno('ECONNRESET') }))).toBe(true);
  });

  it('knows S3 throttling codes and SDK timeouts', () => {
    expect(isTransientS3Error(s3Error('SlowDown', 503))).toBe(true);
    expect(isTransientS3Error(Object.assign(new Error('t'), { name: 'RequestTimeout' }))).toBe(true);
    expect(isTransientS3Error(Object.assign(new Error('t'), { name: 'TimeoutError' }))).toBe(true);
    expect(isTransientS3Error(s3Error('NoSuchKey', 404))).toBe(false);
    expect(isTransientS3Error(new StorageError('already mapped', 's3://b/k'))).toBe(false);
  });

  it('maps S3 failures to typed errors naming the URI', () => {
    const uri = 's3://bucket/a/b.bin';
    const nf = toStorageError(s3Error('NoSuchKey', 404), uri, 'get');
    expect(nf).toBeInstanceOf(NotFoundError);
    expect(nf.message).toContain(uri);
    expect(toStorageError(s3Error('NotFound', 404), uri, 'head')).toBeInstanceOf(NotFoundError);
    expect(toStorageError(s3Error('AccessDenied', 403), uri, 'get')).toBeInstanceOf(PermissionError);
    const other = toStorageError(s3Error('InternalError', 500), uri, 'put');
    expect(other).toBeInstanceOf(StorageError);
    expect(other).not.toBeInstanceOf(NotFoundError);
    expect(other.message).toBe(`put ${uri} failed: InternalError: HTTP 500: InternalError`);
    expect((other as StorageError).uri).toBe(uri);
  });
});

describe('S3RetryStrategy (the policy as seen by the AWS SDK)', () => {
  it('hands out tokens with our backoff until attempts run out, and only for transient errors', async () => {
    const s = new S3RetryStrategy({ attempts: 3, baseDelayMs: 100, maxDelayMs: 1000, random: () => 0.5 });
    const t0 = await s.acquireInitialRetryToken('');
    expect(t0.getRetryCount()).toBe(0);
    const slow = { error: s3Error('SlowDown', 503), errorType: 'THROTTLING' };
    const t1 = await s.refreshRetryTokenForRetry(t0, slow);
    expect([t1.getRetryCount(), t1.getRetryDelay()]).toEqual([1, 50]);
    const t2 = await s.refreshRetryTokenForRetry(t1, slow);
    expect([t2.getRetryCount(), t2.getRetryDelay()]).toEqual([2, 100]);
    await expect(s.refreshRetryTokenForRetry(t2, slow)).rejects.toBe(slow.error);
    const denied = { error: s3Error('AccessDenied', 403), errorType: 'CLIENT_ERROR' };
    await expect(s.refreshRetryTokenForRetry(t0, denied)).rejects.toBe(denied.error);
  });

  it('honours a Retry-After hint up to the cap', async () => {
    const s = new S3RetryStrategy({ attempts: 3, baseDelayMs: 10, maxDelayMs: 2000, random: () => 0 });
    const t0 = await s.acquireInitialRetryToken('');
    const hinted = { error: s3Error('SlowDown', 503), errorType: 'THROTTLING', retryAfterHint: new Date(Date.now() + 60_000) };
    expect((await s.refreshRetryTokenForRetry(t0, hinted)).getRetryDelay()).toBe(2000);
  });
});

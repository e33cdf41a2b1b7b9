/**
 * Our retry policy (retry.ts) as an AWS SDK v3 retry strategy, so every request the client
 * sends — including the parts lib-storage's Upload sends on our behalf — is retried the same
 * way: our attempt count, our full-jitter backoff, our notion of a transient S3 error. The SDK's
 * own token bucket is not used; a server's Retry-After hint lengthens the wait (up to the cap).
 */
import type { S3ClientConfig } from '@aws-sdk/client-s3';
import { backoffDelay, resolveRetryOptions, type ResolvedRetryOptions, type RetryOptions } from './retry.js';
import { isTransientS3Error } from './s3-errors.js';

type SdkRetryStrategy = NonNullable<S3ClientConfig['retryStrategy']>;

class RetryToken {
  constructor(
    private readonly count: number,
    private readonly delayMs: number,
  ) {}
  getRetryCount(): number {
    return this.count;
  }
  getRetryDelay(): number {
    return this.delayMs;
  }
}

/** What the SDK's retry middleware hands a V2 strategy after a failed attempt. */
interface RetryErrorInfo {
  error?: unknown;
  errorType: string;
  retryAfterHint?: Date;
}

export class S3RetryStrategy {
  readonly mode = 'smolrate';
  private readonly policy: ResolvedRetryOptions;

  /** `retry.retryable` defaults to `isTransientS3Error`. */
  constructor(retry: RetryOptions = {}) {
    this.policy = resolveRetryOptions({ retryable: isTransientS3Error, ...retry });
  }

  get attempts(): number {
    return this.policy.attempts;
  }

  async acquireInitialRetryToken(_scope: string): Promise<RetryToken> {
    return new RetryToken(0, 0);
  }

  async refreshRetryTokenForRetry(token: RetryToken, info: RetryErrorInfo): Promise<RetryToken> {
    const retry = token.getRetryCount() + 1;
    // Throwing tells the middleware to give up; it rethrows the original SDK error.
    if (retry >= this.policy.attempts || !this.policy.retryable(info.error)) {
      throw info.error ?? new Error('retry refused');
    }
    let delayMs = backoffDelay(retry, this.policy);
    if (info.retryAfterHint !== undefined) {
      const hinted = info.retryAfterHint.getTime() - Date.now();
      delayMs = Math.min(this.policy.maxDelayMs, Math.max(delayMs, hinted));
    }
    this.policy.onRetry?.({ attempt: retry, delayMs, error: info.error });
    return new RetryToken(retry, delayMs);
  }

  recordSuccess(_token: RetryToken): void {
    // No retry quota to refill: unlike the SDK's standard strategy, ours keeps no token bucket.
  }
}

/** The strategy, typed for `new S3Client({ retryStrategy })`. */
export function s3RetryStrategy(retry?: RetryOptions): SdkRetryStrategy {
  return new S3RetryStrategy(retry);
}

/**
 * Retry with capped exponential backoff and full jitter ("Exponential Backoff And Jitter",
 * AWS Architecture Blog, 2015): the n-th retry waits a uniform random time in
 * [0, min(maxDelayMs, baseDelayMs · 2^(n-1))], which spreads out clients that failed together.
 * Only errors the `retryable` predicate calls transient are retried; anything else fails at once.
 */
import { setTimeout as sleepMs } from 'node:timers/promises';

export interface RetryOptions {
  /** Total attempts including the first. Default 4 (so up to 3 retries). 1 disables retrying. */
  attempts?: number;
  /** Upper bound of the first retry's delay, in ms. Default 100. */
  baseDelayMs?: number;
  /** Upper bound of any single delay, in ms. Default 5000. */
  maxDelayMs?: number;
  /** Whether an error is worth retrying. Default: `isTransientNetworkError`. */
  retryable?: (error: unknown) => boolean;
  /** Called before sleeping for a retry (logging, metrics). */
  onRetry?: (info: RetryInfo) => void;
  /** Uniform random numbers in [0, 1) for the jitter. Default Math.random. */
  random?: () => number;
  /** Sleeps `ms`; injectable so tests need not wait. Default: a timer. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Aborts the waiting between attempts (the running attempt is the caller's business). */
  signal?: AbortSignal;
}

export interface RetryInfo {
  /** The attempt that failed, from 1. */
  attempt: number;
  /** How long we wait before the next attempt. */
  delayMs: number;
  error: unknown;
}

export type ResolvedRetryOptions = Required<Omit<RetryOptions, 'onRetry' | 'signal'>> &
  Pick<RetryOptions, 'onRetry' | 'signal'>;

const DEFAULT_RETRY: Readonly<Required<Pick<RetryOptions, 'attempts' | 'baseDelayMs' | 'maxDelayMs'>>> = {
  attempts: 4,
  baseDelayMs: 100,
  maxDelayMs: 5000,
};

export function resolveRetryOptions(opts: RetryOptions = {}): ResolvedRetryOptions {
  const attempts = opts.attempts ?? DEFAULT_RETRY.attempts;
  if (!Number.isInteger(attempts) || attempts < 1) {
    throw new RangeError(`retry attempts must be an integer >= 1, got ${attempts}`);
  }
  return {
    attempts,
    baseDelayMs: opts.baseDelayMs ?? DEFAULT_RETRY.baseDelayMs,
    maxDelayMs: opts.maxDelayMs ?? DEFAULT_RETRY.maxDelayMs,
    retryable: opts.retryable ?? isTransientNetworkError,
    random: opts.random ?? Math.random,
    sleep: opts.sleep ?? ((ms, signal) => sleepMs(ms, undefined, { signal })),
    onRetry: opts.onRetry,
    signal: opts.signal,
  };
}

/** Delay before retry number `retry` (1 = first retry): full jitter over the capped exponential. */
export function backoffDelay(
  retry: number,
  opts: Pick<ResolvedRetryOptions, 'baseDelayMs' | 'maxDelayMs' | 'random'>,
): number {
  const cap = Math.min(opts.maxDelayMs, opts.baseDelayMs * 2 ** Math.max(0, retry - 1));
  return Math.floor(opts.random() * cap);
}

/**
 * Runs `fn` until it succeeds, the error is not retryable, or the attempts are used up; then
 * rethrows the last error unchanged (callers map it to their own error types).
 */
export async function withRetry<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  const o = resolveRetryOptions(opts);
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (error) {
      if (attempt >= o.attempts || !o.retryable(error) || o.signal?.aborted) throw error;
      const delayMs = backoffDelay(attempt, o);
      o.onRetry?.({ attempt, delayMs, error });
      await o.sleep(delayMs, o.signal);
    }
  }
}

// Socket-level failures that a fresh connection usually cures.
const TRANSIENT_NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'ESOCKETTIMEDOUT',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'ERR_STREAM_PREMATURE_CLOSE',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);

/**
 * True for connection resets, refusals, timeouts and HTTP 5xx / 429 responses (any error carrying
 * `status`, `statusCode` or `$metadata.httpStatusCode`). Follows `cause` chains.
 */
export function isTransientNetworkError(error: unknown): boolean {
  for (let e = error, depth = 0; e !== null && typeof e === 'object' && depth < 8; depth++) {
    const err = e as {
      code?: unknown;
      name?: unknown;
      status?: unknown;
      statusCode?: unknown;
      $metadata?: { httpStatusCode?: unknown };
      cause?: unknown;
    };
    if (typeof err.code === 'string' && TRANSIENT_NETWORK_CODES.has(err.code)) return true;
    if (err.name === 'TimeoutError') return true;
    const status = err.$metadata?.httpStatusCode ?? err.statusCode ?? err.status;
    if (typeof status === 'number' && (status === 429 || (status >= 500 && status !== 501))) return true;
    e = err.cause;
  }
  return false;
}

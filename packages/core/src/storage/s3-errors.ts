/**
 * How S3 (and S3-compatible servers) fail, in our terms: which errors are worth retrying, and
 * which typed StorageError a failure becomes.
 */
import { NotFoundError, PermissionError, SmolrateError, StorageError } from '../errors.js';
import { isTransientNetworkError } from './retry.js';

interface S3LikeError {
  name?: string;
  Code?: string;
  message?: string;
  $retryable?: unknown;
  $metadata?: { httpStatusCode?: number };
}

// Error codes S3 documents as "retry later" (throttling and internal trouble), plus the SDK's
// client-side timeout names. See "Error responses" in the Amazon S3 API reference.
const TRANSIENT_S3_CODES = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'RequestThrottled',
  'RequestLimitExceeded',
  'TooManyRequestsException',
  'RequestTimeout',
  'RequestTimeoutException',
  'InternalError',
  'ServiceUnavailable',
  'TimeoutError',
]);

const NOT_FOUND_CODES = new Set(['NoSuchKey', 'NotFound', 'NoSuchBucket']);
const PERMISSION_CODES = new Set([
  'AccessDenied',
  'Forbidden',
  'AllAccessDisabled',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
]);

function codeOf(e: S3LikeError): string | undefined {
  return e.Code ?? e.name;
}

/** Throttling, 5xx, timeouts and socket resets: worth another attempt. */
export function isTransientS3Error(error: unknown): boolean {
  if (error instanceof SmolrateError) return false;
  if (error !== null && typeof error === 'object') {
    const e = error as S3LikeError;
    const code = codeOf(e);
    if (code !== undefined && TRANSIENT_S3_CODES.has(code)) return true;
    if (e.$retryable) return true;
  }
  return isTransientNetworkError(error);
}

/**
 * Maps an SDK failure for `uri` to NotFoundError (NoSuchKey, 404), PermissionError (403,
 * AccessDenied) or StorageError; errors that are already ours pass through unchanged.
 */
export function toStorageError(error: unknown, uri: string, action: string): SmolrateError {
  if (error instanceof SmolrateError) return error;
  const e = (error ?? {}) as S3LikeError;
  const code = codeOf(e);
  const status = e.$metadata?.httpStatusCode;
  if ((code !== undefined && NOT_FOUND_CODES.has(code)) || status === 404) {
    return new NotFoundError(uri, { cause: error });
  }
  if ((code !== undefined && PERMISSION_CODES.has(code)) || status === 403) {
    return new PermissionError(uri, { cause: error });
  }
  const detail = [code, status !== undefined ? `HTTP ${status}` : undefined, e.message]
    .filter((s) => s !== undefined && s !== '')
    .join(': ');
  return new StorageError(`${action} ${uri} failed: ${detail || String(error)}`, uri, { cause: error });
}

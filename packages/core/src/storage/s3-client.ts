/**
 * Builds the S3 client every S3 store uses, from the standard AWS environment:
 *  - endpoint: AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL, else AWS itself;
 *  - region: AWS_REGION (default us-east-1);
 *  - credentials: the SDK's default provider chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
 *    profiles, SSO, instance roles, ...);
 *  - path-style addressing: SMOLRATE_S3_FORCE_PATH_STYLE (true/false), defaulting to true when a
 *    custom endpoint is set (MinIO, s3rver and most S3-compatible servers have no DNS per bucket).
 */
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { ConfigError } from '../errors.js';
import type { RetryOptions } from './retry.js';
import { s3RetryStrategy } from './s3-retry-strategy.js';

export interface S3ClientOptions {
  /** Overrides AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL. */
  endpoint?: string;
  /** Overrides AWS_REGION. */
  region?: string;
  /** Overrides SMOLRATE_S3_FORCE_PATH_STYLE. */
  forcePathStyle?: boolean;
  /** Retry policy for every request (default: 4 attempts, 100 ms base, 5 s cap). */
  retry?: RetryOptions;
  /** Milliseconds to establish a connection before failing (and retrying). Default 10 000. */
  connectionTimeoutMs?: number;
  /** Milliseconds a socket may stay idle mid-request before failing (and retrying). Default 120 000. */
  socketTimeoutMs?: number;
  /** A custom request handler (tests inject faults here). */
  requestHandler?: S3ClientConfig['requestHandler'];
}

export interface ResolvedS3Settings {
  endpoint: string | undefined;
  region: string;
  forcePathStyle: boolean;
}

function parseBool(name: string, value: string): boolean {
  const v = value.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw new ConfigError(`${name} must be true or false, got '${value}'`);
}

/** Endpoint, region and addressing style from options, then the environment, then defaults. */
export function resolveS3Settings(
  opts: Pick<S3ClientOptions, 'endpoint' | 'region' | 'forcePathStyle'> = {},
  env: NodeJS.ProcessEnv = process.env,
): ResolvedS3Settings {
  const endpoint = opts.endpoint ?? (env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined);
  const region = opts.region ?? (env.AWS_REGION || 'us-east-1');
  const flag = env.SMOLRATE_S3_FORCE_PATH_STYLE;
  const forcePathStyle =
    opts.forcePathStyle ??
    (flag !== undefined && flag !== '' ? parseBool('SMOLRATE_S3_FORCE_PATH_STYLE', flag) : endpoint !== undefined);
  return { endpoint, region, forcePathStyle };
}

export function createS3Client(opts: S3ClientOptions = {}, env: NodeJS.ProcessEnv = process.env): S3Client {
  // The SDK prints a multi-line notice on Node < 22 in every process (every worker); smolrate
  // supports Node 20, so it is silenced unless the user set the variable themselves.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const { endpoint, region, forcePathStyle } = resolveS3Settings(opts, env);
  const config: S3ClientConfig = {
    region,
    endpoint,
    forcePathStyle,
    retryStrategy: s3RetryStrategy(opts.retry),
    requestHandler: opts.requestHandler ?? {
      connectionTimeout: opts.connectionTimeoutMs ?? 10_000,
      requestTimeout: opts.socketTimeoutMs ?? 120_000,
    },
  };
  // Since SDK 3.729 the client adds CRC32 checksums by default, streamed as aws-chunked trailers;
  // many S3-compatible servers (s3rver, older MinIO, Ceph) reject or mis-store those. Against a
  // custom endpoint, send checksums only where the API requires them, unless the standard
  // AWS_REQUEST_CHECKSUM_CALCULATION / AWS_RESPONSE_CHECKSUM_VALIDATION variables say otherwise.
  if (endpoint !== undefined) {
    if (!env.AWS_REQUEST_CHECKSUM_CALCULATION) config.requestChecksumCalculation = 'WHEN_REQUIRED';
    if (!env.AWS_RESPONSE_CHECKSUM_VALIDATION) config.responseChecksumValidation = 'WHEN_REQUIRED';
  }
  return new S3Client(config);
}

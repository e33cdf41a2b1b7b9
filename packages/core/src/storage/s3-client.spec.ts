import { describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.js';
import { createS3Client, resolveS3Settings } from './s3-client.js';
import { S3RetryStrategy } from './s3-retry-strategy.js';

describe('resolveS3Settings', () => {
  it('defaults to AWS itself: us-east-1, virtual-hosted addressing', () => {
    expect(resolveS3Settings({}, {})).toEqual({ endpoint: undefined, region: 'us-east-1', forcePathStyle: false });
  });

  it('prefers AWS_ENDPOINT_URL_S3 over AWS_ENDPOINT_URL, and goes path-style for a custom endpoint', () => {
    expect(resolveS3Settings({}, { AWS_ENDPOINT_URL: 'http://generic:1', AWS_REGION: 'eu-west-1' })).toEqual({
      endpoint: 'http://generic:1',
      region: 'eu-west-1',
      forcePathStyle: true,
    });
    expect(
      resolveS3Settings({}, { AWS_ENDPOINT_URL: 'http://generic:1', AWS_ENDPOINT_URL_S3: 'http://s3-only:2' }).endpoint,
    ).toBe('http://s3-only:2');
  });

  it('lets SMOLRATE_S3_FORCE_PATH_STYLE override the default either way, and rejects nonsense', () => {
    expect(resolveS3Settings({}, { AWS_ENDPOINT_URL_S3: 'http://x:1', SMOLRATE_S3_FORCE_PATH_STYLE: 'false' }).forcePathStyle).toBe(false);
    expect(resolveS3Settings({}, { SMOLRATE_S3_FORCE_PATH_STYLE: 'TRUE' }).forcePathStyle).toBe(true);
    expect(resolveS3Settings({}, { SMOLRATE_S3_FORCE_PATH_STYLE: '1' }).forcePathStyle).toBe(true);
    expect(() => resolveS3Settings({}, { SMOLRATE_S3_FORCE_PATH_STYLE: 'sometimes' })).toThrow(ConfigError);
    expect(() => resolveS3Settings({}, { SMOLRATE_S3_FORCE_PATH_STYLE: 'sometimes' })).toThrow(/SMOLRATE_S3_FORCE_PATH_STYLE/);
  });

  it('gives explicit options precedence over the environment', () => {
    expect(
      resolveS3Settings(
        { endpoint: 'http://opt:3', region: 'ap-south-1', forcePathStyle: false },
        { AWS_ENDPOINT_URL_S3: 'http://env:4', AWS_REGION: 'eu-west-1', SMOLRATE_S3_FORCE_PATH_STYLE: 'true' },
      ),
    ).toEqual({ endpoint: 'http://opt:3', region: 'ap-south-1', forcePathStyle: false });
  });
});

describe('createS3Client', () => {
  it('configures endpoint, addressing, our retry strategy, and checksums only when required for custom endpoints', async () => {
    const client = createS3Client({ retry: { attempts: 7 } }, { AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:9', AWS_REGION: 'eu-north-1' });
    try {
      expect(await client.config.region()).toBe('eu-north-1');
      expect(client.config.forcePathStyle).toBe(true);
      const endpoint = await client.config.endpoint!();
      expect(`${endpoint.protocol}//${endpoint.hostname}:${endpoint.port}`).toBe('http://127.0.0.1:9');
      const strategy = await client.config.retryStrategy();
      expect(strategy).toBeInstanceOf(S3RetryStrategy);
      expect((strategy as S3RetryStrategy).attempts).toBe(7);
      expect(await client.config.requestChecksumCalculation()).toBe('WHEN_REQUIRED');
      expect(await client.config.responseChecksumValidation()).toBe('WHEN_REQUIRED');
    } finally {
      client.destroy();
    }
  });

  it('leaves the SDK checksum defaults alone against AWS itself', async () => {
    const client = createS3Client({}, { AWS_REGION: 'us-east-1' });
    try {
      expect(client.config.forcePathStyle).toBe(false);
      expect(await client.config.requestChecksumCalculation()).toBe('WHEN_SUPPORTED');
    } finally {
      client.destroy();
    }
  });
});

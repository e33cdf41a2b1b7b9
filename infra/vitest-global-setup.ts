/**
 * Vitest global setup: gives every test file a real Redis and a real S3-compatible server on
 * loopback, and stops whatever it started when the run ends (no orphans).
 *  - Redis: REDIS_URL when set, else a private redis-server on a free loopback port.
 *  - S3: s3rver in this process on a free loopback port, with a test bucket; the standard AWS
 *    environment variables point the SDK at it (path-style addressing).
 */
import { ensureLocalRedis } from './redis-install.js';
import { startS3Server } from './s3-server.js';

export const TEST_BUCKET = 'smolrate-test';

export default async function setup(): Promise<() => Promise<void>> {
  const redis = await ensureLocalRedis('vitest');
  process.env.REDIS_URL = redis.url;

  const s3 = await startS3Server({ buckets: [TEST_BUCKET] });
  process.env.AWS_ENDPOINT_URL_S3 = s3.endpoint;
  process.env.AWS_REGION = 'us-east-1';
  process.env.AWS_ACCESS_KEY_ID = 'S3RVER';
  process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER';
  process.env.SMOLRATE_S3_FORCE_PATH_STYLE = 'true';
  process.env.SMOLRATE_TEST_S3_BUCKET = TEST_BUCKET;

  return async () => {
    await s3.stop();
    await redis.stop();
  };
}

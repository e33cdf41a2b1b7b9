import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedis, UsageError } from '@smolrate/core';
import { formatAllReduceBench, runAllReduceBench } from './bench-allreduce.js';

let redis: Redis;
beforeAll(() => {
  redis = createRedis(process.env.REDIS_URL!);
});
afterAll(async () => {
  await redis.quit();
});

describe('runAllReduceBench', () => {
  it('runs workers that check their all-reduce result and reports nccl-style and raw bandwidths', async () => {
    const r = await runAllReduceBench({ workers: 2, mb: 1, iters: 2, chunkBytes: 256 * 1024, redisUrl: process.env.REDIS_URL });
    expect(r).toMatchObject({ workers: 2, bytes: 1024 * 1024, iters: 2, chunkBytes: 256 * 1024 });
    expect(r.allReduce.seconds).toHaveLength(2);
    expect(r.raw.seconds).toHaveLength(2);
    expect(r.allReduce.algbwGBps).toBeCloseTo(r.bytes / r.allReduce.meanSeconds / 1e9, 9);
    expect(r.allReduce.busbwGBps).toBeCloseTo(r.allReduce.algbwGBps * 1, 9); // 2(N−1)/N = 1 for N = 2
    expect(r.raw.bytesPerWorker).toBe(1024 * 1024);
    expect(r.ratio).toBeCloseTo(r.allReduce.busbwGBps / r.raw.bwGBps, 9);
    expect(r.ratio).toBeGreaterThan(0);
    expect(formatAllReduceBench(r)).toMatch(/algbw = [\d.]+ GB\/s {3}busbw = [\d.]+ GB\/s[\s\S]*busbw \/ raw = [\d.]+/);
    expect(await redis.keys(`smolrate:${r.runId}:*`)).toEqual([]);
  });

  it('rejects bad sizes before starting anything', async () => {
    await expect(runAllReduceBench({ workers: 1 })).rejects.toBeInstanceOf(UsageError);
    await expect(runAllReduceBench({ chunkBytes: 33 * 1024 * 1024 })).rejects.toThrow(/up to 32 MiB/);
  });
});

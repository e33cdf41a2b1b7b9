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
  it('runs workers that check their all-reduce result on both data planes and report nccl-style and raw TCP / Redis bandwidths', async () => {
    const r = await runAllReduceBench({ workers: 2, mb: 1, iters: 2, chunkBytes: 256 * 1024, redisUrl: process.env.REDIS_URL });
    expect(r).toMatchObject({ workers: 2, bytes: 1024 * 1024, iters: 2, chunkBytes: 256 * 1024 });
    for (const f of [r.tcp, r.redisPlane]) {
      expect(f.seconds).toHaveLength(2);
      expect(f.algbwGBps).toBeCloseTo(r.bytes / f.meanSeconds / 1e9, 9);
      expect(f.busbwGBps).toBeCloseTo(f.algbwGBps * 1, 9); // 2(N−1)/N = 1 for N = 2
    }
    for (const f of [r.rawTcp, r.rawRedis]) {
      expect(f.seconds).toHaveLength(2);
      expect(f.bytesPerWorker).toBe(1024 * 1024);
    }
    expect(r.ratios.tcpToRawTcp).toBeCloseTo(r.tcp.busbwGBps / r.rawTcp.bwGBps, 9);
    expect(r.ratios.redisToRawRedis).toBeCloseTo(r.redisPlane.busbwGBps / r.rawRedis.bwGBps, 9);
    expect(r.ratios.tcpToRedis).toBeGreaterThan(0);
    expect(formatAllReduceBench(r)).toMatch(/allReduceMean tcp[\s\S]*busbw [\d.]+ GB\/s[\s\S]*raw TCP sockets[\s\S]*tcp busbw \/ raw TCP = [\d.]+/);
    expect(await redis.keys(`smolrate:${r.runId}:*`)).toEqual([]);
  });

  it('rejects bad sizes before starting anything', async () => {
    await expect(runAllReduceBench({ workers: 1 })).rejects.toBeInstanceOf(UsageError);
    await expect(runAllReduceBench({ chunkBytes: 33 * 1024 * 1024 })).rejects.toThrow(/up to 32 MiB/);
  });
});

/**
 * The builds in progress on a Redis, so that workers started with only `--redis URL` find them:
 * a sorted set `smolrate:dp:runs` of run ids scored by their last heartbeat (Redis server time,
 * so the hosts' clocks do not matter). `build-shards` registers its run, refreshes it every
 * `HEARTBEAT_MS` while it waits, and removes it at the end; a run whose build process died
 * without removing it goes stale after `STALE_MS` and workers stop serving it.
 */
import type { Redis } from 'ioredis';

const RUNS_KEY = 'smolrate:dp:runs';
export const HEARTBEAT_MS = 5_000;
const STALE_MS = 60_000;

async function serverTimeMs(redis: Redis): Promise<number> {
  const [sec, usec] = await redis.time();
  return Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
}

/** Registers (or refreshes) a run. */
export async function heartbeatRun(redis: Redis, runId: string): Promise<void> {
  await redis.zadd(RUNS_KEY, await serverTimeMs(redis), runId);
}

export async function unregisterRun(redis: Redis, runId: string): Promise<void> {
  await redis.zrem(RUNS_KEY, runId);
}

/** Runs with a heartbeat in the last `STALE_MS`; stale entries are removed on the way. */
export async function activeRuns(redis: Redis, staleMs = STALE_MS): Promise<string[]> {
  const cutoff = (await serverTimeMs(redis)) - staleMs;
  await redis.zremrangebyscore(RUNS_KEY, '-inf', `(${cutoff}`);
  return redis.zrange(RUNS_KEY, 0, -1);
}

import { randomBytes } from 'node:crypto';
import { createRedis } from '@smolrate/core';
import { afterAll, describe, expect, it } from 'vitest';
import { activeRuns, heartbeatRun, unregisterRun } from './run-registry.js';

const redis = createRedis(process.env.REDIS_URL!);
afterAll(() => redis.disconnect());

describe('run registry', () => {
  it('lists registered runs until they are removed or their heartbeat goes stale', async () => {
    const a = `ra${randomBytes(4).toString('hex')}`;
    const b = `rb${randomBytes(4).toString('hex')}`;
    await heartbeatRun(redis, a);
    await heartbeatRun(redis, b);
    try {
      expect(await activeRuns(redis)).toEqual(expect.arrayContaining([a, b]));
      await unregisterRun(redis, a);
      expect(await activeRuns(redis)).not.toContain(a);
      await new Promise((r) => setTimeout(r, 30));
      // With a 10 ms staleness limit b's heartbeat is too old: it is dropped for good.
      expect(await activeRuns(redis, 10)).not.toContain(b);
      expect(await activeRuns(redis)).not.toContain(b);
    } finally {
      await unregisterRun(redis, a);
      await unregisterRun(redis, b);
    }
  });
});

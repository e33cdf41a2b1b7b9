import { ConfigError, createLogger, silentLogger } from '@smolrate/core';
import { describe, expect, it } from 'vitest';
import { resolveCollectiveOptions, type RedisCollectiveOptions } from './redis-collective-options.js';

const base: RedisCollectiveOptions = { url: 'redis://127.0.0.1:6379', runId: 'run-1', rank: 1, worldSize: 2 };

describe('resolveCollectiveOptions', () => {
  it('fills in the documented defaults', () => {
    expect(resolveCollectiveOptions(base)).toEqual({
      url: 'redis://127.0.0.1:6379', runId: 'run-1', rank: 1, worldSize: 2,
      timeoutMs: 30_000, rendezvousTimeoutMs: 30_000, heartbeatMs: 1_000, deadAfterMs: 3_000, chunkBytes: 4 * 1024 * 1024,
      dataPlane: 'tcp', host: '127.0.0.1', port: '0', advertise: '', log: silentLogger,
    });
  });

  it('derives the rendezvous bound from timeoutMs and deadAfterMs from heartbeatMs (capped at 30 s)', () => {
    const r = resolveCollectiveOptions({ ...base, timeoutMs: 5_000, heartbeatMs: 400 });
    expect([r.rendezvousTimeoutMs, r.deadAfterMs]).toEqual([5_000, 1_200]);
    expect(resolveCollectiveOptions({ ...base, heartbeatMs: 12_000 }).deadAfterMs).toBe(30_000);
  });

  it('keeps every value it is given', () => {
    const log = createLogger({ name: 'test', level: 'silent' });
    const given: Required<RedisCollectiveOptions> = {
      ...base, timeoutMs: 7_000, rendezvousTimeoutMs: 60_000, heartbeatMs: 250, deadAfterMs: 900, chunkBytes: 1024,
      dataPlane: 'redis', host: '0.0.0.0', port: '29500-29599', advertise: '10.0.0.7', log,
    };
    const resolved = resolveCollectiveOptions(given);
    expect(resolved).toEqual(given);
    expect(resolved.log).toBe(log);
  });

  it('refuses a bad value with a ConfigError that names the key and the value', () => {
    const cases: Array<[Partial<RedisCollectiveOptions>, string]> = [
      [{ url: '' }, 'collective: url is required'],
      [{ url: 'http://127.0.0.1:6379' }, 'unsupported scheme "http:"'],
      [{ runId: 'a:b' }, `collective: runId must be 1–128 letters, digits, '.', '_' or '-', got "a:b"`],
      [{ worldSize: 0 }, 'collective: worldSize must be an integer in [1, 65536], got 0'],
      [{ rank: 2 }, 'collective: rank must be an integer in [0, 1], got 2'],
      [{ rank: 0.5 }, 'collective: rank must be an integer in [0, 1], got 0.5'],
      [{ timeoutMs: 0 }, 'collective: timeoutMs must be an integer in [1, 2147483647], got 0'],
      [{ heartbeatMs: 5 }, 'collective: heartbeatMs must be an integer in [10, 15000], got 5'],
      [{ heartbeatMs: 1_000, deadAfterMs: 1_500 }, 'collective: deadAfterMs must be an integer in [2000, 30000], got 1500'],
      [{ deadAfterMs: 40_000 }, 'collective: deadAfterMs must be an integer in [2000, 30000], got 40000'],
      [{ chunkBytes: 64 * 1024 * 1024 }, 'collective: chunkBytes must be an integer in [4, 33554432], got 67108864'],
      [{ chunkBytes: 10 }, 'collective: chunkBytes must be a multiple of 4, got 10'],
      [{ rendezvousTimeoutMs: -1 }, 'collective: rendezvousTimeoutMs must be an integer in [1, 2147483647], got -1'],
      [{ dataPlane: 'udp' as 'tcp' }, `collective: dataPlane must be 'tcp' or 'redis', got "udp"`],
      [{ port: '70000' }, 'collective port must be 0, a port or a range lo-hi within 1–65535, got "70000"'],
    ];
    for (const [change, message] of cases) {
      const resolve = () => resolveCollectiveOptions({ ...base, ...change });
      expect(resolve, JSON.stringify(change)).toThrow(ConfigError);
      expect(resolve, JSON.stringify(change)).toThrow(message);
    }
  });
});

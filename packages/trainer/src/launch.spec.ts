import { ConfigError } from '@smolrate/core';
import { describe, expect, it } from 'vitest';
import { resolveTrainerConfig } from './config.js';
import { launch } from './launch.js';

// Argument checks happen before anything is forked or started.
const config = resolveTrainerConfig({ overrides: { data: '/nonexistent/data', run: '/nonexistent/run', globalBatch: '8' } });

describe('launch argument checks', () => {
  it('needs a shared Redis and run id for several nodes', async () => {
    await expect(launch({ config, gpus: 2, nnodes: 2, nodeRank: 0 })).rejects.toThrow(/--nnodes 2 needs a shared --redis URL and the same --run-id/);
  });

  it('checks the batch invariant against the whole world (gpus × nnodes)', async () => {
    await expect(launch({ config, gpus: 3 })).rejects.toThrow('globalBatch (8) must be divisible by worldSize (3)');
    await expect(launch({ config: { ...config, microBatch: 2 }, gpus: 4, nnodes: 2, nodeRank: 1, redis: 'redis://127.0.0.1:1', runId: 'x' })).rejects.toThrow(
      'globalBatch (8) must be divisible by worldSize × microBatch (8 × 2 = 16)',
    );
  });

  it('rejects bad counts', async () => {
    await expect(launch({ config, gpus: 0 })).rejects.toThrow(ConfigError);
    await expect(launch({ config, gpus: 1, nnodes: 2, nodeRank: 2, redis: 'redis://x', runId: 'r' })).rejects.toThrow(/--node-rank must be in \[0, 2\)/);
    await expect(launch({ config, gpus: 1, maxRestarts: -1 })).rejects.toThrow(/--max-restarts/);
  });
});

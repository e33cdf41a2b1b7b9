import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '@smolrate/core';
import { describe, expect, it } from 'vitest';
import { TRAINER_STATE_FILE } from './checkpoint.js';
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

  it('--resume refuses a config that changes the checkpoint\'s weight decay, before forking a worker', async () => {
    const run = await mkdtemp(join(tmpdir(), 'smolrate-launch-resume-'));
    try {
      await mkdir(join(run, 'checkpoints', 'step-3'), { recursive: true });
      await writeFile(join(run, 'checkpoints', 'latest'), 'step-3\n');
      await writeFile(join(run, 'checkpoints', 'step-3', TRAINER_STATE_FILE), JSON.stringify({ format: 'smolrate-trainer-state/1', config: { ...config, run } }));
      const forked: number[] = [];
      const err = await launch({ config: { ...config, run, resume: true, weightDecay: 0.1 }, gpus: 1, onWorker: (w) => forked.push(w.pid) }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toContain('weightDecay (--weight-decay): checkpoint 0.01, given 0.1');
      expect(forked).toEqual([]);
    } finally {
      await rm(run, { recursive: true, force: true });
    }
  });
});

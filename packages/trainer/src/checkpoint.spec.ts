import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CheckpointError } from '@smolrate/core';
import { initBackend, loadModelDir, presetConfig, SmolVLMRegressor, TINY_TOKENIZER_URL } from '@smolrate/model';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readPointer, readTrainerFiles, TRAINER_STATE_FORMAT, verifyCheckpoint, writeCheckpoint, type TrainerState } from './checkpoint.js';
import { readdir } from 'node:fs/promises';
import { resolveTrainerConfig } from './config.js';
import { Replica } from './replica.js';

let dir: string;
let model: SmolVLMRegressor;

beforeAll(async () => {
  await initBackend('wasm');
  dir = await mkdtemp(join(tmpdir(), 'smolrate-ckpt-'));
  model = SmolVLMRegressor.fromSeed(presetConfig('tiny'), 3);
});

afterAll(async () => {
  model.dispose();
  await rm(dir, { recursive: true, force: true });
});

function state(step: number): TrainerState {
  return {
    format: TRAINER_STATE_FORMAT, step, epoch: 0,
    sampler: { epoch: 0, step, samplesConsumed: step * 8, seed: 0, numSamples: 32, globalBatch: 8 },
    random: { seed: 0, dropout: 'seedFrom(seed, "dropout", globalStep, globalIndex)', rng: null },
    best: { metric: 'val_plcc', value: null, step: null, checkpoint: null },
    earlyStopping: { patience: 3, minDelta: 0, mode: 'max', best: null, bestIndex: -1, badCount: 0, updates: 0 },
    schedule: { kind: 'linear-warmup-decay', peakLr: 1e-3, totalSteps: 10, warmupSteps: 1, minLr: 0 },
    lastValidation: null, worldSize: 1, config: resolveTrainerConfig({ overrides: { data: '/d', run: dir } }),
  };
}

describe('checkpoints', () => {
  it('writes a complete, verifiable folder, then the pointers; reloads the weights bit-exactly', async () => {
    expect(await readPointer(dir, 'latest')).toBeNull();
    const tokenizerJson = await readFile(TINY_TOKENIZER_URL, 'utf8');
    const opt = Buffer.from('optimizer bytes');
    const a = await writeCheckpoint({ runDir: dir, model, tokenizerJson, optimizer: opt, state: state(2), best: true });
    const b = await writeCheckpoint({ runDir: dir, model, tokenizerJson, optimizer: opt, state: state(4), best: false });
    expect(await readPointer(dir, 'latest')).toBe(b);
    expect(await readPointer(dir, 'best')).toBe(a);
    const files = await readTrainerFiles(b);
    expect(files.state.step).toBe(4);
    expect(files.optimizer.equals(opt)).toBe(true);
    const loaded = await loadModelDir(b, { requireHead: true });
    try {
      expect(Replica.of(loaded.model).hash()).toBe(Replica.of(model).hash());
    } finally {
      loaded.model.dispose();
    }
  });

  it('refuses a damaged checkpoint and a malformed pointer', async () => {
    const c = await writeCheckpoint({ runDir: dir, model, tokenizerJson: null, optimizer: Buffer.from('x'), state: state(6), best: false });
    await writeFile(join(c, 'optimizer.bin'), 'y');
    await expect(verifyCheckpoint(c)).rejects.toThrow(/optimizer\.bin: SHA-256 [0-9a-f]{64} ≠ [0-9a-f]{64}/);
    await expect(readTrainerFiles(c)).rejects.toThrow(CheckpointError);
    await writeFile(join(dir, 'checkpoints', 'latest'), '../../etc\n');
    await expect(readPointer(dir, 'latest')).rejects.toThrow(/expected "step-<n>"/);
  });

  it('keeps the K newest step folders plus the best one; pointers always name existing folders', async () => {
    const run = join(dir, 'prune');
    const write = (step: number, best: boolean) => writeCheckpoint({ runDir: run, model, tokenizerJson: null, optimizer: Buffer.from([step]), state: state(step), best, keep: 2 });
    await write(1, true);
    await write(2, true);
    await write(3, false);
    await write(4, false);
    await write(5, false);
    const names = async () => (await readdir(join(run, 'checkpoints'))).filter((n) => n.startsWith('step-')).sort();
    // best (step 2) survives although it is not among the 2 newest; step 1 and step 3 are gone.
    expect(await names()).toEqual(['step-2', 'step-4', 'step-5']);
    expect(await readPointer(run, 'best')).toBe(join(run, 'checkpoints', 'step-2'));
    expect(await readPointer(run, 'latest')).toBe(join(run, 'checkpoints', 'step-5'));
    await write(6, true); // the new best: step-2 is no longer pinned
    expect(await names()).toEqual(['step-5', 'step-6']);
    // keep 0 keeps everything
    await writeCheckpoint({ runDir: run, model, tokenizerJson: null, optimizer: Buffer.from([7]), state: state(7), best: false, keep: 0 });
    expect(await names()).toEqual(['step-5', 'step-6', 'step-7']);
  });
});

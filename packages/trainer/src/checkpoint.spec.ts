import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CheckpointError, ConfigError } from '@smolrate/core';
import { initBackend, loadModelDir, presetConfig, SmolVLMRegressor, TINY_TOKENIZER_URL } from '@smolrate/model';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkpointName,
  checkpointsDir,
  pruneCheckpoints,
  readPointer,
  readTrainerFiles,
  resumeCheckpoint,
  TRAINER_STATE_FORMAT,
  TRAINER_STATE_FILE,
  verifyCheckpoint,
  writeCheckpoint,
  type TrainerState,
} from './checkpoint.js';
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

describe('checkpoint paths', () => {
  it('names step folders step-<n> under <run>/checkpoints', () => {
    expect(checkpointsDir('/runs/a')).toBe(join('/runs/a', 'checkpoints'));
    expect(checkpointName(0)).toBe('step-0');
    expect(checkpointName(1250)).toBe('step-1250');
  });
});

describe('pruneCheckpoints', () => {
  /** A run folder holding empty step folders and the given pointers. */
  async function runWith(name: string, folders: string[], pointers: { latest?: string; best?: string }): Promise<string> {
    const run = join(dir, name);
    for (const f of folders) await mkdir(join(checkpointsDir(run), f), { recursive: true });
    for (const [p, target] of Object.entries(pointers)) await writeFile(join(checkpointsDir(run), p), `${target}\n`);
    return run;
  }
  const listing = async (run: string) => (await readdir(checkpointsDir(run))).sort();

  it('keeps the newest by step number (not by name) plus the pinned ones, and returns what it removed', async () => {
    const run = await runWith('prune-direct', ['step-1', 'step-2', 'step-3', 'step-9', 'step-10', 'step-x', '.step-11.tmp-ab12'], { latest: 'step-10', best: 'step-2' });
    expect(await pruneCheckpoints(run, 2)).toEqual(['step-3', 'step-1']);
    expect(await listing(run)).toEqual(['.step-11.tmp-ab12', 'best', 'latest', 'step-10', 'step-2', 'step-9', 'step-x']);
    expect(await pruneCheckpoints(run, 2)).toEqual([]); // nothing left to prune
  });

  it('never removes the folder latest names, even when it is not among the newest', async () => {
    const run = await runWith('prune-latest', ['step-4', 'step-5', 'step-6', 'step-7'], { latest: 'step-4' });
    expect(await pruneCheckpoints(run, 1)).toEqual(['step-6', 'step-5']);
    expect(await listing(run)).toEqual(['latest', 'step-4', 'step-7']);
  });

  it('with no pointers yet keeps exactly the newest', async () => {
    const run = await runWith('prune-unpinned', ['step-1', 'step-2', 'step-3'], {});
    expect(await pruneCheckpoints(run, 1)).toEqual(['step-2', 'step-1']);
    expect(await listing(run)).toEqual(['step-3']);
  });

  it('removes nothing when a pointer is unreadable', async () => {
    const run = await runWith('prune-bad-pointer', ['step-1', 'step-2', 'step-3'], { latest: 'step-3', best: 'nonsense' });
    await expect(pruneCheckpoints(run, 1)).rejects.toThrow(CheckpointError);
    expect(await listing(run)).toEqual(['best', 'latest', 'step-1', 'step-2', 'step-3']);
  });
});

describe('resumeCheckpoint', () => {
  const config = (run: string, overrides: Record<string, unknown> = {}) => resolveTrainerConfig({ overrides: { data: '/d', run, ...overrides } });

  it('is null before the first checkpoint, then the one latest names', async () => {
    const run = join(dir, 'resume');
    expect(await resumeCheckpoint(config(run))).toBeNull();
    const write = (step: number) => writeCheckpoint({ runDir: run, model, tokenizerJson: null, optimizer: Buffer.from([step]), state: state(step), best: step === 3 });
    await write(3);
    const last = await write(5);
    expect(await resumeCheckpoint(config(run))).toBe(last);
    // Keys a resume may change (here the micro-batch) are not compared.
    expect(await resumeCheckpoint(config(run, { microBatch: 4 }))).toBe(last);
  });

  it("refuses a config that changes the checkpoint's trajectory, and a trainer state of another format", async () => {
    const run = join(dir, 'resume');
    const last = join(checkpointsDir(run), 'step-5');
    await expect(resumeCheckpoint(config(run, { peakLr: 1e-3 }))).rejects.toThrow(ConfigError);
    await expect(resumeCheckpoint(config(run, { peakLr: 1e-3 }))).rejects.toThrow(`--resume from ${last} cannot change what the run was started with: peakLr (--peak-lr): checkpoint 0.0004, given 0.001`);

    const file = join(last, TRAINER_STATE_FILE);
    const saved = JSON.parse(await readFile(file, 'utf8')) as TrainerState;
    await writeFile(file, JSON.stringify({ ...saved, format: 'smolrate-trainer-state/0' }));
    await expect(resumeCheckpoint(config(run))).rejects.toThrow(CheckpointError);
    await expect(resumeCheckpoint(config(run))).rejects.toThrow(`${file}: format "smolrate-trainer-state/0", expected ${TRAINER_STATE_FORMAT}`);
    await writeFile(file, '{ not json');
    await expect(resumeCheckpoint(config(run))).rejects.toThrow(`${file} is unreadable`);
  });
});

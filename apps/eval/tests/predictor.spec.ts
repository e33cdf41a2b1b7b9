/** Checkpoint resolution and batched inference invariants on a seeded tiny checkpoint (wasm). */
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { CheckpointError, decodeImage } from '@smolrate/core';
import { initBackend } from '@smolrate/model';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveCheckpointDir } from '../src/checkpoint.js';
import { loadPredictor, predictBatch, type LoadedPredictor, type PredictInput } from '../src/predictor.js';
import { fixtureJpeg, fixtureRow } from '@smolrate/core/testing';
import { writeFixtureRun } from './eval-fixtures.js';
import { promptOfRow } from '../src/shard-items.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'smolrate-eval-pred-'));
const run = path.join(tmp, 'run');
let step: string;

beforeAll(async () => {
  step = await writeFixtureRun(run);
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('resolveCheckpointDir', () => {
  it('accepts a model folder, a pointer file, a checkpoints folder and a run folder', async () => {
    expect(await resolveCheckpointDir(step)).toBe(step);
    expect(await resolveCheckpointDir(path.join(run, 'checkpoints', 'best'))).toBe(step);
    expect(await resolveCheckpointDir(path.join(run, 'checkpoints'))).toBe(step);
    expect(await resolveCheckpointDir(run)).toBe(step);
  });
  it('falls back to latest, and names broken pointers', async () => {
    const other = path.join(tmp, 'run2');
    await mkdir(path.join(other, 'checkpoints', 'step-7'), { recursive: true });
    await writeFile(path.join(other, 'checkpoints', 'latest'), 'step-7\n');
    expect(await resolveCheckpointDir(other)).toBe(path.join(other, 'checkpoints', 'step-7'));
    await writeFile(path.join(other, 'checkpoints', 'best'), 'step-9\n');
    await expect(resolveCheckpointDir(other)).rejects.toThrow(/names step-9, but .* is not a folder/);
    await writeFile(path.join(other, 'checkpoints', 'best'), '\n');
    await expect(resolveCheckpointDir(path.join(other, 'checkpoints', 'best'))).rejects.toThrow(/is empty/);
    await rm(path.join(other, 'checkpoints'), { recursive: true });
    await expect(resolveCheckpointDir(other)).rejects.toThrow(CheckpointError);
  });
});

describe('predictBatch', () => {
  let p: LoadedPredictor;
  let inputs: PredictInput[];
  beforeAll(async () => {
    await initBackend('wasm');
    p = await loadPredictor(step);
    inputs = [];
    for (let i = 0; i < 3; i++) {
      const row = fixtureRow('val', i, await fixtureJpeg(500 + i));
      inputs.push({ prompt: promptOfRow(row), rgb: (await decodeImage(row.image, { size: p.config.regression.imageSize })).data });
    }
  });
  afterAll(() => p?.model.dispose());

  it('gives each item the same rating alone as in a padded batch, and leaks no tensors', () => {
    const before = tf.memory().numTensors;
    const batch = predictBatch(p, inputs);
    const alone = inputs.map((x) => predictBatch(p, [x])[0]);
    expect(tf.memory().numTensors).toBe(before);
    expect(batch).toHaveLength(3);
    for (let i = 0; i < 3; i++) {
      expect(batch[i]).toBeGreaterThan(1);
      expect(batch[i]).toBeLessThan(5);
      expect(Math.abs(batch[i] - alone[i])).toBeLessThan(1e-5);
    }
    // Rows have different prompt lengths, so the batch really was padded.
    expect(new Set(inputs.map((x) => JSON.stringify(x.prompt).length)).size).toBeGreaterThan(1);
  });
});

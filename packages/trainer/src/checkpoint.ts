/**
 * Training checkpoints (docs/reference/design.md "Checkpoints"):
 *
 *   <run>/checkpoints/step-<n>/  model.safetensors, config.json, tokenizer.json (saveModelDir),
 *                                optimizer.bin, trainer-state.json, SHA256SUMS
 *   <run>/checkpoints/latest     pointer file: "step-<n>\n"
 *   <run>/checkpoints/best       pointer to the checkpoint with the best validation PLCC
 *
 * A checkpoint is assembled in a hidden temporary folder, its SHA256SUMS written last, and the
 * folder renamed into place; only then are the pointers replaced (atomically, temp + rename), so
 * a crash at any moment leaves `latest` naming a complete, verifiable checkpoint.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { CheckpointError, writeFileAtomic, type RngState } from '@smolrate/core';
import { saveModelDir, type SmolVLMRegressor } from '@smolrate/model';
import type { EarlyStoppingState } from './early-stopping.js';
import type { SamplerState } from './sampler.js';
import { checkResumeConfig, type TrainerConfig } from './config.js';
import type { ValMetrics } from './evaluate.js';

export const TRAINER_STATE_FORMAT = 'smolrate-trainer-state/1';
export const OPTIMIZER_FILE = 'optimizer.bin';
export const TRAINER_STATE_FILE = 'trainer-state.json';
export const SUMS_FILE = 'SHA256SUMS';

export interface TrainerState {
  format: typeof TRAINER_STATE_FORMAT;
  /** Optimizer steps done by the run (= the global step the next update gets). */
  step: number;
  /** Epoch of the next step. */
  epoch: number;
  sampler: SamplerState;
  /**
   * Randomness: dropout masks are pure functions of (seed, global step, global index), so the
   * seed and the step reproduce them; `rng` is null because no stateful generator is used.
   */
  random: { seed: number; dropout: 'seedFrom(seed, "dropout", globalStep, globalIndex)'; rng: RngState | null };
  best: { metric: 'val_plcc'; value: number | null; step: number | null; checkpoint: string | null };
  earlyStopping: EarlyStoppingState;
  schedule: { kind: 'linear-warmup-decay'; peakLr: number; totalSteps: number; warmupSteps: number; minLr: number };
  lastValidation: (ValMetrics & { step: number }) | null;
  worldSize: number;
  config: TrainerConfig;
}

export function checkpointsDir(runDir: string): string {
  return join(runDir, 'checkpoints');
}

export function checkpointName(step: number): string {
  return `step-${step}`;
}

function sha256(buf: Uint8Array): string {
  return createHash('sha256').update(buf).digest('hex');
}

export interface WriteCheckpointOptions {
  runDir: string;
  model: SmolVLMRegressor;
  tokenizerJson: string | null;
  optimizer: Buffer;
  state: TrainerState;
  /** Also point `best` here. */
  best: boolean;
  /** Afterwards keep only this many newest step folders, plus the ones `best` and `latest` name; 0 = all. */
  keep?: number;
}

/** Writes `step-<state.step>` completely, then the pointers. Returns the checkpoint folder. */
export async function writeCheckpoint(o: WriteCheckpointOptions): Promise<string> {
  const root = checkpointsDir(o.runDir);
  const name = checkpointName(o.state.step);
  const final = join(root, name);
  const tmp = join(root, `.${name}.tmp-${randomBytes(4).toString('hex')}`);
  try {
    await saveModelDir(tmp, { model: o.model, tokenizerJson: o.tokenizerJson });
    await writeFile(join(tmp, OPTIMIZER_FILE), o.optimizer);
    await writeFile(join(tmp, TRAINER_STATE_FILE), JSON.stringify(o.state, null, 2) + '\n');
    const files = (await readdir(tmp)).filter((f) => f !== SUMS_FILE).sort();
    const lines = await Promise.all(files.map(async (f) => `${sha256(await readFile(join(tmp, f)))}  ${f}`));
    await writeFile(join(tmp, SUMS_FILE), lines.join('\n') + '\n');
    // A folder of the same step can only be a leftover of a crashed attempt that never got a pointer.
    await rm(final, { recursive: true, force: true });
    await rename(tmp, final);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw new CheckpointError(`cannot write checkpoint ${final}: ${(e as Error).message}`, { cause: e });
  }
  await writeFileAtomic(join(root, 'latest'), `${name}\n`);
  if (o.best) await writeFileAtomic(join(root, 'best'), `${name}\n`);
  if ((o.keep ?? 0) > 0) await pruneCheckpoints(o.runDir, o.keep!);
  return final;
}

/**
 * Deletes step folders beyond the `keep` newest, never the ones `best` and `latest` name (so a
 * run keeps at most keep + 1 checkpoints). Called only after the new pointers are in place, so an
 * interruption leaves an extra folder, never a pointer to a missing one. Returns the removed names.
 */
export async function pruneCheckpoints(runDir: string, keep: number): Promise<string[]> {
  const root = checkpointsDir(runDir);
  const steps = (await readdir(root))
    .map((n) => /^step-(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ name: m[0], step: Number(m[1]) }))
    .sort((a, b) => b.step - a.step);
  const pinned = new Set<string>();
  for (const p of ['best', 'latest'] as const) {
    const dir = await readPointer(runDir, p);
    if (dir !== null) pinned.add(basename(dir));
  }
  const removed: string[] = [];
  for (const s of steps.slice(keep)) {
    if (pinned.has(s.name)) continue;
    await rm(join(root, s.name), { recursive: true, force: true });
    removed.push(s.name);
  }
  return removed;
}

/** The folder a pointer (`latest` / `best`) names, or null when there is no pointer yet. */
export async function readPointer(runDir: string, pointer: 'latest' | 'best'): Promise<string | null> {
  const file = join(checkpointsDir(runDir), pointer);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new CheckpointError(`cannot read ${file}`, { cause: e });
  }
  const name = text.trim();
  if (!/^step-\d+$/.test(name)) throw new CheckpointError(`${file}: expected "step-<n>", got ${JSON.stringify(name)}`);
  return join(checkpointsDir(runDir), name);
}

/** Checks every file against SHA256SUMS (a damaged checkpoint is never resumed from). */
export async function verifyCheckpoint(dir: string): Promise<void> {
  let sums: string;
  try {
    sums = await readFile(join(dir, SUMS_FILE), 'utf8');
  } catch (e) {
    throw new CheckpointError(`${dir}: no readable ${SUMS_FILE}`, { cause: e });
  }
  for (const line of sums.split('\n').filter((l) => l.trim() !== '')) {
    const m = /^([0-9a-f]{64}) {2}(.+)$/.exec(line);
    if (!m) throw new CheckpointError(`${join(dir, SUMS_FILE)}: malformed line ${JSON.stringify(line)}`);
    let actual: string;
    try {
      actual = sha256(await readFile(join(dir, m[2])));
    } catch (e) {
      throw new CheckpointError(`${dir}: cannot read ${m[2]}`, { cause: e });
    }
    if (actual !== m[1]) throw new CheckpointError(`${join(dir, m[2])}: SHA-256 ${actual} ≠ ${m[1]} in ${SUMS_FILE}`);
  }
}

export interface LoadedTrainerFiles {
  state: TrainerState;
  optimizer: Buffer;
}

async function readTrainerState(dir: string): Promise<TrainerState> {
  let state: TrainerState;
  try {
    state = JSON.parse(await readFile(join(dir, TRAINER_STATE_FILE), 'utf8')) as TrainerState;
  } catch (e) {
    throw new CheckpointError(`${join(dir, TRAINER_STATE_FILE)} is unreadable`, { cause: e });
  }
  if (state.format !== TRAINER_STATE_FORMAT) {
    throw new CheckpointError(`${join(dir, TRAINER_STATE_FILE)}: format ${JSON.stringify(state.format)}, expected ${TRAINER_STATE_FORMAT}`);
  }
  return state;
}

/**
 * The checkpoint `--resume` continues from (`latest`; null before the first one), once the given
 * config is checked against the one it was written with (checkResumeConfig).
 */
export async function resumeCheckpoint(cfg: TrainerConfig): Promise<string | null> {
  const dir = await readPointer(cfg.run, 'latest');
  if (dir !== null) checkResumeConfig((await readTrainerState(dir)).config, cfg, dir);
  return dir;
}

/** Reads (after verifying) trainer-state.json and optimizer.bin of a checkpoint. */
export async function readTrainerFiles(dir: string): Promise<LoadedTrainerFiles> {
  await verifyCheckpoint(dir);
  const state = await readTrainerState(dir);
  const optimizer = await readFile(join(dir, OPTIMIZER_FILE)).catch((e: unknown) => {
    throw new CheckpointError(`${join(dir, OPTIMIZER_FILE)} is unreadable`, { cause: e });
  });
  return { state, optimizer };
}

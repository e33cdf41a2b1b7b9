/**
 * Finds the model folder of a checkpoint argument. Accepted: a model folder itself (holds
 * config.json), a pointer file (`<run>/checkpoints/best` or `latest`: a text file naming the
 * step folder, relative to the pointer's folder or absolute), a `checkpoints/` folder or a run
 * folder (then `best`, else `latest`, is followed).
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { CheckpointError } from '@smolrate/core';
import { CONFIG_FILE } from '@smolrate/model';

async function kind(p: string): Promise<'file' | 'dir' | null> {
  try {
    const s = await stat(p);
    return s.isDirectory() ? 'dir' : s.isFile() ? 'file' : null;
  } catch {
    return null;
  }
}

async function followPointer(file: string): Promise<string> {
  const name = (await readFile(file, 'utf8')).trim().split('\n')[0]?.trim() ?? '';
  if (!name) throw new CheckpointError(`checkpoint pointer ${file} is empty`);
  const target = path.resolve(path.dirname(file), name);
  if ((await kind(target)) !== 'dir') throw new CheckpointError(`checkpoint pointer ${file} names ${name}, but ${target} is not a folder`);
  return target;
}

export async function resolveCheckpointDir(arg: string): Promise<string> {
  const p = path.resolve(arg);
  const k = await kind(p);
  if (k === null) throw new CheckpointError(`checkpoint ${arg} does not exist (give a model folder, or a run's checkpoints/best pointer)`);
  if (k === 'file') return followPointer(p);
  if ((await kind(path.join(p, CONFIG_FILE))) === 'file') return p;
  for (const base of [p, path.join(p, 'checkpoints')]) {
    for (const ptr of ['best', 'latest']) {
      const f = path.join(base, ptr);
      if ((await kind(f)) === 'file') return followPointer(f);
    }
  }
  throw new CheckpointError(`checkpoint ${arg} is a folder without ${CONFIG_FILE} and without a best/latest pointer`);
}

/**
 * Test fixtures for apps/eval: a seeded tiny checkpoint inside a run folder (with a `best`
 * pointer and a metrics.jsonl) and a LoViF-style test folder. Shard builds and JPEGs come from
 * `@smolrate/core/testing`.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fixtureJpeg } from '@smolrate/core/testing';
import { presetConfig, saveModelDir, SmolVLMRegressor, TINY_TOKENIZER_URL } from '@smolrate/model';

/**
 * `<run>/checkpoints/step-2/` (seeded tiny model), `<run>/checkpoints/best` → step-2, and a
 * `<run>/metrics.jsonl` with training and validation records. Returns the step folder.
 */
export async function writeFixtureRun(run: string, seed = 3): Promise<string> {
  const cfg = presetConfig('tiny');
  const model = SmolVLMRegressor.fromSeed(cfg, seed);
  const dir = path.join(run, 'checkpoints', 'step-2');
  try {
    await saveModelDir(dir, { model, tokenizerJson: await readFile(TINY_TOKENIZER_URL, 'utf8') });
  } finally {
    model.dispose();
  }
  await writeFile(path.join(run, 'checkpoints', 'best'), 'step-2\n');
  const lines: string[] = [];
  for (let step = 1; step <= 6; step++) {
    lines.push(JSON.stringify({ time: step, step, loss: 1.5 / step, lr: step <= 2 ? 2e-4 * step : 4e-4 * (1 - (step - 2) / 5), samples_per_s: 10 }));
    if (step % 2 === 0) lines.push(JSON.stringify({ time: step, step, val_plcc: 0.1 * step, val_rmse: 1 / step, val_srcc: 0.09 * step }));
  }
  await writeFile(path.join(run, 'metrics.jsonl'), lines.join('\n') + '\n');
  return dir;
}

/** A LoViF-style folder: input.csv + images/. Item 1 has no image at all; item 2 a broken first path. */
export async function writeLovifFolder(dir: string, n: number): Promise<Array<{ id: string }>> {
  await mkdir(path.join(dir, 'images'), { recursive: true });
  const q = (s: string) => `"${s.replace(/"/g, '""')}"`;
  const lines = ['parent_asin,main_category,title,features,description,image_paths'];
  const items: Array<{ id: string }> = [];
  for (let i = 0; i < n; i++) {
    const id = `L${String(i).padStart(9, '0')}`;
    let paths = `images/${id}.jpg`;
    if (i !== 1) await writeFile(path.join(dir, 'images', `${id}.jpg`), await fixtureJpeg(2000 + i, { size: 500 }));
    if (i === 1) paths = '';
    if (i === 2) paths = `images/missing.jpg;images/${id}.jpg`;
    lines.push([id, 'Toys & Games', q(`Lovif "item" ${i}, with comma`), q(`feature a; feature ${i}`), q(i === 3 ? 'multi\nline description' : `desc ${i}`), paths].join(','));
    items.push({ id });
  }
  await writeFile(path.join(dir, 'input.csv'), lines.join('\r\n') + '\r\n');
  return items;
}

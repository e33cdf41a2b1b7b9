import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { UsageError } from '@smolrate/core';
import { initBackend } from '../backend.js';
import { CONFIG_FILE, loadModelDir, TOKENIZER_FILE, WEIGHTS_FILE } from '../checkpoint-dir.js';
import { dispatch } from '../cli.js';
import { presetConfig, toHfConfig } from '../config.js';
import { readSafetensorsFile, safetensorsChunks, stateDictSources } from '../safetensors.js';
import { SmolVLMRegressor } from '../smolvlm.js';
import { TINY_TOKENIZER_URL } from '../tokenizer.js';
import { runInit } from './init.js';

const cfg = presetConfig('tiny');
let tmp: string;

async function capture(f: () => Promise<number | void>): Promise<{ code: number | void; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => (out.push(String(c)), true));
  vi.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => (err.push(String(c)), true));
  try {
    return { code: await f(), out: out.join(''), err: err.join('') };
  } finally {
    vi.restoreAllMocks();
  }
}

beforeAll(async () => {
  await initBackend('cpu');
  tmp = await mkdtemp(path.join(tmpdir(), 'smolrate-init-'));
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

afterEach(() => vi.restoreAllMocks());

describe('smolrate-model init', () => {
  it('writes the tiny preset: fromSeed(config, seed) weights byte for byte, its config and bundled tokenizer', async () => {
    const dir = path.join(tmp, 'tiny');
    const r = await capture(() => dispatch(['init', '--preset', 'tiny', '--out', dir, '--seed', '3']));
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^wrote .*tiny: preset tiny, seed 3, [\d,]+ parameters in \d+ tensors \(\d+\.\d MiB\), tokenizer .*assets\/tiny\/tokenizer\.json\n$/);
    expect((await readdir(dir)).sort()).toEqual([CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE].sort());

    const model = SmolVLMRegressor.fromSeed(cfg, 3);
    try {
      const expected = Buffer.concat([...safetensorsChunks(stateDictSources(model.stateDict()), { format: 'pt', smolrate_init_seed: '3', smolrate_preset: 'tiny' })]);
      expect(Buffer.compare(await readFile(path.join(dir, WEIGHTS_FILE)), expected)).toBe(0);
    } finally {
      model.dispose();
    }
    expect(JSON.parse(await readFile(path.join(dir, CONFIG_FILE), 'utf8'))).toEqual(toHfConfig(cfg));
    expect(await readFile(path.join(dir, TOKENIZER_FILE), 'utf8')).toBe(await readFile(TINY_TOKENIZER_URL, 'utf8'));
    const loaded = await loadModelDir(dir);
    loaded.model.dispose();
    expect(loaded.report.warnings).toEqual([]);
  });

  it('different seeds differ; the default seed is 0', async () => {
    const a = await runInit({ preset: 'tiny', out: path.join(tmp, 's0') });
    await runInit({ preset: 'tiny', out: path.join(tmp, 's1'), seed: 1 });
    expect(a.seed).toBe(0);
    const w0 = (await readSafetensorsFile(path.join(tmp, 's0', WEIGHTS_FILE))).tensors.get('model.text_model.norm.weight')!;
    const q0 = (await readSafetensorsFile(path.join(tmp, 's0', WEIGHTS_FILE))).tensors.get('model.text_model.layers.0.self_attn.q_proj.weight')!;
    const q1 = (await readSafetensorsFile(path.join(tmp, 's1', WEIGHTS_FILE))).tensors.get('model.text_model.layers.0.self_attn.q_proj.weight')!;
    expect(w0.data.every((v) => v === 1)).toBe(true);
    expect(q0.data).not.toEqual(q1.data);
  });

  it('refuses to overwrite a checkpoint without --force', async () => {
    const dir = path.join(tmp, 'twice');
    await runInit({ preset: 'tiny', out: dir, seed: 1 });
    const again = await capture(() => dispatch(['init', '--preset', 'tiny', '--out', dir, '--seed', '2']));
    expect(again.code).toBe(2);
    expect(again.err).toContain(`${dir} already holds a checkpoint (config.json, model.safetensors); pass --force to overwrite it`);
    expect((await capture(() => dispatch(['init', '--preset', 'tiny', '--out', dir, '--seed', '2', '--force']))).code).toBe(0);
    const w = (await readSafetensorsFile(path.join(dir, WEIGHTS_FILE))).metadata;
    expect(w.smolrate_init_seed).toBe('2');
  });

  it('tokenizer choices: --no-tokenizer warns; the full preset demands --tokenizer or --no-tokenizer; a foreign tokenizer is checked', async () => {
    const dir = path.join(tmp, 'no-tok');
    const r = await capture(() => dispatch(['init', '--preset', 'tiny', '--out', dir, '--no-tokenizer']));
    expect(r.code).toBe(0);
    expect(r.err).toContain('written without tokenizer.json');
    expect(r.out).toContain('tokenizer none');
    expect((await readdir(dir)).sort()).toEqual([CONFIG_FILE, WEIGHTS_FILE].sort());

    const full = await capture(() => dispatch(['init', '--preset', 'smolvlm2-256m', '--out', path.join(tmp, 'full')]));
    expect(full.code).toBe(2);
    expect(full.err).toContain('preset smolvlm2-256m has no bundled tokenizer: give --tokenizer FILE (its tokenizer.json) or --no-tokenizer');
    await expect(readdir(path.join(tmp, 'full'))).rejects.toThrow(/ENOENT/);

    // The tiny tokenizer (vocabulary 1,152, <image> = 1062) does not fit the 256M config: refused before any weight is drawn.
    const misfit = await capture(() => dispatch(['init', '--preset', 'smolvlm2-256m', '--out', path.join(tmp, 'full'), '--tokenizer', path.join(tmp, 'tiny', TOKENIZER_FILE)]));
    expect(misfit.code).toBe(7);
    expect(misfit.err).toContain('tokenizer id of <image> is 1062 but config image_token_id is 49190');
    await expect(readdir(path.join(tmp, 'full'))).rejects.toThrow(/ENOENT/);

    const broken = path.join(tmp, 'broken.json');
    await writeFile(broken, '{');
    expect((await capture(() => dispatch(['init', '--preset', 'tiny', '--out', path.join(tmp, 'b'), '--tokenizer', broken]))).err).toContain('invalid JSON');
    expect((await capture(() => dispatch(['init', '--preset', 'tiny', '--out', path.join(tmp, 'b'), '--tokenizer', path.join(tmp, 'nope.json')]))).code).toBe(3);
  });

  it('rejects bad presets, seeds and options', async () => {
    await expect(runInit({ preset: 'huge', out: path.join(tmp, 'x') })).rejects.toThrow('--preset must be one of smolvlm2-256m, tiny; got "huge"');
    await expect(runInit({ preset: 'tiny', out: path.join(tmp, 'x'), seed: 1.5 })).rejects.toThrow(UsageError);
    await expect(runInit({ preset: 'tiny', out: path.join(tmp, 'x'), seed: -1 })).rejects.toThrow('--seed must be a non-negative integer, got -1');
    expect((await capture(() => dispatch(['init', '--out', path.join(tmp, 'x')]))).err).toContain('missing required --preset');
    expect((await capture(() => dispatch(['init', '--preset', 'tiny', '--out', path.join(tmp, 'x'), '--sed', '1']))).err).toContain('unknown option --sed');
  });
});

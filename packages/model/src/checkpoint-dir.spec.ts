import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CheckpointError } from '@smolrate/core';
import { initBackend } from './backend.js';
import {
  CONFIG_FILE,
  loadModelDir,
  modelTensorSources,
  saveModelDir,
  TOKENIZER_FILE,
  WEIGHTS_FILE,
  writeModelDir,
} from './checkpoint-dir.js';
import { fromHfConfig, presetConfig, toHfConfig, type ModelConfig } from './config.js';
import { initParameter } from './init.js';
import { packTokenRows } from './prompt.js';
import { expectedParameters, LM_HEAD_NAME } from './params.js';
import { readSafetensorsFile, safetensorsChunks, stateDictSources, type TensorSource } from './safetensors.js';
import { SmolVLMRegressor } from './smolvlm.js';
import type { StateDict } from './state-dict.js';
import { TINY_TOKENIZER_URL } from './tokenizer.js';

const PARITY = fileURLToPath(new URL('../tests/fixtures/parity/', import.meta.url));
/** The whole file in memory: the writer's chunks joined. */
const safetensorsBytes = (dict: StateDict, metadata?: Record<string, string>) => Buffer.concat([...safetensorsChunks(stateDictSources(dict), metadata)]);
const cfg = presetConfig('tiny');
const SEED = 5;
let tmp: string;
let tokenizerJson: string;

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

function expectSameDict(a: StateDict, b: StateDict): void {
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  for (const [name, t] of a) {
    expect(b.get(name)!.shape, name).toEqual(t.shape);
    expect(sameBits(b.get(name)!.data, t.data), name).toBe(true);
  }
}

async function expectCheckpointError(p: Promise<unknown>, ...fragments: string[]): Promise<CheckpointError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CheckpointError);
  for (const f of fragments) expect((err as Error).message).toContain(f);
  return err as CheckpointError;
}

/** Seeded init sources for a config (what `smolrate-model init` writes). */
function initSources(config: ModelConfig, seed: number, opts: { lmHead?: boolean; head?: boolean } = {}): TensorSource[] {
  return expectedParameters(config, { includeLmHead: opts.lmHead ?? false, includeHead: opts.head ?? true }).map((s) => ({
    name: s.name,
    shape: s.shape,
    data: () => initParameter(s, seed).data,
  }));
}

/** A fixed batch for the tiny preset: the image block + a few text tokens, with pixels. */
function tinyInputs() {
  const ids = [1061, 1024, ...new Array<number>(36).fill(1062), 1061, 40, 300, 17, 900];
  const pixels = new Float32Array(384 * 384 * 3);
  for (let i = 0; i < pixels.length; i++) pixels[i] = Math.sin(i * 0.001) * 0.9;
  return { pixels: tf.tensor4d(pixels, [1, 384, 384, 3]), tokens: packTokenRows(presetConfig('tiny'), [ids], { imageTokens: 36 }) };
}

function pooledOf(model: SmolVLMRegressor): Float32Array {
  const inputs = tinyInputs();
  const out = model.forward(inputs);
  const pooled = out.pooled.dataSync() as Float32Array;
  tf.dispose([out.pooled, out.logit, out.rating, inputs.pixels]);
  return pooled;
}

const quiet = { onWarning: () => undefined };
let initDir: string;

beforeAll(async () => {
  // wasm: the plain-JS backend takes seconds for one 384² vision pass.
  await initBackend('wasm');
  tmp = await mkdtemp(path.join(tmpdir(), 'smolrate-ckptdir-'));
  tokenizerJson = await readFile(TINY_TOKENIZER_URL, 'utf8');
  initDir = path.join(tmp, 'init');
  await writeModelDir(initDir, { config: cfg, tensors: initSources(cfg, SEED), tokenizerJson });
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('writeModelDir / loadModelDir', () => {
  it('a streamed seeded init loads as the model fromSeed builds, with the tokenizer, no warnings, no leaks', async () => {
    expect((await readdir(initDir)).sort()).toEqual([CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE].sort());
    const before = tf.memory().numTensors;
    const warnings: string[] = [];
    const loaded = await loadModelDir(initDir, { onWarning: (m) => warnings.push(m) });
    const reference = SmolVLMRegressor.fromSeed(cfg, SEED);
    try {
      expect(loaded.config).toEqual(cfg);
      expectSameDict(loaded.model.stateDict(), reference.stateDict());
      expect(loaded.tokenizer?.tokenId('<image>')).toBe(cfg.imageTokenId);
      expect(loaded.tokenizerJson).toBe(tokenizerJson);
      expect(loaded.lmHead).toBeNull();
      expect(warnings).toEqual([]);
      expect(loaded.report).toMatchObject({ hasLmHead: false, tensors: expectedParameters(cfg).length, metadata: { format: 'pt' }, initialized: [], ignored: [] });
      expect(loaded.report.files.tokenizer).toBe(path.join(initDir, TOKENIZER_FILE));
      expect(JSON.parse(await readFile(path.join(initDir, CONFIG_FILE), 'utf8'))).toEqual(toHfConfig(cfg));
    } finally {
      reference.dispose();
      loaded.model.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('saveModelDir → loadModelDir is bit-exact (weights and pooled output); the file is safetensorsChunks byte for byte', async () => {
    const model = SmolVLMRegressor.fromSeed(cfg, 11);
    const dir = path.join(tmp, 'saved');
    try {
      const saved = await saveModelDir(dir, { model, tokenizerJson });
      expect(saved.files).toEqual([path.join(dir, WEIGHTS_FILE), path.join(dir, TOKENIZER_FILE), path.join(dir, CONFIG_FILE)]);
      expect(saved.tensors).toBe(expectedParameters(cfg).length);
      const bytes = await readFile(path.join(dir, WEIGHTS_FILE));
      expect(saved.weightsBytes).toBe(bytes.length);
      expect(Buffer.compare(bytes, safetensorsBytes(model.stateDict(), { format: 'pt' }))).toBe(0);
      expect((await readdir(dir)).filter((n) => n.startsWith('.'))).toEqual([]); // no temp files left

      const loaded = await loadModelDir(dir, quiet);
      try {
        expectSameDict(loaded.model.stateDict(), model.stateDict());
        expect(sameBits(pooledOf(loaded.model), pooledOf(model))).toBe(true);
      } finally {
        loaded.model.dispose();
      }
    } finally {
      model.dispose();
    }
  });

  it('saving a changed model over a folder replaces it; without a tokenizer the stale tokenizer.json goes', async () => {
    const dir = path.join(tmp, 'overwrite');
    await cp(initDir, dir, { recursive: true });
    const model = SmolVLMRegressor.fromSeed(cfg, 12);
    try {
      await saveModelDir(dir, { model, config: { ...cfg, regression: { ...cfg.regression, truncation: 50 } } });
      expect((await readdir(dir)).sort()).toEqual([CONFIG_FILE, WEIGHTS_FILE]);
      const loaded = await loadModelDir(dir, { allowMissingTokenizer: true, ...quiet });
      try {
        expect(loaded.tokenizer).toBeNull();
        expect(loaded.report.files.tokenizer).toBeNull();
        expect(loaded.config.regression.truncation).toBe(50);
        expectSameDict(loaded.model.stateDict(), model.stateDict());
      } finally {
        loaded.model.dispose();
      }
    } finally {
      model.dispose();
    }
  });

  it('carries lm_head.weight over from load to save (unless keepLmHead is false) and keeps unknown config keys', async () => {
    const dir = path.join(tmp, 'with-lm-head');
    await writeModelDir(dir, { config: cfg, tensors: initSources(cfg, SEED, { lmHead: true }), tokenizerJson, baseHfConfig: { transformers_version: '4.50.0', vision_config: { max_image_size: { longest_edge: 384 } } } });
    const expectedLm = initParameter(expectedParameters(cfg, { includeLmHead: true }).find((s) => s.name === LM_HEAD_NAME)!, SEED);
    const loaded = await loadModelDir(dir, quiet);
    const out = path.join(tmp, 'with-lm-head-resaved');
    try {
      expect(loaded.report.hasLmHead).toBe(true);
      expect(loaded.report.ignored).toEqual([LM_HEAD_NAME]);
      expect(loaded.lmHead!.shape).toEqual([1152, 64]);
      expect(sameBits(loaded.lmHead!.data, expectedLm.data)).toBe(true);
      expect(loaded.lmHead!.data.buffer.byteLength).toBe(loaded.lmHead!.data.byteLength); // a copy, not a view of the file
      expect(loaded.hfConfig).toMatchObject({ transformers_version: '4.50.0', vision_config: { max_image_size: { longest_edge: 384 }, hidden_size: 64 } });

      await saveModelDir(out, { model: loaded.model, tokenizerJson: loaded.tokenizerJson, lmHead: loaded.lmHead, baseHfConfig: loaded.hfConfig });
      const file = await readSafetensorsFile(path.join(out, WEIGHTS_FILE));
      expect(sameBits(file.tensors.get(LM_HEAD_NAME)!.data, expectedLm.data)).toBe(true);
      const written = JSON.parse(await readFile(path.join(out, CONFIG_FILE), 'utf8'));
      expect(written).toMatchObject({ transformers_version: '4.50.0', vision_config: { max_image_size: { longest_edge: 384 } } });
      expect(fromHfConfig(written)).toEqual(cfg);
    } finally {
      loaded.model.dispose();
    }
    const dropped = await loadModelDir(dir, { keepLmHead: false, ...quiet });
    try {
      expect(dropped.lmHead).toBeNull();
      await saveModelDir(out, { model: dropped.model, tokenizerJson });
      expect((await readSafetensorsFile(path.join(out, WEIGHTS_FILE))).tensors.has(LM_HEAD_NAME)).toBe(false);
    } finally {
      dropped.model.dispose();
    }
  });

  it('loads an upstream-style folder without regression_head.* with a seeded head and a warning (or refuses it with requireHead)', async () => {
    const dir = path.join(tmp, 'upstream');
    // writeModelDir insists on the full smolrate set, so the upstream file is built by hand.
    await expectCheckpointError(writeModelDir(dir, { config: cfg, tensors: initSources(cfg, SEED, { head: false }), tokenizerJson }), '4 problems');
    const dict: StateDict = new Map(expectedParameters(cfg, { includeLmHead: true, includeHead: false }).map((s) => [s.name, initParameter(s, SEED)]));
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, WEIGHTS_FILE), safetensorsBytes(dict, { format: 'pt' }));
    await writeFile(path.join(dir, CONFIG_FILE), JSON.stringify(toHfConfig(cfg)));
    await writeFile(path.join(dir, TOKENIZER_FILE), tokenizerJson);

    const warnings: string[] = [];
    const loaded = await loadModelDir(dir, { seed: 3, onWarning: (m) => warnings.push(m) });
    try {
      expect(loaded.report.initialized).toEqual(['regression_head.fc1.weight', 'regression_head.fc1.bias', 'regression_head.fc2.weight', 'regression_head.fc2.bias']);
      expect(warnings.join('\n')).toContain('regression head was initialised from seed 3');
      const fc1 = loaded.model.stateDict().get('regression_head.fc1.weight')!;
      expect(sameBits(fc1.data, initParameter({ name: 'regression_head.fc1.weight', shape: [32, 64], init: 'normal' }, 3).data)).toBe(true);
    } finally {
      loaded.model.dispose();
    }
    await expectCheckpointError(loadModelDir(dir, { requireHead: true, ...quiet }), '4 missing', 'missing:    regression_head.fc1.weight [32, 64]', 'regression_head.fc2.bias [1]');
  });

  it('loads the parity fixture (HF names incl. lm_head, no tokenizer) only when a missing tokenizer is allowed', async () => {
    await expectCheckpointError(loadModelDir(PARITY), `model folder ${PARITY}`, 'lacks tokenizer.json', 'it holds: README.md, cases.json, config.json, model.safetensors', "copy the model's tokenizer.json");
    const loaded = await loadModelDir(PARITY, { allowMissingTokenizer: true, ...quiet });
    try {
      expect(loaded.tokenizer).toBeNull();
      expect(loaded.report.hasLmHead).toBe(true);
      expect(loaded.config.imageTokenId).toBe(90);
      const file = await readSafetensorsFile(path.join(PARITY, WEIGHTS_FILE));
      file.tensors.delete(LM_HEAD_NAME);
      expectSameDict(loaded.model.stateDict(), file.tensors);
    } finally {
      loaded.model.dispose();
    }
  });
});

describe('loadModelDir errors', () => {
  /** A copy of the init folder whose tensors are edited by `edit`. */
  async function withTensors(name: string, edit: (dict: StateDict) => void): Promise<string> {
    const dir = path.join(tmp, name);
    await cp(initDir, dir, { recursive: true });
    const { tensors } = await readSafetensorsFile(path.join(initDir, WEIGHTS_FILE));
    const dict: StateDict = new Map([...tensors].map(([k, t]) => [k, { shape: t.shape, data: t.data.slice() }]));
    edit(dict);
    await writeFile(path.join(dir, WEIGHTS_FILE), safetensorsBytes(dict, { format: 'pt' }));
    return dir;
  }

  it('names every missing file', async () => {
    const dir = path.join(tmp, 'only-config');
    await mkdir(dir, { recursive: true });
    await cp(path.join(initDir, CONFIG_FILE), path.join(dir, CONFIG_FILE));
    await expectCheckpointError(loadModelDir(dir), 'lacks model.safetensors and tokenizer.json (it holds: config.json)');
    await expectCheckpointError(loadModelDir(path.join(tmp, 'nowhere')), 'does not exist');
  });

  it('one message lists a removed, an extra and a mis-shaped tensor', async () => {
    const dir = await withTensors('bad-tensors', (dict) => {
      dict.delete('model.text_model.layers.1.mlp.up_proj.weight');
      dict.set('model.text_model.layers.2.mlp.up_proj.weight', { shape: [128, 64], data: new Float32Array(128 * 64) });
      dict.set('model.vision_model.post_layernorm.bias', { shape: [63], data: new Float32Array(63) });
    });
    const err = await expectCheckpointError(
      loadModelDir(dir),
      `${path.join(dir, WEIGHTS_FILE)} does not match ${path.join(dir, CONFIG_FILE)} (1 missing, 1 unexpected, 1 mis-shaped)`,
      'missing:    model.text_model.layers.1.mlp.up_proj.weight [128, 64]',
      'unexpected: model.text_model.layers.2.mlp.up_proj.weight [128, 64]',
      'shape:      model.vision_model.post_layernorm.bias expected [64], got [63]',
    );
    expect(err.message.split('\n')).toHaveLength(4);
  });

  it('each problem alone is reported too; a mis-shaped lm_head counts', async () => {
    await expectCheckpointError(loadModelDir(await withTensors('removed', (d) => d.delete('regression_head.fc2.bias'))), '(1 missing, 0 unexpected, 0 mis-shaped)', 'regression_head.fc2.bias [1]');
    await expectCheckpointError(loadModelDir(await withTensors('extra', (d) => d.set('model.extra', { shape: [2], data: new Float32Array(2) }))), '(0 missing, 1 unexpected, 0 mis-shaped)', 'unexpected: model.extra [2]');
    await expectCheckpointError(
      loadModelDir(await withTensors('misshaped', (d) => d.set('model.text_model.embed_tokens.weight', { shape: [1152, 32], data: new Float32Array(1152 * 32) }))),
      'shape:      model.text_model.embed_tokens.weight expected [1152, 64], got [1152, 32]',
    );
    await expectCheckpointError(loadModelDir(await withTensors('bad-lm', (d) => d.set(LM_HEAD_NAME, { shape: [64, 1152], data: new Float32Array(1152 * 64) }))), 'shape:      lm_head.weight expected [1152, 64], got [64, 1152]');
  });

  it('config.json problems name the file', async () => {
    const dir = path.join(tmp, 'bad-config');
    await cp(initDir, dir, { recursive: true });
    const file = path.join(dir, CONFIG_FILE);
    await writeFile(file, '{"vision_config": ');
    await expectCheckpointError(loadModelDir(dir), `${file}: not valid JSON`);
    await writeFile(file, JSON.stringify({ vision_config: {} }));
    await expectCheckpointError(loadModelDir(dir), `${file}: expected "vision_config" and "text_config"`);
    const hf = toHfConfig(cfg) as { text_config: Record<string, unknown> };
    delete hf.text_config.vocab_size;
    await writeFile(file, JSON.stringify(hf));
    await expectCheckpointError(loadModelDir(dir), `${file}: missing text_config.vocab_size`);
    await writeFile(file, JSON.stringify(toHfConfig({ ...cfg, regression: { ...cfg.regression, imageSize: 400 } })));
    await expectCheckpointError(loadModelDir(dir), `${file}: image size 400 must be a multiple of patch 16 × scale 4 = 64`);
  });

  it('a tokenizer that does not fit the config: <image> id and vocabulary size, both listed', async () => {
    const dir = path.join(tmp, 'bad-tokenizer');
    await cp(initDir, dir, { recursive: true });
    const file = path.join(dir, CONFIG_FILE);
    await writeFile(file, JSON.stringify(toHfConfig({ ...cfg, imageTokenId: 1061 })));
    await expectCheckpointError(loadModelDir(dir), `${path.join(dir, TOKENIZER_FILE)} does not fit ${file}: tokenizer id of <image> is 1062 but config image_token_id is 1061`);
    await writeFile(file, JSON.stringify(toHfConfig({ ...cfg, imageTokenId: 5, text: { ...cfg.text, vocabSize: 1100 } })));
    await expectCheckpointError(
      loadModelDir(dir),
      '2 problems',
      'tokenizer id of <image> is 1062 but config image_token_id is 5',
      'tokenizer vocabulary (1152 ids) is larger than text_config.vocab_size (1100)',
    );
    await writeFile(path.join(dir, TOKENIZER_FILE), '{"model": 5');
    await expectCheckpointError(loadModelDir(dir), `${path.join(dir, TOKENIZER_FILE)}: invalid JSON`);
  });
});

describe('saveModelDir refusals', () => {
  it('a config describing other tensors, a tokenizer that does not fit, wrong tensor sets: nothing is written', async () => {
    const model = SmolVLMRegressor.fromSeed(cfg, 1);
    const dir = path.join(tmp, 'refused');
    try {
      await expectCheckpointError(saveModelDir(dir, { model, config: { ...cfg, text: { ...cfg.text, numLayers: 3 } } }), 'describes other tensors');
      await expectCheckpointError(saveModelDir(dir, { model, config: { ...cfg, imageTokenId: 1061 }, tokenizerJson }), 'the tokenizer does not fit the config: tokenizer id of <image> is 1062');
      const sources = modelTensorSources(model);
      await expectCheckpointError(writeModelDir(dir, { config: cfg, tensors: sources.slice(1) }), 'missing:    model.vision_model.embeddings.patch_embedding.weight [64, 3, 16, 16]');
      await expectCheckpointError(writeModelDir(dir, { config: cfg, tensors: [...sources, sources[0]] }), 'given twice');
      await expectCheckpointError(
        writeModelDir(dir, { config: cfg, tensors: [...sources.slice(1), { ...sources[0], shape: [64, 3, 16, 15] }] }),
        'shape:      model.vision_model.embeddings.patch_embedding.weight expected [64, 3, 16, 16], got [64, 3, 16, 15]',
      );
      await expect(readdir(dir)).rejects.toThrow(/ENOENT/);
      // A producer whose data does not fill its shape fails mid-write: no temp file, no final file.
      const short = sources.map((s, i) => (i === 3 ? { ...s, data: () => new Float32Array(1) } : s));
      await expectCheckpointError(writeModelDir(dir, { config: cfg, tensors: short }), `tensor "${sources[3].name}"`, 'holds 64 values but the data has 1');
      expect(await readdir(dir)).toEqual([]);
    } finally {
      model.dispose();
    }
  });
});

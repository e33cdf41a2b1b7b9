/**
 * An HF-style model folder (docs/reference/model.md "Checkpoint tensors", docs/reference/design.md "Checkpoints"):
 *
 *   config.json        HF SmolVLM config + smolrate's `regression` section (fromHfConfig / toHfConfig)
 *   model.safetensors  float32, HF tensor names + `regression_head.*` (+ `lm_head.weight`, see below)
 *   tokenizer.json     the HF tokenizer
 *
 * Loading validates everything before a model is built and reports ALL problems of a kind in one
 * CheckpointError: missing files, config/tokenizer mismatches, missing / unexpected / mis-shaped
 * tensors. An upstream SmolVLM2 folder (no `regression_head.*`) loads with a seeded head and a
 * warning, so training can start from it.
 *
 * `lm_head.weight` is not part of the model (the LM head is never used) but PyTorch's
 * SmolVLMForConditionalGeneration has it. Choice: a loaded lm_head is copied out of the file
 * buffer and handed back (`LoadedModelDir.lmHead`), and `saveModelDir` writes it again when given,
 * so a folder loaded from upstream keeps the pretrained LM head and stays a complete
 * transformers checkpoint (113 MB of float32 for the 256M model). Without one (a seeded init, or
 * `keepLmHead: false`) the file has no lm_head; transformers' `from_pretrained` then initialises
 * it randomly and lists it under "newly initialized" weights — loading still works, and
 * `regression_head.*` is reported as unused there either way.
 *
 * Saving is atomic per file and the folder is complete before config.json appears: every file is
 * written to a temporary sibling and fsync'd, then renamed into place, config.json last. The
 * safetensors file is streamed one tensor at a time (header first), so saving the 256M model
 * needs at most one parameter's copy (113 MB) on top of the model, not a second 1 GB buffer.
 * The `__metadata__` holds `format: pt`, which transformers requires of safetensors files.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { access, mkdir, open, readFile, readdir, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { CheckpointError, ConfigError, isSmolrateError } from '@smolrate/core';
import { fromHfConfig, imageTokenCount, toHfConfig, type ModelConfig } from './config.js';
import { expectedParameters, HEAD_PREFIX, LM_HEAD_NAME } from './params.js';
import { CHAT_START_TOKEN, END_OF_UTTERANCE_TOKEN, FAKE_IMAGE_TOKEN, GLOBAL_IMAGE_TOKEN, IMAGE_TOKEN } from './prompt.js';
import { readSafetensorsFile, safetensorsChunks, validateStateDict, type TensorSource } from './safetensors.js';
import { SmolVLMRegressor, type LoadReport } from './smolvlm.js';
import { sameShape, type StateTensor } from './state-dict.js';
import { loadTokenizer, type TextTokenizer } from './tokenizer.js';

export const CONFIG_FILE = 'config.json';
export const WEIGHTS_FILE = 'model.safetensors';
export const TOKENIZER_FILE = 'tokenizer.json';

/** safetensors `__metadata__` of every file we write; transformers refuses files without a known `format`. */
export const SAFETENSORS_METADATA: Readonly<Record<string, string>> = { format: 'pt' };

type Json = Record<string, unknown>;

// ---------------------------------------------------------------------------------------------
// Consistency checks
// ---------------------------------------------------------------------------------------------

/**
 * Problems between a tokenizer and a config (empty when they fit): the `<image>` id must be the
 * config's image_token_id, the vocabulary must fit the embedding table, and the special tokens of
 * the prompt must exist.
 */
export function tokenizerConfigProblems(tokenizer: TextTokenizer, cfg: ModelConfig): string[] {
  const problems: string[] = [];
  const required = [IMAGE_TOKEN, FAKE_IMAGE_TOKEN, GLOBAL_IMAGE_TOKEN];
  if (cfg.regression.prompt === 'chat') required.push(CHAT_START_TOKEN, END_OF_UTTERANCE_TOKEN);
  const absent = required.filter((t) => !tokenizer.hasToken(t));
  if (absent.length > 0) problems.push(`the tokenizer lacks the prompt's special token${absent.length > 1 ? 's' : ''} ${absent.join(', ')}`);
  if (tokenizer.hasToken(IMAGE_TOKEN) && tokenizer.tokenId(IMAGE_TOKEN) !== cfg.imageTokenId) {
    problems.push(`tokenizer id of ${IMAGE_TOKEN} is ${tokenizer.tokenId(IMAGE_TOKEN)} but config image_token_id is ${cfg.imageTokenId}`);
  }
  if (tokenizer.vocabSize > cfg.text.vocabSize) {
    problems.push(`tokenizer vocabulary (${tokenizer.vocabSize} ids) is larger than text_config.vocab_size (${cfg.text.vocabSize})`);
  }
  return problems;
}

/** Config invariants the forward pass relies on, as problems (empty when fine). */
function configProblems(cfg: ModelConfig): string[] {
  const problems: string[] = [];
  try {
    imageTokenCount(cfg);
    expectedParameters(cfg);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    problems.push(e.message);
  }
  if (!(cfg.imageTokenId >= 0 && cfg.imageTokenId < cfg.text.vocabSize)) {
    problems.push(`image_token_id ${cfg.imageTokenId} is outside the vocabulary [0, ${cfg.text.vocabSize})`);
  }
  if (!(cfg.text.padTokenId >= 0 && cfg.text.padTokenId < cfg.text.vocabSize)) {
    problems.push(`text_config.pad_token_id ${cfg.text.padTokenId} is outside the vocabulary [0, ${cfg.text.vocabSize})`);
  }
  return problems;
}

function problemsError(where: string, problems: string[]): CheckpointError {
  return new CheckpointError(problems.length === 1 ? `${where}: ${problems[0]}` : `${where}: ${problems.length} problems:\n  ${problems.join('\n  ')}`);
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

export interface LoadModelDirOptions {
  /** Accept a folder without tokenizer.json (then `tokenizer` is null). Default false. */
  allowMissingTokenizer?: boolean;
  /** Refuse weights without `regression_head.*` (an upstream HF checkpoint). Default false: seeded head + warning. */
  requireHead?: boolean;
  /** Seed of a regression head that has to be initialised. Default 0. */
  seed?: number;
  /** Copy `lm_head.weight` out of the file for saving it again (see the file comment). Default true. */
  keepLmHead?: boolean;
  /** Receives each warning; default: the model's logger (warn level). */
  onWarning?: (message: string) => void;
}

export interface ModelDirReport extends LoadReport {
  dir: string;
  files: { config: string; weights: string; tokenizer: string | null };
  /** Tensors in model.safetensors. */
  tensors: number;
  /** Whether model.safetensors holds lm_head.weight. */
  hasLmHead: boolean;
  /** The safetensors `__metadata__`. */
  metadata: Record<string, string>;
}

export interface LoadedModelDir {
  model: SmolVLMRegressor;
  config: ModelConfig;
  tokenizer: TextTokenizer | null;
  /** tokenizer.json as read, to write next to a new checkpoint; null without one. */
  tokenizerJson: string | null;
  /** config.json as parsed: saveModelDir keeps the keys smolrate does not model (`baseHfConfig`). */
  hfConfig: Json;
  /** A copy of lm_head.weight (PyTorch layout) when the file has one and keepLmHead; else null. */
  lmHead: StateTensor | null;
  report: ModelDirReport;
}

async function exists(file: string): Promise<boolean> {
  try {
    await access(file, fsConstants.F_OK);
    return true;
  } catch {
    return false;
  }
}

async function readText(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    throw new CheckpointError(`cannot read ${file}`, { cause: e });
  }
}

/** Reads and checks config.json; the CheckpointError names the file. */
export async function readModelDirConfig(dir: string): Promise<{ config: ModelConfig; hfConfig: Json }> {
  const file = path.join(dir, CONFIG_FILE);
  const text = await readText(file);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  let config: ModelConfig;
  try {
    config = fromHfConfig(json);
  } catch (e) {
    if (e instanceof ConfigError) throw new CheckpointError(`${file}: ${e.message.replace(/^config\.json: /, '')}`);
    throw e;
  }
  const problems = configProblems(config);
  if (problems.length > 0) throw problemsError(file, problems);
  return { config, hfConfig: json as Json };
}

/**
 * Checks that `dir` is a folder holding config.json, model.safetensors and (unless allowed to be
 * missing) tokenizer.json; one CheckpointError names every missing file. Returns the paths.
 */
export async function checkModelDirFiles(dir: string, options: { allowMissingTokenizer?: boolean } = {}): Promise<{ config: string; weights: string; tokenizer: string }> {
  try {
    if (!(await stat(dir)).isDirectory()) throw new CheckpointError(`model folder ${dir} is not a directory`);
  } catch (e) {
    if (e instanceof CheckpointError) throw e;
    throw new CheckpointError(`model folder ${dir} does not exist`, { cause: e });
  }
  const files = { config: path.join(dir, CONFIG_FILE), weights: path.join(dir, WEIGHTS_FILE), tokenizer: path.join(dir, TOKENIZER_FILE) };
  const required = [CONFIG_FILE, WEIGHTS_FILE, ...(options.allowMissingTokenizer ? [] : [TOKENIZER_FILE])];
  const missing: string[] = [];
  for (const name of required) if (!(await exists(path.join(dir, name)))) missing.push(name);
  if (missing.length > 0) {
    const present = (await readdir(dir)).filter((n) => !n.startsWith('.')).sort();
    throw new CheckpointError(
      `model folder ${dir} lacks ${missing.join(' and ')} (it holds: ${present.length > 0 ? present.join(', ') : 'nothing'})` +
        (missing.includes(TOKENIZER_FILE) && missing.length === 1 ? `; copy the model's ${TOKENIZER_FILE} into it` : ''),
    );
  }
  return files;
}

/**
 * Loads a model folder (see the file comment). Nothing is built until the config, the tokenizer
 * and the tensor names/shapes have been checked. Peak memory ≈ the safetensors file (read once,
 * F32 tensors are views into it) + the model; the file buffer is released when this returns.
 */
export async function loadModelDir(dir: string, options: LoadModelDirOptions = {}): Promise<LoadedModelDir> {
  const { allowMissingTokenizer = false, requireHead = false, seed = 0, keepLmHead = true } = options;
  const files = await checkModelDirFiles(dir, { allowMissingTokenizer });

  const { config, hfConfig } = await readModelDirConfig(dir);

  let tokenizer: TextTokenizer | null = null;
  let tokenizerJson: string | null = null;
  if (await exists(files.tokenizer)) {
    tokenizerJson = await readText(files.tokenizer);
    try {
      tokenizer = loadTokenizer(tokenizerJson);
    } catch (e) {
      if (e instanceof ConfigError) throw new CheckpointError(`${files.tokenizer}: ${e.message.replace(/^tokenizer\.json: /, '')}`);
      throw e;
    }
    const problems = tokenizerConfigProblems(tokenizer, config);
    if (problems.length > 0) throw problemsError(`${files.tokenizer} does not fit ${files.config}`, problems);
  }

  const { tensors: dict, metadata } = await readSafetensorsFile(files.weights);
  const hasLmHead = dict.has(LM_HEAD_NAME);
  const hasHead = [...dict.keys()].some((n) => n.startsWith(`${HEAD_PREFIX}.`));
  try {
    // lm_head is checked when present (a mis-shaped one would break PyTorch loading too).
    validateStateDict(dict, expectedParameters(config, { includeLmHead: hasLmHead, includeHead: hasHead || requireHead }));
  } catch (e) {
    if (e instanceof CheckpointError) throw new CheckpointError(`${files.weights} does not match ${files.config} ${e.message.replace(/^state dict does not match the model /, '')}`);
    throw e;
  }

  const lmHead = hasLmHead && keepLmHead ? copyTensor(dict.get(LM_HEAD_NAME)!) : null;
  const { model, report } = SmolVLMRegressor.fromStateDict(config, dict, { strict: true, seed, onWarning: options.onWarning });
  const tensors = dict.size;
  dict.clear(); // drop the views so the file buffer can be collected
  return {
    model,
    config,
    tokenizer,
    tokenizerJson,
    hfConfig,
    lmHead,
    report: { ...report, dir, files: { ...files, tokenizer: tokenizer ? files.tokenizer : null }, tensors, hasLmHead, metadata },
  };
}

/** A copy that does not keep the (1 GB) file buffer alive. */
function copyTensor(t: StateTensor): StateTensor {
  return { shape: [...t.shape], data: t.data.slice() };
}

// ---------------------------------------------------------------------------------------------
// Saving
// ---------------------------------------------------------------------------------------------

export interface WriteModelDirOptions {
  config: ModelConfig;
  /** Exactly the tensors of expectedParameters(config), plus optionally lm_head.weight. */
  tensors: readonly TensorSource[];
  /** tokenizer.json text; null/undefined writes none (and removes a stale one). */
  tokenizerJson?: string | null;
  /** An original config.json object whose keys we do not model are kept (ours win). */
  baseHfConfig?: Json;
  /** Extra safetensors `__metadata__` entries (format is always "pt"). */
  metadata?: Record<string, string>;
}

export interface SaveModelDirOptions {
  model: SmolVLMRegressor;
  /** Written to config.json; default model.config. Must describe the model's tensors (the `regression` text settings may differ). */
  config?: ModelConfig;
  tokenizerJson?: string | null;
  /** lm_head.weight to carry over (LoadedModelDir.lmHead); absent: not written, see the file comment. */
  lmHead?: StateTensor | null;
  baseHfConfig?: Json;
  metadata?: Record<string, string>;
}

export interface SavedModelDir {
  dir: string;
  /** Files written, in the order they were put in place (config.json last). */
  files: string[];
  tensors: number;
  /** Size of model.safetensors. */
  weightsBytes: number;
}

/** Shapes as validateStateDict prints them, so save and load errors read alike. */
const fmt = (s: readonly number[]) => `[${s.join(', ')}]`;

async function writeAll(fh: FileHandle, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += (await fh.write(bytes, off, bytes.length - off)).bytesWritten;
}

function tempName(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.smolrate-tmp-${randomBytes(6).toString('hex')}`);
}

/** Writes a temporary sibling of `file` through `write`, fsync'd; returns its name. */
async function writeTemp(file: string, temps: string[], write: (fh: FileHandle) => Promise<void>): Promise<string> {
  const tmp = tempName(file);
  temps.push(tmp);
  const fh = await open(tmp, 'wx');
  try {
    await write(fh);
    await fh.sync();
  } finally {
    await fh.close();
  }
  return tmp;
}

/** Merges our config.json over an original one: unknown keys of the original survive, sections merge one level deep. */
function mergeHfConfig(base: Json | undefined, ours: Json): Json {
  if (!base) return ours;
  const out: Json = { ...base, ...ours };
  for (const [k, v] of Object.entries(ours)) {
    const b = base[k];
    if (typeof v === 'object' && v !== null && !Array.isArray(v) && typeof b === 'object' && b !== null && !Array.isArray(b)) out[k] = { ...(b as Json), ...(v as Json) };
  }
  return out;
}

/**
 * Writes a model folder from tensor sources (the streaming core of saveModelDir and of
 * `smolrate-model init`). Names, shapes and the tokenizer are checked against the config before
 * anything is written.
 */
export async function writeModelDir(dir: string, options: WriteModelDirOptions): Promise<SavedModelDir> {
  const { config, tensors } = options;
  const problems = configProblems(config);
  if (problems.length > 0) throw problemsError('cannot save: the config is invalid', problems);

  const names = new Set<string>();
  for (const t of tensors) {
    if (names.has(t.name)) throw new CheckpointError(`cannot save: tensor ${t.name} is given twice`);
    names.add(t.name);
  }
  const includeLmHead = names.has(LM_HEAD_NAME);
  const expected = expectedParameters(config, { includeLmHead });
  const shapes = new Map(tensors.map((t) => [t.name, t.shape]));
  const mismatch: string[] = [];
  for (const e of expected) {
    const s = shapes.get(e.name);
    if (!s) mismatch.push(`missing:    ${e.name} ${fmt(e.shape)}`);
    else if (!sameShape(s, e.shape)) mismatch.push(`shape:      ${e.name} expected ${fmt(e.shape)}, got ${fmt(s)}`);
  }
  const known = new Set(expected.map((e) => e.name));
  for (const t of tensors) if (!known.has(t.name)) mismatch.push(`unexpected: ${t.name} ${fmt(t.shape)}`);
  if (mismatch.length > 0) throw new CheckpointError(`cannot save: the tensors do not match the config (${mismatch.length} problem${mismatch.length > 1 ? 's' : ''}):\n  ${mismatch.join('\n  ')}`);

  const tokenizerJson = options.tokenizerJson ?? null;
  if (tokenizerJson !== null) {
    let tok: TextTokenizer;
    try {
      tok = loadTokenizer(tokenizerJson);
    } catch (e) {
      if (isSmolrateError(e)) throw new CheckpointError(`cannot save: ${e.message}`);
      throw e;
    }
    const tp = tokenizerConfigProblems(tok, config);
    if (tp.length > 0) throw problemsError('cannot save: the tokenizer does not fit the config', tp);
  }

  const metadata = { ...(options.metadata ?? {}), ...SAFETENSORS_METADATA };
  const hfConfig = mergeHfConfig(options.baseHfConfig, toHfConfig(config));
  const target = { weights: path.join(dir, WEIGHTS_FILE), tokenizer: path.join(dir, TOKENIZER_FILE), config: path.join(dir, CONFIG_FILE) };
  const temps: string[] = [];
  const placed: string[] = [];
  try {
    await mkdir(dir, { recursive: true });
    let weightsBytes = 0;
    const weightsTmp = await writeTemp(target.weights, temps, async (fh) => {
      for (const chunk of safetensorsChunks(tensors, metadata)) {
        await writeAll(fh, chunk);
        weightsBytes += chunk.byteLength;
      }
    });
    const tokenizerTmp = tokenizerJson === null ? null : await writeTemp(target.tokenizer, temps, (fh) => writeAll(fh, Buffer.from(tokenizerJson, 'utf8')));
    const configTmp = await writeTemp(target.config, temps, (fh) => writeAll(fh, Buffer.from(JSON.stringify(hfConfig, null, 2) + '\n', 'utf8')));

    await rename(weightsTmp, target.weights);
    placed.push(target.weights);
    if (tokenizerTmp !== null) {
      await rename(tokenizerTmp, target.tokenizer);
      placed.push(target.tokenizer);
    } else {
      // A tokenizer.json left from an earlier save would not belong to these weights.
      await unlink(target.tokenizer).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e;
      });
    }
    await rename(configTmp, target.config);
    placed.push(target.config);
    await syncDir(dir);
    return { dir, files: placed, tensors: tensors.length, weightsBytes };
  } catch (e) {
    await Promise.all(temps.map((t) => unlink(t).catch(() => undefined)));
    if (isSmolrateError(e)) throw e;
    throw new CheckpointError(`cannot save the model folder ${dir}`, { cause: e });
  }
}

/** fsync of the directory makes the renames durable (not supported everywhere: best effort). */
async function syncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch {
    // e.g. EISDIR/EPERM on some platforms
  } finally {
    await fh?.close();
  }
}

/** The model's parameters as tensor sources, each converted to the PyTorch layout only when written. */
export function modelTensorSources(model: SmolVLMRegressor): TensorSource[] {
  return model.parameters().map((p) => ({ name: p.name, shape: [...p.shape], data: () => p.toState().data }));
}

/**
 * Saves `model` as a folder that `loadModelDir` reloads bit-exactly (and transformers can load).
 * `tokenizerJson` is checked against the config; `lmHead` (from loadModelDir) is carried over.
 */
export async function saveModelDir(dir: string, options: SaveModelDirOptions): Promise<SavedModelDir> {
  const { model } = options;
  const config = options.config ?? model.config;
  const mine = model.namedParameters();
  const theirs = expectedParameters(config);
  if (mine.length !== theirs.length || mine.some((p, i) => p.name !== theirs[i].name || !sameShape(p.shape, theirs[i].shape))) {
    throw new CheckpointError('cannot save: the given config describes other tensors than the model has (use the model\'s own config, changing only its regression text settings)');
  }
  const tensors = modelTensorSources(model);
  if (options.lmHead) {
    const lm = options.lmHead;
    tensors.push({ name: LM_HEAD_NAME, shape: lm.shape, data: () => lm.data });
  }
  return writeModelDir(dir, { config, tensors, tokenizerJson: options.tokenizerJson, baseHfConfig: options.baseHfConfig, metadata: options.metadata });
}

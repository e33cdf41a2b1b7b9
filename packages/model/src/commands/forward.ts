/**
 * `smolrate-model forward`: one item through a model folder — prompt encoding, image (decoded
 * with core's decodeImage, or given as already-normalised pixels in a .npy), the forward pass,
 * and a JSON file with the token ids, the pooled hidden state, the logit, the rating and the
 * backend it ran on.
 */
import { mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { createLogger, DataError, decodeImage, flagString, kebab, parseArgs, requireFlag, ShapeError, UsageError } from '@smolrate/core';
import { initBackend, parseBackendChoice, type BackendChoice, type BackendName } from '../backend.js';
import { checkModelDirFiles, loadModelDir, readModelDirConfig } from '../checkpoint-dir.js';
import type { ModelConfig } from '../config.js';
import { readNpy } from '../npy.js';
import { normalizePixels } from '../pixels.js';
import { encodeBatch, type PromptItem, type TextField } from '../prompt.js';
import type { SmolVLMRegressor } from '../smolvlm.js';
import type { TextTokenizer } from '../tokenizer.js';

export const summary = 'run the model forward on an image and a prompt';

export const usage = `usage: smolrate-model forward --model DIR --item ITEM.json (--image FILE | --pixels FILE.npy)
                              --out OUT.json [--backend auto|tensorflow|wasm|cpu]

  --model DIR        model folder: config.json, model.safetensors, tokenizer.json
  --item ITEM.json   the product: {"title", "description", "features", "main_category"}, each a
                     string, a list of strings (joined with " ") or null; other keys are ignored
  --image FILE       a JPEG/PNG/WebP/GIF/TIFF/AVIF image, resized to the config's image size
  --pixels FILE.npy  or the pixels themselves: float32 [S, S, 3] already normalised (x/127.5 − 1),
                     or uint8 [S, S, 3] RGB (normalised here); S = the config's image size
  --out OUT.json     where to write {"input_ids", "pooled", "logit", "rating", "backend"}
  --backend B        compute backend (default auto: tensorflow-gpu, tensorflow, wasm, cpu)`;

const KNOWN_FLAGS = ['model', 'item', 'image', 'pixels', 'out', 'backend'];
const ITEM_FIELDS = ['title', 'description', 'features', 'main_category'] as const;

export interface ForwardOptions {
  model: string;
  item: string;
  image?: string;
  pixels?: string;
  out: string;
  backend?: BackendChoice;
}

export interface ForwardResult {
  input_ids: number[];
  pooled: number[];
  logit: number;
  rating: number;
  backend: BackendName;
}

/** ITEM.json → the prompt's fields (`main_category` is the template's category). */
export function parseItem(json: unknown, what = 'item'): PromptItem {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new DataError(`${what}: expected a JSON object`);
  const obj = json as Record<string, unknown>;
  if (!ITEM_FIELDS.some((k) => k in obj)) throw new DataError(`${what}: has none of the fields ${ITEM_FIELDS.join(', ')}`);
  const field = (key: (typeof ITEM_FIELDS)[number]): TextField => {
    const v = obj[key];
    if (v === undefined || v === null || typeof v === 'string') return v;
    if (Array.isArray(v) && v.every((x) => x === null || typeof x === 'string')) return v as (string | null)[];
    throw new DataError(`${what}: "${key}" must be a string, a list of strings or null, got ${JSON.stringify(v).slice(0, 80)}`);
  };
  return { title: field('title'), description: field('description'), features: field('features'), category: field('main_category') };
}

/**
 * Normalised pixels [S·S·3] for the config's image size, from a .npy: float32 is taken as already
 * normalised, uint8 as RGB bytes. Values must be finite.
 */
export function pixelsFromNpy(bytes: Uint8Array, cfg: ModelConfig, what = 'pixels'): Float32Array {
  const arr = readNpy(bytes, what);
  const s = cfg.regression.imageSize;
  const [h, w, c] = arr.shape;
  if (arr.shape.length !== 3 || h !== s || w !== s || c !== 3) {
    throw new ShapeError(`${what}: expected shape (${s}, ${s}, 3) — the config's image size, HWC RGB — got (${arr.shape.join(', ')})`);
  }
  if (arr.dtype === 'uint8') return normalizePixels(arr.data as Uint8Array, s);
  const data = arr.data as Float32Array;
  let max = 0;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (!Number.isFinite(v)) throw new DataError(`${what}: value ${v} at flat index ${i} is not finite`);
    if (Math.abs(v) > max) max = Math.abs(v);
  }
  if (max > 1.0001) {
    createLogger({ name: 'forward' }).warn(`${what}: values reach ${max}, outside [-1, 1]: float32 pixels must already be normalised (x/127.5 − 1)`);
  }
  return data;
}

/**
 * One item through the model (eval mode). `pixels` are normalised [S·S·3]. Every tensor made
 * here is disposed before returning.
 */
function forwardItem(model: SmolVLMRegressor, tokenizer: TextTokenizer, item: PromptItem, pixels: Float32Array): Omit<ForwardResult, 'backend'> {
  const cfg = model.config;
  const s = cfg.regression.imageSize;
  if (pixels.length !== s * s * 3) throw new ShapeError(`forwardItem: expected ${s}×${s}×3 = ${s * s * 3} pixel values, got ${pixels.length}`);
  const tokens = encodeBatch(tokenizer, cfg, [item]);
  const pixelTensor = tf.tensor4d(pixels, [1, s, s, 3], 'float32');
  try {
    const out = model.forward({ pixels: pixelTensor, tokens });
    try {
      return {
        input_ids: Array.from(tokens.inputIds),
        pooled: Array.from(out.pooled.dataSync()),
        logit: out.logit.dataSync()[0],
        rating: out.rating.dataSync()[0],
      };
    } finally {
      tf.dispose([out.pooled, out.logit, out.rating]);
    }
  } finally {
    pixelTensor.dispose();
  }
}

async function readInput(file: string, what: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new DataError(code === 'ENOENT' ? `${what} ${file} does not exist` : `cannot read ${what} ${file}`, code === 'ENOENT' ? undefined : { cause: e });
  }
}

/** Writes `text` to `file` atomically (temporary sibling, then rename). */
async function writeTextAtomic(file: string, text: string): Promise<void> {
  await mkdir(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = path.join(path.dirname(path.resolve(file)), `.${path.basename(file)}.smolrate-tmp-${randomBytes(6).toString('hex')}`);
  try {
    await writeFile(tmp, text, { flag: 'wx' });
    await rename(tmp, file);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
}

/** The whole command without argument parsing: loads, runs, writes OUT.json, returns the result. */
export async function runForward(opts: ForwardOptions): Promise<ForwardResult> {
  if ((opts.image === undefined) === (opts.pixels === undefined)) throw new UsageError('give exactly one of --image FILE or --pixels FILE.npy');
  // Read the small inputs first: a typo should not cost a model load.
  const itemText = (await readInput(opts.item, 'item file')).toString('utf8');
  let itemJson: unknown;
  try {
    itemJson = JSON.parse(itemText);
  } catch (e) {
    throw new DataError(`item file ${opts.item} is not valid JSON (${(e as Error).message})`);
  }
  const item = parseItem(itemJson, `item file ${opts.item}`);
  const imageBytes = await readInput((opts.image ?? opts.pixels)!, opts.image !== undefined ? 'image' : 'pixels file');

  // The config alone says the image size; the (possibly 1 GB) weights load only after the pixels are good.
  await checkModelDirFiles(opts.model);
  const { config: cfg } = await readModelDirConfig(opts.model);
  const size = cfg.regression.imageSize;
  const pixels =
    opts.image !== undefined
      ? normalizePixels((await decodeImage(imageBytes, { size })).data, size)
      : pixelsFromNpy(imageBytes, cfg, `pixels file ${opts.pixels}`);

  const backend = await initBackend(opts.backend ?? 'auto');
  const loaded = await loadModelDir(opts.model);
  try {
    const result: ForwardResult = { ...forwardItem(loaded.model, loaded.tokenizer!, item, pixels), backend: backend.name };
    await writeTextAtomic(opts.out, JSON.stringify(result) + '\n');
    return result;
  } finally {
    loaded.model.dispose();
  }
}

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  const unknown = Object.keys(args.flags).filter((k) => !KNOWN_FLAGS.includes(k));
  if (unknown.length > 0) throw new UsageError(`unknown option${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `--${kebab(k)}`).join(', ')} (see --help)`);
  if (args.positionals.length > 0) throw new UsageError(`unexpected argument "${args.positionals[0]}" (see --help)`);
  const backend = flagString(args, 'backend', 'auto')!;
  let choice: BackendChoice;
  try {
    choice = parseBackendChoice(backend);
  } catch {
    throw new UsageError(`--backend must be one of auto, tensorflow, wasm, cpu; got "${backend}"`);
  }
  const result = await runForward({
    model: requireFlag(args, 'model'),
    item: requireFlag(args, 'item'),
    image: flagString(args, 'image'),
    pixels: flagString(args, 'pixels'),
    out: requireFlag(args, 'out'),
    backend: choice,
  });
  process.stdout.write(`rating ${result.rating.toFixed(4)} (logit ${result.logit.toFixed(4)}, ${result.input_ids.length} tokens, backend ${result.backend}) → ${flagString(args, 'out')}\n`);
  return 0;
}

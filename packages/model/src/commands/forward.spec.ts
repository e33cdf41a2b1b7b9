import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { DataError, decodeImage, ShapeError, UsageError } from '@smolrate/core';
import { initBackend } from '../backend.js';
import { dispatch } from '../cli.js';
import { imageTokenCount, presetConfig } from '../config.js';
import { writeNpy } from '../npy.js';
import { normalizePixels } from '../pixels.js';
import { packTokenRows } from '../prompt.js';
import { SmolVLMRegressor } from '../smolvlm.js';
import { parseItem, pixelsFromNpy, runForward, type ForwardResult } from './forward.js';
import { runInit } from './init.js';
import { encodePng } from '@smolrate/core/testing';

const cfg = presetConfig('tiny');
const S = cfg.regression.imageSize; // 384
const SEED = 9;
const ITEM = {
  title: 'Stainless Steel Water Bottle, 750 ml',
  description: ['Keeps drinks cold for 24 hours.', 'Leak-proof lid.'],
  features: ['BPA free', null, 'Dishwasher safe'],
  main_category: 'Sports & Outdoors',
  average_rating: 4.4, // not a prompt field: ignored
};

let tmp: string;
let modelDir: string;
let itemFile: string;
let pngFile: string;
let png: Buffer;

/** A deterministic colourful test image. */
function testImage(size: number): Uint8Array {
  const rgb = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++) {
      const i = 3 * (y * size + x);
      rgb[i] = (x * 255) / (size - 1);
      rgb[i + 1] = (y * 255) / (size - 1);
      rgb[i + 2] = (x * y) % 256;
    }
  return rgb;
}

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

async function readOut(file: string): Promise<ForwardResult> {
  return JSON.parse(await readFile(file, 'utf8')) as ForwardResult;
}

function sameBits(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  const fa = Float32Array.from(a);
  const fb = Float32Array.from(b);
  return fa.length === fb.length && Buffer.compare(Buffer.from(fa.buffer), Buffer.from(fb.buffer)) === 0;
}

beforeAll(async () => {
  // wasm: the plain-JS backend takes seconds for one 384² vision pass.
  await initBackend('wasm');
  tmp = await mkdtemp(path.join(tmpdir(), 'smolrate-forward-'));
  modelDir = path.join(tmp, 'tiny');
  await runInit({ preset: 'tiny', out: modelDir, seed: SEED });
  itemFile = path.join(tmp, 'item.json');
  await writeFile(itemFile, JSON.stringify(ITEM));
  png = encodePng(S, S, testImage(S));
  pngFile = path.join(tmp, 'image.png');
  await writeFile(pngFile, png);
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

afterEach(() => vi.restoreAllMocks());

describe('smolrate-model forward', () => {
  it('--image: init → forward through the CLI; OUT.json has N image tokens, a rating in (1, 5), and no tensor leaks', async () => {
    const out = path.join(tmp, 'out', 'image.json');
    const before = tf.memory().numTensors;
    const r = await capture(() => dispatch(['forward', '--model', modelDir, '--item', itemFile, '--image', pngFile, '--out', out, '--backend', 'wasm']));
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(tf.memory().numTensors).toBe(before);
    expect(r.out).toMatch(/^rating \d\.\d{4} \(logit -?\d\.\d{4}, \d+ tokens, backend wasm\) → /);

    const res = await readOut(out);
    expect(Object.keys(res).sort()).toEqual(['backend', 'input_ids', 'logit', 'pooled', 'rating']);
    expect(res.backend).toBe('wasm');
    const n = imageTokenCount(cfg);
    expect(res.input_ids.filter((id) => id === cfg.imageTokenId)).toHaveLength(n);
    expect(res.input_ids.slice(0, n + 3)).toEqual([1061, 1024, ...new Array<number>(n).fill(cfg.imageTokenId), 1061]);
    expect(res.input_ids.length).toBeGreaterThan(n + 3 + 20); // the metadata was encoded
    expect(res.pooled).toHaveLength(cfg.text.hiddenSize);
    expect(res.rating).toBeGreaterThan(1);
    expect(res.rating).toBeLessThan(5);
    expect(res.rating).toBeCloseTo(1 + 4 / (1 + Math.exp(-res.logit)), 6);

    // The same numbers from a model built in memory with the same seed and the decoded pixels.
    const decoded = await decodeImage(png, { size: S });
    const model = SmolVLMRegressor.fromSeed(cfg, SEED);
    const pixels = tf.tensor4d(normalizePixels(decoded.data, S), [1, S, S, 3]);
    const ref = model.forward({ pixels, tokens: packTokenRows(cfg, [res.input_ids]) });
    try {
      expect(sameBits(res.pooled, ref.pooled.dataSync())).toBe(true);
      expect(res.rating).toBe(ref.rating.dataSync()[0]);
    } finally {
      tf.dispose([pixels, ref.pooled, ref.logit, ref.rating]);
      model.dispose();
    }
  });

  it('--pixels: a float32 .npy of the decoded image gives the --image result bit for bit; uint8 RGB too; other pixels differ', async () => {
    const decoded = await decodeImage(png, { size: S });
    const f32File = path.join(tmp, 'pixels.npy');
    await writeFile(f32File, writeNpy({ shape: [S, S, 3], data: normalizePixels(decoded.data, S) }));
    const u8File = path.join(tmp, 'pixels-u8.npy');
    await writeFile(u8File, writeNpy({ shape: [S, S, 3], data: decoded.data }));
    const before = tf.memory().numTensors;
    const viaImage = await runForward({ model: modelDir, item: itemFile, image: pngFile, out: path.join(tmp, 'a.json'), backend: 'wasm' });
    const viaF32 = await runForward({ model: modelDir, item: itemFile, pixels: f32File, out: path.join(tmp, 'b.json'), backend: 'wasm' });
    const viaU8 = await runForward({ model: modelDir, item: itemFile, pixels: u8File, out: path.join(tmp, 'c.json'), backend: 'wasm' });
    expect(tf.memory().numTensors).toBe(before);
    expect(viaF32).toEqual(viaImage);
    expect(viaU8).toEqual(viaImage);
    expect(await readOut(path.join(tmp, 'b.json'))).toEqual(viaF32);

    const flipped = new Float32Array(S * S * 3).fill(0.5);
    const otherFile = path.join(tmp, 'other.npy');
    await writeFile(otherFile, writeNpy({ shape: [S, S, 3], data: flipped }));
    const other = await runForward({ model: modelDir, item: itemFile, pixels: otherFile, out: path.join(tmp, 'd.json'), backend: 'wasm' });
    expect(other.input_ids).toEqual(viaImage.input_ids);
    expect(other.pooled).not.toEqual(viaImage.pooled);
  });

  it('maps bad input to exit codes with one-line messages', async () => {
    const base = ['forward', '--model', modelDir, '--item', itemFile, '--out', path.join(tmp, 'x.json'), '--backend', 'wasm'];
    const both = await capture(() => dispatch([...base, '--image', pngFile, '--pixels', pngFile]));
    expect(both).toMatchObject({ code: 2, err: 'smolrate-model: give exactly one of --image FILE or --pixels FILE.npy\n' });
    expect((await capture(() => dispatch([...base, '--image', pngFile, '--backend', 'gpu']))).err).toContain('--backend must be one of auto, tensorflow, wasm, cpu; got "gpu"');
    expect((await capture(() => dispatch([...base, '--image', pngFile, '--colour', 'red']))).err).toContain('unknown option --colour');
    expect((await capture(() => dispatch(['forward', '--model', modelDir, '--image', pngFile, '--out', 'x.json']))).err).toContain('missing required --item');

    const wrongShape = path.join(tmp, 'small.npy');
    await writeFile(wrongShape, writeNpy({ shape: [64, 64, 3], data: new Float32Array(64 * 64 * 3) }));
    const shape = await capture(() => dispatch([...base, '--pixels', wrongShape]));
    expect(shape.code).toBe(9);
    expect(shape.err).toContain(`pixels file ${wrongShape}: expected shape (192, 192, 3) — the config's image size, HWC RGB — got (64, 64, 3)`);

    const notNpy = await capture(() => dispatch([...base, '--pixels', pngFile]));
    expect(notNpy.code).toBe(4);
    expect(notNpy.err).toContain('not a .npy file');

    const noTokenizer = path.join(tmp, 'no-tok');
    await runInit({ preset: 'tiny', out: noTokenizer, tokenizer: null, onWarning: () => undefined });
    const ckpt = await capture(() => dispatch(['forward', '--model', noTokenizer, '--item', itemFile, '--image', pngFile, '--out', path.join(tmp, 'x.json')]));
    expect(ckpt.code).toBe(7);
    expect(ckpt.err).toContain('lacks tokenizer.json');

    const badItem = path.join(tmp, 'bad-item.json');
    await writeFile(badItem, JSON.stringify({ title: 'x', features: [1, 2] }));
    const data = await capture(() => dispatch(['forward', '--model', modelDir, '--item', badItem, '--image', pngFile, '--out', path.join(tmp, 'x.json')]));
    expect(data.code).toBe(4);
    expect(data.err).toContain('"features" must be a string, a list of strings or null, got [1,2]');

    const missing = await capture(() => dispatch([...base, '--image', path.join(tmp, 'missing.png')]));
    expect(missing).toMatchObject({ code: 4, err: `smolrate-model: image ${path.join(tmp, 'missing.png')} does not exist\n` });
    const garbage = path.join(tmp, 'garbage.png');
    await writeFile(garbage, png.subarray(0, 100));
    expect((await capture(() => dispatch([...base, '--image', garbage]))).code).toBe(11);
  });
});

describe('parseItem / pixelsFromNpy', () => {
  it('reads the four fields, maps main_category to the category, and refuses other types', () => {
    expect(parseItem(ITEM)).toEqual({ title: ITEM.title, description: ITEM.description, features: ITEM.features, category: ITEM.main_category });
    expect(parseItem({ title: null })).toEqual({ title: null, description: undefined, features: undefined, category: undefined });
    expect(() => parseItem([ITEM])).toThrow(DataError);
    expect(() => parseItem({ name: 'x', category: 'Beauty' })).toThrow('has none of the fields title, description, features, main_category');
    expect(() => parseItem({ title: 5 })).toThrow('"title" must be a string');
  });

  it('checks shape, dtype and finiteness of pixels', async () => {
    const nan = new Float32Array(S * S * 3);
    nan[7] = NaN;
    expect(() => pixelsFromNpy(writeNpy({ shape: [S, S, 3], data: nan }), cfg)).toThrow('value NaN at flat index 7 is not finite');
    expect(() => pixelsFromNpy(writeNpy({ shape: [1, S, S, 3], data: new Float32Array(S * S * 3) }), cfg)).toThrow(ShapeError);
    const rgb = new Uint8Array(S * S * 3).fill(255);
    rgb[5] = 0;
    const px = pixelsFromNpy(writeNpy({ shape: [S, S, 3], data: rgb }), cfg);
    expect([px.length, px[4], px[5], px.every((v, i) => v === (i === 5 ? -1 : 1))]).toEqual([S * S * 3, 1, -1, true]);
    await expect(runForward({ model: modelDir, item: itemFile, out: 'x' })).rejects.toThrow(UsageError);
  });
});

/**
 * Parity with the independent float64 PyTorch reference (tools/parity/reference.py): a small
 * random checkpoint of the real structure (24×24 patch grid bucketed onto a 32×32 position table,
 * pixel shuffle 4, GQA 6/2, two layers each) and a right-padded batch. The tfjs forward in float32
 * must match the reference to 1e-4 relative on the cpu and the wasm backends.
 * Regenerate the fixtures with `/usr/bin/python3 tools/parity/reference.py generate`.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromHfConfig, type ModelConfig } from '../src/config.js';
import { pixelBatchTensor } from '../src/pixels.js';
import { packTokenRows } from '../src/prompt.js';
import { readSafetensorsFile } from '../src/safetensors.js';
import { SmolVLMRegressor } from '../src/smolvlm.js';
import type { StateDict } from '../src/state-dict.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/parity/', import.meta.url));
const RTOL = 1e-4;

interface Expected {
  image_features: number[][]; // [N, D_text]
  pooled: number[];
  logit: number;
  rating: number;
}
interface Case {
  name: string;
  images: number[];
  input_ids: number[][];
  attention_mask: number[][];
  expected: Expected[];
}
interface CasesFile {
  format: string;
  image_token_id: number;
  images: Array<{ shape: [number, number, number]; dtype: 'uint8'; base64: string }>;
  cases: Case[];
}

/** max |a − b| / max |b|: relative to the scale of the reference vector. */
function relErr(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  expect(actual.length).toBe(expected.length);
  let num = 0;
  let den = 0;
  for (let i = 0; i < expected.length; i++) {
    num = Math.max(num, Math.abs(actual[i] - expected[i]));
    den = Math.max(den, Math.abs(expected[i]));
  }
  return num / den;
}

const wasmDir = join(dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm')), '/');
setWasmPaths(wasmDir);

let cfg: ModelConfig;
let dict: StateDict;
let doc: CasesFile;
let images: Uint8Array[];

beforeAll(async () => {
  cfg = fromHfConfig(JSON.parse(await readFile(join(FIXTURES, 'config.json'), 'utf8')));
  dict = (await readSafetensorsFile(join(FIXTURES, 'model.safetensors'))).tensors;
  doc = JSON.parse(await readFile(join(FIXTURES, 'cases.json'), 'utf8')) as CasesFile;
  expect(doc.format).toBe('smolrate-parity-v1');
  images = doc.images.map((im) => new Uint8Array(Buffer.from(im.base64, 'base64')));
});

describe.each(['cpu', 'wasm'])('parity with the PyTorch reference on the %s backend', (backend) => {
  let model: SmolVLMRegressor;
  let previousBackend: string;

  beforeAll(async () => {
    previousBackend = tf.getBackend();
    expect(await tf.setBackend(backend)).toBe(true);
    await tf.ready();
    const loaded = SmolVLMRegressor.fromStateDict(cfg, dict, { strict: true });
    model = loaded.model;
    // Every parameter comes from the file: nothing initialised, only the unused lm_head ignored.
    expect(loaded.report.warnings).toEqual([]);
    expect(loaded.report.initialized).toEqual([]);
    expect(loaded.report.ignored).toEqual(['lm_head.weight']);
  });
  afterAll(async () => {
    model?.dispose();
    if (previousBackend) await tf.setBackend(previousBackend);
  });

  it('reads the fixture geometry as intended (24×24 grid on a 32×32 table, 36 image tokens)', () => {
    expect(cfg.regression.imageSize / cfg.vision.patchSize).toBe(24);
    expect(cfg.vision.imageSize / cfg.vision.patchSize).toBe(32);
    expect(cfg.scaleFactor).toBe(4);
    expect(cfg.text.numKvHeads).toBeLessThan(cfg.text.numHeads);
    expect(cfg.imageTokenId).toBe(doc.image_token_id);
  });

  for (const caseName of ['batch3_right_padding', 'single_unpadded']) {
    it(`${caseName}: image features, pooled, logit and rating match`, () => {
      const c = doc.cases.find((x) => x.name === caseName)!;
      expect(c).toBeDefined();
      const B = c.input_ids.length;
      const L = c.input_ids[0].length;
      const before = tf.memory().numTensors;

      const pixels = pixelBatchTensor(c.images.map((i) => images[i]), cfg.regression.imageSize);
      // The reference pads on the right: a row's length is its mask's sum.
      const rows = c.input_ids.map((ids, b) => ids.slice(0, c.attention_mask[b].reduce((n, m) => n + m, 0)));
      const tokens = packTokenRows(cfg, rows, { seqLen: L });
      try {
        const feats = model.encodeImages(pixels);
        const featData = feats.dataSync();
        const [, N, D] = feats.shape;
        feats.dispose();
        const out = model.forward({ pixels, tokens }, { training: false });
        const pooled = out.pooled.dataSync();
        const logit = out.logit.dataSync();
        const rating = out.rating.dataSync();
        expect(out.pooled.shape).toEqual([B, cfg.text.hiddenSize]);
        expect(out.rating.shape).toEqual([B]);
        out.pooled.dispose();
        out.logit.dispose();
        out.rating.dispose();

        for (let b = 0; b < B; b++) {
          const want = c.expected[b];
          expect(N).toBe(want.image_features.length);
          expect(D).toBe(want.image_features[0].length);
          const feat = featData.subarray(b * N * D, (b + 1) * N * D);
          expect(relErr(feat, want.image_features.flat()), `image features, row ${b}`).toBeLessThan(RTOL);
          const p = pooled.subarray(b * D, (b + 1) * D);
          expect(relErr(p, want.pooled), `pooled, row ${b}`).toBeLessThan(RTOL);
          expect(Math.abs(rating[b] - want.rating) / want.rating, `rating, row ${b}`).toBeLessThan(RTOL);
          // The logit sits near 0, so its error is measured against 1 + |logit|.
          expect(Math.abs(logit[b] - want.logit) / (1 + Math.abs(want.logit)), `logit, row ${b}`).toBeLessThan(RTOL);
        }
      } finally {
        pixels.dispose();
      }
      expect(tf.memory().numTensors).toBe(before);
    });
  }
});

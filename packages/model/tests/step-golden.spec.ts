/**
 * Golden bytes of the tiny model's forward and training step on cpu and wasm: eval and training
 * outputs from cached features and from pixels, the last hidden states, three lossAndGrads +
 * SGD steps (losses, every gradient) and the final weights, hashed. The digests were recorded
 * with the implementation at e63f976, which read ids and mask back from the device and built
 * RoPE tables per call; refactors of the runtime must leave every byte unchanged.
 */
import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '@smolrate/core';
import { describe, expect, it } from 'vitest';
import { initBackend } from '../src/backend.js';
import { presetConfig } from '../src/config.js';
import { packTokenRows } from '../src/prompt.js';
import { SmolVLMRegressor } from '../src/smolvlm.js';

const GOLDEN = {
  cpu: '8771f3d624b6edfa1e4babf15fbe83d088f0fbda944c6ca4963eb080deda4638',
  wasm: 'cc19ddfb95612e9af1460c33a6f68d8eb808e42696c9aafbe5c6ec307ffa8727',
};

const cfg = presetConfig('tiny');
const N = 36;
const BLOCK = [1061, 1024, ...new Array<number>(N).fill(cfg.imageTokenId), 1061]; // <fake> <global-img> <image>×N <fake>
const ROWS = [
  [...BLOCK, 40, 41, 300, 17, 900, 5, 66],
  [...BLOCK, 12, 500, 501, 502, 77, 78, 79, 80, 81, 3, 9, 1000],
];

function stepDigest(): string {
  const h = createHash('sha256');
  const add = (data: ArrayLike<number> & { buffer: ArrayBufferLike; byteOffset: number; byteLength: number }) =>
    h.update(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  const model = SmolVLMRegressor.fromSeed(cfg, 5);
  const rng = new Rng(17);
  const feats = tf.tensor3d(Float32Array.from({ length: 2 * N * 64 }, () => rng.normal()), [2, N, 64]);
  const pixels = tf.tensor4d(Float32Array.from({ length: 384 * 384 * 3 * 2 }, () => 2 * rng.next() - 1), [2, 384, 384, 3]);
  const tokens = packTokenRows(cfg, ROWS, { imageTokens: N });
  const targets = tf.tensor1d([4.5, 1.5]);
  const outputs = [
    model.forward({ imageFeatures: feats, tokens }),
    model.forward({ pixels, tokens }),
    model.forward({ imageFeatures: feats, tokens }, { training: true, dropoutSeed: [3, 4] }),
  ];
  for (const out of outputs) {
    for (const t of [out.pooled, out.logit, out.rating]) add(t.dataSync() as Float32Array);
    tf.dispose([out.pooled, out.logit, out.rating]);
  }
  const hidden = model.lastHiddenState({ imageFeatures: feats, tokens });
  add(hidden.dataSync() as Float32Array);
  hidden.dispose();
  const vars = new Map(model.trainableVariables().map((v) => [v.name, v.variable]));
  for (let step = 0; step < 3; step++) {
    const { loss, grads } = model.lossAndGrads({ imageFeatures: feats, tokens }, targets, { dropoutSeed: [step, 10 + step] });
    add(Float64Array.of(loss));
    for (const g of grads.values()) add(g.dataSync() as Float32Array);
    tf.tidy(() => {
      for (const [name, g] of grads) vars.get(name)!.assign(tf.sub(vars.get(name)!, tf.mul(g, 0.1)));
    });
    tf.dispose([...grads.values()]);
  }
  for (const t of model.stateDict().values()) add(t.data);
  tf.dispose([feats, pixels, targets]);
  model.dispose();
  return h.digest('hex');
}

describe('forward and training step bytes (tiny, seeded)', () => {
  for (const backend of ['cpu', 'wasm'] as const) {
    it(`${backend}: equal to the recorded digest, without leaking`, async () => {
      await initBackend(backend);
      const before = tf.memory().numTensors;
      expect(stepDigest()).toBe(GOLDEN[backend]);
      expect(tf.memory().numTensors).toBe(before);
    });
  }
});

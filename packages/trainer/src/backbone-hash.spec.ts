import * as tf from '@tensorflow/tfjs-core';
import { initBackend, presetConfig, SmolVLMRegressor } from '@smolrate/model';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backboneHash, frozenParameters } from './backbone-hash.js';

const cfg = presetConfig('tiny');
const quiet = { strict: false, onWarning: () => undefined };
let model: SmolVLMRegressor;
let h1: string;

beforeAll(async () => {
  await initBackend('wasm');
  model = SmolVLMRegressor.fromSeed(cfg, 1);
  h1 = await backboneHash(model);
});

afterAll(() => model.dispose());

/** A copy of one parameter (PyTorch layout) with one value changed. */
function nudged(name: string, delta: number) {
  const t = model.stateDict().get(name)!;
  const data = t.data.slice();
  data[0] += delta;
  return new Map([[name, { shape: t.shape, data }]]);
}

describe('backboneHash', () => {
  it('covers exactly the frozen parameters (vision + connector), in name order', () => {
    const names = frozenParameters(model).map((p) => p.name);
    const expected = model
      .namedParameters()
      .filter((p) => !p.trainable)
      .map((p) => p.name);
    expect([...names].sort()).toEqual([...expected].sort());
    expect(names).toEqual([...names].sort());
    expect(names.every((n) => n.startsWith('model.vision_model.') || n.startsWith('model.connector.'))).toBe(true);
    expect(names).toContain('model.connector.modality_projection.proj.weight');
  });

  it('is a content hash: equal weights agree, other weights or image size differ', async () => {
    expect(h1).toMatch(/^[0-9a-f]{64}$/);
    expect(await backboneHash(model)).toBe(h1);
    const twin = SmolVLMRegressor.fromSeed(cfg, 1);
    const other = SmolVLMRegressor.fromSeed(cfg, 2);
    const bigger = SmolVLMRegressor.fromSeed({ ...cfg, regression: { ...cfg.regression, imageSize: 448 } }, 1);
    try {
      expect(await backboneHash(twin)).toBe(h1);
      expect(await backboneHash(other)).not.toBe(h1);
      expect(await backboneHash(bigger)).not.toBe(h1);
    } finally {
      twin.dispose();
      other.dispose();
      bigger.dispose();
    }
  });

  it('changes when a frozen weight changes, and back when it is restored', async () => {
    for (const name of ['model.vision_model.encoder.layers.1.mlp.fc2.bias', 'model.connector.modality_projection.proj.weight']) {
      const original = model.stateDict().get(name)!;
      model.loadStateDict(nudged(name, 1e-3), quiet);
      const changed = await backboneHash(model);
      expect(changed).not.toBe(h1);
      model.loadStateDict(new Map([[name, original]]), quiet);
      expect(await backboneHash(model)).toBe(h1);
    }
  });

  it('does not change when trainable weights change (what an optimizer step does)', async () => {
    const numTensors = tf.memory().numTensors;
    for (const { variable } of model.trainableVariables().slice(0, 3)) {
      const stepped = tf.tidy(() => tf.add(variable, tf.scalar(0.5)));
      variable.assign(stepped);
      stepped.dispose();
    }
    model.loadStateDict(nudged('regression_head.fc1.bias', 1), quiet);
    expect(await backboneHash(model)).toBe(h1);
    // Not just the memo: a fresh model with these weights hashes its content to the same value.
    const { model: copy } = SmolVLMRegressor.fromStateDict(cfg, model.stateDict());
    try {
      expect(await backboneHash(copy)).toBe(h1);
    } finally {
      copy.dispose();
    }
    expect(tf.memory().numTensors).toBe(numTensors);
  });
});

import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { describe, expect, it } from 'vitest';
import { presetConfig } from './config.js';
import { buildModules, totalParameters, expectedParameters } from './params.js';

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

describe('expectedParameters — the 256M checkpoint (docs/reference/model.md "Checkpoint tensors")', () => {
  const cfg = presetConfig('smolvlm2-256m');
  const hf = expectedParameters(cfg, { includeLmHead: true, includeHead: false });

  it('lists the 471 HF tensors in the listing order', () => {
    expect(hf).toHaveLength(471);
    expect(hf[0]).toMatchObject({ name: 'model.vision_model.embeddings.patch_embedding.weight', shape: [768, 3, 16, 16] });
    expect(hf[2]).toMatchObject({ name: 'model.vision_model.embeddings.position_embedding.weight', shape: [1024, 768] });
    expect(hf[3].name).toBe('model.vision_model.encoder.layers.0.layer_norm1.weight');
    expect(hf.find((p) => p.name === 'model.connector.modality_projection.proj.weight')?.shape).toEqual([576, 12288]);
    expect(hf.find((p) => p.name === 'model.text_model.layers.29.self_attn.k_proj.weight')?.shape).toEqual([192, 576]);
    expect(hf.find((p) => p.name === 'model.text_model.layers.0.mlp.down_proj.weight')?.shape).toEqual([576, 1536]);
    expect(hf.at(-2)).toMatchObject({ name: 'model.text_model.norm.weight', shape: [576] });
    expect(hf.at(-1)).toMatchObject({ name: 'lm_head.weight', shape: [49280, 576] });
    expect(new Set(hf.map((p) => p.name)).size).toBe(471);
  });

  it('pins the name list (golden hash)', () => {
    expect(sha256(hf.map((p) => p.name).join('\n'))).toBe('3e644628b4384fa10123892c880981ce22f9c567d61ef081a8b04ef8fdec7b74');
    expect(sha256(hf.map((p) => `${p.name} ${p.shape.join('x')}`).join('\n'))).toBe('1cde91a9d496456b4b6fe75a70bdc34c19ac8dad920933eda655c03f140589df');
  });

  it('pins group, layout, init family and trainability of every parameter (golden hash of the hand-written list it replaced)', () => {
    const all = expectedParameters(cfg, { includeLmHead: true });
    const lines = all.map((p) => `${p.name} ${p.shape.join('x')} ${p.group} ${p.layout} ${p.init} ${p.trainable}`);
    expect(sha256(lines.join('\n'))).toBe('f51848a05df7d1036e1e333fd9573374c4f2ab27875cd05447482809f0191455');
    // upstream's order: …text norm, lm_head; then smolrate's head
    expect(all.slice(-5).map((p) => p.name)).toEqual(['lm_head.weight', 'regression_head.fc1.weight', 'regression_head.fc1.bias', 'regression_head.fc2.weight', 'regression_head.fc2.bias']);
  });

  it('reads the list off the module tree, without allocating tensors', () => {
    const before = tf.memory().numTensors;
    const m = buildModules(cfg);
    expect(tf.memory().numTensors).toBe(before);
    expect(m.params.some((p) => p.loaded)).toBe(false);
    expect(m.lmHead).toBeNull();
    const named = (name: string) => m.params.find((p) => p.name === name);
    expect(named('model.text_model.layers.29.self_attn.k_proj.weight')).toBe(m.textModel.layers[29].selfAttn.kProj.weight);
    expect(named('model.vision_model.embeddings.patch_embedding.weight')).toBe(m.visionModel.embeddings.patchEmbedding.weight);
    expect(named('regression_head.fc2.bias')).toBe(m.regressionHead.fc2.bias);
    expect(m.params.map((p) => p.name)).toEqual(expectedParameters(cfg).map((p) => p.name));
  });

  it('reproduces the parameter counts of docs/reference/model.md "Counts"', () => {
    const all = expectedParameters(cfg, { includeLmHead: true });
    expect(totalParameters(hf)).toBe(256_484_928); // the file
    expect(totalParameters(all, { groups: ['vision'] })).toBe(86_433_024);
    expect(totalParameters(all, { groups: ['connector'] })).toBe(7_077_888);
    expect(totalParameters(all, { groups: ['text'] })).toBe(134_588_736);
    expect(totalParameters(all, { groups: ['head'] })).toBe(166_465);
    expect(totalParameters(all, { groups: ['vision', 'connector', 'text', 'head'] })).toBe(228_266_113);
    expect(totalParameters(all, { trainable: true })).toBe(134_755_201);
  });

  it('appends the regression head by default and omits lm_head', () => {
    const specs = expectedParameters(cfg);
    expect(specs).toHaveLength(470 + 4);
    expect(specs.slice(-4).map((p) => [p.name, p.shape])).toEqual([
      ['regression_head.fc1.weight', [288, 576]],
      ['regression_head.fc1.bias', [288]],
      ['regression_head.fc2.weight', [1, 288]],
      ['regression_head.fc2.bias', [1]],
    ]);
    expect(specs.some((p) => p.name === 'lm_head.weight')).toBe(false);
  });

  it('marks layouts, inits and trainability by module kind', () => {
    const byName = new Map(expectedParameters(cfg).map((p) => [p.name, p]));
    expect(byName.get('model.vision_model.embeddings.patch_embedding.weight')).toMatchObject({ layout: 'conv', init: 'normal', trainable: false });
    expect(byName.get('model.vision_model.encoder.layers.3.mlp.fc1.weight')).toMatchObject({ layout: 'linear', trainable: false });
    expect(byName.get('model.vision_model.post_layernorm.weight')).toMatchObject({ layout: 'plain', init: 'ones' });
    expect(byName.get('model.vision_model.post_layernorm.bias')).toMatchObject({ init: 'zeros' });
    expect(byName.get('model.connector.modality_projection.proj.weight')).toMatchObject({ layout: 'linear', trainable: false });
    expect(byName.get('model.text_model.embed_tokens.weight')).toMatchObject({ layout: 'plain', init: 'normal', trainable: true });
    expect(byName.get('model.text_model.layers.7.input_layernorm.weight')).toMatchObject({ init: 'ones', trainable: true });
    expect(byName.get('regression_head.fc2.bias')).toMatchObject({ init: 'zeros', trainable: true });
  });
});

import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { presetConfig } from './config.js';
import { INIT_STD, initParameter, initStateDict } from './init.js';
import { expectedParameters } from './params.js';

describe('initStateDict', () => {
  const cfg = presetConfig('tiny');

  it('covers every expected parameter with its PyTorch shape', () => {
    const dict = initStateDict(cfg, { seed: 1 });
    const specs = expectedParameters(cfg);
    expect([...dict.keys()]).toEqual(specs.map((s) => s.name));
    for (const s of specs) {
      expect(dict.get(s.name)!.shape).toEqual(s.shape);
      expect(dict.get(s.name)!.data.length).toBe(s.shape.reduce((a, b) => a * b, 1));
    }
    expect(initStateDict(cfg, { seed: 1, includeLmHead: true }).get('lm_head.weight')!.shape).toEqual([1152, 64]);
  });

  it('gives the pinned initial weights (golden hash, from before the parameter list came from the module tree)', () => {
    const h = createHash('sha256');
    for (const [name, t] of initStateDict(cfg, { seed: 3, includeLmHead: true })) {
      h.update(`${name} ${t.shape.join('x')}\n`);
      h.update(new Uint8Array(t.data.buffer));
    }
    expect(h.digest('hex')).toBe('ba91968aff681de48cb92e412b57766c87c556bf4376ff03ac3bc59170f9201f');
  });

  it('is deterministic per seed and differs across seeds', () => {
    const a = initStateDict(cfg, { seed: 7 });
    const b = initStateDict(cfg, { seed: 7 });
    const c = initStateDict(cfg, { seed: 8 });
    const name = 'model.text_model.layers.1.self_attn.q_proj.weight';
    expect(a.get(name)!.data).toEqual(b.get(name)!.data);
    expect(a.get(name)!.data).not.toEqual(c.get(name)!.data);
    // Different parameters draw from different streams.
    expect(a.get('model.text_model.layers.0.mlp.up_proj.weight')!.data.slice(0, 8)).not.toEqual(a.get('model.text_model.layers.0.mlp.gate_proj.weight')!.data.slice(0, 8));
  });

  it('initialises one parameter the same alone as within a full init', () => {
    const full = initStateDict(cfg, { seed: 3 });
    const spec = expectedParameters(cfg).find((s) => s.name === 'regression_head.fc1.weight')!;
    expect(initParameter(spec, 3).data).toEqual(full.get('regression_head.fc1.weight')!.data);
  });

  it('uses normal(0, 0.02) for weights, 1 for norm weights, 0 for biases', () => {
    const dict = initStateDict(cfg, { seed: 5 });
    const emb = dict.get('model.text_model.embed_tokens.weight')!.data;
    const mean = emb.reduce((s, v) => s + v, 0) / emb.length;
    const std = Math.sqrt(emb.reduce((s, v) => s + (v - mean) ** 2, 0) / emb.length);
    expect(Math.abs(mean)).toBeLessThan(0.001);
    expect(std).toBeGreaterThan(INIT_STD * 0.97);
    expect(std).toBeLessThan(INIT_STD * 1.03);
    expect([...dict.get('model.text_model.norm.weight')!.data].every((v) => v === 1)).toBe(true);
    expect([...dict.get('model.vision_model.encoder.layers.0.layer_norm1.weight')!.data].every((v) => v === 1)).toBe(true);
    expect([...dict.get('model.vision_model.encoder.layers.0.self_attn.q_proj.bias')!.data].every((v) => v === 0)).toBe(true);
    expect([...dict.get('regression_head.fc2.bias')!.data].every((v) => v === 0)).toBe(true);
  });
});

import { Rng } from '@smolrate/core';
import { describe, expect, it } from 'vitest';
import { AdamW32 } from './adamw32.js';
import { AdamW8bit } from './adamw8bit.js';
import { makeOptimizer, optimizerName, type OptimizerConfig } from './optimizer.js';
import { decodeOptimizerState, sliceOptimizerState } from './optimizer-state-file.js';

const EMBED = 'model.text_model.embed_tokens.weight';
const cfg = (over: Partial<OptimizerConfig> = {}): OptimizerConfig => ({ optimizer: 'adamw8bit', peakLr: 4e-4, weightDecay: 0.01, fp32EmbeddingState: true, ...over });

function stepped(c: OptimizerConfig): Buffer {
  const rng = new Rng(4, 'make-optimizer');
  const opt = makeOptimizer(c, null, null);
  for (const [name, n] of [[EMBED, 5000], ['head.weight', 4096]] as const) {
    const p = Float32Array.from({ length: n }, () => 0.1 * rng.normal());
    opt.step(name, p, Float32Array.from({ length: n }, () => 0.01 * rng.normal()));
  }
  return opt.serialize();
}

describe('makeOptimizer', () => {
  it('builds the configured optimizer with the peak lr and weight decay, embeddings in fp32 when asked', () => {
    const opt = makeOptimizer(cfg(), null, null);
    expect(opt).toBeInstanceOf(AdamW8bit);
    expect([opt.lr, opt.options.weightDecay]).toEqual([4e-4, 0.01]);
    const state = decodeOptimizerState(stepped(cfg()));
    expect(state.meta.params.map((p) => [p.name, p.kind])).toEqual([
      ['head.weight', '8bit'],
      [EMBED, 'fp32'],
    ]);
    expect(decodeOptimizerState(stepped(cfg({ fp32EmbeddingState: false }))).meta.params.map((p) => p.kind)).toEqual(['8bit', '8bit']);
    expect(makeOptimizer(cfg({ optimizer: 'adamw32', peakLr: 1e-3 }), null, null)).toBeInstanceOf(AdamW32);
    expect([optimizerName(cfg()), optimizerName(cfg({ optimizer: 'adamw32' }))]).toEqual(['AdamW8bit', 'AdamW32']);
  });

  it('resumes from optimizer.bin, whole or cut to the slices a rank owns', () => {
    for (const optimizer of ['adamw8bit', 'adamw32'] as const) {
      const bytes = stepped(cfg({ optimizer }));
      expect(makeOptimizer(cfg({ optimizer, peakLr: 1 }), bytes, null).serialize().equals(bytes)).toBe(true);
      const owned = new Map([['head.weight', { offset: 256, length: 512 }]]);
      const rank = makeOptimizer(cfg({ optimizer }), bytes, owned);
      expect(rank.exportState()).toEqual(sliceOptimizerState(decodeOptimizerState(bytes), optimizerName(cfg({ optimizer })), owned));
    }
  });
});

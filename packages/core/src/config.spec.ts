import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkInvariant, describeSchema, field, flagToKey, resolveConfig } from './config.js';
import { ConfigError } from './errors.js';

const schema = {
  seed: field.int(42, 'random seed', { min: 0 }),
  name: field.string('run', 'run name'),
  out: field.optionalString('output folder'),
  backend: field.enum(['auto', 'wasm', 'cpu'] as const, 'auto', 'compute backend'),
  optim: field.object({
    peakLr: field.number(4e-4, 'peak learning rate', { min: 0 }),
    betas: field.numbers([0.9, 0.999], 'Adam betas'),
    eightBit: field.bool(true, '8-bit states'),
  }),
  rewrite: field.map({}, 'URL prefix rewrites'),
  categories: field.strings([], 'categories to keep'),
};

function tmpFile(name: string, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

describe('config', () => {
  it('returns typed defaults', () => {
    const c = resolveConfig(schema);
    expect(c).toEqual({
      seed: 42, name: 'run', out: null, backend: 'auto',
      optim: { peakLr: 4e-4, betas: [0.9, 0.999], eightBit: true }, rewrite: {}, categories: [],
    });
  });

  it('applies defaults ← file ← flags in that order', () => {
    const file = tmpFile('c.yaml', 'seed: 7\noptim:\n  peakLr: 0.001\n  eightBit: false\nname: fromfile\n');
    const c = resolveConfig(schema, { file, overrides: { seed: '9', 'optim.betas': '0.8,0.95', categories: 'A,B' } });
    expect(c.seed).toBe(9);
    expect(c.name).toBe('fromfile');
    expect(c.optim).toEqual({ peakLr: 0.001, betas: [0.8, 0.95], eightBit: false });
    expect(c.categories).toEqual(['A', 'B']);
  });

  it('reads JSON files', () => {
    const file = tmpFile('c.json', JSON.stringify({ backend: 'wasm', rewrite: { 'https://a/': 'file:///m/' } }));
    const c = resolveConfig(schema, { file });
    expect(c.backend).toBe('wasm');
    expect(c.rewrite).toEqual({ 'https://a/': 'file:///m/' });
  });

  it('rejects unknown keys naming the dotted key', () => {
    expect(() => resolveConfig(schema, { file: { optim: { peak_lr: 1 } } })).toThrow(/unknown config key "optim.peak_lr" \(did you mean "peakLr"\?\)/);
    expect(() => resolveConfig(schema, { overrides: { 'optim.nope': '1' } })).toThrow(ConfigError);
  });

  it('rejects wrong types naming the key and the value', () => {
    expect(() => resolveConfig(schema, { file: { seed: 'x' } })).toThrow(/"seed": expected an integer, got string "x"/);
    expect(() => resolveConfig(schema, { file: { seed: 1.5 } })).toThrow(/"seed": expected an integer/);
    expect(() => resolveConfig(schema, { overrides: { seed: '-1' } })).toThrow(/below the minimum 0/);
    expect(() => resolveConfig(schema, { overrides: { backend: 'gpu' } })).toThrow(/one of auto \| wasm \| cpu/);
    expect(() => resolveConfig(schema, { file: { optim: 3 } })).toThrow(/"optim": expected an object/);
    expect(() => resolveConfig(schema, { overrides: { optim: '1' } })).toThrow(/is a section/);
    expect(() => resolveConfig(schema, { file: { rewrite: { a: 1 } } })).toThrow(/"rewrite.a": expected a string/);
  });

  it('reports unreadable and invalid files', () => {
    expect(() => resolveConfig(schema, { file: '/nonexistent/x.yaml' })).toThrow(/cannot read config file/);
    expect(() => resolveConfig(schema, { file: tmpFile('bad.json', '{') })).toThrow(/not valid JSON/);
  });

  it('maps flags to keys and documents the schema', () => {
    expect(flagToKey('--peak-lr')).toBe('peakLr');
    expect(flagToKey('--optim.peak-lr')).toBe('optim.peakLr');
    const doc = describeSchema(schema).join('\n');
    expect(doc).toContain('optim.peakLr = 0.0004  # peak learning rate');
    expect(doc).toContain('backend = "auto" (auto|wasm|cpu)');
  });

  it('checks invariants with the message given', () => {
    expect(() => checkInvariant(64 % (3 * 8) === 0, 'globalBatch 64 is not divisible by worldSize 3 × microBatch 8')).toThrow(/globalBatch 64/);
    expect(() => checkInvariant(true, 'x')).not.toThrow();
  });
});

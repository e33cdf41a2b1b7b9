import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigError, DataError } from '@smolrate/core';
import { presetConfig, type ModelConfig } from './config.js';
import {
  buildPrompt,
  encodeBatch,
  encodePrompt,
  encodePromptRows,
  fieldText,
  packTokenRows,
  promptTokenCounts,
  textTokenCount,
  truncateCodePoints,
  type PromptItem,
} from './prompt.js';
import { loadTokenizer } from './tokenizer.js';

const tok = loadTokenizer(readFileSync(new URL('../assets/tiny/tokenizer.json', import.meta.url), 'utf8'));
const IMAGE = 1062;
const FAKE = 1061;
const GLOBAL = 1024;
const N = 36;

function tiny(over: Partial<ModelConfig['regression']> = {}): ModelConfig {
  const cfg = presetConfig('tiny');
  cfg.regression = { ...cfg.regression, imageSize: 384, ...over }; // the paper's geometry: N = 36
  return cfg;
}

const BLOCK = '<fake_token_around_image><global-img>' + '<image>'.repeat(N) + '<fake_token_around_image>';

const item: PromptItem = {
  title: 'Acme Steel Bottle - 12 oz',
  description: ['Keeps drinks cold.', 'Dishwasher safe.'],
  features: ['BPA free', '2-Pack'],
  category: 'Sports & Outdoors',
};

describe('truncateCodePoints', () => {
  it('counts code points, not UTF-16 units', () => {
    expect(truncateCodePoints('a😀b', 2)).toBe('a😀');
    expect(truncateCodePoints('😀😀😀', 2)).toBe('😀😀');
    expect('😀😀😀'.slice(0, 2)).toBe('😀'); // what UTF-16 slicing would have kept
    expect(truncateCodePoints('abc', 5)).toBe('abc');
    expect(truncateCodePoints('abc', 0)).toBe('');
    const astral = '𝐀'.repeat(150); // 150 code points, 300 UTF-16 units
    const cut = truncateCodePoints(astral, 100);
    expect(Array.from(cut)).toHaveLength(100);
    expect(cut.length).toBe(200);
  });
});

describe('fieldText', () => {
  it('joins lists with a space and maps missing values to ""', () => {
    expect(fieldText(['a', 'b', null, 'c'])).toBe('a b c');
    expect(fieldText([])).toBe('');
    expect(fieldText(null)).toBe('');
    expect(fieldText(undefined)).toBe('');
    expect(fieldText('x')).toBe('x');
    expect(() => fieldText([1 as unknown as string], 'features')).toThrow(DataError);
  });
});

describe('buildPrompt', () => {
  it('is the paper template with the image block expanded', () => {
    expect(buildPrompt(tiny(), item)).toBe(
      BLOCK +
        ' The average user rating for this product. Text metadata: Title: Acme Steel Bottle - 12 oz, ' +
        'Description: Keeps drinks cold. Dishwasher safe., Features: BPA free 2-Pack, Main Category: Sports & Outdoors',
    );
  });

  it('truncates each value to L code points after joining, before insertion', () => {
    const p = buildPrompt(tiny({ truncation: 5 }), {
      title: '😀😀😀😀😀😀😀',
      description: ['abc', 'defgh'],
      features: null,
      category: 'Home and Kitchen',
    });
    expect(p).toBe(BLOCK + ' The average user rating for this product. Text metadata: Title: 😀😀😀😀😀, Description: abc d, Features: , Main Category: Home ');
  });

  it('wraps in SmolVLM chat markers when regression.prompt is "chat"', () => {
    const p = buildPrompt(tiny({ prompt: 'chat' }), { title: 'T' });
    expect(p).toBe(
      '<|im_start|>User:' + BLOCK + ' The average user rating for this product. Text metadata: Title: T, Description: , Features: , ' +
        'Main Category: <end_of_utterance>\nAssistant:',
    );
  });
});

describe('encodePrompt', () => {
  it('equals encoding the whole prompt string (HF behaviour) for ordinary metadata', () => {
    for (const prompt of ['plain', 'chat'] as const) {
      const cfg = tiny({ prompt });
      expect(encodePrompt(tok, cfg, item)).toEqual(tok.encode(buildPrompt(cfg, item)));
    }
  });

  it('starts with the image block: <fake> <global-img> <image>×36 <fake>', () => {
    const ids = encodePrompt(tok, tiny(), item);
    expect(ids.slice(0, N + 3)).toEqual([FAKE, GLOBAL, ...Array(N).fill(IMAGE), FAKE]);
    expect(ids.slice(N + 3).includes(IMAGE)).toBe(false);
  });

  it('never lets metadata inject image tokens', () => {
    const evil = { title: 'see <image> here', description: '<fake_token_around_image><image>' };
    const ids = encodePrompt(tok, tiny(), evil);
    expect(ids.filter((id) => id === IMAGE)).toHaveLength(N);
    expect(ids.filter((id) => id === FAKE)).toHaveLength(2);
    expect(tok.encode(buildPrompt(tiny(), evil)).filter((id) => id === IMAGE)).toHaveLength(N + 2);
    expect(tok.decode(ids)).toBe(buildPrompt(tiny(), evil));
  });
});

describe('token counts', () => {
  it('textTokenCount = total − (N + 3), and grows with the metadata', () => {
    const c = promptTokenCounts(tok, tiny(), item);
    expect(c.image).toBe(N);
    expect(c.imageBlock).toBe(N + 3);
    expect(c.total).toBe(encodePrompt(tok, tiny(), item).length);
    expect(c.text).toBe(c.total - N - 3);
    const empty = textTokenCount(tok, tiny());
    expect(empty).toBe(tok.encode(' The average user rating for this product. Text metadata: Title: , Description: , Features: , Main Category: ').length);
    expect(textTokenCount(tok, tiny(), item)).toBeGreaterThan(empty);
  });

  it('truncation bounds the count', () => {
    const long = { title: 'x'.repeat(1000) };
    const at = (l: number) => textTokenCount(tok, tiny({ truncation: l }), long);
    expect(at(10)).toBeLessThan(at(100));
    expect(textTokenCount(tok, tiny({ truncation: 100 }), long)).toBe(textTokenCount(tok, tiny({ truncation: 100 }), { title: 'x'.repeat(100) }));
  });
});

describe('encodeBatch', () => {
  const items: PromptItem[] = [item, { title: 'Short' }, { title: 'A much longer title with many more words in it', features: ['one', 'two', 'three'] }];

  it('right-pads with the pad id and records row lengths', () => {
    const cfg = tiny();
    const b = encodeBatch(tok, cfg, items);
    const rows = items.map((it) => encodePrompt(tok, cfg, it));
    expect(b.batchSize).toBe(3);
    expect(b.seqLen).toBe(Math.max(...rows.map((r) => r.length)));
    expect(b.inputIds).toBeInstanceOf(Int32Array);
    expect(b.inputIds.length).toBe(3 * b.seqLen);
    rows.forEach((ids, r) => {
      const row = Array.from(b.inputIds.subarray(r * b.seqLen, (r + 1) * b.seqLen));
      expect(b.lengths[r]).toBe(ids.length);
      expect(row.slice(0, ids.length)).toEqual(ids);
      expect(row.slice(ids.length).every((id) => id === cfg.text.padTokenId)).toBe(true);
      expect(row.filter((id) => id === IMAGE)).toHaveLength(N);
      // image positions: consecutive after <fake><global-img>, in order
      expect(Array.from(b.imagePositions.subarray(r * N, (r + 1) * N))).toEqual(Array.from({ length: N }, (_, k) => 2 + k));
    });
  });

  it('chat variant: image positions follow <|im_start|>User:', () => {
    const cfg = tiny({ prompt: 'chat' });
    const b = encodeBatch(tok, cfg, [item]);
    const prefix = 1 + tok.encode('User:').length + 2;
    expect(b.imagePositions[0]).toBe(prefix);
    expect(b.imagePositions[N - 1]).toBe(prefix + N - 1);
    expect(Array.from(b.inputIds.subarray(0, 1))).toEqual([tok.tokenId('<|im_start|>')]);
  });

  it('pads to maxLength on request and truncates long rows without touching the image block', () => {
    const cfg = tiny();
    const padded = encodeBatch(tok, cfg, items, { maxLength: 200, padToMaxLength: true });
    expect(padded.seqLen).toBe(200);
    const cut = encodeBatch(tok, cfg, items, { maxLength: N + 10 });
    expect(cut.seqLen).toBe(N + 10);
    expect(Array.from(cut.lengths).every((l) => l === N + 10)).toBe(true);
    expect(() => encodeBatch(tok, cfg, items, { maxLength: N })).toThrow(ConfigError);
    expect(() => encodeBatch(tok, cfg, items, { maxLength: cfg.text.maxPositionEmbeddings + 1 })).toThrow(ConfigError);
  });

  it('encodePromptRows gives the rows encodeBatch packs: whole prompts, cut from the end at maxLength', () => {
    const cfg = tiny();
    expect(encodePromptRows(tok, cfg, items)).toEqual(items.map((it) => encodePrompt(tok, cfg, it)));
    const cut = encodePromptRows(tok, cfg, items, { maxLength: N + 10 });
    expect(cut).toEqual(items.map((it) => encodePrompt(tok, cfg, it).slice(0, N + 10)));
    const packed = encodeBatch(tok, cfg, items, { maxLength: N + 10, padToMaxLength: true });
    const repacked = packTokenRows(cfg, cut, { seqLen: N + 10 });
    expect(repacked).toEqual(packed);
    expect(() => encodePromptRows(tok, cfg, items, { maxLength: N })).toThrow(/cuts the image block/);
  });

  it('refuses a tokenizer whose <image> id disagrees with the config', () => {
    expect(() => encodeBatch(tok, presetConfig('smolvlm2-256m'), items)).toThrow(/49190/);
    const cfg = tiny();
    cfg.text.vocabSize = 1000;
    expect(() => encodeBatch(tok, cfg, items)).toThrow(ConfigError);
  });

  it('packTokenRows: lengths and image positions of already tokenised rows; wrong counts are refused', () => {
    const cfg = tiny();
    const [I, PAD] = [cfg.imageTokenId, cfg.text.padTokenId];
    const b = packTokenRows(cfg, [[7, I, 8, I], [I, I, 5]], { imageTokens: 2, seqLen: 5 });
    expect([...b.inputIds]).toEqual([7, I, 8, I, PAD, I, I, 5, PAD, PAD]);
    expect([...b.lengths]).toEqual([4, 3]);
    expect([...b.imagePositions]).toEqual([1, 3, 0, 1]);
    expect(() => packTokenRows(cfg, [[7, I, 8]], { imageTokens: 2 })).toThrow(DataError);
    expect(() => packTokenRows(cfg, [[I, I, 8]], { imageTokens: 2, seqLen: 2 })).toThrow(ConfigError);
  });

  it('handles an empty batch', () => {
    const b = encodeBatch(tok, tiny(), []);
    expect(b.batchSize).toBe(0);
    expect(b.inputIds.length).toBe(0);
  });
});

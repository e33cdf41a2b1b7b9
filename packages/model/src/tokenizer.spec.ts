import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '@smolrate/core';
import { loadTokenizer, TINY_TOKENIZER_URL } from './tokenizer.js';

const ASSET = fileURLToPath(TINY_TOKENIZER_URL);
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const text = readFileSync(ASSET, 'utf8');
const tok = loadTokenizer(text);

describe('tiny tokenizer asset', () => {
  it('has the SmolLM2 special ids and the SmolVLM added-token layout shifted to 1024', () => {
    expect(tok.vocabSize).toBe(1152);
    expect(tok.tokenId('<|endoftext|>')).toBe(0);
    expect(tok.tokenId('<|im_start|>')).toBe(1);
    expect(tok.tokenId('<|im_end|>')).toBe(2);
    expect(tok.tokenId('<global-img>')).toBe(1024);
    expect(tok.tokenId('<row_1_col_1>')).toBe(1025);
    expect(tok.tokenId('<row_1_col_2>')).toBe(1026);
    expect(tok.tokenId('<row_2_col_1>')).toBe(1031);
    expect(tok.tokenId('<row_6_col_6>')).toBe(1060);
    expect(tok.tokenId('<fake_token_around_image>')).toBe(1061);
    expect(tok.tokenId('<image>')).toBe(1062);
    expect(tok.tokenId('<end_of_utterance>')).toBe(1151);
  });

  it('has the real tokenizer.json structure and stays small', () => {
    const j = JSON.parse(text);
    expect(j.normalizer).toBeNull();
    expect(j.post_processor).toBeNull();
    expect(j.pre_tokenizer).toEqual({
      type: 'Sequence',
      pretokenizers: [
        { type: 'Digits', individual_digits: true },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      ],
    });
    expect(j.decoder.type).toBe('ByteLevel');
    expect(j.model.type).toBe('BPE');
    expect(Object.keys(j.model.vocab)).toHaveLength(1024);
    expect(j.added_tokens).toHaveLength(17 + 128);
    expect(j.added_tokens.every((t: { special: boolean }) => t.special)).toBe(true);
    expect(statSync(ASSET).size).toBeLessThan(200 * 1024);
  });

  it('is exactly what tools/build-tiny-tokenizer.mjs produces (deterministic build)', () => {
    const out = execFileSync(process.execPath, ['tools/build-tiny-tokenizer.mjs', '--check'], { cwd: ROOT, encoding: 'utf8' });
    expect(out).toMatch(/up to date/);
  });
});

describe('loadTokenizer', () => {
  it('maps added tokens written in the text to their single ids', () => {
    const ids = tok.encode('x<image>y<fake_token_around_image><global-img>');
    expect(ids.filter((id) => id === 1062)).toHaveLength(1);
    expect(ids.filter((id) => id === 1061)).toHaveLength(1);
    expect(ids.filter((id) => id === 1024)).toHaveLength(1);
    expect(tok.encode('<image>')).toEqual([1062]);
    expect(tok.encode('<fake_token_around_image>')).toEqual([1061]);
    expect(tok.encode('<image><image>')).toEqual([1062, 1062]);
  });

  it('adds nothing to an encoding (no BOS/EOS: there is no post-processor)', () => {
    const ids = tok.encode('Title');
    expect(ids.includes(0) || ids.includes(1) || ids.includes(2)).toBe(false);
    expect(tok.encode('')).toEqual([]);
  });

  it('encodePlain treats added-token text as ordinary characters', () => {
    const ids = tok.encodePlain('<image>');
    expect(ids.length).toBeGreaterThan(1);
    expect(ids).not.toContain(1062);
    expect(tok.decode(ids)).toBe('<image>');
    // Text without added tokens encodes the same either way.
    const s = 'Features: Made of cotton, 12 oz.';
    expect(tok.encodePlain(s)).toEqual(tok.encode(s));
  });

  it('splits digits individually and round-trips any UTF-8 text byte-exactly', () => {
    const digits = tok.encode('2024');
    expect(digits.map((id) => tok.idToToken(id))).toEqual(['2', '0', '2', '4']);
    for (const s of [' The average user rating', 'naïve café – 😀👍🏽 ∑ ẞ 中文', '  tabs\tand\nnewlines  ', 'Price: $19.99 (2-Pack)']) {
      expect(tok.decode(tok.encode(s))).toBe(s);
    }
  });

  it('learned merges: common product words are single tokens', () => {
    expect(tok.encode(' The average user rating for this product')).toHaveLength(7);
  });

  it('decode can skip special tokens', () => {
    const ids = tok.encode('<image> Title<end_of_utterance>');
    expect(tok.decode(ids)).toBe('<image> Title<end_of_utterance>');
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe(' Title');
    expect(tok.decode([])).toBe('');
  });

  it('reads ids from the tokenizer, not from constants', () => {
    const j = JSON.parse(text);
    for (const t of j.added_tokens) if (t.content === '<image>') t.id = 1100;
    for (const t of j.added_tokens) if (t.content === '<|reserved_special_token_37|>') t.id = 1062;
    const moved = loadTokenizer(j);
    expect(moved.tokenId('<image>')).toBe(1100);
    expect(moved.encode('a<image>')).toContain(1100);
  });

  it('fails with ConfigError on unknown tokens and broken files', () => {
    expect(() => tok.tokenId('<video>')).toThrow(ConfigError);
    expect(tok.hasToken('<video>')).toBe(false);
    expect(() => loadTokenizer('{not json')).toThrow(ConfigError);
    expect(() => loadTokenizer('[1,2]')).toThrow(ConfigError);
    expect(() => loadTokenizer({ version: '1.0' })).toThrow(ConfigError);
  });

  it('keeps the source text for checkpoints', () => {
    expect(tok.toJSON()).toBe(text);
  });
});

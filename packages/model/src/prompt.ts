/**
 * The paper's prompt (docs/reference/model.md "Prompt") and its batch encoding.
 *
 *   <image> The average user rating for this product. Text metadata: Title: {title},
 *   Description: {description}, Features: {features}, Main Category: {category}
 *
 * (one line). Each value is truncated to L = cfg.regression.truncation Unicode code points before
 * it is inserted; lists (features, description paragraphs) are joined with " " first. `<image>`
 * expands to `<fake_token_around_image><global-img>` + `<image>`×N + `<fake_token_around_image>`
 * (Idefics3/SmolVLM's single-image block without tiling), N = imageTokenCount(cfg).
 *
 * Encoding follows HF's added-token splitting: the special tokens of the template become their
 * single ids, and each literal text section is byte-level BPE-encoded on its own — which is what
 * HF does for the whole prompt string. Metadata is data, not markup: an `<image>` written in a
 * product title is encoded as ordinary characters (HF `split_special_tokens`), so every row holds
 * exactly N image tokens whatever the metadata says.
 */
import { ConfigError, DataError } from '@smolrate/core';
import { imageTokenCount, type ModelConfig } from './config.js';
import type { TextTokenizer } from './tokenizer.js';

export const IMAGE_TOKEN = '<image>';
export const FAKE_IMAGE_TOKEN = '<fake_token_around_image>';
export const GLOBAL_IMAGE_TOKEN = '<global-img>';
export const CHAT_START_TOKEN = '<|im_start|>';
export const END_OF_UTTERANCE_TOKEN = '<end_of_utterance>';

/** A metadata value as found in the data: a string, a list of strings (paragraphs), or missing. */
export type TextField = string | readonly (string | null | undefined)[] | null | undefined;

export interface PromptItem {
  title?: TextField;
  description?: TextField;
  features?: TextField;
  /** The record's main category (store label), as in the paper's template. */
  category?: TextField;
}

/** A prompt as a sequence of special tokens and literal text sections. */
export type PromptSegment = { special: string } | { text: string };

/** The first `n` Unicode code points of `s` (an astral character counts once, not twice). */
export function truncateCodePoints(s: string, n: number): string {
  if (s.length <= n) return s; // UTF-16 length ≥ code-point count
  let count = 0;
  let end = 0;
  for (const ch of s) {
    if (count === n) break;
    end += ch.length;
    count++;
  }
  return s.slice(0, end);
}

/** A field's text: lists joined with " " (null entries skipped), null/undefined → "". */
export function fieldText(value: TextField, name = 'field'): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const parts: string[] = [];
    for (const v of value) {
      if (v === null || v === undefined) continue;
      if (typeof v !== 'string') throw new DataError(`prompt: ${name} must be a string or a list of strings, found an element of type ${typeof v}`);
      parts.push(v);
    }
    return parts.join(' ');
  }
  throw new DataError(`prompt: ${name} must be a string, a list of strings or null, got ${typeof value}`);
}

function truncation(cfg: ModelConfig): number {
  const l = cfg.regression.truncation;
  if (!Number.isInteger(l) || l < 0) throw new ConfigError(`regression.truncation must be a non-negative integer, got ${l}`);
  return l;
}

/** The template's text after `<image>`, with the four values truncated and inserted. */
function promptText(cfg: ModelConfig, item: PromptItem): string {
  const l = truncation(cfg);
  const v = (value: TextField, name: string) => truncateCodePoints(fieldText(value, name), l);
  return (
    ` The average user rating for this product. Text metadata: Title: ${v(item.title, 'title')}, ` +
    `Description: ${v(item.description, 'description')}, Features: ${v(item.features, 'features')}, ` +
    `Main Category: ${v(item.category, 'category')}`
  );
}

/** The prompt as segments (plain or chat variant per cfg.regression.prompt). */
function promptSegments(cfg: ModelConfig, item: PromptItem): PromptSegment[] {
  const n = imageTokenCount(cfg);
  const image: PromptSegment[] = [
    { special: FAKE_IMAGE_TOKEN },
    { special: GLOBAL_IMAGE_TOKEN },
    ...Array.from({ length: n }, () => ({ special: IMAGE_TOKEN })),
    { special: FAKE_IMAGE_TOKEN },
  ];
  const body: PromptSegment = { text: promptText(cfg, item) };
  switch (cfg.regression.prompt) {
    case 'plain':
      return [...image, body];
    case 'chat':
      // SmolVLM's chat template for one user turn with an image first, plus the generation prompt.
      return [{ special: CHAT_START_TOKEN }, { text: 'User:' }, ...image, body, { special: END_OF_UTTERANCE_TOKEN }, { text: '\nAssistant:' }];
    default:
      throw new ConfigError(`regression.prompt must be "plain" or "chat", got ${JSON.stringify(cfg.regression.prompt)}`);
  }
}

/** The prompt as one string (special tokens written out), e.g. for logs or HF tools. */
export function buildPrompt(cfg: ModelConfig, item: PromptItem): string {
  return promptSegments(cfg, item)
    .map((s) => ('special' in s ? s.special : s.text))
    .join('');
}

/** Token ids of one prompt. */
export function encodePrompt(tokenizer: TextTokenizer, cfg: ModelConfig, item: PromptItem): number[] {
  const ids: number[] = [];
  for (const s of promptSegments(cfg, item)) {
    if ('special' in s) ids.push(tokenizer.tokenId(s.special));
    else if (s.text.length > 0) for (const id of tokenizer.encodePlain(s.text)) ids.push(id);
  }
  return ids;
}

export interface PromptTokenCounts {
  /** Whole sequence. */
  total: number;
  /** `<image>` tokens (replaced by the N projected image rows). */
  image: number;
  /** The image block: N + 3 (`<fake>`, `<global-img>`, ..., `<fake>`). */
  imageBlock: number;
  /** Everything outside the image block: template text, metadata, chat markers. */
  text: number;
}

export function promptTokenCounts(tokenizer: TextTokenizer, cfg: ModelConfig, item: PromptItem): PromptTokenCounts {
  const total = encodePrompt(tokenizer, cfg, item).length;
  const image = imageTokenCount(cfg);
  return { total, image, imageBlock: image + 3, text: total - image - 3 };
}

/**
 * Text tokens of a prompt (outside the image block) — the per-item quantity behind the MAC
 * counter's "operational" count (sequence = N + 3 + this). An empty item gives the template's
 * fixed overhead.
 */
export function textTokenCount(tokenizer: TextTokenizer, cfg: ModelConfig, item: PromptItem = {}): number {
  return promptTokenCounts(tokenizer, cfg, item).text;
}

export interface EncodeBatchOptions {
  /**
   * Longest row kept; longer rows lose tokens from the end (never the image block: a limit that
   * would cut it is a ConfigError). Default cfg.text.maxPositionEmbeddings.
   */
  maxLength?: number;
  /** Pad every row to maxLength instead of to the longest row. Default false. */
  padToMaxLength?: boolean;
}

/** A right-padded batch, as plain typed arrays (row-major [B, seqLen]). */
export interface EncodedBatch {
  batchSize: number;
  seqLen: number;
  /** [B × seqLen] token ids, padding = cfg.text.padTokenId. */
  inputIds: Int32Array;
  /** [B] real tokens (image and text) per row; the rest of the row is padding. */
  lengths: Int32Array;
  /** [B × N] positions of the `<image>` tokens in each row, in order (k-th ← k-th image row). */
  imagePositions: Int32Array;
  imageTokensPerRow: number;
}

export interface PackOptions {
  /** Row length after padding. Default: the longest row. */
  seqLen?: number;
  /** `<image>` tokens in every row. Default imageTokenCount(cfg). */
  imageTokens?: number;
}

/**
 * Right-pads token rows with cfg.text.padTokenId and records each row's length and the positions
 * of its `<image>` tokens — what the model needs besides the ids, known here on the host.
 */
export function packTokenRows(cfg: ModelConfig, rows: readonly ArrayLike<number>[], options: PackOptions = {}): EncodedBatch {
  const n = options.imageTokens ?? imageTokenCount(cfg);
  const seqLen = options.seqLen ?? rows.reduce((m, ids) => Math.max(m, ids.length), 0);
  const b = rows.length;
  const inputIds = new Int32Array(b * seqLen).fill(cfg.text.padTokenId);
  const lengths = new Int32Array(b);
  const imagePositions = new Int32Array(b * n);
  rows.forEach((ids, r) => {
    if (ids.length > seqLen) throw new ConfigError(`row ${r} holds ${ids.length} tokens, more than the batch length ${seqLen}`);
    let k = 0;
    for (let t = 0; t < ids.length; t++) {
      if (ids[t] !== cfg.imageTokenId) continue;
      if (k < n) imagePositions[r * n + k] = t;
      k++;
    }
    if (k !== n) throw new DataError(`row ${r} holds ${k} ${IMAGE_TOKEN} tokens, expected ${n}`);
    inputIds.set(ids, r * seqLen);
    lengths[r] = ids.length;
  });
  return { batchSize: b, seqLen, inputIds, lengths, imagePositions, imageTokensPerRow: n };
}

/**
 * Token ids of each item's prompt, rows longer than maxLength cut from the end (never into the
 * image block: such a limit is a ConfigError) — the rows encodeBatch packs, for callers that keep
 * them (the trainer's sample index) and pack them later with packTokenRows.
 */
export function encodePromptRows(tokenizer: TextTokenizer, cfg: ModelConfig, items: readonly PromptItem[], options: Pick<EncodeBatchOptions, 'maxLength'> = {}): number[][] {
  const n = imageTokenCount(cfg);
  const imageId = tokenizer.tokenId(IMAGE_TOKEN);
  if (imageId !== cfg.imageTokenId) {
    throw new ConfigError(`tokenizer id of ${IMAGE_TOKEN} is ${imageId} but config image_token_id is ${cfg.imageTokenId}`);
  }
  if (tokenizer.vocabSize > cfg.text.vocabSize) {
    throw new ConfigError(`tokenizer vocabulary (${tokenizer.vocabSize}) is larger than text_config.vocab_size (${cfg.text.vocabSize})`);
  }
  const pad = cfg.text.padTokenId;
  if (!Number.isInteger(pad) || pad < 0 || pad >= cfg.text.vocabSize) throw new ConfigError(`text_config.pad_token_id ${pad} is outside [0, ${cfg.text.vocabSize})`);
  const maxLength = options.maxLength ?? cfg.text.maxPositionEmbeddings;
  if (!Number.isInteger(maxLength) || maxLength < 1) throw new ConfigError(`encodeBatch: maxLength must be a positive integer, got ${maxLength}`);
  if (maxLength > cfg.text.maxPositionEmbeddings) {
    throw new ConfigError(`encodeBatch: maxLength ${maxLength} exceeds max_position_embeddings ${cfg.text.maxPositionEmbeddings}`);
  }

  return items.map((item, r) => {
    const ids = encodePrompt(tokenizer, cfg, item);
    if (ids.length <= maxLength) return ids;
    const cut = ids.slice(0, maxLength);
    const kept = cut.filter((id) => id === imageId).length;
    if (kept < n) throw new ConfigError(`encodeBatch: row ${r} keeps ${kept} of ${n} ${IMAGE_TOKEN} tokens: maxLength ${maxLength} cuts the image block`);
    return cut;
  });
}

/** Encodes items into one batch: encodePromptRows, then packTokenRows. */
export function encodeBatch(tokenizer: TextTokenizer, cfg: ModelConfig, items: readonly PromptItem[], options: EncodeBatchOptions = {}): EncodedBatch {
  const rows = encodePromptRows(tokenizer, cfg, items, options);
  const seqLen = options.padToMaxLength ? (options.maxLength ?? cfg.text.maxPositionEmbeddings) : undefined;
  return packTokenRows(cfg, rows, { seqLen, imageTokens: imageTokenCount(cfg) });
}

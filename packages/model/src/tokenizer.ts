/**
 * The text tokenizer: an HF `tokenizer.json` (SmolLM2 byte-level BPE + SmolVLM added tokens)
 * run by @huggingface/tokenizers — BPE is not re-implemented here. Nothing is added to an
 * encoding automatically (the SmolLM2 tokenizer has no post-processor), and token ids are always
 * read from the tokenizer, never hard-coded.
 */
import { Tokenizer } from '@huggingface/tokenizers';
import { ConfigError } from '@smolrate/core';

/**
 * The `tiny` preset's tokenizer.json (built by tools/build-tiny-tokenizer.mjs): 1,024 byte-level
 * BPE tokens + the 128 SmolVLM added tokens at 1024..1151. Resolves from src/ and dist/ alike.
 */
export const TINY_TOKENIZER_URL: URL = new URL('../assets/tiny/tokenizer.json', import.meta.url);

export interface TokenizerDecodeOptions {
  /** Drop special tokens (`<image>`, `<|im_end|>`, ...) from the text. Default false. */
  skipSpecialTokens?: boolean;
}

export interface TextTokenizer {
  /** Token ids of `text`; added/special tokens written in the text map to their single ids. */
  encode(text: string): number[];
  /**
   * Token ids of `text` with added tokens treated as ordinary text (HF `split_special_tokens`):
   * `"<image>"` becomes the BPE pieces of the characters `<`, `image`, `>`. For untrusted data.
   */
  encodePlain(text: string): number[];
  decode(ids: ArrayLike<number>, options?: TokenizerDecodeOptions): string;
  /** The id of a token (e.g. `"<image>"`); ConfigError if the vocabulary lacks it. */
  tokenId(token: string): number;
  hasToken(token: string): boolean;
  /** Token text of an id, or undefined. */
  idToToken(id: number): string | undefined;
  /** Largest id + 1, added tokens included (49,280 for SmolVLM2, 1,152 for the tiny tokenizer). */
  readonly vocabSize: number;
  /** The `tokenizer.json` text, to save next to a checkpoint. */
  toJSON(): string;
}

type Json = Record<string, unknown>;

function parse(json: string | object): { text: string; obj: Json } {
  if (typeof json === 'string') {
    let obj: unknown;
    try {
      obj = JSON.parse(json);
    } catch (e) {
      throw new ConfigError(`tokenizer.json: invalid JSON (${(e as Error).message})`, { cause: e });
    }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new ConfigError('tokenizer.json: expected a JSON object');
    return { text: json, obj: obj as Json };
  }
  if (json === null || Array.isArray(json)) throw new ConfigError('tokenizer.json: expected an object');
  return { text: JSON.stringify(json), obj: json as Json };
}

function construct(obj: Json, config: Json): Tokenizer {
  if (typeof obj.model !== 'object' || obj.model === null) throw new ConfigError('tokenizer.json: missing "model"');
  // The library requires these keys to be present (null allowed), as in files written by HF.
  const full: Json = { normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, added_tokens: [], ...obj };
  try {
    return new Tokenizer(full, config);
  } catch (e) {
    throw new ConfigError(`tokenizer.json: cannot be loaded (${(e as Error).message})`, { cause: e });
  }
}

/**
 * Loads a `tokenizer.json` (text or parsed). `tokenizerConfig` is the optional
 * `tokenizer_config.json`; decoding never "cleans up" spaces unless it asks to (SmolLM2's setting).
 */
export function loadTokenizer(json: string | object, tokenizerConfig: object = {}): TextTokenizer {
  const { text, obj } = parse(json);
  const config: Json = { clean_up_tokenization_spaces: false, ...(tokenizerConfig as Json) };
  const tok = construct(obj, config);
  let plain: Tokenizer | undefined; // built on first use: a second copy of the BPE tables

  let vocabSize = 0;
  for (const id of tok.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1);

  return {
    vocabSize,
    encode: (s) => tok.encode(s, { add_special_tokens: false }).ids,
    encodePlain: (s) => {
      plain ??= construct({ ...obj, added_tokens: [] }, config);
      return plain.encode(s, { add_special_tokens: false }).ids;
    },
    decode: (ids, options = {}) => {
      if (ids.length === 0) return '';
      return tok.decode(Array.from(ids), { skip_special_tokens: options.skipSpecialTokens ?? false });
    },
    tokenId: (token) => {
      const id = tok.token_to_id(token);
      if (id === undefined) throw new ConfigError(`tokenizer: token ${JSON.stringify(token)} is not in the vocabulary`);
      return id;
    },
    hasToken: (token) => tok.token_to_id(token) !== undefined,
    idToToken: (id) => tok.id_to_token(id),
    toJSON: () => text,
  };
}

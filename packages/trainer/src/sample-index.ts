/**
 * The compact sample index of a split: everything the batch builder needs of a sample besides its
 * image features, in a few flat typed arrays — no string and no object per sample — so a rank can
 * hold the paper's 16.4 M samples (docs/training.md "The sample index"):
 *
 *   targets      Float32Array[S]      average_rating (the Float32 the batch carries)
 *   categoryIds  Uint16Array[S]       source-file category (the sampling stratum), into `categories`
 *   offsets      Float64Array[S + 1]  row i is tokens[offsets[i], offsets[i + 1])
 *   tokens       Uint16Array[T]       each sample's prompt ids (model prompt.ts encodePromptRows),
 *                                     already cut at maxLength: the rows encodeBatch would pack
 *
 * ≈ 2 B per prompt id + 14 B per sample. Offsets are Float64 because T passes 2³² near the paper's
 * scale (16.4 M × ~210 ids is already 3.4·10⁹). Image features are found by the sample's (shard,
 * row) location (feature-cache.ts), so the index holds no image key.
 *
 * It is built by streaming the split shard by shard (raw text lives only while its shard is
 * encoded) and stored as one binary file, named and checked by a key of everything the rows
 * depend on: the split's shard list, the tokenizer, the prompt variant, the truncation, the image
 * block and maxLength. File layout, little-endian:
 *
 *   "SRIX" | u32 version | u32 header bytes H | u32 0 | header JSON (H bytes) | zeros to 8
 *   sections in the order above, each zero-padded to a multiple of 8 bytes
 *
 * The header holds the key, S, T, the categories and the SHA-256 of the sections (with their
 * padding); a load checks all of them and the file size, and refuses a mismatch with a DataError
 * naming the file.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { ConfigError, DataError, silentLogger, writeFileAtomic, type Logger, type ShardInfo } from '@smolrate/core';
import { encodePromptRows, imageTokenCount, type ModelConfig, type TextTokenizer } from '@smolrate/model';
import { promptItemOf } from './batches.js';
import type { SampleMeta } from './shard-dataset.js';

export const SAMPLE_INDEX_MAGIC = 'SRIX';
export const SAMPLE_INDEX_VERSION = 1;
const PREAMBLE_BYTES = 16;
const MAX_HEADER_BYTES = 64 << 20;
/** Largest single read or write: fs reads stop at 2 GiB, and smaller chunks keep hashing smooth. */
const IO_CHUNK_BYTES = 64 << 20;
const PROGRESS_EVERY_MS = 10_000;

/** Everything the stored rows depend on; a file whose key differs is not used. */
export interface SampleIndexKey {
  split: string;
  /** SHA-256 of the split's shard list (file, rows, bytes, sha256 of each, in manifest order). */
  shardsSha256: string;
  /** SHA-256 of the tokenizer.json text. */
  tokenizerSha256: string;
  prompt: string;
  truncation: number;
  imageTokens: number;
  imageTokenId: number;
  maxLength: number;
}

export interface SampleIndexArrays {
  key: SampleIndexKey;
  targets: Float32Array;
  categoryIds: Uint16Array;
  categories: readonly string[];
  offsets: Float64Array;
  tokens: Uint16Array;
}

/** The key of a split's index for a tokenizer and model config (maxLength default: max_position_embeddings). */
export function sampleIndexKey(options: { split: string; shards: readonly ShardInfo[]; tokenizerSha256: string; config: ModelConfig; maxLength?: number }): SampleIndexKey {
  const { config } = options;
  const shards = options.shards.map((s) => [s.file, s.rows, s.bytes, s.sha256]);
  return {
    split: options.split,
    shardsSha256: createHash('sha256').update(JSON.stringify(shards)).digest('hex'),
    tokenizerSha256: options.tokenizerSha256,
    prompt: config.regression.prompt,
    truncation: config.regression.truncation,
    imageTokens: imageTokenCount(config),
    imageTokenId: config.imageTokenId,
    maxLength: options.maxLength ?? config.text.maxPositionEmbeddings,
  };
}

/** Where the index of `key` lives under `dir`: `<split>-<first 16 hex of the key's SHA-256>.sridx`. */
export function sampleIndexPath(dir: string, key: SampleIndexKey): string {
  return join(dir, `${key.split}-${keyHash(key).slice(0, 16)}.sridx`);
}

function keyHash(key: SampleIndexKey): string {
  return createHash('sha256').update(canonicalKey(key)).digest('hex');
}

/** The key as JSON with its fields in one order (a loaded header may list them in any order). */
function canonicalKey(key: SampleIndexKey): string {
  const { split, shardsSha256, tokenizerSha256, prompt, truncation, imageTokens, imageTokenId, maxLength } = key;
  return JSON.stringify({ split, shardsSha256, tokenizerSha256, prompt, truncation, imageTokens, imageTokenId, maxLength });
}

export class SampleIndex {
  readonly key: SampleIndexKey;
  readonly targets: Float32Array;
  readonly categoryIds: Uint16Array;
  readonly categories: readonly string[];
  readonly offsets: Float64Array;
  readonly tokens: Uint16Array;

  /** Checks that the arrays fit together; `source` names them in errors (a file path, say). */
  constructor(arrays: SampleIndexArrays, source = 'sample index') {
    ({ key: this.key, targets: this.targets, categoryIds: this.categoryIds, categories: this.categories, offsets: this.offsets, tokens: this.tokens } = arrays);
    const s = this.targets.length;
    const problems: string[] = [];
    if (this.categoryIds.length !== s) problems.push(`${this.categoryIds.length} category ids for ${s} samples`);
    if (this.offsets.length !== s + 1) problems.push(`${this.offsets.length} offsets for ${s} samples (expected ${s + 1})`);
    if (this.offsets[0] !== 0 || this.offsets[this.offsets.length - 1] !== this.tokens.length) problems.push(`offsets must run from 0 to ${this.tokens.length} tokens`);
    for (let i = 0; i < s && problems.length === 0; i++) {
      if (!(this.offsets[i + 1] >= this.offsets[i])) problems.push(`offsets decrease at sample ${i}`);
      if (this.categoryIds[i] >= this.categories.length) problems.push(`sample ${i} has category id ${this.categoryIds[i]} of ${this.categories.length}`);
    }
    if (problems.length > 0) throw new DataError(`${source}: ${problems.join('; ')}`);
  }

  get numSamples(): number {
    return this.targets.length;
  }

  /** Sample i's prompt ids (a view into `tokens`: do not write). */
  row(i: number): Uint16Array {
    this.check(i);
    return this.tokens.subarray(this.offsets[i], this.offsets[i + 1]);
  }

  target(i: number): number {
    this.check(i);
    return this.targets[i];
  }

  /** Source-file category of sample i. */
  category(i: number): string {
    this.check(i);
    return this.categories[this.categoryIds[i]];
  }

  /** Bytes of the arrays held (the categories, a few strings per split, are not counted). */
  get bytesResident(): number {
    return this.targets.byteLength + this.categoryIds.byteLength + this.offsets.byteLength + this.tokens.byteLength;
  }

  private check(i: number): void {
    if (!Number.isSafeInteger(i) || i < 0 || i >= this.targets.length) {
      throw new RangeError(`${this.key.split} sample index: index ${i} is outside [0, ${this.targets.length})`);
    }
  }
}

/** What the index is built from (a ShardDataset). */
export interface SampleIndexSource {
  readonly split: string;
  readonly shards: readonly ShardInfo[];
  readonly numSamples: number;
  shard(s: number): Promise<{ start: number; meta: readonly SampleMeta[] }>;
}

export interface BuildSampleIndexOptions {
  dataset: SampleIndexSource;
  tokenizer: TextTokenizer;
  /** SHA-256 (hex) of the tokenizer.json text, for the key. */
  tokenizerSha256: string;
  /** The model config (prompt variant, truncation L, image tokens N). */
  config: ModelConfig;
  /** Rows are cut at this many ids (encodePromptRows). Default config.text.maxPositionEmbeddings. */
  maxLength?: number;
  /** Progress every 10 s and a summary at the end. Default silent. */
  log?: Logger;
  onProgress?: (progress: { shards: number; samples: number }) => void;
}

/** Encodes every sample of the split, one shard at a time. */
export async function buildSampleIndex(options: BuildSampleIndexOptions): Promise<SampleIndex> {
  const { dataset, tokenizer, config } = options;
  const log = options.log ?? silentLogger;
  const key = sampleIndexKey({ split: dataset.split, shards: dataset.shards, tokenizerSha256: options.tokenizerSha256, config, maxLength: options.maxLength });
  if (tokenizer.vocabSize > 0x10000) throw new ConfigError(`sample index: token ids are stored as 16-bit, but the tokenizer has ${tokenizer.vocabSize} ids (at most 65536)`);
  const s = dataset.numSamples;
  const targets = new Float32Array(s);
  const categoryIds = new Uint16Array(s);
  const offsets = new Float64Array(s + 1);
  const categories: string[] = [];
  const categoryId = new Map<string, number>();
  const chunks: Uint16Array[] = [];
  let total = 0;
  let next = 0;
  const t0 = performance.now();
  let logged = t0;
  for (let sh = 0; sh < dataset.shards.length; sh++) {
    const { start, meta } = await dataset.shard(sh);
    if (start !== next) throw new DataError(`sample index: ${dataset.split} shard ${sh} starts at sample ${start}, expected ${next}`);
    const rows = encodePromptRows(tokenizer, config, meta.map(promptItemOf), { maxLength: key.maxLength });
    const chunk = new Uint16Array(rows.reduce((n, r) => n + r.length, 0));
    let at = 0;
    rows.forEach((ids, j) => {
      const i = start + j;
      for (const id of ids) {
        if (id > 0xffff) throw new ConfigError(`sample index: sample ${i} holds token id ${id}, which does not fit 16 bits`);
      }
      chunk.set(ids, at);
      at += ids.length;
      offsets[i + 1] = total + at;
      const m = meta[j];
      targets[i] = m.average_rating;
      let c = categoryId.get(m.category);
      if (c === undefined) {
        if (categories.length === 0x10000) throw new DataError(`sample index: more than 65536 categories in the ${dataset.split} split`);
        c = categories.push(m.category) - 1;
        categoryId.set(m.category, c);
      }
      categoryIds[i] = c;
    });
    chunks.push(chunk);
    total += chunk.length;
    next = start + meta.length;
    options.onProgress?.({ shards: sh + 1, samples: next });
    if (performance.now() - logged > PROGRESS_EVERY_MS) {
      logged = performance.now();
      log.info('sample index: encoding', { split: dataset.split, shards: `${sh + 1}/${dataset.shards.length}`, samples: next });
    }
  }
  if (next !== s) throw new DataError(`sample index: the ${dataset.split} shards hold ${next} samples, the manifest says ${s}`);
  const tokens = new Uint16Array(total);
  let at = 0;
  for (const c of chunks.splice(0)) {
    tokens.set(c, at);
    at += c.length;
  }
  const index = new SampleIndex({ key, targets, categoryIds, categories, offsets, tokens });
  log.info('sample index: built', { split: dataset.split, samples: s, tokens: total, bytesPerSample: s > 0 ? index.bytesResident / s : 0, seconds: (performance.now() - t0) / 1000 });
  return index;
}

/** Byte views of the sections, in file order. */
function sectionBytes(a: SampleIndexArrays): Uint8Array[] {
  return [a.targets, a.categoryIds, a.offsets, a.tokens].map((t) => new Uint8Array(t.buffer, t.byteOffset, t.byteLength));
}

/** Byte lengths of the sections for S samples and T tokens, each before its padding to 8. */
function sectionLengths(s: number, t: number): number[] {
  return [4 * s, 2 * s, 8 * (s + 1), 2 * t];
}

const pad8 = (n: number) => (8 - (n % 8)) % 8;

function* chunked(sections: Uint8Array[]): Generator<Uint8Array> {
  for (const bytes of sections) {
    for (let at = 0; at < bytes.length; at += IO_CHUNK_BYTES) yield bytes.subarray(at, Math.min(bytes.length, at + IO_CHUNK_BYTES));
    const pad = pad8(bytes.length);
    if (pad > 0) yield new Uint8Array(pad);
  }
}

interface SampleIndexHeader {
  key: SampleIndexKey;
  numSamples: number;
  numTokens: number;
  categories: string[];
  payloadBytes: number;
  payloadSha256: string;
}

/** Writes the index to `path` atomically. */
export async function writeSampleIndex(path: string, index: SampleIndex): Promise<void> {
  const sections = sectionBytes(index);
  const hash = createHash('sha256');
  let payloadBytes = 0;
  for (const c of chunked(sections)) {
    hash.update(c);
    payloadBytes += c.length;
  }
  const header: SampleIndexHeader = {
    key: JSON.parse(canonicalKey(index.key)) as SampleIndexKey,
    numSamples: index.numSamples,
    numTokens: index.tokens.length,
    categories: [...index.categories],
    payloadBytes,
    payloadSha256: hash.digest('hex'),
  };
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const preamble = Buffer.alloc(PREAMBLE_BYTES + json.length + pad8(PREAMBLE_BYTES + json.length));
  preamble.write(SAMPLE_INDEX_MAGIC, 0, 'latin1');
  preamble.writeUInt32LE(SAMPLE_INDEX_VERSION, 4);
  preamble.writeUInt32LE(json.length, 8);
  json.copy(preamble, PREAMBLE_BYTES);
  await writeFileAtomic(
    path,
    Readable.from(
      (function* () {
        yield preamble;
        yield* chunked(sections);
      })(),
    ),
  );
}

/** Reads the index at `path`, refusing (DataError naming the file) one that is damaged or has another key. */
export async function readSampleIndex(path: string, expected: SampleIndexKey): Promise<SampleIndex> {
  const fail = (why: string) => new DataError(`sample index ${path}: ${why} (it is rebuilt when the trainer starts)`);
  const fh = await open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    const readAt = async (buf: Uint8Array, position: number): Promise<void> => {
      for (let at = 0; at < buf.length; ) {
        const n = Math.min(IO_CHUNK_BYTES, buf.length - at);
        const { bytesRead } = await fh.read(buf, at, n, position + at);
        if (bytesRead === 0) throw fail(`truncated: ${size} bytes`);
        at += bytesRead;
      }
    };
    if (size < PREAMBLE_BYTES) throw fail(`truncated: ${size} bytes`);
    const preamble = Buffer.alloc(PREAMBLE_BYTES);
    await readAt(preamble, 0);
    if (preamble.toString('latin1', 0, 4) !== SAMPLE_INDEX_MAGIC) throw fail(`not a sample index (magic ${JSON.stringify(preamble.toString('latin1', 0, 4))})`);
    const version = preamble.readUInt32LE(4);
    if (version !== SAMPLE_INDEX_VERSION) throw fail(`version ${version}, this build reads version ${SAMPLE_INDEX_VERSION}`);
    const headerBytes = preamble.readUInt32LE(8);
    if (headerBytes > MAX_HEADER_BYTES || PREAMBLE_BYTES + headerBytes > size) throw fail(`header of ${headerBytes} bytes does not fit the file (${size} bytes)`);
    const json = Buffer.alloc(headerBytes);
    await readAt(json, PREAMBLE_BYTES);
    let header: SampleIndexHeader;
    try {
      header = JSON.parse(json.toString('utf8')) as SampleIndexHeader;
    } catch (e) {
      throw new DataError(`sample index ${path}: unreadable header`, { cause: e });
    }
    if (canonicalKey(header.key) !== canonicalKey(expected)) {
      const changed = (Object.keys(expected) as Array<keyof SampleIndexKey>).filter((k) => header.key?.[k] !== expected[k]);
      throw fail(`built for another input (${changed.map((k) => `${k}: file ${JSON.stringify(header.key?.[k])}, wanted ${JSON.stringify(expected[k])}`).join('; ')})`);
    }
    const { numSamples: s, numTokens: t } = header;
    if (!Number.isSafeInteger(s) || s < 0 || !Number.isSafeInteger(t) || t < 0 || !Array.isArray(header.categories)) throw fail('malformed header');
    const lengths = sectionLengths(s, t);
    const payloadBytes = lengths.reduce((n, l) => n + l + pad8(l), 0);
    const dataOffset = PREAMBLE_BYTES + headerBytes + pad8(PREAMBLE_BYTES + headerBytes);
    if (payloadBytes !== header.payloadBytes || size !== dataOffset + payloadBytes) {
      throw fail(`truncated or extended: ${size} bytes, expected ${dataOffset + payloadBytes} for ${s} samples and ${t} tokens`);
    }
    const arrays: SampleIndexArrays = {
      key: expected,
      targets: new Float32Array(s),
      categoryIds: new Uint16Array(s),
      categories: header.categories,
      offsets: new Float64Array(s + 1),
      tokens: new Uint16Array(t),
    };
    const hash = createHash('sha256');
    let position = dataOffset;
    for (const c of chunked(sectionBytes(arrays))) {
      await readAt(c, position);
      hash.update(c);
      position += c.length;
    }
    if (hash.digest('hex') !== header.payloadSha256) throw fail('SHA-256 of the arrays does not match the header (corrupted)');
    return new SampleIndex(arrays, `sample index ${path}`);
  } finally {
    await fh.close();
  }
}

/**
 * The split's index from `dir` when a good file is there, else built and written (a damaged file
 * or one with another key is logged and replaced). `built` says which.
 */
export async function loadOrBuildSampleIndex(options: BuildSampleIndexOptions & { dir: string }): Promise<{ index: SampleIndex; path: string; built: boolean }> {
  const log = options.log ?? silentLogger;
  const key = sampleIndexKey({ split: options.dataset.split, shards: options.dataset.shards, tokenizerSha256: options.tokenizerSha256, config: options.config, maxLength: options.maxLength });
  const path = sampleIndexPath(options.dir, key);
  try {
    return { index: await readSampleIndex(path, key), path, built: false };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT' && !(e instanceof DataError)) throw e;
    if (e instanceof DataError) log.warn('sample index refused, rebuilding it', { path, reason: e.message });
  }
  const index = await buildSampleIndex(options);
  await writeSampleIndex(path, index);
  return { index, path, built: true };
}

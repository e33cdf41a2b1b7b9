/**
 * The vision-feature cache (docs/reference/design.md: trainer "vision-feature cache"; docs/reference/model.md: the vision
 * encoder and connector are frozen, so they can run once per image). An entry is the connector
 * output of one image, [N, D] float32 (N image tokens, D = text hidden size), keyed by
 *
 *   backbone hash (backbone-hash.ts: the frozen weights + image geometry)  +  SHA-256 of the JPEG bytes
 *
 * so entries are reused across epochs, across runs and across datasets that share images, and a
 * different backbone never reads another's features.
 *
 * Layout in the store: `<backboneHash>/<first 2 hex of image hash>/<imageHash>.f32`, one small file
 * each (83 KB for the 256M model):
 *
 *   bytes 0–3   magic "SRFC"          4–7   format version (uint32 LE) = 1
 *   bytes 8–11  N (uint32 LE)         12–15 D (uint32 LE)
 *   bytes 16–47 backbone hash (raw)   48–79 image hash (raw)
 *   bytes 80…   N·D float32, little-endian, row-major [N, D]
 *
 * Writes go through Store.put, which publishes atomically (temp file + rename locally, one PUT on
 * S3), so several processes may write the same entry at once: a reader sees a complete file or
 * none, and identical inputs give identical bytes. Every read checks magic, version, shape, both
 * hashes and the length; a mismatch is a DataError naming the file, never silently wrong features.
 */
import {
  ConfigError,
  DataError,
  NotFoundError,
  openStore,
  ShapeError,
  type Store,
} from '@smolrate/core';
import { imageTokenCount, type SmolVLMRegressor } from '@smolrate/model';
import { backboneHash } from './backbone-hash.js';
import { ByteLru } from './byte-lru.js';

export const FEATURE_FILE_MAGIC = 'SRFC';
export const FEATURE_FILE_VERSION = 1;
export const FEATURE_HEADER_BYTES = 80;

const HASH_PATTERN = /^[0-9a-f]{64}$/;
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export interface FeatureCacheOptions {
  /** Local directory of the cache (opened as a local store). Exactly one of dir / store. */
  dir?: string;
  /** Any store (local or S3); entries go under its root. Exactly one of dir / store. */
  store?: Store;
  /** backboneHash(model): 64 lowercase hex digits. */
  backboneHash: string;
  /** Image tokens per image, N (imageTokenCount(config); 36 at 384²). */
  tokens: number;
  /** Feature width, D (text hidden size; 576 for the 256M model). */
  dim: number;
  /**
   * In-process LRU of features already read or written, in bytes. Default 64 MiB (≈ 800 entries
   * of the 256M model); 0 disables it.
   */
  memoryBytes?: number;
}

function checkHash(what: string, hash: string): void {
  if (typeof hash !== 'string' || !HASH_PATTERN.test(hash)) throw new DataError(`feature cache: ${what} must be 64 lowercase hex digits, got ${JSON.stringify(hash)}`);
}

/** Encodes one entry (header + little-endian float32 data). */
export function encodeFeatureFile(backboneHash: string, imageHash: string, tokens: number, dim: number, data: Float32Array): Buffer {
  const out = Buffer.alloc(FEATURE_HEADER_BYTES + 4 * data.length);
  out.write(FEATURE_FILE_MAGIC, 0, 'latin1');
  out.writeUInt32LE(FEATURE_FILE_VERSION, 4);
  out.writeUInt32LE(tokens, 8);
  out.writeUInt32LE(dim, 12);
  out.write(backboneHash, 16, 'hex');
  out.write(imageHash, 48, 'hex');
  if (LITTLE_ENDIAN) Buffer.from(data.buffer, data.byteOffset, data.byteLength).copy(out, FEATURE_HEADER_BYTES);
  else for (let i = 0; i < data.length; i++) out.writeFloatLE(data[i], FEATURE_HEADER_BYTES + 4 * i);
  return out;
}

/** Decodes and checks one entry; `uri` names it in errors. Returns a fresh Float32Array. */
export function decodeFeatureFile(bytes: Buffer, expected: { backboneHash: string; imageHash: string; tokens: number; dim: number }, uri: string): Float32Array {
  const bad = (msg: string) => new DataError(`feature cache entry ${uri}: ${msg}`);
  if (bytes.length < FEATURE_HEADER_BYTES) throw bad(`${bytes.length} bytes, shorter than the ${FEATURE_HEADER_BYTES}-byte header`);
  const magic = bytes.toString('latin1', 0, 4);
  if (magic !== FEATURE_FILE_MAGIC) throw bad(`bad magic ${JSON.stringify(magic)} (expected ${FEATURE_FILE_MAGIC})`);
  const version = bytes.readUInt32LE(4);
  if (version !== FEATURE_FILE_VERSION) throw bad(`format version ${version}, expected ${FEATURE_FILE_VERSION}`);
  const tokens = bytes.readUInt32LE(8);
  const dim = bytes.readUInt32LE(12);
  if (tokens !== expected.tokens || dim !== expected.dim) throw bad(`shape [${tokens}, ${dim}], expected [${expected.tokens}, ${expected.dim}]`);
  const backbone = bytes.toString('hex', 16, 48);
  if (backbone !== expected.backboneHash) throw bad(`backbone hash ${backbone}, expected ${expected.backboneHash}`);
  const image = bytes.toString('hex', 48, 80);
  if (image !== expected.imageHash) throw bad(`image hash ${image}, expected ${expected.imageHash}`);
  const n = tokens * dim;
  if (bytes.length !== FEATURE_HEADER_BYTES + 4 * n) throw bad(`${bytes.length} bytes, expected ${FEATURE_HEADER_BYTES + 4 * n} for [${tokens}, ${dim}] float32`);
  const out = new Float32Array(n);
  if (LITTLE_ENDIAN) Buffer.from(out.buffer).set(bytes.subarray(FEATURE_HEADER_BYTES));
  else for (let i = 0; i < n; i++) out[i] = bytes.readFloatLE(FEATURE_HEADER_BYTES + 4 * i);
  return out;
}

export class FeatureCache {
  readonly store: Store;
  readonly backboneHash: string;
  readonly tokens: number;
  readonly dim: number;
  private readonly memory: ByteLru<string, Float32Array>;

  constructor(options: FeatureCacheOptions) {
    if ((options.dir === undefined) === (options.store === undefined)) throw new ConfigError('feature cache: give exactly one of dir and store');
    checkHash('backboneHash', options.backboneHash);
    for (const k of ['tokens', 'dim'] as const) {
      const v = options[k];
      if (!Number.isSafeInteger(v) || v < 1 || v > 0xffffffff) throw new ConfigError(`feature cache: ${k} must be a positive integer, got ${String(v)}`);
    }
    this.store = options.store ?? openStore(options.dir!);
    this.backboneHash = options.backboneHash;
    this.tokens = options.tokens;
    this.dim = options.dim;
    this.memory = new ByteLru(options.memoryBytes ?? 64 * 2 ** 20);
  }

  /** The cache of `model`'s features: backbone hash and entry shape [N, D] taken from the model. */
  static async forModel(model: SmolVLMRegressor, location: Pick<FeatureCacheOptions, 'dir' | 'store' | 'memoryBytes'>): Promise<FeatureCache> {
    return new FeatureCache({
      ...location,
      backboneHash: await backboneHash(model),
      tokens: imageTokenCount(model.config),
      dim: model.config.text.hiddenSize,
    });
  }

  /** Values per entry: N·D. */
  get entrySize(): number {
    return this.tokens * this.dim;
  }

  /** Store key of an image's entry. */
  keyOf(imageHash: string): string {
    checkHash('image hash', imageHash);
    return `${this.backboneHash}/${imageHash.slice(0, 2)}/${imageHash}.f32`;
  }

  async has(imageHash: string): Promise<boolean> {
    const key = this.keyOf(imageHash);
    return this.memory.has(imageHash) || (await this.store.exists(key));
  }

  /** The features [N·D] of an image, or undefined when not cached. Treat the array as read-only. */
  async get(imageHash: string): Promise<Float32Array | undefined> {
    const key = this.keyOf(imageHash);
    const hit = this.memory.get(imageHash);
    if (hit !== undefined) return hit;
    let bytes: Buffer;
    try {
      bytes = await this.store.get(key);
    } catch (e) {
      if (e instanceof NotFoundError) return undefined;
      throw e;
    }
    const data = decodeFeatureFile(bytes, { backboneHash: this.backboneHash, imageHash, tokens: this.tokens, dim: this.dim }, this.store.uriOf(key));
    this.remember(imageHash, data);
    return data;
  }

  /** Stores the features [N·D] of an image (atomically; overwriting an entry is harmless). */
  async put(imageHash: string, data: Float32Array): Promise<void> {
    const key = this.keyOf(imageHash);
    if (!(data instanceof Float32Array) || data.length !== this.entrySize) {
      throw new ShapeError(`feature cache put: expected a Float32Array of ${this.tokens}×${this.dim} = ${this.entrySize} values, got ${data instanceof Float32Array ? data.length : typeof data}`);
    }
    await this.store.put(key, encodeFeatureFile(this.backboneHash, imageHash, this.tokens, this.dim, data), { contentType: 'application/octet-stream' });
    this.remember(imageHash, data.slice());
  }

  private remember(imageHash: string, data: Float32Array): void {
    if (this.memory.maxBytes > 0) this.memory.set(imageHash, data, data.byteLength);
  }
}

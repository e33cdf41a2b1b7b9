/**
 * The vision-feature cache (docs/reference/design.md: trainer "vision-feature cache"; docs/reference/model.md: the vision
 * encoder and connector are frozen, so they run once per image). Features are packed **one file
 * per shard**, aligned with the shard: entry j is the connector output [N, D] of row j of the
 * shard, so a sample's features sit at (shard, row) = ShardDataset.locate(globalIndex). Key:
 *
 *   `<backboneHash>/<shardSha256>.<dtype>.srfp`   (+ sidecar `<key>.sha256`: the file's SHA-256)
 *
 * backbone hash (backbone-hash.ts: frozen weights + image geometry) and element type are in the
 * key and in the header, so another backbone or dtype never reads these features.
 *
 * Layout (little-endian):
 *
 *   0 magic "SRFP"   4 version (u32) = 1   8 dtype code (u32: 1 = f32, 2 = bf16)
 *   12 N (u32)       16 D (u32)            20 count (u32)   24 entryBytes (u32) = N·D·elementBytes
 *   28 reserved 0    32 dataOffset (u64)   40 backbone hash (32 B raw)   72 shard SHA-256 (32 B raw)
 *   104 crc32 of bytes 0–103 followed by the whole table   108 reserved 0
 *   112 table: `count` records of 40 B {image SHA-256 32 B raw, checksum of the entry 4 B, 4 B 0}
 *   dataOffset (the first multiple of 4096 after the table): the entries, entry j at
 *   dataOffset + j·entryBytes (no offsets are stored: entries have one fixed size)
 *
 * bf16 entries are float32 rounded to nearest even with grad-transport.ts toBf16 (one converter
 * for the gradient wire and the cache); f32 entries are the encoder's bytes, so f32 features are
 * bit-identical to a fresh encode.
 *
 * A reader (per rank) reads and checks each file's header and table once (magic, version, dtype,
 * N, D, count, backbone, shard, crc32, and the file size = dataOffset + count·entryBytes), keeps
 * the per-entry checksums, and then fetches exactly the entries a batch needs as byte ranges
 * (adjacent rows coalesced up to 1 MiB, at most `concurrency` ranges in flight, each read straight
 * into a slot of the decoder's WebAssembly memory): positional reads on cached file handles
 * locally, ranged GETs on S3 (core's S3 store resumes and retries them). Every entry is checked
 * against its checksum while it is decoded (feature-kernel.ts: one SIMD pass, a Fletcher sum in
 * four lanes — cheap enough to run on every read).
 *
 * **Direct reads.** When a split's features are larger than half the machine's memory (the paper's
 * 680 GB, against tens of GB of RAM), the page cache cannot hold them and only costs: every
 * buffered read copies the bytes once more and churns the page cache's lists, which on 2 cores
 * took more CPU than the decode (docs/training.md "The data path at scale"). Then local entry
 * reads are O_DIRECT: the disk writes straight into the decoder's slot, which is page-aligned, and
 * each range is read as its 4096-aligned superset. `directIo` 'on' / 'off' forces either way; a
 * file system without O_DIRECT (tmpfs) falls back to buffered reads. Headers and tables are small
 * and read once: they stay buffered. Any mismatch is a DataError naming the file, never silently wrong
 * features; precompute-features.ts rebuilds such a file.
 */
import { createHash } from 'node:crypto';
import { constants as fsConstants, readFileSync, readSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { totalmem } from 'node:os';
import { crc32 } from 'node:zlib';
import {
  ConfigError,
  DataError,
  LocalStore,
  NotFoundError,
  openStore,
  Rng,
  ShapeError,
  type Store,
} from '@smolrate/core';
import { imageTokenCount, type SmolVLMRegressor } from '@smolrate/model';
import { backboneHash } from './backbone-hash.js';
import { DIRECT_ALIGN, EntryDecoder, entryChecksum, FEATURE_DTYPE_CODE, type FeatureDtype } from './feature-kernel.js';
import { toBf16, toF16 } from './grad-transport.js';
import { pageAlignedBuffer } from './wasm-kernel.js';

export type { FeatureDtype } from './feature-kernel.js';

export const FEATURE_FILE_MAGIC = 'SRFP';
export const FEATURE_FILE_VERSION = 1;
export const FEATURE_HEADER_BYTES = 112;
export const FEATURE_TABLE_RECORD_BYTES = 40;
export const FEATURE_DATA_ALIGN = 4096;
const HEADER_CRC_AT = 104;
const DTYPE_CODE: Record<FeatureDtype, number> = FEATURE_DTYPE_CODE;
const ELEMENT_BYTES: Record<FeatureDtype, number> = { f32: 4, bf16: 2, f16: 2 };
const HASH_PATTERN = /^[0-9a-f]{64}$/;
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
/** Longest range one read fetches (adjacent rows coalesced up to this, in whole entries). */
const RANGE_BYTES = 1 << 20;
/** Batch buffers in the decoder's memory (allocateOutput): the trainer's batches in flight (prefetch 2, the step's, the pool's spare) fit. */
const OUTPUT_AREAS = 6;
/**
 * Default ranges in flight per cache: 16, or the environment's SMOLRATE_READS_IN_FLIGHT. Local
 * asynchronous reads run on libuv's thread pool, whose default 4 threads would cap them at 4:
 * launch and the benchmarks start workers with UV_THREADPOOL_SIZE = this (unless set), so a disk
 * sees this many reads per rank (measured by bench-data on this machine's disk, 1 rank, blocks
 * of 16: 17.4 k samples/s with 4 in flight, 22.7 k with 16, 21.7 k with 32).
 */
export const FEATURE_READS_IN_FLIGHT = readsInFlight(process.env.SMOLRATE_READS_IN_FLIGHT);

function readsInFlight(v: string | undefined): number {
  if (v === undefined || v === '') return 16;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1 || n > 1024) throw new ConfigError(`SMOLRATE_READS_IN_FLIGHT must be an integer in [1, 1024], got ${JSON.stringify(v)}`);
  return n;
}

/** Where a sample's features are: shard position in the split's manifest list, row within it. */
export interface FeatureLocation {
  shard: number;
  row: number;
}

/** A shard as the cache needs it: its SHA-256 (the key) and row count (the entry count). */
export interface FeatureShard {
  sha256: string;
  rows: number;
}

/** Packed bytes of one image in a cache file: its entry plus its table record (header and alignment are per file). */
export function packedBytesPerImage(tokens: number, dim: number, dtype: FeatureDtype): number {
  return tokens * dim * ELEMENT_BYTES[dtype] + FEATURE_TABLE_RECORD_BYTES;
}

/** Offset of the first entry of a file of `count` entries. */
export function featureDataOffset(count: number): number {
  const tableEnd = FEATURE_HEADER_BYTES + FEATURE_TABLE_RECORD_BYTES * count;
  return Math.ceil(tableEnd / FEATURE_DATA_ALIGN) * FEATURE_DATA_ALIGN;
}

function checkHash(what: string, hash: string): void {
  if (typeof hash !== 'string' || !HASH_PATTERN.test(hash)) throw new DataError(`feature cache: ${what} must be 64 lowercase hex digits, got ${JSON.stringify(hash)}`);
}

/** The geometry every file of a cache shares. */
export interface FeatureGeometry {
  backboneHash: string;
  dtype: FeatureDtype;
  tokens: number;
  dim: number;
}

/** What FeatureCache.verify found. */
export type FeatureFileStatus = { state: 'good' } | { state: 'missing' } | { state: 'bad'; reason: string };

/** What a reader keeps of a checked file: 4 bytes per entry (its checksum) and a few numbers. */
export interface FeatureFileHeader {
  count: number;
  entryBytes: number;
  dataOffset: number;
  /** Checksum of each entry (feature-kernel.ts). */
  sums: Uint32Array;
}

/**
 * Builds one packed file in memory, entry by entry (any order); `finish` fills in the header and
 * table. Memory: the file itself (count · entryBytes), never a float32 copy of the shard.
 */
export class FeatureFileWriter {
  private readonly bytes: Buffer;
  private readonly entryBytes: number;
  private readonly dataOffset: number;
  private readonly filled: Uint8Array;

  constructor(
    private readonly geometry: FeatureGeometry,
    private readonly shardSha256: string,
    readonly count: number,
  ) {
    checkHash('shard sha256', shardSha256);
    this.entryBytes = geometry.tokens * geometry.dim * ELEMENT_BYTES[geometry.dtype];
    this.dataOffset = featureDataOffset(count);
    this.bytes = Buffer.alloc(this.dataOffset + count * this.entryBytes); // not pooled: offset 0, aligned views
    this.filled = new Uint8Array(count);
  }

  /** Entry `row`: the image's SHA-256 and its features [N·D] float32. */
  set(row: number, imageSha256: string, features: Float32Array): void {
    const { tokens, dim, dtype } = this.geometry;
    if (!Number.isSafeInteger(row) || row < 0 || row >= this.count) throw new RangeError(`feature file: row ${row} is outside [0, ${this.count})`);
    checkHash('image sha256', imageSha256);
    if (!(features instanceof Float32Array) || features.length !== tokens * dim) {
      throw new ShapeError(`feature file: expected a Float32Array of ${tokens}×${dim} = ${tokens * dim} values, got ${features instanceof Float32Array ? features.length : typeof features}`);
    }
    const at = this.dataOffset + row * this.entryBytes;
    if (dtype !== 'f32') {
      const words = (dtype === 'bf16' ? toBf16 : toF16)(features, new Uint16Array(features.length));
      if (LITTLE_ENDIAN) Buffer.from(words.buffer).copy(this.bytes, at);
      else words.forEach((w, i) => this.bytes.writeUInt16LE(w, at + 2 * i));
    } else if (LITTLE_ENDIAN) {
      Buffer.from(features.buffer, features.byteOffset, features.byteLength).copy(this.bytes, at);
    } else {
      features.forEach((v, i) => this.bytes.writeFloatLE(v, at + 4 * i));
    }
    const rec = FEATURE_HEADER_BYTES + row * FEATURE_TABLE_RECORD_BYTES;
    this.bytes.write(imageSha256, rec, 'hex');
    this.bytes.writeUInt32LE(entryChecksum(this.bytes.subarray(at, at + this.entryBytes)), rec + 32);
    this.filled[row] = 1;
  }

  /** The complete file. Every row must have been set. */
  finish(): Buffer {
    const missing = this.filled.indexOf(0);
    if (missing >= 0) throw new DataError(`feature file of shard ${this.shardSha256}: row ${missing} has no features`);
    const b = this.bytes;
    const { backboneHash: backbone, dtype, tokens, dim } = this.geometry;
    b.write(FEATURE_FILE_MAGIC, 0, 'latin1');
    b.writeUInt32LE(FEATURE_FILE_VERSION, 4);
    b.writeUInt32LE(DTYPE_CODE[dtype], 8);
    b.writeUInt32LE(tokens, 12);
    b.writeUInt32LE(dim, 16);
    b.writeUInt32LE(this.count, 20);
    b.writeUInt32LE(this.entryBytes, 24);
    b.writeBigUInt64LE(BigInt(this.dataOffset), 32);
    b.write(backbone, 40, 'hex');
    b.write(this.shardSha256, 72, 'hex');
    b.writeUInt32LE(headerCrc(b.subarray(0, HEADER_CRC_AT), b.subarray(FEATURE_HEADER_BYTES, FEATURE_HEADER_BYTES + this.count * FEATURE_TABLE_RECORD_BYTES)), HEADER_CRC_AT);
    return b;
  }
}

function headerCrc(header: Uint8Array, table: Uint8Array): number {
  return crc32(table, crc32(header));
}

/** Parses and checks the fixed header; `uri` names the file in errors. Returns the table length to read next. */
function parseHeader(h: Buffer, geometry: FeatureGeometry, shard: FeatureShard, uri: string): { count: number; entryBytes: number; dataOffset: number } {
  const bad = (msg: string) => new DataError(`feature file ${uri}: ${msg}`);
  if (h.length < FEATURE_HEADER_BYTES) throw bad(`${h.length} bytes, shorter than the ${FEATURE_HEADER_BYTES}-byte header (truncated)`);
  const magic = h.toString('latin1', 0, 4);
  if (magic !== FEATURE_FILE_MAGIC) throw bad(`bad magic ${JSON.stringify(magic)} (expected ${FEATURE_FILE_MAGIC})`);
  const version = h.readUInt32LE(4);
  if (version !== FEATURE_FILE_VERSION) throw bad(`format version ${version}, expected ${FEATURE_FILE_VERSION}`);
  const code = h.readUInt32LE(8);
  if (code !== DTYPE_CODE[geometry.dtype]) throw bad(`dtype code ${code}, expected ${DTYPE_CODE[geometry.dtype]} (${geometry.dtype})`);
  const [tokens, dim, count, entryBytes] = [12, 16, 20, 24].map((o) => h.readUInt32LE(o));
  if (tokens !== geometry.tokens || dim !== geometry.dim) throw bad(`shape [${tokens}, ${dim}], expected [${geometry.tokens}, ${geometry.dim}]`);
  if (count !== shard.rows) throw bad(`${count} entries, expected ${shard.rows} (the shard's rows)`);
  const wantEntry = tokens * dim * ELEMENT_BYTES[geometry.dtype];
  if (entryBytes !== wantEntry) throw bad(`entryBytes ${entryBytes}, expected ${wantEntry}`);
  const dataOffset = Number(h.readBigUInt64LE(32));
  if (dataOffset !== featureDataOffset(count)) throw bad(`dataOffset ${dataOffset}, expected ${featureDataOffset(count)}`);
  const backbone = h.toString('hex', 40, 72);
  if (backbone !== geometry.backboneHash) throw bad(`backbone hash ${backbone}, expected ${geometry.backboneHash}`);
  const sha = h.toString('hex', 72, 104);
  if (sha !== shard.sha256) throw bad(`shard ${sha}, expected ${shard.sha256}`);
  return { count, entryBytes, dataOffset };
}

/** Checks header and table (and the file size) and returns them. */
function parseHeaderAndTable(head: Buffer, table: Buffer, fileSize: number, geometry: FeatureGeometry, shard: FeatureShard, uri: string): FeatureFileHeader {
  const { count, entryBytes, dataOffset } = parseHeader(head, geometry, shard, uri);
  const expectedSize = dataOffset + count * entryBytes;
  if (fileSize !== expectedSize) throw new DataError(`feature file ${uri}: ${fileSize} bytes, expected ${expectedSize} (${fileSize < expectedSize ? 'truncated' : 'trailing bytes'})`);
  if (table.length !== count * FEATURE_TABLE_RECORD_BYTES) throw new DataError(`feature file ${uri}: table of ${table.length} bytes, expected ${count * FEATURE_TABLE_RECORD_BYTES} (truncated)`);
  const stored = head.readUInt32LE(HEADER_CRC_AT);
  const actual = headerCrc(head.subarray(0, HEADER_CRC_AT), table);
  if (stored !== actual) throw new DataError(`feature file ${uri}: header/table crc32 ${actual.toString(16)}, stored ${stored.toString(16)} (corrupted)`);
  const sums = new Uint32Array(count);
  for (let j = 0; j < count; j++) sums[j] = table.readUInt32LE(j * FEATURE_TABLE_RECORD_BYTES + 32);
  return { count, entryBytes, dataOffset, sums };
}

/**
 * Synchronous or asynchronous local reads. Reads start synchronous; each is timed, and when more
 * than a quarter of the last 32 took longer than a page-cache copy would (30 µs + 1 µs per
 * 4 KiB: they waited for the disk), the next 2,048 reads go through the thread pool, where up to
 * `concurrency` overlap, and then synchronous reads are tried again.
 */
export class ReadModePolicy {
  static readonly WINDOW = 32;
  static readonly ASYNC_READS = 2048;
  private slow = 0;
  private seen = 0;
  private asyncLeft = 0;

  /** Whether the next read should be synchronous. */
  sync(): boolean {
    if (this.asyncLeft > 0) {
      this.asyncLeft--;
      return false;
    }
    return true;
  }

  /** A synchronous read of `bytes` took `ms`. */
  record(ms: number, bytes: number): void {
    if (ms * 1000 > 30 + bytes / 4096) this.slow++;
    if (++this.seen < ReadModePolicy.WINDOW) return;
    if (this.slow * 4 > this.seen) this.asyncLeft = ReadModePolicy.ASYNC_READS;
    this.slow = 0;
    this.seen = 0;
  }
}

/** Bounds work in flight (ranged reads). */
export class Limiter {
  private active = 0;
  private readonly queue: Array<() => void> = [];
  constructor(private readonly max: number) {}
  async run<T>(fn: () => Promise<T>): Promise<T> {
    // A finishing run hands its permit straight to the next waiter (never freed in between, so a
    // newcomer cannot slip in while the waiter wakes: at most `max` run at once, always).
    if (this.active >= this.max) await new Promise<void>((resolve) => this.queue.push(resolve));
    else this.active++;
    try {
      return await fn();
    } finally {
      const next = this.queue.shift();
      if (next !== undefined) next();
      else this.active--;
    }
  }
}

export interface FeatureCacheOptions {
  /** Local directory of the cache (opened as a local store). Exactly one of dir / store. */
  dir?: string;
  /** Any store (local or S3); files go under its root. Exactly one of dir / store. */
  store?: Store;
  /** backboneHash(model): 64 lowercase hex digits. */
  backboneHash: string;
  /** Image tokens per image, N (imageTokenCount(config); 36 at 384²). */
  tokens: number;
  /** Feature width, D (text hidden size; 576 for the 256M model). */
  dim: number;
  /** Element type of the stored features. Default 'f32' (bit-exact; bf16 and f16 halve the bytes), as the trainer's featureDtype. */
  dtype?: FeatureDtype;
  /** Byte ranges in flight at once over all reads of this cache. Default FEATURE_READS_IN_FLIGHT (16). */
  concurrency?: number;
  /** Local files kept open between reads. Default defaultMaxOpenFiles(): half the descriptor limit. */
  maxOpenFiles?: number;
  /**
   * Local entry reads with O_DIRECT (see the file comment): 'auto' (default) when the splits read
   * so far hold more feature bytes than half the machine's memory, 'on' always, 'off' never.
   */
  directIo?: DirectIoMode;
}

export type DirectIoMode = 'auto' | 'on' | 'off';
const DIRECT_IO_MODES: readonly DirectIoMode[] = ['auto', 'on', 'off'];

/**
 * Idle local files kept open by default: half the process's descriptor limit (Linux
 * /proc/self/limits; 64 elsewhere), at least 64. A global shuffle touches every feature file of the
 * split (8,200 at the paper's scale), so a small budget reopens a file for nearly every read, which
 * costs more than the read itself (docs/training.md "The data path at scale").
 */
export function defaultMaxOpenFiles(limitsText?: string): number {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/limits', 'utf8');
    } catch {
      return 64;
    }
  }
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(text);
  if (m === null) return 64;
  const soft = m[1] === 'unlimited' ? 1 << 20 : Number(m[1]);
  return Math.max(64, Math.floor(soft / 2));
}

export class FeatureCache {
  readonly store: Store;
  readonly backboneHash: string;
  readonly tokens: number;
  readonly dim: number;
  readonly dtype: FeatureDtype;
  private readonly limiter: Limiter;
  private readonly headers = new Map<string, Promise<FeatureFileHeader>>();
  private readonly handles = new Map<string, { fh: Promise<FileHandle>; users: number; direct: boolean }>();
  private readonly directIo: DirectIoMode;
  /** Feature bytes of the largest split a reader was made for (directIo 'auto'). */
  private splitBytes = 0;
  /** Why direct reads are off after all (the file system refused them), or null. */
  private directRefused: string | null = null;
  /** Entry ranges read so far, by how: what a benchmark reports. */
  readonly rangesRead = { direct: 0, buffered: 0, remote: 0 };
  private readonly maxOpenFiles: number;
  private readonly concurrency: number;
  private readonly readMode = new ReadModePolicy();
  private decoder: EntryDecoder | null = null;
  private freeSlots: number[] = [];

  constructor(options: FeatureCacheOptions) {
    if ((options.dir === undefined) === (options.store === undefined)) throw new ConfigError('feature cache: give exactly one of dir and store');
    checkHash('backboneHash', options.backboneHash);
    for (const k of ['tokens', 'dim'] as const) {
      const v = options[k];
      if (!Number.isSafeInteger(v) || v < 1 || v > 0xffffffff) throw new ConfigError(`feature cache: ${k} must be a positive integer, got ${String(v)}`);
    }
    const dtype = options.dtype ?? 'f32';
    if (!(dtype in DTYPE_CODE)) throw new ConfigError(`feature cache: dtype must be bf16, f16 or f32, got ${JSON.stringify(dtype)}`);
    const concurrency = options.concurrency ?? FEATURE_READS_IN_FLIGHT;
    if (!Number.isSafeInteger(concurrency) || concurrency < 1) throw new ConfigError(`feature cache: concurrency must be a positive integer, got ${concurrency}`);
    this.store = options.store ?? openStore(options.dir!);
    this.backboneHash = options.backboneHash;
    this.tokens = options.tokens;
    this.dim = options.dim;
    this.dtype = dtype;
    this.limiter = new Limiter(concurrency);
    this.concurrency = concurrency;
    this.maxOpenFiles = options.maxOpenFiles ?? defaultMaxOpenFiles();
    const directIo = options.directIo ?? 'auto';
    if (!DIRECT_IO_MODES.includes(directIo)) throw new ConfigError(`feature cache: directIo must be auto, on or off, got ${JSON.stringify(directIo)}`);
    this.directIo = directIo;
  }

  /** The cache of `model`'s features: backbone hash and entry shape [N, D] taken from the model. */
  static async forModel(model: SmolVLMRegressor, location: Pick<FeatureCacheOptions, 'dir' | 'store' | 'dtype' | 'concurrency' | 'maxOpenFiles' | 'directIo'>): Promise<FeatureCache> {
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

  /** Bytes per entry in a file. */
  get entryBytes(): number {
    return this.entrySize * ELEMENT_BYTES[this.dtype];
  }

  get geometry(): FeatureGeometry {
    return { backboneHash: this.backboneHash, dtype: this.dtype, tokens: this.tokens, dim: this.dim };
  }

  /** Store key of a shard's feature file. */
  keyOf(shardSha256: string): string {
    checkHash('shard sha256', shardSha256);
    return `${this.backboneHash}/${shardSha256}.${this.dtype}.srfp`;
  }

  /** A writer for a shard's file; publish its result with `put`. */
  writer(shard: FeatureShard): FeatureFileWriter {
    return new FeatureFileWriter(this.geometry, shard.sha256, shard.rows);
  }

  /** Publishes a shard's file atomically, then its SHA-256 sidecar. */
  async put(shardSha256: string, file: Buffer): Promise<void> {
    const key = this.keyOf(shardSha256);
    this.forget(key);
    await this.store.put(key, file, { contentType: 'application/octet-stream' });
    await this.store.put(`${key}.sha256`, `${createHash('sha256').update(file).digest('hex')}\n`, { contentType: 'text/plain' });
  }

  /**
   * Full check of a shard's file: header, table, size, every entry's checksum and the sidecar
   * SHA-256 (one read of the whole file). A bad file's reason names it.
   */
  async verify(shard: FeatureShard): Promise<FeatureFileStatus> {
    const key = this.keyOf(shard.sha256);
    const uri = this.store.uriOf(key);
    let bytes: Buffer;
    let sidecar: string;
    try {
      bytes = await this.store.get(key);
    } catch (e) {
      if (e instanceof NotFoundError) return { state: 'missing' };
      throw e;
    }
    try {
      sidecar = (await this.store.get(`${key}.sha256`)).toString('utf8').trim();
    } catch (e) {
      if (e instanceof NotFoundError) return { state: 'bad', reason: `feature file ${uri}: no .sha256 sidecar (an interrupted write)` };
      throw e;
    }
    try {
      const head = bytes.subarray(0, FEATURE_HEADER_BYTES);
      const { count } = parseHeader(head, this.geometry, shard, uri);
      const header = parseHeaderAndTable(head, bytes.subarray(FEATURE_HEADER_BYTES, FEATURE_HEADER_BYTES + count * FEATURE_TABLE_RECORD_BYTES), bytes.length, this.geometry, shard, uri);
      for (let j = 0; j < count; j++) {
        const sum = entryChecksum(bytes.subarray(header.dataOffset + j * header.entryBytes, header.dataOffset + (j + 1) * header.entryBytes));
        if (sum !== header.sums[j]) throw this.corrupted(key, j, sum, header);
      }
    } catch (e) {
      if (e instanceof DataError) return { state: 'bad', reason: e.message };
      throw e;
    }
    const sha = createHash('sha256').update(bytes).digest('hex');
    if (sha !== sidecar) return { state: 'bad', reason: `feature file ${uri}: SHA-256 ${sha}, the sidecar says ${sidecar}` };
    return { state: 'good' };
  }

  /** The checked header and table of a shard's file (read once per cache instance). */
  header(shard: FeatureShard): Promise<FeatureFileHeader> {
    const key = this.keyOf(shard.sha256);
    let pending = this.headers.get(key);
    if (pending === undefined) {
      pending = this.readHeader(key, shard);
      pending.catch(() => this.headers.delete(key)); // a failed read is retried next time
      this.headers.set(key, pending);
    }
    return pending;
  }

  /**
   * The features of `locations` (rows of `shards`), [B·N·D] float32, row b at b·N·D. Reads only
   * those entries (adjacent rows coalesced into one range of at most a slot), each into a slot of
   * the decoder's memory, then checks and decodes each entry in one pass (feature-kernel.ts).
   * `into`, when given, receives them (B·N·D values; a reused buffer saves the page faults of a
   * fresh one, which cost more than the decode).
   */
  async read(shards: readonly FeatureShard[], locations: readonly FeatureLocation[], into?: Float32Array): Promise<Float32Array> {
    const entry = this.entrySize;
    if (into !== undefined && into.length !== locations.length * entry) throw new RangeError(`feature cache: the output holds ${into.length} values, ${locations.length} entries need ${locations.length * entry}`);
    const out = into ?? new Float32Array(locations.length * entry);
    // Sort the batch by (shard, row): runs of adjacent rows become one range.
    const order = Array.from(locations, (_, b) => b);
    for (const { shard, row } of locations) {
      if (shards[shard] === undefined) throw new RangeError(`feature cache: shard ${shard} is outside [0, ${shards.length})`);
      if (!Number.isSafeInteger(row) || row < 0 || row >= shards[shard].rows) throw new RangeError(`feature cache: row ${row} of shard ${shard} is outside [0, ${shards[shard].rows})`);
    }
    order.sort((x, y) => locations[x].shard - locations[y].shard || locations[x].row - locations[y].row);
    const decoder = this.entryDecoder();
    const maxRun = Math.max(1, Math.floor(decoder.slotBytes / this.entryBytes));
    const work: Promise<void>[] = [];
    for (let i = 0; i < order.length; ) {
      const { shard: s, row: first } = locations[order[i]];
      // [i, k): the batch slots of rows first … first + n − 1 of shard s (repeats share a row).
      let k = i + 1;
      let n = 1;
      while (k < order.length && locations[order[k]].shard === s) {
        const r = locations[order[k]].row;
        if (r === first + n && n < maxRun) n++;
        else if (r !== first + n - 1) break;
        k++;
      }
      const slots = order.slice(i, k);
      work.push(this.readRun(shards[s], first, n, slots, locations, out));
      i = k;
    }
    await Promise.all(work);
    return out;
  }

  /** Rows first … first + n − 1 of a shard's file into batch slots `slots` of `out`. */
  private async readRun(shard: FeatureShard, first: number, n: number, slots: number[], locations: readonly FeatureLocation[], out: Float32Array): Promise<void> {
    const h = await this.header(shard);
    const key = this.keyOf(shard.sha256);
    const entry = this.entrySize;
    const decoder = this.entryDecoder();
    await this.limiter.run(async () => {
      const slot = this.freeSlots.pop(); // the limiter admits at most `concurrency` = slots
      if (slot === undefined) throw new Error('feature cache: no free read slot (more reads in flight than the limiter allows)');
      try {
        const into = decoder.slot(slot);
        const got = await this.readRange(key, h.dataOffset + first * h.entryBytes, n * h.entryBytes, into);
        const lead = got.byteOffset - into.byteOffset; // a direct read starts at the aligned offset below
        let prev = -1; // the batch slot last decoded into (repeats of a row are adjacent)
        for (const b of slots) {
          const target = out.subarray(b * entry, (b + 1) * entry);
          if (prev >= 0 && locations[prev].row === locations[b].row) {
            target.set(out.subarray(prev * entry, (prev + 1) * entry));
            continue;
          }
          const row = locations[b].row;
          const sum = decoder.decode(slot, lead + (row - first) * h.entryBytes, h.entryBytes, this.dtype, target);
          if (sum !== h.sums[row]) throw this.corrupted(key, row, sum, h);
          prev = b;
        }
      } finally {
        this.freeSlots.push(slot);
      }
    });
  }

  /** The features of one split: locations are (shard position in `shards`, row). */
  reader(shards: readonly FeatureShard[]): FeatureReader {
    this.splitBytes = Math.max(this.splitBytes, shards.reduce((sum, s) => sum + s.rows, 0) * this.entryBytes);
    return new FeatureReader(this, shards);
  }

  /** Whether local entry reads are direct now (directIo, the splits' size, what the file system allows). */
  get readsDirect(): boolean {
    if (!(this.store instanceof LocalStore) || this.directRefused !== null || fsConstants.O_DIRECT === undefined) return false;
    return this.directIo === 'on' || (this.directIo === 'auto' && this.splitBytes > totalmem() / 2);
  }

  /** Closes the file handles kept for local reads (the cache stays usable: they reopen). */
  async close(): Promise<void> {
    const handles = [...this.handles.values()];
    this.handles.clear();
    await Promise.all(handles.map(async (h) => (await h.fh.catch(() => null))?.close()));
  }

  private corrupted(key: string, row: number, sum: number, h: FeatureFileHeader): DataError {
    return new DataError(`feature file ${this.store.uriOf(key)}: entry ${row} has checksum ${sum.toString(16)}, the table says ${h.sums[row].toString(16)} (corrupted)`);
  }

  /**
   * A buffer for `read`'s output of `values` float32 values (B·N·D for a batch of B): one of
   * OUTPUT_AREAS areas of the decoder's memory, which entries are decoded into without a copy,
   * while they last and for the batch size of the first call; else a plain array. Keep and reuse
   * it (batches.ts pools them): an area is handed out once.
   */
  allocateOutput(values: number): Float32Array {
    if (!Number.isSafeInteger(values) || values < 1 || values % this.entrySize !== 0) throw new RangeError(`feature cache: an output holds whole entries of ${this.entrySize} values, not ${values}`);
    return this.entryDecoder(values).output(values) ?? new Float32Array(values);
  }

  /**
   * The reads' decoder: one slot per range in flight, each a whole number of entries of up to
   * RANGE_BYTES, and OUTPUT_AREAS output areas of `outputValues` (the first allocateOutput's size;
   * none when a read comes first).
   */
  private entryDecoder(outputValues = 0): EntryDecoder {
    if (this.decoder === null) {
      const slotBytes = Math.max(1, Math.floor(RANGE_BYTES / this.entryBytes)) * this.entryBytes;
      const outputs = outputValues > 0 ? OUTPUT_AREAS : 0;
      this.decoder = new EntryDecoder({ slots: this.concurrency, slotBytes, entryValues: this.entrySize, outputs, outputValues });
      this.freeSlots = Array.from({ length: this.concurrency }, (_, k) => k);
    }
    return this.decoder;
  }

  private forget(key: string): void {
    this.headers.delete(key);
    const h = this.handles.get(key);
    if (h !== undefined && h.users === 0) {
      this.handles.delete(key);
      void h.fh.then((f) => f.close()).catch(() => undefined);
    }
  }

  private async readHeader(key: string, shard: FeatureShard): Promise<FeatureFileHeader> {
    const uri = this.store.uriOf(key);
    let size: number;
    try {
      size = await this.limiter.run(() => this.fileSize(key));
    } catch (e) {
      if (e instanceof NotFoundError) throw new DataError(`feature file ${uri} is missing: run precomputeFeatures first`, { cause: e });
      throw e;
    }
    if (size < FEATURE_HEADER_BYTES) throw new DataError(`feature file ${uri}: ${size} bytes, shorter than the ${FEATURE_HEADER_BYTES}-byte header (truncated)`);
    const head = await this.limiter.run(() => this.readRange(key, 0, FEATURE_HEADER_BYTES));
    const { count } = parseHeader(head, this.geometry, shard, uri);
    const tableBytes = count * FEATURE_TABLE_RECORD_BYTES;
    const expected = featureDataOffset(count) + count * this.entryBytes;
    if (size !== expected) throw new DataError(`feature file ${uri}: ${size} bytes, expected ${expected} (${size < expected ? 'truncated' : 'trailing bytes'})`);
    const table = tableBytes > 0 ? await this.limiter.run(() => this.readRange(key, FEATURE_HEADER_BYTES, tableBytes)) : Buffer.alloc(0);
    return parseHeaderAndTable(head, table, size, this.geometry, shard, uri);
  }

  private async fileSize(key: string): Promise<number> {
    if (this.store instanceof LocalStore) return this.withHandle(key, async (fh) => (await fh.stat()).size);
    return this.store.size(key);
  }

  /**
   * Runs `fn` on the open handle of a local file. Handles stay open between reads, at most
   * maxOpenFiles idle ones (least recently used closed first), so a split of thousands of shards
   * does not exhaust file descriptors.
   */
  private async withHandle<T>(key: string, fn: (fh: FileHandle, direct: boolean) => Promise<T>): Promise<T> {
    let h = this.handles.get(key);
    if (h === undefined) {
      const store = this.store as LocalStore;
      const path = store.pathOf(key);
      const record = { fh: Promise.resolve(null as unknown as FileHandle), users: 0, direct: this.readsDirect };
      const opening = openForReading(path, record.direct).then((o) => {
        if (record.direct && !o.direct) this.refuseDirect(`${path}: ${o.refused}`);
        record.direct = o.direct;
        return o.fh;
      });
      record.fh = opening.catch((e: NodeJS.ErrnoException) => {
        this.handles.delete(key);
        throw e.code === 'ENOENT' ? new NotFoundError(store.uriOf(key), { cause: e }) : e;
      });
      h = record;
    }
    this.handles.delete(key);
    this.handles.set(key, h); // most recently used last
    h.users++;
    try {
      return await fn(await h.fh, h.direct);
    } finally {
      h.users--;
      this.closeIdle();
    }
  }

  private closeIdle(): void {
    for (const [key, h] of this.handles) {
      if (this.handles.size <= this.maxOpenFiles) break;
      if (h.users > 0) continue;
      this.handles.delete(key);
      void h.fh.then((f) => f.close()).catch(() => undefined);
    }
  }

  /**
   * Exactly `length` bytes at `position` of a file (positional read locally, ranged GET otherwise),
   * into `into` (a decoder slot) when given, else into a new buffer. Returns the view holding them:
   * a direct read puts them `position mod 4096` bytes into the slot.
   *
   * Local reads are `pread`s on the kept-open handle, synchronous or through the thread pool as
   * ReadModePolicy decides: from the page cache a synchronous read is cheapest (for a 40 KB entry
   * the pool's round trip costs more main-thread time than the copy: ~18 µs against ~10 µs, by
   * bench-data), while reads that wait for the disk must overlap (`concurrency` in flight). Entry
   * reads on a direct handle are `readDirect`.
   */
  private async readRange(key: string, position: number, length: number, into?: Buffer): Promise<Buffer> {
    if (this.store instanceof LocalStore) {
      const path = this.store.pathOf(key);
      return this.withHandle(key, async (kept, isDirect) => {
        if (isDirect && into !== undefined && this.directRefused === null) {
          const got = await this.readDirect(kept, key, position, length, into);
          if (got !== null) {
            this.rangesRead.direct++;
            return got;
          }
        }
        if (into !== undefined) this.rangesRead.buffered++;
        const buf = into?.subarray(0, length) ?? Buffer.allocUnsafeSlow(length); // every byte is read or the length check fails
        // A direct handle takes only aligned reads into aligned memory: other reads (headers, tables) open the file buffered.
        const fh = isDirect ? await open(path, 'r') : kept;
        try {
          return this.checkLength(key, position, length, await this.readBuffered(fh, buf, position, length), buf);
        } finally {
          if (fh !== kept) await fh.close();
        }
      });
    }
    if (into !== undefined) this.rangesRead.remote++;
    const buf = into?.subarray(0, length) ?? Buffer.allocUnsafeSlow(length);
    let got = 0;
    for await (const chunk of await this.store.createReadStream(key, { start: position, end: position + length - 1 })) {
      const c = chunk as Buffer;
      if (got + c.length > length) {
        got += c.length;
        break;
      }
      c.copy(buf, got);
      got += c.length;
    }
    return this.checkLength(key, position, length, got, buf);
  }

  private checkLength(key: string, position: number, length: number, got: number, buf: Buffer): Buffer {
    if (got !== length) throw new DataError(`feature file ${this.store.uriOf(key)}: ${got} bytes at offset ${position}, expected ${length} (${got < length ? 'truncated' : 'more than asked'})`);
    return buf;
  }

  /** `length` bytes at `position` of a buffered handle into `buf`, synchronously or not as ReadModePolicy says; returns the bytes read. */
  private async readBuffered(fh: FileHandle, buf: Buffer, position: number, length: number): Promise<number> {
    let n = 0;
    const sync = this.readMode.sync();
    const t0 = sync ? performance.now() : 0;
    while (n < length) {
      const bytesRead = sync ? readSync(fh.fd, buf, n, length - n, position + n) : (await fh.read(buf, n, length - n, position + n)).bytesRead;
      if (bytesRead === 0) break;
      n += bytesRead;
    }
    if (sync) this.readMode.record(performance.now() - t0, length);
    return n;
  }

  /**
   * A direct read: the 4096-aligned superset of [position, position + length) into the aligned slot
   * `into` (always through the thread pool: a direct read always waits for the disk). Returns the
   * view of `into` holding the asked bytes, or null when the file system refuses direct reads
   * (EINVAL), after which every read of this cache is buffered.
   */
  private async readDirect(fh: FileHandle, key: string, position: number, length: number, into: Buffer): Promise<Buffer | null> {
    const { start, span } = alignedRange(position, length);
    const lead = position - start;
    if (span > into.length) throw new RangeError(`feature cache: a direct read of ${span} bytes does not fit a ${into.length}-byte slot`);
    let n = 0;
    try {
      while (n < lead + length) {
        const { bytesRead } = await fh.read(into, n, span - n, start + n);
        if (bytesRead === 0) break;
        n += bytesRead;
        if (n % DIRECT_ALIGN !== 0) break; // the end of the file: a further read would be unaligned
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EINVAL') throw e;
      this.refuseDirect(`${this.store.uriOf(key)}: ${(e as Error).message}`);
      return null;
    }
    return this.checkLength(key, position, length, Math.min(length, n - lead), into).subarray(lead, lead + length);
  }

  /** Direct reads are off from now on (kept handles reopen buffered as they are next used). */
  private refuseDirect(why: string): void {
    if (this.directRefused !== null) return;
    this.directRefused = why;
    for (const [key, h] of this.handles) if (h.direct) this.forget(key);
  }
}

/** A cache bound to a split's shard list (ShardDataset.shards), read by ShardDataset.locate. */
export class FeatureReader {
  constructor(
    readonly cache: FeatureCache,
    readonly shards: readonly FeatureShard[],
  ) {}

  get tokens(): number {
    return this.cache.tokens;
  }

  get dim(): number {
    return this.cache.dim;
  }

  /** [B·N·D] float32 features of the locations, row b at b·N·D (into `into` when given). */
  read(locations: readonly FeatureLocation[], into?: Float32Array): Promise<Float32Array> {
    return this.cache.read(this.shards, locations, into);
  }

  /** A reusable output buffer of `values` float32 values for `read` (FeatureCache.allocateOutput). */
  allocateOutput(values: number): Float32Array {
    return this.cache.allocateOutput(values);
  }
}

/** The 4096-aligned superset of [position, position + length): where a direct read starts and how much it asks for. */
function alignedRange(position: number, length: number): { start: number; span: number } {
  const start = Math.floor(position / DIRECT_ALIGN) * DIRECT_ALIGN;
  return { start, span: Math.ceil((position + length - start) / DIRECT_ALIGN) * DIRECT_ALIGN };
}

/**
 * Opens a local file for reading: with O_DIRECT when `direct` (and the platform has it), falling
 * back to a buffered handle when the file system refuses it (EINVAL, with the reason).
 */
async function openForReading(path: string, direct: boolean): Promise<{ fh: FileHandle; direct: boolean; refused?: string }> {
  if (!direct || fsConstants.O_DIRECT === undefined) return { fh: await open(path, 'r'), direct: false };
  try {
    return { fh: await open(path, fsConstants.O_RDONLY | fsConstants.O_DIRECT), direct: true };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EINVAL') throw e;
    return { fh: await open(path, 'r'), direct: false, refused: (e as Error).message };
  }
}

/** Read size of the raw sequential baseline on local files. */
const SEQUENTIAL_READ_BYTES = 4 << 20;

/**
 * Reads the cache files of `shards` whole, in order, discarding the bytes: the raw sequential read
 * rate of the same bytes the loader reads (the baseline of its samples/s). Local files are read in
 * consecutive 4 MiB positional reads, `inFlight` of them outstanding (default 4: a disk that
 * answers one request at a time at a high latency shows its rate only with a few queued), through
 * the page cache or, with `direct`, with O_DIRECT into page-aligned memory (falling back to
 * buffered where the file system refuses it).
 */
export async function readFeatureFilesSequentially(
  cache: FeatureCache,
  shards: readonly Pick<FeatureShard, 'sha256'>[],
  options: { direct?: boolean; inFlight?: number } = {},
): Promise<{ files: number; bytes: number; seconds: number; direct: boolean }> {
  const t0 = performance.now();
  let bytes = 0;
  const local = cache.store instanceof LocalStore ? cache.store : null;
  if (local === null) {
    for (const { sha256 } of shards) for await (const chunk of await cache.store.createReadStream(cache.keyOf(sha256))) bytes += (chunk as Buffer).length;
    return { files: shards.length, bytes, seconds: (performance.now() - t0) / 1000, direct: false };
  }
  const inFlight = options.inFlight ?? 4;
  const memory = pageAlignedBuffer(inFlight * SEQUENTIAL_READ_BYTES);
  let direct = options.direct === true;
  for (const { sha256 } of shards) {
    const opened = await openForReading(local.pathOf(cache.keyOf(sha256)), direct);
    const fh = opened.fh;
    direct = opened.direct;
    try {
      const size = (await fh.stat()).size;
      let next = 0;
      const lane = async (j: number) => {
        const buf = memory.subarray(j * SEQUENTIAL_READ_BYTES, (j + 1) * SEQUENTIAL_READ_BYTES);
        while (next < size) {
          const position = next;
          next += SEQUENTIAL_READ_BYTES;
          const want = Math.min(SEQUENTIAL_READ_BYTES, size - position);
          // A direct read asks for whole blocks; at the file's end it returns what is there.
          const { bytesRead } = await fh.read(buf, 0, direct ? alignedRange(position, want).span : want, position);
          bytes += bytesRead;
        }
      };
      await Promise.all(Array.from({ length: inFlight }, (_, j) => lane(j)));
    } finally {
      await fh.close();
    }
  }
  return { files: shards.length, bytes, seconds: (performance.now() - t0) / 1000, direct };
}

/**
 * Reads `count` entries of `shards` at random places (seeded), `inFlight` at a time, each as one
 * range of its own, discarding the bytes: what the disk gives a loader that reads one entry per
 * sample (the plain global shuffle), without the loader. Direct reads as `direct` asks (into
 * page-aligned memory, the 4096-aligned superset of each entry), else buffered; local stores only.
 */
export async function readEntriesAtRandom(
  cache: FeatureCache,
  shards: readonly FeatureShard[],
  options: { count: number; inFlight: number; direct: boolean; seed?: number },
): Promise<{ reads: number; bytes: number; seconds: number; direct: boolean }> {
  if (!(cache.store instanceof LocalStore)) throw new ConfigError('readEntriesAtRandom: a local cache only');
  const local = cache.store;
  const starts: number[] = []; // starts[k]: the first global row of shard k
  let rows = 0;
  for (const s of shards) {
    starts.push(rows);
    rows += s.rows;
  }
  const headers = await Promise.all(shards.map((s) => cache.header(s)));
  const entryBytes = cache.entryBytes;
  const span = Math.ceil((entryBytes + DIRECT_ALIGN) / DIRECT_ALIGN) * DIRECT_ALIGN;
  const memory = pageAlignedBuffer(options.inFlight * span);
  let direct = options.direct; // false once the file system refuses O_DIRECT
  const handles = new Map<number, Promise<{ fh: FileHandle; direct: boolean }>>();
  const handle = (k: number) => {
    let h = handles.get(k);
    if (h === undefined) {
      h = openForReading(local.pathOf(cache.keyOf(shards[k].sha256)), direct);
      void h.then((o) => (direct &&= o.direct)).catch(() => undefined);
      handles.set(k, h);
    }
    return h;
  };
  const rng = new Rng(options.seed ?? 1, 'random entry reads');
  let issued = 0;
  let bytes = 0;
  const t0 = performance.now();
  const lane = async (j: number) => {
    const buf = memory.subarray(j * span, (j + 1) * span);
    while (issued < options.count) {
      issued++;
      const i = Math.floor(rng.next() * rows);
      let k = 0; // the last shard starting at or before i (binary search)
      for (let hi = starts.length - 1; k < hi; ) {
        const mid = (k + hi + 1) >> 1;
        if (starts[mid] <= i) k = mid;
        else hi = mid - 1;
      }
      const position = headers[k].dataOffset + (i - starts[k]) * entryBytes;
      const { fh, direct: isDirect } = await handle(k);
      const aligned = alignedRange(position, entryBytes);
      const { bytesRead } = isDirect ? await fh.read(buf, 0, aligned.span, aligned.start) : await fh.read(buf, 0, entryBytes, position); // (not `bytes += await …`: that adds to the value before the await)
      bytes += bytesRead;
    }
  };
  try {
    await Promise.all(Array.from({ length: options.inFlight }, (_, j) => lane(j)));
  } finally {
    await Promise.all([...handles.values()].map(async (h) => (await h.catch(() => null))?.fh.close()));
  }
  return { reads: options.count, bytes, seconds: (performance.now() - t0) / 1000, direct };
}

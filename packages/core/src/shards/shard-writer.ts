/**
 * Writes one `smolrate-shards/1` Parquet shard: rows go to a local temp file (hashed as the
 * bytes are produced), then the finished file is published under its key with `store.putFile`
 * (atomic on every store), and the temp file is removed.
 *
 * Byte determinism: parquetjs-lite 0.8.7 writes no timestamp, no random value and a constant
 * `created_by` ("parquet.js"); key/value metadata holds only the format name. So the bytes are a
 * function of (rows, order, rowGroupSize) and of the library version — a golden hash test pins them.
 */
import { createHash, type Hash } from 'node:crypto';
import { mkdtemp, open, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import parquet from 'parquetjs-lite';
import { ConfigError, DataError, ShardIntegrityError, StorageError } from '../errors.js';
import type { Store } from '../storage/store.js';
import { SHARD_FORMAT, shardSchemaDefinition, validateShardRow, type ShardRow } from './schema.js';
import { shardKey, type ShardInfo } from './shard-info.js';

/** Key/value metadata entry naming the format inside each shard. */
export const SHARD_FORMAT_METADATA_KEY = 'smolrate.format';

/** Default rows per row group: ~256 × 60–100 KB JPEGs ≈ 15–25 MB, the reader's unit of memory. */
const DEFAULT_ROW_GROUP_SIZE = 256;

export interface ShardWriterOptions {
  /** Rows per Parquet row group; the reader holds one row group in memory. Default 256. */
  rowGroupSize?: number;
  /** Directory for the temporary local file. Default: `os.tmpdir()`. */
  tmpDir?: string;
}

async function writeFully(fh: FileHandle, buf: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesWritten } = await fh.write(buf, done, buf.length - done, position + done);
    done += bytesWritten;
  }
}

/**
 * Streaming writer for one shard. `append` rows (validated; DataError names the bad field), then
 * `finish()` to publish and get the manifest entry, or `abort()` to discard.
 */
export class ShardWriter {
  private readonly hash: Hash = createHash('sha256');
  private bytes = 0;
  private count = 0;
  private chain: Promise<void> = Promise.resolve();
  private ioError: unknown;
  private state: 'open' | 'finishing' | 'done' = 'open';
  private writer!: InstanceType<typeof parquet.ParquetWriter>;

  private constructor(
    private readonly store: Store,
    private readonly key: string,
    private readonly file: string,
    private readonly tmpDir: string,
    private readonly tmpPath: string,
    private readonly fh: FileHandle,
  ) {}

  /** Opens a writer for `file` (a key relative to the shard root `root`) in `store`. */
  static async open(store: Store, root: string, file: string, opts: ShardWriterOptions = {}): Promise<ShardWriter> {
    const key = shardKey(root, file);
    const rowGroupSize = opts.rowGroupSize ?? DEFAULT_ROW_GROUP_SIZE;
    if (!Number.isSafeInteger(rowGroupSize) || rowGroupSize < 1) {
      throw new ConfigError(`shard writer option rowGroupSize: expected a positive integer, got ${String(rowGroupSize)}`);
    }
    const base = opts.tmpDir ?? tmpdir();
    let tmpDir: string;
    try {
      tmpDir = await mkdtemp(join(base, 'smolrate-shard-'));
    } catch (e) {
      throw new StorageError(`cannot create a temp dir under ${base}`, base, { cause: e });
    }
    const tmpPath = join(tmpDir, 'shard.parquet');
    let fh: FileHandle | undefined;
    try {
      fh = await open(tmpPath, 'wx');
      // The writer goes around our own write/close functions so that every byte passes through
      // the hash in file order (parquetjs computes offsets synchronously, so calls arrive in
      // order) and write failures are recorded instead of becoming unhandled rejections
      // (parquetjs does not await the header write its constructor starts).
      const self = new ShardWriter(store, key, file, tmpDir, tmpPath, fh);
      const schema = new parquet.ParquetSchema(shardSchemaDefinition());
      const wopts = { rowGroupSize, useDataPageV2: false };
      const envelope = new parquet.ParquetEnvelopeWriter(schema, (buf) => self.enqueue(buf), () => self.chain, 0, wopts);
      self.writer = new parquet.ParquetWriter(schema, envelope, wopts);
      self.writer.setMetadata(SHARD_FORMAT_METADATA_KEY, SHARD_FORMAT);
      return self;
    } catch (e) {
      await fh?.close().catch(() => undefined);
      await rm(tmpDir, { recursive: true, force: true });
      throw new StorageError(`cannot open a shard temp file ${tmpPath}`, tmpPath, { cause: e });
    }
  }

  /** Rows appended so far. */
  get rows(): number {
    return this.count;
  }

  /** Full URI the shard will be published at. */
  get uri(): string {
    return this.store.uriOf(this.key);
  }

  private enqueue(buf: Buffer): Promise<void> {
    this.hash.update(buf);
    const position = this.bytes;
    this.bytes += buf.length;
    this.chain = this.chain
      .then(() => writeFully(this.fh, buf, position))
      .catch((e: unknown) => {
        this.ioError ??= e;
      });
    return this.chain;
  }

  /** Appends one row; throws DataError (naming the field) when the row is invalid. */
  async append(row: ShardRow): Promise<void> {
    if (this.state !== 'open') throw new DataError(`shard writer for ${this.uri} is already ${this.state}`);
    validateShardRow(row);
    try {
      await this.writer.appendRow({ ...row });
    } catch (e) {
      // parquetjs throws plain strings for shredding errors.
      throw new DataError(`shard ${this.uri}: cannot encode row ${JSON.stringify(row.parent_asin)}: ${String(e)}`, { cause: e });
    }
    this.count++;
    if (this.ioError !== undefined) {
      throw new StorageError(`writing shard temp file ${this.tmpPath} failed`, this.tmpPath, { cause: this.ioError });
    }
  }

  /** Completes the Parquet file, publishes it atomically and returns its manifest entry. */
  async finish(): Promise<ShardInfo> {
    if (this.state !== 'open') throw new DataError(`shard writer for ${this.uri} is already ${this.state}`);
    this.state = 'finishing';
    try {
      if (this.count === 0) throw new DataError(`shard ${this.uri}: refusing to write a shard with no rows`);
      await this.writer.close();
      await this.chain;
      if (this.ioError !== undefined) {
        throw new StorageError(`writing shard temp file ${this.tmpPath} failed`, this.tmpPath, { cause: this.ioError });
      }
      await this.fh.close();
      const sha256 = this.hash.digest('hex');
      const { size } = await this.store.putFile(this.key, this.tmpPath, { contentType: 'application/vnd.apache.parquet' });
      if (size !== this.bytes) {
        throw new ShardIntegrityError(this.uri, `published ${size} bytes but wrote ${this.bytes}`);
      }
      return { file: this.file, rows: this.count, bytes: this.bytes, sha256 };
    } finally {
      this.state = 'done';
      await this.cleanup();
    }
  }

  /** Discards the shard; nothing is published. Safe to call more than once. */
  async abort(): Promise<void> {
    if (this.state === 'done') return;
    this.state = 'done';
    await this.chain;
    await this.cleanup();
  }

  private async cleanup(): Promise<void> {
    await this.fh.close().catch(() => undefined);
    await rm(this.tmpDir, { recursive: true, force: true });
  }
}

/**
 * Writes `rows` (in order) as one shard `file` under `root` in `store` and returns its manifest
 * entry. The same rows in the same order with the same options give byte-identical files.
 */
export async function writeShard(
  store: Store,
  root: string,
  file: string,
  rows: Iterable<ShardRow> | AsyncIterable<ShardRow>,
  opts: ShardWriterOptions = {},
): Promise<ShardInfo> {
  const writer = await ShardWriter.open(store, root, file, opts);
  try {
    for await (const row of rows) await writer.append(row);
  } catch (e) {
    await writer.abort();
    throw e;
  }
  return writer.finish();
}

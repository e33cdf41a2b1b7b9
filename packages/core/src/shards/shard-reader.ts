/**
 * Reads a `smolrate-shards/1` shard listed in a manifest. Integrity comes first: the byte size
 * (from the store, before any download) and the SHA-256 of the exact bytes about to be decoded
 * are checked against the manifest entry BEFORE the Parquet decoder sees them (MosaicML
 * Streaming / docs/reference/optimizer.md: "shard hashes verified after download"). Then the footer is checked
 * (format, schema, row counts) and rows are decoded one row group at a time; every row is
 * validated before it is yielded, so a consumer never receives a garbage row.
 *
 * Local stores (`file://`) are read in place; other stores are downloaded to a temp file first
 * (`store.getFile`), which is removed when iteration ends (also on `break` or error).
 */
import { createHash } from 'node:crypto';
import { mkdtemp, open, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import parquet from 'parquetjs-lite';
import { DataError, ShardIntegrityError } from '../errors.js';
import type { Store } from '../storage/store.js';
import { SHARD_FORMAT, shardRowProblems, shardSchemaDefinition, type ShardRow } from './schema.js';
import { shardInfoProblems, shardKey, type ShardInfo } from './shard-info.js';
import { SHARD_FORMAT_METADATA_KEY } from './shard-writer.js';

export interface ShardReadOptions {
  /** Directory for the downloaded copy of a non-local shard. Default: `os.tmpdir()`. */
  tmpDir?: string;
}

/** A shard file opened and verified against its manifest entry. */
interface VerifiedShard {
  uri: string;
  fh: FileHandle;
  size: number;
  /** Closes the file and removes any downloaded copy. */
  release(): Promise<void>;
}

const HASH_CHUNK = 1 << 20;

async function readFully(fh: FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done);
    if (bytesRead === 0) throw new Error(`unexpected end of file at byte ${position + done}`);
    done += bytesRead;
  }
  return buf;
}

async function sha256OfHandle(fh: FileHandle, size: number): Promise<string> {
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(Math.min(HASH_CHUNK, Math.max(size, 1)));
  let position = 0;
  while (position < size) {
    const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - position), position);
    if (bytesRead === 0) break;
    hash.update(buf.subarray(0, bytesRead));
    position += bytesRead;
  }
  return hash.digest('hex');
}

function sizeMismatch(uri: string, actual: number, expected: number): ShardIntegrityError {
  const what = actual < expected ? ' (truncated)' : '';
  return new ShardIntegrityError(uri, `size mismatch${what}: expected ${expected} bytes (manifest), actual ${actual} bytes`);
}

/** Opens the shard bytes (in place or downloaded) and checks size and SHA-256. */
async function openVerified(store: Store, root: string, info: ShardInfo, opts: ShardReadOptions): Promise<VerifiedShard> {
  const problems = shardInfoProblems(info, 'shard entry');
  if (problems.length > 0) throw new DataError(`invalid manifest shard entry: ${problems.join('; ')}`);
  const key = shardKey(root, info.file);
  const uri = store.uriOf(key);

  // Cheap check first (a HEAD on S3): a wrong-size object is never downloaded.
  const listed = await store.size(key);
  if (listed !== info.bytes) throw sizeMismatch(uri, listed, info.bytes);

  let tmpDir: string | undefined;
  let fh: FileHandle | undefined;
  const release = async (): Promise<void> => {
    await fh?.close().catch(() => undefined);
    if (tmpDir !== undefined) await rm(tmpDir, { recursive: true, force: true });
  };
  try {
    if (store.uri.startsWith('file:')) {
      try {
        fh = await open(fileURLToPath(uri), 'r');
      } catch {
        // The URI did not map to a readable path: fall back to the store's own download, which
        // reports a missing or forbidden object with its proper error.
        fh = undefined;
      }
    }
    if (fh === undefined) {
      const base = opts.tmpDir ?? tmpdir();
      tmpDir = await mkdtemp(join(base, 'smolrate-shard-read-'));
      const path = join(tmpDir, 'shard.parquet');
      await store.getFile(key, path);
      fh = await open(path, 'r');
    }
    // Hash and decode the same open file, so a concurrent replacement cannot slip in between.
    const { size } = await fh.stat();
    if (size !== info.bytes) throw sizeMismatch(uri, size, info.bytes);
    const sha256 = await sha256OfHandle(fh, size);
    if (sha256 !== info.sha256) {
      throw new ShardIntegrityError(uri, `SHA-256 mismatch: expected ${info.sha256} (manifest), actual ${sha256}`);
    }
    return { uri, fh, size, release };
  } catch (e) {
    await release();
    throw e;
  }
}

/** Checks that the shard exists with the manifest's size and SHA-256, without decoding it. */
export async function verifyShard(store: Store, root: string, info: ShardInfo, opts: ShardReadOptions = {}): Promise<void> {
  const shard = await openVerified(store, root, info, opts);
  await shard.release();
}

function decodeError(uri: string, what: string, e: unknown): ShardIntegrityError {
  const detail = e instanceof Error ? e.message : String(e);
  return new ShardIntegrityError(uri, `${what}: ${detail}`, { cause: e });
}

/** A decoded Parquet record as a ShardRow, or the list of reasons it is not one. */
function toShardRow(rec: Record<string, unknown>): ShardRow | string[] {
  const count = rec.rating_number;
  const image = rec.image;
  const row = {
    parent_asin: rec.parent_asin,
    category: rec.category,
    main_category: rec.main_category ?? null, // an absent optional value is not materialised
    title: rec.title,
    description: rec.description,
    features: rec.features ?? [], // nor is an empty repeated field
    average_rating: rec.average_rating,
    rating_number: typeof count === 'bigint' && count <= BigInt(Number.MAX_SAFE_INTEGER) && count >= 0n ? Number(count) : count,
    // Copy: a slice would keep the whole column chunk alive for as long as the image is held.
    image: Buffer.isBuffer(image) ? Buffer.from(image) : image,
    image_url: rec.image_url,
  };
  const problems = shardRowProblems(row);
  return problems.length > 0 ? problems : (row as ShardRow);
}

/** Yields the rows of one shard, one row group (array) at a time, after verifying it. */
export async function* readShardRowGroups(
  store: Store,
  root: string,
  info: ShardInfo,
  opts: ShardReadOptions = {},
): AsyncGenerator<ShardRow[], void, undefined> {
  const shard = await openVerified(store, root, info, opts);
  const { uri, fh, size } = shard;
  try {
    const readFn = async (offset: number, length: number, file?: string): Promise<Buffer> => {
      if (file) throw new Error(`external column chunk file ${JSON.stringify(file)} is not supported`);
      // A corrupt footer can ask for absurd ranges; refuse them rather than allocate.
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
        throw new Error(`read of ${length} bytes at offset ${offset} is outside the ${size}-byte file`);
      }
      return readFully(fh, offset, length);
    };
    let reader: InstanceType<typeof parquet.ParquetReader>;
    try {
      const envelope = new parquet.ParquetEnvelopeReader(readFn, async () => undefined, size);
      reader = await parquet.ParquetReader.openEnvelopeReader(envelope);
    } catch (e) {
      throw decodeError(uri, 'not a readable Parquet file', e);
    }

    const meta = reader.metadata;
    const format = (meta.key_value_metadata ?? []).find((kv) => kv.key === SHARD_FORMAT_METADATA_KEY)?.value;
    if (format !== SHARD_FORMAT) {
      throw new ShardIntegrityError(uri, `format mismatch: expected ${SHARD_FORMAT}, actual ${format === undefined ? '(none)' : JSON.stringify(format)}`);
    }
    const expected = new parquet.ParquetSchema(shardSchemaDefinition()).fieldList;
    const actual = reader.getSchema().fieldList;
    const sig = (f: { name: string; primitiveType?: string; originalType?: string; repetitionType: string }): string =>
      `${f.name}:${f.primitiveType ?? ''}/${f.originalType ?? ''}/${f.repetitionType}`;
    const expectedSig = expected.map(sig).join(', ');
    const actualSig = actual.map(sig).join(', ');
    if (expectedSig !== actualSig) {
      throw new ShardIntegrityError(uri, `schema mismatch: expected [${expectedSig}], actual [${actualSig}]`);
    }
    const numRows = Number(meta.num_rows);
    const groupRows = meta.row_groups.map((g) => Number(g.num_rows));
    const groupTotal = groupRows.reduce((a, b) => a + b, 0);
    if (numRows !== info.rows || groupTotal !== info.rows) {
      throw new ShardIntegrityError(
        uri,
        `row count mismatch: expected ${info.rows} rows (manifest), actual ${numRows} in the footer, ${groupTotal} in its row groups`,
      );
    }

    const cursor = reader.getCursor();
    let yielded = 0;
    for (let g = 0; g < groupRows.length; g++) {
      let records: Array<Record<string, unknown>> | null;
      try {
        records = await cursor.nextRowGroup();
      } catch (e) {
        throw decodeError(uri, `cannot decode row group ${g}`, e);
      }
      if (records === null || records.length !== groupRows[g]) {
        throw new ShardIntegrityError(uri, `row group ${g}: expected ${groupRows[g]} rows, decoded ${records?.length ?? 0}`);
      }
      const rows: ShardRow[] = [];
      for (let i = 0; i < records.length; i++) {
        const row = toShardRow(records[i]);
        if (Array.isArray(row)) {
          throw new ShardIntegrityError(uri, `row ${yielded + i} (row group ${g}) does not decode to a valid row: ${row.join('; ')}`);
        }
        rows.push(row);
      }
      yielded += rows.length;
      yield rows;
    }
  } finally {
    await shard.release();
  }
}

/** Yields the rows of one shard in file order, after verifying it (see readShardRowGroups). */
export async function* readShard(
  store: Store,
  root: string,
  info: ShardInfo,
  opts: ShardReadOptions = {},
): AsyncGenerator<ShardRow, void, undefined> {
  for await (const group of readShardRowGroups(store, root, info, opts)) yield* group;
}

/** All rows of a (small) shard as an array. */
export async function readShardRows(store: Store, root: string, info: ShardInfo, opts: ShardReadOptions = {}): Promise<ShardRow[]> {
  const rows: ShardRow[] = [];
  for await (const group of readShardRowGroups(store, root, info, opts)) rows.push(...group);
  return rows;
}

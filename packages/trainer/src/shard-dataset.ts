/**
 * One split of a `smolrate-shards/1` build, addressed by **global index**: the position of a row
 * in the manifest's split order (shards in manifest order, rows in shard order) — the index the
 * GlobalSampler hands out.
 *
 * Shards are loaded on demand through core's reader, which checks each shard's size and SHA-256
 * against the manifest before decoding a byte of it; a shard failing that check raises core's
 * ShardIntegrityError naming the shard, and nothing here catches it. Decoded shards sit in an
 * LRU with a byte budget (a small dataset simply stays in memory). Concurrent requests for the
 * same shard share one load.
 *
 * Besides the full rows, a loaded shard carries its **sample metadata** (the text fields, the
 * target and the SHA-256 of the image bytes, without the image), as long as the shard stays in
 * the LRU. Nothing is kept for the life of the dataset: the training loop reads the split's
 * compact sample index (sample-index.ts), built once from this metadata, not raw text per sample.
 *
 * Non-local stores (S3): each load downloads the shard to a temporary file and removes it after
 * decoding; with `cacheDir`, a verified copy is kept there instead, named by its SHA-256, so later
 * loads (and later runs, and other ranks on the same host) read it locally. Copies are published
 * by atomic rename and re-verified on every read.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  DataError,
  openStore,
  readShardRows,
  ShardIntegrityError,
  shardKey,
  type Manifest,
  type ShardInfo,
  type ShardRow,
  type Store,
} from '@smolrate/core';
import { ByteLru } from './byte-lru.js';

export type SplitName = 'train' | 'val';

export interface ShardDatasetOptions {
  /** Store holding the shards (and the manifest). */
  store: Store;
  manifest: Manifest;
  split: SplitName;
  /** Shard root (key prefix) inside the store. Default '' (the store's root). */
  root?: string;
  /** Local directory keeping verified copies of non-local shards. Default: none (temp downloads). */
  cacheDir?: string;
  /** Byte budget of the decoded-shard LRU. Default 1 GiB (≈ 16 shards of the 64 MiB target). */
  maxCachedBytes?: number;
  /** Directory for temporary downloads. Default os.tmpdir(). */
  tmpDir?: string;
}

/** A sample without its image: what the batch builder needs once features are cached. */
export interface SampleMeta extends Omit<ShardRow, 'image'> {
  /** Global index (position in the split's manifest order). */
  index: number;
  /** Lowercase hex SHA-256 of the row's JPEG bytes: the image's key in the feature cache. */
  imageSha256: string;
}

/** A decoded shard: its rows and their metadata, in shard order. */
export interface LoadedShard {
  /** Position of the shard in the split's manifest list. */
  shard: number;
  /** Global index of its first row. */
  start: number;
  rows: ShardRow[];
  meta: SampleMeta[];
}

export interface ShardDatasetStats {
  /** Shard decodes (each one a verified read). */
  loads: number;
  /** Shard requests served from the LRU. */
  hits: number;
  evictions: number;
  /** Decoded bytes held by the LRU. */
  cachedBytes: number;
}

const DEFAULT_MAX_CACHED_BYTES = 1 << 30;
const ROW_OVERHEAD_BYTES = 512;

/** SHA-256 of image bytes, as used for feature-cache keys. */
export function imageSha256(image: Uint8Array): string {
  return createHash('sha256').update(image).digest('hex');
}

/** Approximate decoded size of a row (image + UTF-16 text + object overhead). */
function rowBytes(row: ShardRow): number {
  let text = row.parent_asin.length + row.category.length + (row.main_category?.length ?? 0) + row.title.length + row.description.length + row.image_url.length;
  for (const f of row.features) text += f.length;
  return row.image.length + 2 * text + ROW_OVERHEAD_BYTES;
}

async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export class ShardDataset {
  readonly split: SplitName;
  readonly shards: readonly ShardInfo[];
  /** Rows in the split. */
  readonly numSamples: number;
  private readonly store: Store;
  private readonly root: string;
  private readonly cacheDir: string | undefined;
  private readonly tmpDir: string | undefined;
  /** starts[s] = global index of shard s's first row; starts[shards.length] = numSamples. */
  private readonly starts: number[];
  private readonly lru: ByteLru<number, LoadedShard>;
  private readonly inflight = new Map<number, Promise<LoadedShard>>();
  private loads = 0;
  private hits = 0;

  private constructor(options: ShardDatasetOptions) {
    const split = options.manifest.splits[options.split];
    if (split === undefined) throw new DataError(`manifest has no split ${JSON.stringify(options.split)}`);
    this.split = options.split;
    this.shards = split.shards;
    this.store = options.store;
    this.root = options.root ?? '';
    this.tmpDir = options.tmpDir;
    this.cacheDir = options.store.uri.startsWith('file:') ? undefined : options.cacheDir;
    this.starts = [0];
    for (const s of split.shards) this.starts.push(this.starts[this.starts.length - 1] + s.rows);
    this.numSamples = this.starts[this.starts.length - 1];
    if (this.numSamples !== split.rows) {
      throw new DataError(`manifest split ${options.split}: rows (${split.rows}) ≠ Σ shards[].rows (${this.numSamples})`);
    }
    this.lru = new ByteLru(options.maxCachedBytes ?? DEFAULT_MAX_CACHED_BYTES);
  }

  /** Opens a split. Nothing is read yet: shards load (and are verified) when first needed. */
  static async open(options: ShardDatasetOptions): Promise<ShardDataset> {
    const dataset = new ShardDataset(options);
    if (dataset.cacheDir !== undefined) await mkdir(dataset.cacheDir, { recursive: true });
    return dataset;
  }

  /** Shard position and row within it of a global index. */
  locate(index: number): { shard: number; row: number } {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.numSamples) {
      throw new RangeError(`${this.split} split: index ${index} is outside [0, ${this.numSamples})`);
    }
    // Binary search for the last start ≤ index.
    let lo = 0;
    let hi = this.shards.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid] <= index) lo = mid;
      else hi = mid - 1;
    }
    return { shard: lo, row: index - this.starts[lo] };
  }

  /** Global index range [start, end) of shard `s`. */
  shardRange(s: number): { start: number; end: number } {
    this.checkShard(s);
    return { start: this.starts[s], end: this.starts[s + 1] };
  }

  /** Shard `s`, decoded (from the LRU or loaded and verified). */
  async shard(s: number): Promise<LoadedShard> {
    this.checkShard(s);
    const hit = this.lru.get(s);
    if (hit !== undefined) {
      this.hits++;
      return hit;
    }
    let pending = this.inflight.get(s);
    if (pending === undefined) {
      pending = this.load(s).finally(() => this.inflight.delete(s));
      this.inflight.set(s, pending);
    }
    return pending;
  }

  /**
   * The rows at `indices`, in that order (repeats allowed). Rows are shared with the LRU: treat
   * them as read-only.
   */
  async rows(indices: ArrayLike<number>): Promise<ShardRow[]> {
    return this.gather(indices, async (s) => (await this.shard(s)).rows);
  }

  /** Metadata (no image) of the samples at `indices`, in order (their shards loaded as for rows). */
  async meta(indices: ArrayLike<number>): Promise<SampleMeta[]> {
    return this.gather(indices, async (s) => (await this.shard(s)).meta);
  }

  stats(): ShardDatasetStats {
    return { loads: this.loads, hits: this.hits, evictions: this.lru.evictions, cachedBytes: this.lru.bytes };
  }

  /** Looks up items shard by shard (each needed shard fetched once per call). */
  private async gather<T>(indices: ArrayLike<number>, shardItems: (s: number) => Promise<T[]>): Promise<T[]> {
    const located = Array.from(indices, (i) => this.locate(i));
    const out = new Array<T>(located.length);
    const byShard = new Map<number, number[]>();
    located.forEach((l, k) => {
      const list = byShard.get(l.shard);
      if (list === undefined) byShard.set(l.shard, [k]);
      else list.push(k);
    });
    // One shard at a time: a batch spread over many shards never holds more than one extra
    // decoded shard beyond the LRU.
    for (const [s, ks] of byShard) {
      const items = await shardItems(s);
      for (const k of ks) out[k] = items[located[k].row];
    }
    return out;
  }

  private async load(s: number): Promise<LoadedShard> {
    const info = this.shards[s];
    const rows = this.cacheDir === undefined ? await readShardRows(this.store, this.root, info, { tmpDir: this.tmpDir }) : await this.readViaCache(info);
    this.loads++;
    const start = this.starts[s];
    let bytes = 0;
    const meta = rows.map((row, j): SampleMeta => {
      bytes += rowBytes(row);
      const { image, ...rest } = row;
      return { index: start + j, ...rest, imageSha256: imageSha256(image) };
    });
    const loaded: LoadedShard = { shard: s, start, rows, meta };
    this.lru.set(s, loaded, bytes);
    return loaded;
  }

  /** Reads a non-local shard through the local copy in cacheDir (downloaded once, verified). */
  private async readViaCache(info: ShardInfo): Promise<ShardRow[]> {
    const dir = this.cacheDir!;
    const local = openStore(dir);
    const localInfo: ShardInfo = { ...info, file: `${info.sha256}.parquet` };
    const localPath = join(dir, localInfo.file);
    const present = await stat(localPath).then(
      (st) => st.isFile() && st.size === info.bytes,
      () => false,
    );
    if (present) {
      try {
        return await readShardRows(local, '', localInfo, { tmpDir: this.tmpDir });
      } catch (e) {
        // A damaged local copy is not the source's fault: drop it and fetch the shard again.
        if (!(e instanceof ShardIntegrityError)) throw e;
        await rm(localPath, { force: true });
      }
    }
    await this.download(info, localPath);
    return readShardRows(local, '', localInfo, { tmpDir: this.tmpDir });
  }

  /** Downloads a shard to `localPath`, publishing it only when size and SHA-256 match the manifest. */
  private async download(info: ShardInfo, localPath: string): Promise<void> {
    const key = shardKey(this.root, info.file);
    const uri = this.store.uriOf(key);
    const listed = await this.store.size(key);
    if (listed !== info.bytes) throw new ShardIntegrityError(uri, `size mismatch: expected ${info.bytes} bytes (manifest), actual ${listed} bytes`);
    const tmp = join(this.cacheDir!, `.${info.sha256}.download-${randomBytes(6).toString('hex')}`);
    try {
      const { size } = await this.store.getFile(key, tmp);
      if (size !== info.bytes) throw new ShardIntegrityError(uri, `size mismatch after download: expected ${info.bytes} bytes (manifest), actual ${size} bytes`);
      const sha256 = await sha256OfFile(tmp);
      if (sha256 !== info.sha256) throw new ShardIntegrityError(uri, `SHA-256 mismatch: expected ${info.sha256} (manifest), actual ${sha256}`);
      await rename(tmp, localPath);
    } finally {
      await rm(tmp, { force: true });
    }
  }

  private checkShard(s: number): void {
    if (!Number.isSafeInteger(s) || s < 0 || s >= this.shards.length) {
      throw new RangeError(`${this.split} split: shard ${s} is outside [0, ${this.shards.length})`);
    }
  }
}

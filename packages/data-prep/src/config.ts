/**
 * The data-prep configuration: one schema, defaults in one place (docs/reference/data.md "Selection used by the
 * paper" for the defaults). Precedence defaults ← --config file ← flags; the resolved config is
 * saved in manifest.json.
 */
import { field, resolveConfig, type Infer, type ResolveOptions } from '@smolrate/core';

export const dataPrepSchema = {
  seed: field.int(0, 'seed for the validation hold-out and shard order', { min: 0 }),
  input: field.strings([], 'metadata inputs: files (meta_<Category>.jsonl[.gz], <Category>.jsonl) or folders, local or s3://'),
  out: field.string('', 'output shard root (local path, file:// or s3://bucket/prefix)'),
  selection: field.object({
    minRatingNumber: field.int(10, 'keep items with rating_number ≥ this', { min: 0 }),
    topK: field.int(1_000_000, 'per category: keep the K items with the most ratings', { min: 0 }),
    bottomK: field.int(1_000_000, 'per category: and the K with the fewest (among those ≥ minRatingNumber)', { min: 0 }),
    valSize: field.int(10_000, 'items held out for validation, drawn across categories', { min: 0 }),
    categories: field.strings([], 'only these categories (file-name categories); empty = all inputs'),
  }),
  text: field.object({
    maxChars: field.int(1000, 'cap on title / description / features, in Unicode code points', { min: 1, max: 1000 }),
  }),
  images: field.object({
    size: field.int(384, 'output side in pixels (square, aspect not preserved)', { min: 16, max: 4096 }),
    quality: field.int(95, 'JPEG quality of stored images', { min: 1, max: 100 }),
    concurrency: field.int(8, 'parallel image fetches per worker', { min: 1, max: 256 }),
    timeoutMs: field.int(20_000, 'per-attempt fetch timeout', { min: 100 }),
    maxBytes: field.int(20 * 1024 * 1024, 'largest image download accepted', { min: 1024 }),
    maxPixels: field.int(50_000_000, 'largest decoded image accepted (decompression-bomb guard)', { min: 1 }),
    retries: field.int(3, 'retries on timeouts / 5xx / connection errors (never on 404)', { min: 0, max: 20 }),
    rewrite: field.map({}, 'URL prefix rewrites {"https://m.media-amazon.com/images/I/": "s3://mirror/images/"}'),
    cacheDir: field.optionalString('on-disk cache of fetched source images (keyed by URL hash)'),
  }),
  shards: field.object({
    targetBytes: field.int(64 * 1024 * 1024, 'target shard size', { min: 1024 }),
    bytesPerItemEstimate: field.int(80_000, 'expected stored bytes per item (384² JPEG q95 + text), used to plan rows per shard', { min: 1 }),
    rowGroupSize: field.int(256, 'Parquet row-group size', { min: 1 }),
  }),
  redis: field.optionalString('Redis URL for the BullMQ flow; none = single-process mode'),
  workers: field.int(0, 'local BullMQ worker processes started by build-shards (with --redis or a private Redis)', { min: 0, max: 64 }),
  dryRun: field.bool(false, 'report the selection without fetching images or writing shards'),
};

export type DataPrepConfig = Infer<typeof dataPrepSchema>;

export function resolveDataPrepConfig(opts: ResolveOptions = {}): DataPrepConfig {
  return resolveConfig(dataPrepSchema, opts);
}

/** Rows per shard from the byte target: at least 1. */
export function rowsPerShard(cfg: DataPrepConfig): number {
  return Math.max(1, Math.floor(cfg.shards.targetBytes / cfg.shards.bytesPerItemEstimate));
}

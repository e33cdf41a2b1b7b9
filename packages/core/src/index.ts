// The public API of @smolrate/core: what the other packages, apps/eval and tools/ use.
// Test fixtures are `@smolrate/core/testing`; the private redis-server is `@smolrate/core/redis-server`.

// Errors (stable codes; library code throws, only bin/ entry points map them to exit codes).
export {
  CheckpointError,
  CollectiveError,
  ConfigError,
  DataError,
  ImageError,
  isSmolrateError,
  NotFoundError,
  PermissionError,
  ServiceError,
  ShapeError,
  ShardIntegrityError,
  StorageError,
  UsageError,
} from './errors.js';

// Config: one typed schema with defaults; defaults ← file ← flags. The field types are those of
// `field`'s builders, which a package's schema constant is inferred from.
export { checkInvariant, defaults, describeSchema, field, readConfigFile, resolveConfig, type Infer, type ResolveOptions } from './config.js';
export type { BoolField, EnumField, IntField, ListField, MapField, NumberField, ObjectField, StringField } from './config.js';

// Command lines, logging, progress, metrics sink, child processes.
export {
  flagBool,
  flagNumber,
  flagString,
  kebab,
  parseArgs,
  reportError,
  requireFlag,
  runCommand,
  runLazyCommand,
  type CommandSpec,
  type LazyCommand,
  type ParsedArgs,
} from './cli.js';
export { createLogger, silentLogger, type Logger } from './log.js';
export { createProgress, formatDuration, type Progress } from './progress.js';
export { MetricsSink, readMetrics, type MetricRecord } from './metrics.js';
export { forkEntry } from './fork-entry.js';

// Regression metrics (RMSE, PLCC, SRCC): one definition for the trainer's validation and eval.
export { regressionMetrics, type RegressionMetrics } from './regression-metrics.js';

// Seeded randomness.
export { permutation, Rng, seedFrom, type RngState } from './rng.js';

// Storage: local folders and s3:// behind one Store.
export { openStore } from './storage/open-store.js';
export type { Store } from './storage/store.js';
export { LocalStore } from './storage/local-store.js';
export { compareKeys, normalizeStorageUri, parseStorageUri } from './storage/uri.js';
export { isTransientNetworkError, withRetry, type RetryOptions } from './storage/retry.js';
export { writeFileAtomic } from './storage/atomic-file.js';

// The shard format (smolrate-shards/1): rows, shards, manifest, rejects.
export { SHARD_FORMAT, shardRowProblems, type ShardRow } from './shards/schema.js';
export { shardKey, type ShardInfo } from './shards/shard-info.js';
export { ShardWriter } from './shards/shard-writer.js';
export { readShardRowGroups, readShardRows } from './shards/shard-reader.js';
export { MANIFEST_FILE, readManifest, writeManifest, type Manifest, type ManifestCounts } from './shards/manifest.js';
export { parseRejects, readRejects, rejectLine, rejectRecordProblems, writeRejects, type RejectRecord } from './shards/rejects.js';
export { canonicalJson, type JsonValue } from './shards/canonical-json.js';

// Images (sharp).
export { decodeImage, probeImage, resizeToJpeg } from './image.js';

// Redis connections from a URL.
export { createRedis, parseRedisUrl, redactUrl, redisOptionsFromUrl } from './redis.js';

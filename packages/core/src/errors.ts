/**
 * The error hierarchy shared by every smolrate package. Each class has a stable `code` so that
 * callers (and the CLI entry points that map errors to exit codes) never match on messages.
 * I/O failures are wrapped with `cause` so the original error stays inspectable.
 */
export type ErrorCode =
  | 'CONFIG'
  | 'DATA'
  | 'CHECKPOINT'
  | 'COLLECTIVE'
  | 'SHAPE'
  | 'STORAGE'
  | 'STORAGE_NOT_FOUND'
  | 'STORAGE_PERMISSION'
  | 'SHARD_INTEGRITY'
  | 'SERVICE'
  | 'IMAGE'
  | 'USAGE';

export class SmolrateError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A configuration value is unknown, of the wrong type, or breaks an invariant. */
export class ConfigError extends SmolrateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CONFIG', message, options);
  }
}

/** Input data is malformed. Bad records are normally rejected and counted, not thrown. */
export class DataError extends SmolrateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('DATA', message, options);
  }
}

/** A checkpoint is missing, incomplete, or does not match the model. */
export class CheckpointError extends SmolrateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CHECKPOINT', message, options);
  }
}

/** A distributed collective failed: timeout, dead peer, refused rendezvous. */
export class CollectiveError extends SmolrateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('COLLECTIVE', message, options);
  }
}

/** A tensor or array has a shape other than the one expected. Messages give both. */
export class ShapeError extends SmolrateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('SHAPE', message, options);
  }
}

/** A storage operation failed (after retries, for transient errors). */
export class StorageError extends SmolrateError {
  readonly uri: string;
  constructor(message: string, uri: string, options?: { cause?: unknown; code?: ErrorCode }) {
    super(options?.code ?? 'STORAGE', message, options);
    this.uri = uri;
  }
}

/** The object or file at `uri` does not exist. */
export class NotFoundError extends StorageError {
  constructor(uri: string, options?: { cause?: unknown }) {
    super(`not found: ${uri}`, uri, { ...options, code: 'STORAGE_NOT_FOUND' });
  }
}

/** Access to `uri` was denied (credentials, bucket policy, file mode). */
export class PermissionError extends StorageError {
  constructor(uri: string, options?: { cause?: unknown }) {
    super(`permission denied: ${uri}`, uri, { ...options, code: 'STORAGE_PERMISSION' });
  }
}

/** A shard or manifest failed an integrity check (hash, size, truncation, schema). */
export class ShardIntegrityError extends SmolrateError {
  readonly shard: string;
  constructor(shard: string, message: string, options?: { cause?: unknown }) {
    super('SHARD_INTEGRITY', `shard ${shard}: ${message}`, options);
    this.shard = shard;
  }
}

/** A local service (redis-server, S3-compatible server) could not be started or reached. */
export class ServiceError extends SmolrateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('SERVICE', message, options);
  }
}

/** An image could not be decoded, is too large, or is not an image. */
export class ImageError extends SmolrateError {
  readonly reason: string;
  constructor(reason: string, message: string, options?: { cause?: unknown }) {
    super('IMAGE', message, options);
    this.reason = reason;
  }
}

/** Wrong command-line usage. */
export class UsageError extends SmolrateError {
  constructor(message: string) {
    super('USAGE', message);
  }
}

/** Exit codes used by every `bin/` entry point. */
export const EXIT_CODES: Record<ErrorCode, number> = {
  USAGE: 2,
  CONFIG: 3,
  DATA: 4,
  STORAGE: 5,
  STORAGE_NOT_FOUND: 5,
  STORAGE_PERMISSION: 5,
  SHARD_INTEGRITY: 6,
  CHECKPOINT: 7,
  COLLECTIVE: 8,
  SHAPE: 9,
  SERVICE: 10,
  IMAGE: 11,
};

export function isSmolrateError(e: unknown): e is SmolrateError {
  return e instanceof SmolrateError;
}

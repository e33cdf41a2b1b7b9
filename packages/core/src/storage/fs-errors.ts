/**
 * Filesystem failures in our terms: ENOENT → NotFoundError, EACCES/EPERM/EROFS → PermissionError,
 * anything else → StorageError, each naming the file's URI and keeping the errno error as `cause`.
 */
import { NotFoundError, PermissionError, SmolrateError, StorageError } from '../errors.js';
import { SourceStreamError } from './atomic-file.js';

/** `action` ('read', 'write', 'stat', 'delete', 'list') goes into messages and decides EISDIR. */
export function toLocalStorageError(error: unknown, uri: string, action: string): SmolrateError {
  if (error instanceof SmolrateError) return error;
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT' || code === 'ENOTDIR') return new NotFoundError(uri, { cause: error });
  // A directory is not an object: reading one is "not found", as it is on S3.
  if (code === 'EISDIR' && (action === 'read' || action === 'stat' || action === 'delete')) {
    return new NotFoundError(uri, { cause: error });
  }
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') return new PermissionError(uri, { cause: error });
  const message = error instanceof Error ? error.message : String(error);
  return new StorageError(`${action} ${uri} failed: ${message}`, uri, { cause: error });
}

/** Maps a `writeFileAtomic` failure for destination `uri`: source failures stay the source's. */
export function toFileWriteError(error: unknown, uri: string): SmolrateError {
  if (error instanceof SourceStreamError) {
    const cause = error.cause;
    if (cause instanceof SmolrateError) return cause;
    const message = cause instanceof Error ? cause.message : String(cause);
    return new StorageError(`write ${uri} failed: source stream: ${message}`, uri, { cause });
  }
  return toLocalStorageError(error, uri, 'write');
}

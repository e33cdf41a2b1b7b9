/**
 * Splits an object URI (`s3://bucket/dir/file`, `/abs/dir/file`, `file:///dir/file`) into the store
 * of its parent folder and the object's key, for commands that take one object by URI.
 */
import { openStore } from './storage/open-store.js';
import { formatStorageUri, parseStorageUri } from './storage/uri.js';
import type { Store } from './storage/store.js';
import { StorageError } from './errors.js';
import { dirname, basename } from 'node:path';

export function openObject(uri: string): { store: Store; key: string } {
  const loc = parseStorageUri(uri);
  if (loc.scheme === 'file') {
    if (loc.path === '/') throw new StorageError(`not an object URI: ${uri}`, uri);
    return { store: openStore(dirname(loc.path)), key: basename(loc.path) };
  }
  const parts = loc.prefix.split('/').filter(Boolean);
  const key = parts.pop();
  if (!key) throw new StorageError(`not an object URI (no key after the bucket): ${uri}`, uri);
  return { store: openStore(formatStorageUri({ scheme: 's3', bucket: loc.bucket, prefix: parts.join('/') })), key };
}

/**
 * Optional on-disk cache of fetched source image bytes (config `images.cacheDir`), so a rebuild
 * (a retried build-shard job, a second build with another seed or size) does not download the
 * same images again. Entries are keyed by sha256 of the final (rewritten) URL and stored as
 * `<dir>/<first 2 hex>/<sha256>` — the fan-out keeps directories small at millions of entries.
 *
 * Safe for several processes (and hosts sharing a filesystem with atomic rename): every write
 * goes to its own temporary file, is fsync'd, then renamed over the entry (core writeFileAtomic),
 * so a reader sees no entry or a complete one, never a prefix; two writers of the same URL both
 * publish whole files and the last rename wins. Only successful downloads are cached — a 404 or a
 * timeout is tried again next time.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError, parseStorageUri, writeFileAtomic } from '@smolrate/core';

export interface ImageCache {
  /** Absolute local directory of the cache. */
  readonly dir: string;
  /** Where the entry of `url` lives. */
  pathFor(url: string): string;
  /** The cached bytes of `url`, or undefined when there is no entry. Other I/O errors throw. */
  get(url: string): Promise<Buffer | undefined>;
  /** Stores the bytes of `url` atomically. */
  put(url: string, bytes: Uint8Array): Promise<void>;
}

/** The cache key of a URL: lowercase hex sha256 of its UTF-8 text. */
export function imageCacheKey(url: string): string {
  return createHash('sha256').update(url, 'utf8').digest('hex');
}

/** A cache in `dir` (a local path or file:// URI; created on first write). */
export function createImageCache(dir: string): ImageCache {
  const loc = parseStorageUri(dir);
  if (loc.scheme !== 'file') throw new ConfigError(`images.cacheDir must be a local directory, got ${dir}`);
  const root = loc.path;
  const pathFor = (url: string) => {
    const key = imageCacheKey(url);
    return join(root, key.slice(0, 2), key);
  };
  return {
    dir: root,
    pathFor,
    async get(url) {
      try {
        return await readFile(pathFor(url));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw e;
      }
    },
    async put(url, bytes) {
      await writeFileAtomic(pathFor(url), bytes);
    },
  };
}

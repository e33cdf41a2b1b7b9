/**
 * The embedded default store: a directory on the local filesystem. Keys map to files below the
 * root; writes publish atomically (temp file + fsync + rename, see atomic-file.ts).
 */
import { open, readFile, readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { NotFoundError, StorageError } from '../errors.js';
import { isTempFileName, writeFileAtomic } from './atomic-file.js';
import { toFileWriteError, toLocalStorageError } from './fs-errors.js';
import type { ListEntry, PutOptions, Store } from './store.js';
import { compareKeys, formatStorageUri, normalizeKey, normalizePrefix, parseStorageUri } from './uri.js';

function checkRange(range: { start: number; end?: number } | undefined, uri: string): void {
  if (range === undefined) return;
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || start < 0 || (end !== undefined && (!Number.isSafeInteger(end) || end < start))) {
    throw new StorageError(`invalid byte range [${start}, ${end ?? ''}] for ${uri}`, uri);
  }
}

export class LocalStore implements Store {
  readonly uri: string;
  /** Absolute root directory. */
  readonly root: string;

  /** `location`: a plain path or a `file://` URI. The directory is created on first write. */
  constructor(location: string) {
    const loc = parseStorageUri(location);
    if (loc.scheme !== 'file') throw new StorageError(`not a local location: ${location}`, location);
    this.root = loc.path;
    this.uri = formatStorageUri(loc);
  }

  /** Absolute path of a key (validated: never outside the root). */
  pathOf(key: string): string {
    return join(this.root, ...normalizeKey(key, this.uri).split('/'));
  }

  uriOf(key: string): string {
    return pathToFileURL(this.pathOf(key)).href;
  }

  async get(key: string): Promise<Buffer> {
    const path = this.pathOf(key);
    try {
      return await readFile(path);
    } catch (e) {
      throw toLocalStorageError(e, this.uriOf(key), 'read');
    }
  }

  async put(key: string, data: Buffer | Uint8Array | string, _opts?: PutOptions): Promise<void> {
    const path = this.pathOf(key);
    try {
      await writeFileAtomic(path, data);
    } catch (e) {
      throw toFileWriteError(e, this.uriOf(key));
    }
  }

  async createReadStream(key: string, range?: { start: number; end?: number }): Promise<Readable> {
    const path = this.pathOf(key);
    const uri = this.uriOf(key);
    checkRange(range, uri);
    // Open first so a missing file rejects here, typed, rather than as a stream 'error' later.
    let fh;
    try {
      fh = await open(path, 'r');
    } catch (e) {
      throw toLocalStorageError(e, uri, 'read');
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new NotFoundError(uri);
      // Same contract as an HTTP range GET: a range starting at or past the end is unsatisfiable.
      if (range !== undefined && range.start >= st.size) {
        throw new StorageError(`byte range starting at ${range.start} is past the end of ${uri} (${st.size} bytes)`, uri);
      }
    } catch (e) {
      await fh.close();
      throw toLocalStorageError(e, uri, 'read');
    }
    return withTypedErrors(fh.createReadStream({ start: range?.start, end: range?.end }), uri);
  }

  async putStream(key: string, source: Readable, _opts?: PutOptions): Promise<{ size: number }> {
    const path = this.pathOf(key);
    try {
      return await writeFileAtomic(path, source);
    } catch (e) {
      throw toFileWriteError(e, this.uriOf(key));
    }
  }

  async putFile(key: string, localPath: string, opts?: PutOptions): Promise<{ size: number }> {
    const source = await openLocalFile(localPath);
    return this.putStream(key, source, opts);
  }

  getFile(key: string, localPath: string): Promise<{ size: number }> {
    return downloadToFile(this, key, localPath);
  }

  async list(prefix = ''): Promise<ListEntry[]> {
    const p = normalizePrefix(prefix, this.uri);
    // Walk only the directory the prefix can live in; filter the rest by string prefix, which is
    // what S3 does (list('a') matches a.txt and ab/c as well as a/...).
    const slash = p.lastIndexOf('/');
    const baseKey = slash < 0 ? '' : p.slice(0, slash);
    const out: ListEntry[] = [];
    const walk = async (dirKey: string): Promise<void> => {
      const dir = dirKey === '' ? this.root : join(this.root, ...dirKey.split('/'));
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') return; // nothing stored there yet
        throw toLocalStorageError(e, pathToFileURL(dir).href, 'list');
      }
      for (const ent of entries) {
        if (isTempFileName(ent.name)) continue;
        const key = dirKey === '' ? ent.name : `${dirKey}/${ent.name}`;
        // Prune subtrees that cannot contain a match.
        if (!key.startsWith(p) && !p.startsWith(`${key}/`)) continue;
        let isDir = ent.isDirectory();
        let isFile = ent.isFile();
        let size = -1;
        if (ent.isSymbolicLink() || isFile) {
          try {
            const st = await stat(join(dir, ent.name));
            isDir = st.isDirectory();
            isFile = st.isFile();
            size = st.size;
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; // deleted meanwhile
            throw toLocalStorageError(e, pathToFileURL(join(dir, ent.name)).href, 'list');
          }
        }
        if (isDir) await walk(key);
        else if (isFile && key.startsWith(p)) out.push({ key, size });
      }
    };
    await walk(baseKey);
    return out.sort((a, b) => compareKeys(a.key, b.key));
  }

  async exists(key: string): Promise<boolean> {
    const path = this.pathOf(key);
    try {
      return (await stat(path)).isFile();
    } catch (e) {
      const err = toLocalStorageError(e, this.uriOf(key), 'stat');
      if (err instanceof NotFoundError) return false;
      throw err;
    }
  }

  async size(key: string): Promise<number> {
    const path = this.pathOf(key);
    let st;
    try {
      st = await stat(path);
    } catch (e) {
      throw toLocalStorageError(e, this.uriOf(key), 'stat');
    }
    if (!st.isFile()) throw new NotFoundError(this.uriOf(key));
    return st.size;
  }

  async delete(key: string): Promise<void> {
    const path = this.pathOf(key);
    try {
      await unlink(path);
    } catch (e) {
      const err = toLocalStorageError(e, this.uriOf(key), 'delete');
      if (!(err instanceof NotFoundError)) throw err;
    }
  }
}

/** A store's object written atomically to a local file, with typed errors naming the file (every store's getFile). */
export async function downloadToFile(store: Pick<Store, 'createReadStream'>, key: string, localPath: string): Promise<{ size: number }> {
  const source = await store.createReadStream(key);
  try {
    return await writeFileAtomic(localPath, source);
  } catch (e) {
    throw toFileWriteError(e, pathToFileURL(localPath).href);
  }
}

/** Opens a local file for streaming, with typed errors naming the file (used by putFile). */
export async function openLocalFile(localPath: string): Promise<Readable> {
  const uri = pathToFileURL(localPath).href;
  try {
    const fh = await open(localPath, 'r');
    return withTypedErrors(fh.createReadStream(), uri);
  } catch (e) {
    throw toLocalStorageError(e, uri, 'read');
  }
}

/**
 * Passes `source` through, turning its errors into typed StorageErrors for `uri` (so local reads
 * fail like S3 reads). Destroying the returned stream destroys the source and closes the file.
 */
function withTypedErrors(source: Readable, uri: string): Readable {
  const out = new PassThrough();
  source.on('error', (e) => out.destroy(toLocalStorageError(e, uri, 'read')));
  out.on('close', () => source.destroy());
  return source.pipe(out);
}

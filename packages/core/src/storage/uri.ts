/**
 * Storage URIs and keys. A location is a plain path (relative paths resolve against the working
 * directory), a `file://` URI, or `s3://bucket/prefix`. Keys are relative, '/'-separated, and
 * may never climb out of the store root: the same key means the same object locally and on S3.
 */
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { StorageError } from '../errors.js';

export type StorageLocation =
  | { scheme: 'file'; /** Absolute local path, no trailing separator (except '/'). */ path: string }
  | { scheme: 's3'; bucket: string; /** Key prefix without leading/trailing '/'; may be ''. */ prefix: string };

// S3 bucket naming rules (virtual-host-safe subset): 3–63 chars, lowercase, digits, '.', '-'.
const BUCKET_RE = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const SCHEME_RE = /^([a-zA-Z][a-zA-Z0-9+.-]*):/;

/** Parses a location. Throws StorageError naming the URI when it is malformed or unsupported. */
export function parseStorageUri(uri: string): StorageLocation {
  if (uri.length === 0) throw new StorageError('empty storage URI', uri);
  const scheme = SCHEME_RE.exec(uri)?.[1]?.toLowerCase();
  // A single letter is a Windows drive (C:\data), not a scheme.
  if (scheme === undefined || scheme.length === 1) {
    return { scheme: 'file', path: resolve(uri) };
  }
  if (scheme === 'file') {
    let path: string;
    try {
      path = fileURLToPath(uri);
    } catch (e) {
      throw new StorageError(`invalid file URI ${uri}: ${(e as Error).message}`, uri, { cause: e });
    }
    return { scheme: 'file', path: resolve(path) };
  }
  if (scheme === 's3') {
    const m = /^s3:\/\/([^/]*)(?:\/(.*))?$/i.exec(uri);
    const bucket = m?.[1] ?? '';
    if (!BUCKET_RE.test(bucket)) {
      throw new StorageError(`invalid S3 bucket name '${bucket}' in ${uri}`, uri);
    }
    // Repeated slashes after the bucket are collapsed like any other empty segment.
    const prefix = normalizeKey((m?.[2] ?? '').replace(/^\/+/, ''), uri, { allowEmpty: true });
    return { scheme: 's3', bucket, prefix };
  }
  throw new StorageError(`unsupported storage URI scheme '${scheme}:' in ${uri} (use a path, file:// or s3://)`, uri);
}

/** The canonical text of a location: `file:///abs/path` or `s3://bucket[/prefix]`. */
export function formatStorageUri(loc: StorageLocation): string {
  if (loc.scheme === 'file') return pathToFileURL(loc.path).href;
  return loc.prefix === '' ? `s3://${loc.bucket}` : `s3://${loc.bucket}/${loc.prefix}`;
}

/** Canonical form of any accepted location text. */
export function normalizeStorageUri(uri: string): string {
  return formatStorageUri(parseStorageUri(uri));
}

export function isS3Uri(uri: string): boolean {
  return /^s3:\/\//i.test(uri);
}

/**
 * Validates and normalises a key: '/'-separated, relative, no '..' segments (rejected outright
 * rather than resolved, so a key never depends on the store's root to be safe), no '\' or NUL
 * (a separator or a terminator on some platforms). Empty and '.' segments are dropped.
 * `context` names the store in error messages.
 */
export function normalizeKey(key: string, context = '', opts: { allowEmpty?: boolean } = {}): string {
  const where = context ? ` (in ${context})` : '';
  if (key.includes('\\') || key.includes('\0')) {
    throw new StorageError(`invalid key '${key}'${where}: '\\' and NUL are not allowed`, context || key);
  }
  if (key.startsWith('/') || isAbsolute(key)) {
    throw new StorageError(`invalid key '${key}'${where}: keys are relative`, context || key);
  }
  const segments: string[] = [];
  for (const segment of key.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') {
      throw new StorageError(`invalid key '${key}'${where}: '..' would escape the store root`, context || key);
    }
    segments.push(segment);
  }
  const normalized = segments.join('/');
  if (normalized === '' && !opts.allowEmpty) {
    throw new StorageError(`invalid key '${key}'${where}: empty`, context || key);
  }
  return normalized;
}

/**
 * Normalises a list prefix. Unlike a key it may be empty and keeps a trailing '/', because
 * `list('a/')` (everything inside a/) and `list('a')` (also a.txt, ab/...) differ.
 */
export function normalizePrefix(prefix: string, context = ''): string {
  const body = normalizeKey(prefix, context, { allowEmpty: true });
  return body !== '' && prefix.endsWith('/') ? `${body}/` : body;
}

/** Joins key parts with '/', validating the result like `normalizeKey`. */
export function joinKey(...parts: string[]): string {
  return normalizeKey(parts.filter((p) => p !== '').join('/'));
}

/** Orders keys by UTF-16 code unit, identically for every store (no locale). */
export function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

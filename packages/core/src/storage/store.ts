/**
 * One storage interface over URIs: plain paths / `file://` (the embedded default) and
 * `s3://bucket/prefix`. Keys are always relative, '/'-separated, and resolved against the
 * store's root URI. Implementations: local-store.ts, s3-store.ts; `openStore(uri)` picks one.
 */
import type { Readable } from 'node:stream';

export interface ListEntry {
  /** Key relative to the store root ('/'-separated). */
  key: string;
  size: number;
}

export interface PutOptions {
  contentType?: string;
}

export interface Store {
  /** The root URI this store was opened on (normalised: `file:///abs` or `s3://bucket/prefix`). */
  readonly uri: string;
  /** Full URI of a key, for messages and manifests. */
  uriOf(key: string): string;
  /** Whole object into memory. Throws NotFoundError / PermissionError / StorageError. */
  get(key: string): Promise<Buffer>;
  /** Whole buffer, published atomically (temp + rename locally; a single PUT on S3). */
  put(key: string, data: Buffer | Uint8Array | string, opts?: PutOptions): Promise<void>;
  /** Streaming read; never buffers the whole object. Optional byte range [start, end] inclusive. */
  createReadStream(key: string, range?: { start: number; end?: number }): Promise<Readable>;
  /**
   * Streaming write from a source stream; constant memory (multipart upload on S3). The object
   * appears only when the whole stream has been written (atomic publish).
   */
  putStream(key: string, source: Readable, opts?: PutOptions): Promise<{ size: number }>;
  /** Uploads a local file (streamed) under `key`, atomically. */
  putFile(key: string, localPath: string, opts?: PutOptions): Promise<{ size: number }>;
  /** Downloads `key` to a local file (streamed; the file appears complete or not at all). */
  getFile(key: string, localPath: string): Promise<{ size: number }>;
  /** All keys under a prefix (recursive), sorted by key. */
  list(prefix?: string): Promise<ListEntry[]>;
  exists(key: string): Promise<boolean>;
  /** Size in bytes, or NotFoundError. */
  size(key: string): Promise<number>;
  /** Deletes a key; deleting a missing key is not an error. */
  delete(key: string): Promise<void>;
}

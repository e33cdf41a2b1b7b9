/**
 * A store on S3 or any S3-compatible server (`s3://bucket/prefix`). Whole-object writes are one
 * PUT; streams go through lib-storage's multipart Upload with a bounded queue, so memory stays
 * near (queueSize + 1) × partSize whatever the object size, and the object appears only when the
 * upload completes. Every request is retried on transient errors (see s3-retry-strategy.ts);
 * streaming reads also resume after a dropped connection (see resumable-read-stream.ts).
 */
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type GetObjectCommandOutput,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { stat } from 'node:fs/promises';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { NotFoundError, SmolrateError, StorageError } from '../errors.js';
import { downloadToFile, openLocalFile } from './local-store.js';
import { resumableReadStream } from './resumable-read-stream.js';
import type { RetryOptions } from './retry.js';
import { createS3Client, type S3ClientOptions } from './s3-client.js';
import { isTransientS3Error, toStorageError } from './s3-errors.js';
import type { ListEntry, PutOptions, Store } from './store.js';
import { compareKeys, formatStorageUri, normalizeKey, normalizePrefix, parseStorageUri } from './uri.js';

const MiB = 1024 * 1024;
const MIN_PART_SIZE = 5 * MiB;
const MAX_PARTS = 10_000;

export interface S3StoreOptions extends S3ClientOptions {
  /** A ready client; when set, the client options (endpoint, region, retry, ...) are ignored. */
  client?: S3Client;
  /**
   * Multipart part size in bytes for putStream. Default 5 MiB, S3's minimum: at most 10 000 parts
   * are allowed, so a stream of unknown length is capped at ~48 GiB (putFile knows the size and
   * raises the part size as needed). Larger parts cost memory: lib-storage holds
   * (queueSize + 1) × partSize live, and the garbage collector lets finished parts linger.
   */
  partSize?: number;
  /** Parts uploaded concurrently. Default 2. */
  queueSize?: number;
  /** Keys per ListObjectsV2 page. Default 1000 (S3's maximum). */
  listPageSize?: number;
}

export class S3Store implements Store {
  readonly uri: string;
  readonly bucket: string;
  /** Key prefix without trailing '/'; '' for the bucket root. */
  readonly prefix: string;
  readonly client: S3Client;
  private readonly partSize: number;
  private readonly queueSize: number;
  private readonly listPageSize: number;
  private readonly retry: RetryOptions;

  constructor(location: string, opts: S3StoreOptions = {}) {
    const loc = parseStorageUri(location);
    if (loc.scheme !== 's3') throw new StorageError(`not an s3:// location: ${location}`, location);
    this.bucket = loc.bucket;
    this.prefix = loc.prefix;
    this.uri = formatStorageUri(loc);
    this.client = opts.client ?? createS3Client(opts);
    this.partSize = opts.partSize ?? MIN_PART_SIZE;
    this.queueSize = opts.queueSize ?? 2;
    this.listPageSize = opts.listPageSize ?? 1000;
    this.retry = { retryable: isTransientS3Error, ...opts.retry };
    if (this.partSize < MIN_PART_SIZE) {
      throw new StorageError(`partSize must be at least 5 MiB (S3 minimum), got ${this.partSize}`, this.uri);
    }
  }

  /** The full object key of a store key. */
  objectKey(key: string): string {
    const k = normalizeKey(key, this.uri);
    return this.prefix === '' ? k : `${this.prefix}/${k}`;
  }

  uriOf(key: string): string {
    return `s3://${this.bucket}/${this.objectKey(key)}`;
  }

  async get(key: string): Promise<Buffer> {
    // Through the resumable stream, so a connection dropped mid-body is resumed, not fatal.
    const chunks: Buffer[] = [];
    for await (const chunk of await this.createReadStream(key)) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  async put(key: string, data: Buffer | Uint8Array | string, opts?: PutOptions): Promise<void> {
    const uri = this.uriOf(key);
    const body = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.objectKey(key),
          Body: body,
          ContentLength: body.byteLength,
          ContentType: opts?.contentType,
        }),
      );
    } catch (e) {
      throw toStorageError(e, uri, 'put');
    }
  }

  async createReadStream(key: string, range?: { start: number; end?: number }): Promise<Readable> {
    const uri = this.uriOf(key);
    const Key = this.objectKey(key);
    if (range !== undefined) {
      const { start, end } = range;
      if (!Number.isSafeInteger(start) || start < 0 || (end !== undefined && (!Number.isSafeInteger(end) || end < start))) {
        throw new StorageError(`invalid byte range [${start}, ${end ?? ''}] for ${uri}`, uri);
      }
    }
    const start = range?.start ?? 0;
    const end = range?.end;
    const open = async (offset: number, ifMatch?: string): Promise<GetObjectCommandOutput> => {
      const from = start + offset;
      const wantsRange = range !== undefined || offset > 0;
      return this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key,
          Range: wantsRange ? `bytes=${from}-${end ?? ''}` : undefined,
          // Resume only from the same version of the object (S3 answers 412 otherwise).
          IfMatch: ifMatch,
        }),
      );
    };
    let first: GetObjectCommandOutput;
    try {
      first = await open(0);
    } catch (e) {
      if ((e as { name?: string }).name === 'InvalidRange') {
        throw new StorageError(`byte range starting at ${start} is past the end of ${uri}`, uri, { cause: e });
      }
      throw toStorageError(e, uri, 'get');
    }
    // A server may ignore Range (answering 200 with the whole object); from byte 0 the `limit`
    // below still yields the right bytes, from anywhere else it cannot.
    if (range !== undefined && start > 0 && first.ContentRange === undefined) {
      (first.Body as Readable | undefined)?.destroy();
      throw new StorageError(`server ignored the byte range requested for ${uri}`, uri);
    }
    const etag = first.ETag;
    return resumableReadStream(first.Body as Readable, {
      expectedLength: first.ContentLength,
      limit: end !== undefined ? end - start + 1 : undefined,
      reopen: async (offset) => (await open(offset, etag)).Body as Readable,
      retry: this.retry,
      mapError: (e) => toStorageError(e, uri, 'read'),
    });
  }

  async putStream(key: string, source: Readable, opts?: PutOptions): Promise<{ size: number }> {
    return this.upload(key, source, this.partSize, opts);
  }

  private async upload(key: string, source: Readable, partSize: number, opts?: PutOptions): Promise<{ size: number }> {
    const uri = this.uriOf(key);
    let size = 0;
    // Counts bytes on the way through. The pipeline forwards a source failure into `counted`, so
    // Upload's read fails and it aborts the multipart upload: no object, no orphaned parts.
    const counted = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        size += chunk.length;
        cb(null, chunk);
      },
    });
    // Settles with the source's own failure, if any (pipeline destroys the rest with it).
    const feeding = pipeline(source, counted).then(
      () => undefined,
      (e: unknown) => e,
    );
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: this.objectKey(key), Body: counted, ContentType: opts?.contentType },
      partSize,
      queueSize: this.queueSize,
      leavePartsOnError: false,
    });
    let uploadError: unknown;
    try {
      await upload.done();
    } catch (e) {
      uploadError = e;
      counted.destroy(); // an S3 failure leaves the source unread; release it
    }
    const fed = await feeding;
    const sourceError =
      fed !== undefined && (fed as { code?: string }).code !== 'ERR_STREAM_PREMATURE_CLOSE' ? fed : undefined;
    if (sourceError === undefined && uploadError === undefined) return { size };
    if (sourceError === undefined) throw toStorageError(uploadError, uri, 'upload');
    // The source failed (the root cause); Upload then aborted the multipart upload. If the abort
    // failed too (parts may be left behind on a server that cannot abort), say so.
    if (sourceError instanceof SmolrateError) throw sourceError;
    const message = sourceError instanceof Error ? sourceError.message : String(sourceError);
    const abortError = uploadError as Error | undefined;
    const then =
      abortError === undefined || abortError === sourceError || abortError.message === message
        ? ''
        : ` (then: ${abortError.name}: ${abortError.message})`;
    throw new StorageError(`upload ${uri} failed: source stream: ${message}${then}`, uri, { cause: sourceError });
  }

  async putFile(key: string, localPath: string, opts?: PutOptions): Promise<{ size: number }> {
    const source = await openLocalFile(localPath);
    const size = await stat(localPath).then(
      (st) => st.size,
      () => 0, // vanished after opening: the stream still has it
    );
    // Keep within S3's 10 000-part limit for big files, in whole MiB.
    const partSize = Math.max(this.partSize, Math.ceil(size / MAX_PARTS / MiB) * MiB);
    return this.upload(key, source, partSize, opts);
  }

  getFile(key: string, localPath: string): Promise<{ size: number }> {
    return downloadToFile(this, key, localPath);
  }

  async list(prefix = ''): Promise<ListEntry[]> {
    const p = normalizePrefix(prefix, this.uri);
    const root = this.prefix === '' ? '' : `${this.prefix}/`;
    const out: ListEntry[] = [];
    let token: string | undefined;
    try {
      do {
        const page = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: root + p,
            ContinuationToken: token,
            MaxKeys: this.listPageSize,
          }),
        );
        for (const obj of page.Contents ?? []) {
          if (obj.Key === undefined || !obj.Key.startsWith(root)) continue;
          out.push({ key: obj.Key.slice(root.length), size: obj.Size ?? 0 });
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token !== undefined);
    } catch (e) {
      throw toStorageError(e, `s3://${this.bucket}/${root + p}`, 'list');
    }
    // S3 already returns keys in UTF-8 byte order; sorting again makes every store agree exactly.
    return out.sort((a, b) => compareKeys(a.key, b.key));
  }

  async exists(key: string): Promise<boolean> {
    try {
      await this.head(key);
      return true;
    } catch (e) {
      if (e instanceof NotFoundError) return false;
      throw e;
    }
  }

  async size(key: string): Promise<number> {
    return (await this.head(key)).ContentLength ?? 0;
  }

  async delete(key: string): Promise<void> {
    const uri = this.uriOf(key);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
    } catch (e) {
      const err = toStorageError(e, uri, 'delete');
      if (!(err instanceof NotFoundError)) throw err;
    }
  }

  private async head(key: string) {
    try {
      return await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
    } catch (e) {
      throw toStorageError(e, this.uriOf(key), 'head');
    }
  }
}

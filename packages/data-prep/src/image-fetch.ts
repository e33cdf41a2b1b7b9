/**
 * Fetching source image bytes from http(s)://, file:// and s3:// URLs (after rewriting, see
 * url-rewrite.ts), with the guards a crawl of ~16 M third-party images needs:
 *
 *  - bounded concurrency: at most `concurrency` attempts in flight per fetcher (a semaphore held
 *    for one attempt, not across the backoff sleeps, so a failing host does not idle the slots);
 *  - a per-attempt deadline (`timeoutMs`, covering connect, headers and body) via AbortController;
 *  - a size limit (`maxBytes`): a larger Content-Length (or file / object size) is refused before
 *    any body byte is read, and a body without a length is aborted as soon as it goes over;
 *  - retries (`retries`, so `retries + 1` attempts) with capped exponential backoff and full
 *    jitter (core withRetry) on timeouts, connection errors, HTTP 5xx / 408 / 429 and transient
 *    storage errors — never on 404 / 410 (image_not_found) or other 4xx (image_fetch_failed);
 *  - an optional on-disk cache of the fetched bytes (image-cache.ts).
 *
 * HTTP goes through node:http / node:https with a keep-alive pool per fetcher (on loopback about
 * twice the throughput of the global fetch), follows up to 5 redirects, and decodes gzip /
 * deflate / br bodies (the byte limit applies to the decoded bytes). A body that ends before its
 * Content-Length is a transient failure (retried).
 *
 * Every failure is an ImageRejectError with a REJECT_REASONS code and a deterministic detail; the
 * caller turns it into a reject record. A local file read past its deadline is reported as a
 * timeout at once; the read itself stops at its next chunk.
 */
import { open } from 'node:fs/promises';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { pipeline, type Readable } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import {
  NotFoundError,
  PermissionError,
  StorageError,
  isTransientNetworkError,
  openStore,
  withRetry,
  type Logger,
  type RetryOptions,
  type Store,
} from '@smolrate/core';
import type { DataPrepConfig } from './config.js';
import { createImageCache, type ImageCache } from './image-cache.js';
import { ImageRejectError } from './image-reject-error.js';
import { REJECT_REASONS, type RejectReason } from './types.js';
import { resolveImageSource, validateRewriteRules, type ImageSource } from './url-rewrite.js';

export type ImageFetchConfig = DataPrepConfig['images'];

export interface ImageFetcherOptions {
  log?: Logger;
  /** Cache directory; overrides `cfg.cacheDir`. */
  cacheDir?: string;
  /** Backoff tuning (tests shorten it). Defaults: first retry ≤ 250 ms, any retry ≤ 10 s. */
  retry?: Pick<RetryOptions, 'baseDelayMs' | 'maxDelayMs' | 'random' | 'sleep'>;
  /** User-Agent of HTTP requests. */
  userAgent?: string;
}

export interface ImageFetchStats {
  /** fetch() calls that returned bytes (cache hits included). */
  fetched: number;
  /** fetch() calls that failed, in all and by reject reason. */
  failed: number;
  failedByReason: Partial<Record<RejectReason, number>>;
  /** Attempts made against a source (HTTP requests, file reads, S3 gets), retries included. */
  attempts: number;
  retries: number;
  /** Bytes returned by fetch(). */
  bytes: number;
  cacheHits: number;
  cacheMisses: number;
  /** Cache reads or writes that failed (logged; the fetch went on without the cache). */
  cacheErrors: number;
  /** Attempts running now, and the most seen at once. */
  inFlight: number;
  maxInFlight: number;
}

export interface ImageFetcher {
  /** The bytes at `url` (already rewritten). Throws ImageRejectError on any failure. */
  fetch(url: string): Promise<Buffer>;
  stats(): ImageFetchStats;
  /** Closes idle keep-alive connections (they never hold the process open; this frees them now). */
  close(): void;
}

const DEFAULT_USER_AGENT = 'smolrate-data-prep/0.1 (+image fetch)';

/** A transient failure worth another attempt; `what` goes into the final reject detail. */
class RetryableFetchError extends Error {
  constructor(
    readonly what: string,
    options?: { cause?: unknown },
  ) {
    super(what, options);
    this.name = 'RetryableFetchError';
  }
}

/** A counting semaphore: `acquire` resolves to a release function. FIFO. */
class Semaphore {
  private free: number;
  private readonly waiters: Array<() => void> = [];
  constructor(limit: number) {
    this.free = limit;
  }
  async acquire(): Promise<() => void> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiters.push(resolve));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiters.shift();
      if (next) next(); // the slot passes straight to the next waiter
      else this.free++;
    };
  }
}

/** First string `code` along an error's cause chain (ECONNRESET, UND_ERR_SOCKET…). */
function errorCode(e: unknown): string | undefined {
  for (let x = e, depth = 0; x !== null && typeof x === 'object' && depth < 8; depth++) {
    const code = (x as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    x = (x as { cause?: unknown }).cause;
  }
  return undefined;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Runs `work` with a deadline: past `ms` the signal aborts (stopping HTTP / S3 transfers) and the
 * attempt fails with a retryable timeout, whether or not `work` notices.
 */
async function withDeadline<T>(ms: number, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const err = new RetryableFetchError(`timeout after ${ms} ms`);
      ac.abort(err);
      reject(err);
    }, ms);
  });
  try {
    return await Promise.race([work(ac.signal), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function tooLarge(what: string, maxBytes: number, url: string): ImageRejectError {
  return new ImageRejectError(REJECT_REASONS.imageTooLarge, `${what} exceeds the limit of ${maxBytes} bytes: ${url}`);
}

/** HTTP status → reject (not retried) or retryable error. */
function statusError(status: number, url: string): Error {
  if (status === 404 || status === 410) return new ImageRejectError(REJECT_REASONS.imageNotFound, `HTTP ${status}: ${url}`);
  if (status === 408 || status === 429 || (status >= 500 && status !== 501)) return new RetryableFetchError(`HTTP ${status}`);
  return new ImageRejectError(REJECT_REASONS.imageFetch, `HTTP ${status}: ${url}`);
}

/** A thrown network error (fetch, socket, stream) → retryable or final. */
function networkError(e: unknown, signal: AbortSignal, url: string): Error {
  if (e instanceof ImageRejectError || e instanceof RetryableFetchError) return e;
  if (signal.aborted && signal.reason instanceof RetryableFetchError) return signal.reason;
  if (isTransientNetworkError(e)) return new RetryableFetchError(`connection error ${errorCode(e) ?? 'unknown'}`, { cause: e });
  return new ImageRejectError(REJECT_REASONS.imageFetch, `request failed (${errorCode(e) ?? message(e)}): ${url}`, { cause: e });
}

/** Keep-alive connection pools of one fetcher (node:http is about twice as fast as fetch here). */
interface HttpAgents {
  http: HttpAgent;
  https: HttpsAgent;
}

const MAX_REDIRECTS = 5;

/** One GET; resolves with the response head (the body is still to be read). */
function get(url: URL, signal: AbortSignal, agents: HttpAgents, userAgent: string): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const options = {
      signal,
      headers: { 'user-agent': userAgent, accept: 'image/*,*/*;q=0.5', 'accept-encoding': 'gzip, deflate, br' },
    };
    const req = url.protocol === 'https:' ? httpsRequest(url, { ...options, agent: agents.https }) : httpRequest(url, { ...options, agent: agents.http });
    req.once('response', resolve);
    req.once('error', reject);
    req.end();
  });
}

/** The response body, decompressed when the server used a content coding. */
function bodyOf(res: IncomingMessage, url: string): Readable {
  const coding = String(res.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
  if (coding === 'identity' || coding === '') return res;
  const decoder = coding === 'gzip' || coding === 'x-gzip' ? createGunzip() : coding === 'deflate' ? createInflate() : coding === 'br' ? createBrotliDecompress() : undefined;
  if (decoder === undefined) {
    res.destroy();
    throw new ImageRejectError(REJECT_REASONS.imageFetch, `unsupported Content-Encoding "${coding}": ${url}`);
  }
  return pipeline(res, decoder, () => undefined);
}

async function fetchHttp(url: string, signal: AbortSignal, maxBytes: number, agents: HttpAgents, userAgent: string): Promise<Buffer> {
  let target = new URL(url);
  let res: IncomingMessage;
  for (let hops = 0; ; hops++) {
    try {
      res = await get(target, signal, agents, userAgent);
    } catch (e) {
      throw networkError(e, signal, url);
    }
    const status = res.statusCode ?? 0;
    const location = res.headers.location;
    if (status < 300 || status >= 400 || status === 304 || location === undefined) break;
    res.resume(); // discard the redirect's body, keep the connection
    let next: URL;
    try {
      next = new URL(location, target);
    } catch (e) {
      throw new ImageRejectError(REJECT_REASONS.imageFetch, `HTTP ${status} to an invalid Location: ${url}`, { cause: e });
    }
    if (hops >= MAX_REDIRECTS || (next.protocol !== 'http:' && next.protocol !== 'https:')) {
      throw new ImageRejectError(REJECT_REASONS.imageFetch, `HTTP ${status}: too many or unsupported redirects: ${url}`);
    }
    target = next;
  }
  const status = res.statusCode ?? 0;
  if (status < 200 || status >= 300) {
    res.resume();
    throw statusError(status, url);
  }
  const declared = res.headers['content-length'];
  if (declared !== undefined && /^\d+$/.test(declared.trim()) && Number(declared) > maxBytes) {
    res.destroy(); // hang up rather than download what will be refused
    throw tooLarge(`Content-Length ${Number(declared)}`, maxBytes, url);
  }
  const body = bodyOf(res, url);
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of body) {
      const buf = chunk as Buffer;
      total += buf.length;
      if (total > maxBytes) throw tooLarge(`body of more than ${maxBytes} bytes (download aborted)`, maxBytes, url);
      chunks.push(buf);
    }
  } catch (e) {
    res.destroy();
    body.destroy();
    throw networkError(e, signal, url);
  }
  // A connection closed before Content-Length bytes arrived ends the stream early on some paths.
  if (declared !== undefined && body === res && /^\d+$/.test(declared.trim()) && total !== Number(declared)) {
    throw new RetryableFetchError(`connection closed after ${total} of ${Number(declared)} bytes`);
  }
  return Buffer.concat(chunks, total);
}

function fsError(e: unknown, url: string): Error {
  const code = errorCode(e);
  if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') {
    return new ImageRejectError(REJECT_REASONS.imageNotFound, `no such file: ${url}`, { cause: e });
  }
  if (code === 'EMFILE' || code === 'ENFILE' || code === 'EAGAIN' || code === 'EBUSY' || code === 'EIO') {
    return new RetryableFetchError(`file read error ${code}`, { cause: e });
  }
  return new ImageRejectError(REJECT_REASONS.imageFetch, `file read failed (${code ?? message(e)}): ${url}`, { cause: e });
}

async function fetchFile(path: string, signal: AbortSignal, maxBytes: number, url: string): Promise<Buffer> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw fsError(e, url);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new ImageRejectError(REJECT_REASONS.imageNotFound, `not a regular file: ${url}`);
    if (st.size > maxBytes) throw tooLarge(`file size ${st.size}`, maxBytes, url);
    const data = await fh.readFile({ signal });
    if (data.length > maxBytes) throw tooLarge(`file size ${data.length}`, maxBytes, url); // grew since stat
    return data;
  } catch (e) {
    if (e instanceof ImageRejectError || e instanceof RetryableFetchError) throw e;
    if (signal.aborted && signal.reason instanceof RetryableFetchError) throw signal.reason;
    throw fsError(e, url);
  } finally {
    await fh.close().catch(() => undefined);
  }
}

function storageError(e: unknown, url: string): Error {
  if (e instanceof NotFoundError) return new ImageRejectError(REJECT_REASONS.imageNotFound, `no such object: ${url}`, { cause: e });
  if (e instanceof PermissionError) return new ImageRejectError(REJECT_REASONS.imageFetch, `access denied: ${url}`, { cause: e });
  if (isTransientNetworkError(e)) return new RetryableFetchError(`storage error ${errorCode(e) ?? 'transient'}`, { cause: e });
  const what = e instanceof StorageError ? e.message : message(e);
  return new ImageRejectError(REJECT_REASONS.imageFetch, `storage read failed (${what})`, { cause: e });
}

async function fetchS3(store: Store, key: string, signal: AbortSignal, maxBytes: number, url: string): Promise<Buffer> {
  const aborted = new Promise<never>((_, reject) => {
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
  aborted.catch(() => undefined);
  const opening = store.createReadStream(key);
  let stream;
  try {
    stream = await Promise.race([opening, aborted]);
  } catch (e) {
    opening.then((s) => s.destroy(), () => undefined); // opened after the deadline: close it
    if (e instanceof RetryableFetchError) throw e;
    throw storageError(e, url);
  }
  const onAbort = () => stream.destroy(signal.reason as Error);
  signal.addEventListener('abort', onAbort, { once: true });
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of stream) {
      const buf = chunk as Buffer;
      total += buf.length;
      if (total > maxBytes) throw tooLarge(`object of more than ${maxBytes} bytes (download aborted)`, maxBytes, url);
      chunks.push(buf);
    }
  } catch (e) {
    stream.destroy();
    if (e instanceof ImageRejectError || e instanceof RetryableFetchError) throw e;
    throw storageError(e, url);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
  return Buffer.concat(chunks, total);
}

/**
 * A fetcher for the `images` config section. Throws ConfigError at creation for a bad rewrite
 * rule or cache directory.
 */
export function createImageFetcher(cfg: ImageFetchConfig, opts: ImageFetcherOptions = {}): ImageFetcher {
  validateRewriteRules(cfg.rewrite);
  const log = opts.log;
  const cacheDir = opts.cacheDir ?? cfg.cacheDir;
  const cache: ImageCache | undefined = cacheDir ? createImageCache(cacheDir) : undefined;
  const userAgent = opts.userAgent ?? DEFAULT_USER_AGENT;
  const semaphore = new Semaphore(cfg.concurrency);
  // Idle keep-alive sockets are closed after a while and never keep the process alive.
  const agentOptions = { keepAlive: true, maxSockets: cfg.concurrency, timeout: 60_000 };
  const agents: HttpAgents = { http: new HttpAgent(agentOptions), https: new HttpsAgent(agentOptions) };
  const stores = new Map<string, Store>();
  const stats: ImageFetchStats = {
    fetched: 0,
    failed: 0,
    failedByReason: {},
    attempts: 0,
    retries: 0,
    bytes: 0,
    cacheHits: 0,
    cacheMisses: 0,
    cacheErrors: 0,
    inFlight: 0,
    maxInFlight: 0,
  };

  const storeFor = (bucket: string): Store => {
    let store = stores.get(bucket);
    if (store === undefined) {
      store = openStore(`s3://${bucket}`);
      stores.set(bucket, store);
    }
    return store;
  };

  const attemptOnce = async (source: ImageSource, url: string): Promise<Buffer> => {
    const release = await semaphore.acquire();
    stats.attempts++;
    stats.inFlight++;
    stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
    try {
      return await withDeadline(cfg.timeoutMs, async (signal) => {
        switch (source.scheme) {
          case 'http':
            return fetchHttp(source.url, signal, cfg.maxBytes, agents, userAgent);
          case 'file':
            return fetchFile(source.path, signal, cfg.maxBytes, url);
          case 's3': {
            let store: Store;
            try {
              store = storeFor(source.bucket);
            } catch (e) {
              throw storageError(e, url);
            }
            return fetchS3(store, source.key, signal, cfg.maxBytes, url);
          }
        }
      });
    } finally {
      stats.inFlight--;
      release();
    }
  };

  const download = async (url: string): Promise<Buffer> => {
    const source = resolveImageSource(url);
    let attempts = 0;
    try {
      return await withRetry(
        (n) => {
          attempts = n;
          return attemptOnce(source, url);
        },
        {
          attempts: cfg.retries + 1,
          baseDelayMs: opts.retry?.baseDelayMs ?? 250,
          maxDelayMs: opts.retry?.maxDelayMs ?? 10_000,
          random: opts.retry?.random,
          sleep: opts.retry?.sleep,
          retryable: (e) => e instanceof RetryableFetchError,
          onRetry: ({ attempt, delayMs, error }) => {
            stats.retries++;
            log?.debug('image fetch retry', { url, attempt, delayMs, error: message(error) });
          },
        },
      );
    } catch (e) {
      if (e instanceof RetryableFetchError) {
        const times = attempts === 1 ? '1 attempt' : `${attempts} attempts`;
        throw new ImageRejectError(REJECT_REASONS.imageFetch, `${e.what} (${times}): ${url}`, { cause: e });
      }
      if (e instanceof ImageRejectError) throw e;
      throw new ImageRejectError(REJECT_REASONS.imageFetch, `fetch failed (${message(e)}): ${url}`, { cause: e });
    }
  };

  const cached = async (url: string): Promise<Buffer | undefined> => {
    if (!cache) return undefined;
    try {
      const hit = await cache.get(url);
      if (hit === undefined) stats.cacheMisses++;
      else stats.cacheHits++;
      return hit;
    } catch (e) {
      stats.cacheErrors++;
      log?.warn('image cache read failed; fetching', { url, path: cache.pathFor(url), error: message(e) });
      return undefined;
    }
  };

  return {
    async fetch(url: string): Promise<Buffer> {
      try {
        let bytes = await cached(url);
        if (bytes !== undefined) {
          // The limit holds for cached bytes too: the result must not depend on the cache.
          if (bytes.length > cfg.maxBytes) throw tooLarge(`cached image of ${bytes.length} bytes`, cfg.maxBytes, url);
        } else {
          bytes = await download(url);
          if (cache) {
            await cache.put(url, bytes).catch((e: unknown) => {
              stats.cacheErrors++;
              log?.warn('image cache write failed', { url, path: cache.pathFor(url), error: message(e) });
            });
          }
        }
        stats.fetched++;
        stats.bytes += bytes.length;
        return bytes;
      } catch (e) {
        const err = e instanceof ImageRejectError ? e : new ImageRejectError(REJECT_REASONS.imageFetch, `fetch failed (${message(e)}): ${url}`, { cause: e });
        stats.failed++;
        stats.failedByReason[err.reason] = (stats.failedByReason[err.reason] ?? 0) + 1;
        throw err;
      }
    },
    stats: () => ({ ...stats, failedByReason: { ...stats.failedByReason } }),
    close() {
      agents.http.destroy();
      agents.https.destroy();
    },
  };
}

// The image fetcher against a real HTTP server on 127.0.0.1 (with injected faults), real files,
// and the real S3-compatible server of the vitest global setup (random prefix, removed after).
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { openStore, type Store } from '@smolrate/core';
import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { resolveDataPrepConfig } from './config.js';
import { imageCacheKey } from './image-cache.js';
import { createImageFetcher, type ImageFetchConfig, type ImageFetcherOptions } from './image-fetch.js';
import { ImageRejectError } from './image-reject-error.js';

type Handler = (req: IncomingMessage, res: ServerResponse, n: number) => void;

/** An HTTP server whose routes the tests set; counts requests per path and concurrent requests. */
async function startServer() {
  const routes = new Map<string, Handler>();
  const counts = new Map<string, number>();
  const seen: string[] = [];
  const state = { inFlight: 0, maxInFlight: 0 };
  const server: Server = createServer((req, res) => {
    const path = req.url!;
    seen.push(path);
    const n = (counts.get(path) ?? 0) + 1;
    counts.set(path, n);
    state.inFlight++;
    state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
    let done = false;
    const finish = () => {
      if (!done) state.inFlight--;
      done = true;
    };
    res.on('finish', finish);
    res.on('close', finish);
    const handler = routes.get(path);
    if (!handler) {
      res.writeHead(404).end('not here');
      return;
    }
    handler(req, res, n);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    base,
    routes,
    seen,
    state,
    count: (path: string) => counts.get(path) ?? 0,
    reset() {
      routes.clear();
      counts.clear();
      seen.length = 0;
      state.maxInFlight = state.inFlight;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Deterministic noise bytes (an LCG). */
function seededNoise(length: number, seed: number): Buffer {
  const buf = Buffer.alloc(length);
  let x = seed >>> 0;
  for (let i = 0; i < length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    buf[i] = x >>> 24;
  }
  return buf;
}

let srv: Awaited<ReturnType<typeof startServer>>;
let jpeg: Buffer;
let tmp: string;

const cfgWith = (images: Record<string, unknown> = {}): ImageFetchConfig =>
  resolveDataPrepConfig({ file: { images: { concurrency: 4, timeoutMs: 400, retries: 2, maxBytes: 64 * 1024, ...images } } }).images;
const fast: ImageFetcherOptions = { retry: { baseDelayMs: 5, maxDelayMs: 20 } };

async function rejection(p: Promise<unknown>): Promise<ImageRejectError> {
  const e = await p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(ImageRejectError);
  return e as ImageRejectError;
}

const serve = (body: Buffer, type = 'image/jpeg'): Handler => (_req, res) => {
  res.writeHead(200, { 'content-type': type, 'content-length': body.length });
  res.end(body);
};

beforeAll(async () => {
  srv = await startServer();
  // Noise, so the JPEG is a few KB (the size limits below are set around it).
  jpeg = await sharp(seededNoise(96 * 96 * 3, 1), { raw: { width: 96, height: 96, channels: 3 } }).jpeg().toBuffer();
  expect(jpeg.length).toBeGreaterThan(2048);
  tmp = await mkdtemp(join(tmpdir(), 'smolrate-image-fetch-'));
});

afterEach(() => srv.reset());

afterAll(async () => {
  await srv?.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('http(s)', () => {
  it('fetches the bytes', async () => {
    srv.routes.set('/a.jpg', serve(jpeg));
    const f = createImageFetcher(cfgWith(), fast);
    expect((await f.fetch(`${srv.base}/a.jpg`)).equals(jpeg)).toBe(true);
    expect(f.stats()).toMatchObject({ fetched: 1, attempts: 1, retries: 0, failed: 0, bytes: jpeg.length });
  });

  it('retries 503 with backoff and then succeeds', async () => {
    srv.routes.set('/flaky.jpg', (req, res, n) => (n <= 2 ? res.writeHead(503).end('slow down') : serve(jpeg)(req, res, n)));
    const f = createImageFetcher(cfgWith(), fast);
    expect((await f.fetch(`${srv.base}/flaky.jpg`)).equals(jpeg)).toBe(true);
    expect(srv.count('/flaky.jpg')).toBe(3);
    expect(f.stats()).toMatchObject({ fetched: 1, attempts: 3, retries: 2 });
  });

  it('gives up on a persistent 5xx after retries + 1 attempts', async () => {
    srv.routes.set('/down.jpg', (_req, res) => res.writeHead(500).end());
    const f = createImageFetcher(cfgWith({ retries: 3 }), fast);
    const e = await rejection(f.fetch(`${srv.base}/down.jpg`));
    expect(e.reason).toBe('image_fetch_failed');
    expect(e.detail).toBe(`HTTP 500 (4 attempts): ${srv.base}/down.jpg`);
    expect(srv.count('/down.jpg')).toBe(4);
    expect(f.stats().failedByReason).toEqual({ image_fetch_failed: 1 });
  });

  it('does not retry 404 (image_not_found) or 403 (image_fetch_failed)', async () => {
    srv.routes.set('/forbidden.jpg', (_req, res) => res.writeHead(403).end('no'));
    const f = createImageFetcher(cfgWith(), fast);
    const nf = await rejection(f.fetch(`${srv.base}/missing.jpg`));
    expect([nf.reason, nf.detail]).toEqual(['image_not_found', `HTTP 404: ${srv.base}/missing.jpg`]);
    const fb = await rejection(f.fetch(`${srv.base}/forbidden.jpg`));
    expect([fb.reason, fb.detail]).toEqual(['image_fetch_failed', `HTTP 403: ${srv.base}/forbidden.jpg`]);
    expect(srv.count('/missing.jpg')).toBe(1);
    expect(srv.count('/forbidden.jpg')).toBe(1);
    expect(f.stats()).toMatchObject({ attempts: 2, retries: 0, failed: 2 });
  });

  it('times out a server that never answers, after retries + 1 attempts', async () => {
    srv.routes.set('/hang.jpg', () => undefined);
    const f = createImageFetcher(cfgWith({ timeoutMs: 250, retries: 2 }), fast);
    const t0 = Date.now();
    const e = await rejection(f.fetch(`${srv.base}/hang.jpg`));
    const elapsed = Date.now() - t0;
    expect(e.reason).toBe('image_fetch_failed');
    expect(e.detail).toBe(`timeout after 250 ms (3 attempts): ${srv.base}/hang.jpg`);
    expect(srv.count('/hang.jpg')).toBe(3);
    expect(elapsed).toBeGreaterThanOrEqual(3 * 250 - 20);
    expect(elapsed).toBeLessThan(5000);
  });

  it('retries connection resets and refused connections', async () => {
    srv.routes.set('/reset.jpg', (req) => req.socket.destroy());
    const f = createImageFetcher(cfgWith({ retries: 1 }), fast);
    const e = await rejection(f.fetch(`${srv.base}/reset.jpg`));
    expect(e.reason).toBe('image_fetch_failed');
    expect(e.detail).toMatch(/^connection error \S+ \(2 attempts\): /);
    expect(srv.count('/reset.jpg')).toBe(2);

    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const r = await rejection(f.fetch(`http://127.0.0.1:${port}/x.jpg`));
    expect(r.detail).toBe(`connection error ECONNREFUSED (2 attempts): http://127.0.0.1:${port}/x.jpg`);
  });

  it('refuses a Content-Length over maxBytes without downloading the body', async () => {
    const maxBytes = 64 * 1024;
    let closed!: Promise<number>;
    srv.routes.set('/huge.jpg', (_req, res) => {
      let sent = 0;
      closed = new Promise((resolve) => res.on('close', () => resolve(sent)));
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': 100 * maxBytes });
      // Only the head goes out; the body would follow slowly, and must not be awaited.
      const chunk = Buffer.alloc(1024, 1);
      const timer = setInterval(() => {
        if (res.destroyed) return clearInterval(timer);
        sent += chunk.length;
        res.write(chunk);
      }, 50);
      res.on('close', () => clearInterval(timer));
    });
    const f = createImageFetcher(cfgWith({ maxBytes, timeoutMs: 5000 }), fast);
    const t0 = Date.now();
    const e = await rejection(f.fetch(`${srv.base}/huge.jpg`));
    expect(Date.now() - t0).toBeLessThan(1000); // refused on the header, not after a timeout
    expect([e.reason, e.detail]).toEqual(['image_too_large', `Content-Length ${100 * maxBytes} exceeds the limit of ${maxBytes} bytes: ${srv.base}/huge.jpg`]);
    expect(await closed).toBeLessThan(4 * 1024); // the client hung up at once
    expect(srv.count('/huge.jpg')).toBe(1); // not retried
  });

  it('aborts a body without Content-Length as soon as it exceeds maxBytes', async () => {
    const maxBytes = 64 * 1024;
    const total = 1024 * maxBytes; // 64 MiB: far more than loopback socket buffers absorb
    let finished!: Promise<{ sent: number; ended: boolean }>;
    srv.routes.set('/stream.jpg', (_req, res) => {
      res.writeHead(200, { 'content-type': 'image/jpeg' }); // chunked: no length up front
      finished = new Promise((resolve) => {
        let sent = 0;
        const pump = () => {
          while (sent < total && !res.destroyed) {
            sent += 16 * 1024;
            if (!res.write(Buffer.alloc(16 * 1024, 7))) return void res.once('drain', pump);
          }
          if (!res.destroyed) res.end();
        };
        res.on('close', () => resolve({ sent, ended: res.writableFinished }));
        pump();
      });
    });
    const f = createImageFetcher(cfgWith({ maxBytes, timeoutMs: 5000 }), fast);
    const e = await rejection(f.fetch(`${srv.base}/stream.jpg`));
    expect(e.reason).toBe('image_too_large');
    expect(e.detail).toBe(`body of more than ${maxBytes} bytes (download aborted) exceeds the limit of ${maxBytes} bytes: ${srv.base}/stream.jpg`);
    const { sent, ended } = await finished;
    expect(ended).toBe(false);
    expect(sent).toBeLessThan(total);
    expect(srv.count('/stream.jpg')).toBe(1);
  });

  it('follows redirects and decodes a gzip body', async () => {
    srv.routes.set('/old.jpg', (_req, res) => res.writeHead(301, { location: '/new.jpg' }).end());
    srv.routes.set('/new.jpg', (_req, res) => res.writeHead(302, { location: `${srv.base}/gz.jpg` }).end());
    srv.routes.set('/gz.jpg', (_req, res) => {
      const body = gzipSync(jpeg);
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-encoding': 'gzip', 'content-length': body.length });
      res.end(body);
    });
    srv.routes.set('/loop.jpg', (_req, res) => res.writeHead(302, { location: '/loop.jpg' }).end());
    const f = createImageFetcher(cfgWith(), fast);
    expect((await f.fetch(`${srv.base}/old.jpg`)).equals(jpeg)).toBe(true);
    expect(srv.seen).toEqual(['/old.jpg', '/new.jpg', '/gz.jpg']);
    const loop = await rejection(f.fetch(`${srv.base}/loop.jpg`));
    expect(loop.reason).toBe('image_fetch_failed');
    expect(srv.count('/loop.jpg')).toBe(6); // the request and 5 redirects, not retried
  });

  it('retries a body cut short of its Content-Length', async () => {
    srv.routes.set('/cut.jpg', (req, res, n) => {
      if (n > 1) return serve(jpeg)(req, res, n);
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': jpeg.length });
      res.write(jpeg.subarray(0, 100), () => res.destroy());
    });
    const f = createImageFetcher(cfgWith(), fast);
    expect((await f.fetch(`${srv.base}/cut.jpg`)).equals(jpeg)).toBe(true);
    expect(srv.count('/cut.jpg')).toBe(2);
    expect(f.stats().retries).toBe(1);
  });

  it('never has more than `concurrency` requests in flight', async () => {
    for (let i = 0; i < 10; i++) {
      srv.routes.set(`/c${i}.jpg`, (req, res, n) => setTimeout(() => serve(jpeg)(req, res, n), 60));
    }
    const f = createImageFetcher(cfgWith({ concurrency: 3 }), fast);
    const out = await Promise.all(Array.from({ length: 10 }, (_, i) => f.fetch(`${srv.base}/c${i}.jpg`)));
    expect(out.every((b) => b.equals(jpeg))).toBe(true);
    expect(srv.state.maxInFlight).toBe(3);
    expect(f.stats()).toMatchObject({ maxInFlight: 3, inFlight: 0, fetched: 10 });
  });

  it('percent-encodes the path: "+" goes out as %2B, existing escapes are kept', async () => {
    srv.routes.set('/images/I/41%2BabcDEF12L.jpg', serve(jpeg));
    const f = createImageFetcher(cfgWith(), fast);
    expect((await f.fetch(`${srv.base}/images/I/41+abcDEF12L.jpg`)).equals(jpeg)).toBe(true);
    expect((await f.fetch(`${srv.base}/images/I/41%2BabcDEF12L.jpg`)).equals(jpeg)).toBe(true);
    expect(srv.seen).toEqual(['/images/I/41%2BabcDEF12L.jpg', '/images/I/41%2BabcDEF12L.jpg']);
  });

  it('rejects unsupported and malformed URLs as image_fetch_failed', async () => {
    const f = createImageFetcher(cfgWith(), fast);
    for (const url of ['ftp://example.invalid/a.jpg', 'http:///nohost.jpg', 'not a url', 's3://bucket']) {
      expect((await rejection(f.fetch(url))).reason).toBe('image_fetch_failed');
    }
    expect(f.stats()).toMatchObject({ attempts: 0, failed: 4 });
  });
});

describe('file://', () => {
  it('reads files with the size limit; missing files are image_not_found', async () => {
    const dir = join(tmp, 'mirror');
    await mkdir(join(dir, 'sub'), { recursive: true });
    await writeFile(join(dir, 'ok+1.jpg'), jpeg);
    const maxBytes = jpeg.length + 100;
    await writeFile(join(dir, 'big.jpg'), Buffer.alloc(maxBytes + 1));
    const f = createImageFetcher(cfgWith({ maxBytes }), fast);
    const base = pathToFileURL(dir).href;
    expect((await f.fetch(`${base}/ok+1.jpg`)).equals(jpeg)).toBe(true);
    expect((await f.fetch(`${base}/ok%2B1.jpg`)).equals(jpeg)).toBe(true);
    expect((await f.fetch(`${dir}/ok+1.jpg`)).equals(jpeg)).toBe(true); // a plain absolute path
    const missing = await rejection(f.fetch(`${base}/nope.jpg`));
    expect([missing.reason, missing.detail]).toEqual(['image_not_found', `no such file: ${base}/nope.jpg`]);
    expect((await rejection(f.fetch(`${base}/sub`))).reason).toBe('image_not_found');
    const big = await rejection(f.fetch(`${base}/big.jpg`));
    expect([big.reason, big.detail]).toEqual(['image_too_large', `file size ${maxBytes + 1} exceeds the limit of ${maxBytes} bytes: ${base}/big.jpg`]);
    expect((await rejection(f.fetch(`${base}/sub/../ok+1.jpg`))).reason).toBe('image_fetch_failed'); // no climbing
    expect(f.stats()).toMatchObject({ retries: 0 });
  });
});

describe('s3://', () => {
  let store: Store;
  let bucket: string;
  let prefix: string;

  beforeAll(async () => {
    bucket = process.env.SMOLRATE_TEST_S3_BUCKET ?? '';
    if (!bucket || !process.env.AWS_ENDPOINT_URL_S3) throw new Error('the vitest global setup did not provide an S3 server');
    prefix = `image-fetch-${randomBytes(6).toString('hex')}`;
    store = openStore(`s3://${bucket}/${prefix}`);
    await store.put('I/41+abc.jpg', jpeg);
    await store.put('I/big.jpg', Buffer.alloc(jpeg.length + 4096, 3));
  });

  afterAll(async () => {
    if (!store) return;
    for (const { key } of await store.list()) await store.delete(key);
    expect(await store.list()).toEqual([]);
  });

  it('reads objects by their literal key; missing → image_not_found; too large → image_too_large', async () => {
    const f = createImageFetcher(cfgWith({ maxBytes: jpeg.length + 1024 }), fast);
    const base = `s3://${bucket}/${prefix}/I`;
    expect((await f.fetch(`${base}/41+abc.jpg`)).equals(jpeg)).toBe(true);
    expect((await f.fetch(`${base}/41%2Babc.jpg`)).equals(jpeg)).toBe(true);
    const nf = await rejection(f.fetch(`${base}/nope.jpg`));
    expect([nf.reason, nf.detail]).toEqual(['image_not_found', `no such object: ${base}/nope.jpg`]);
    const big = await rejection(f.fetch(`${base}/big.jpg`));
    expect(big.reason).toBe('image_too_large');
    expect(f.stats()).toMatchObject({ fetched: 2, failed: 2, retries: 0 });
  });
});

describe('cache', () => {
  it('a cached URL is not requested again, by this fetcher or another sharing the directory', async () => {
    srv.routes.set('/cached.jpg', serve(jpeg));
    const cacheDir = join(tmp, 'cache');
    const url = `${srv.base}/cached.jpg`;
    const a = createImageFetcher(cfgWith({ cacheDir }), fast);
    expect((await a.fetch(url)).equals(jpeg)).toBe(true);
    expect((await a.fetch(url)).equals(jpeg)).toBe(true);
    expect(srv.count('/cached.jpg')).toBe(1);
    expect(a.stats()).toMatchObject({ cacheHits: 1, cacheMisses: 1, fetched: 2, attempts: 1 });
    const key = imageCacheKey(url);
    expect((await stat(join(cacheDir, key.slice(0, 2), key))).size).toBe(jpeg.length);
    expect(await readdir(join(cacheDir, key.slice(0, 2)))).toEqual([key]); // no temporary files left

    const b = createImageFetcher(cfgWith(), { ...fast, cacheDir });
    expect((await b.fetch(url)).equals(jpeg)).toBe(true);
    expect(srv.count('/cached.jpg')).toBe(1);
    expect(b.stats()).toMatchObject({ cacheHits: 1, attempts: 0 });
  });

  it('failures are not cached, and cached bytes still obey maxBytes', async () => {
    const cacheDir = join(tmp, 'cache2');
    const f = createImageFetcher(cfgWith({ cacheDir }), fast);
    await rejection(f.fetch(`${srv.base}/gone.jpg`));
    await rejection(f.fetch(`${srv.base}/gone.jpg`));
    expect(srv.count('/gone.jpg')).toBe(2);

    srv.routes.set('/mid.jpg', serve(jpeg));
    await f.fetch(`${srv.base}/mid.jpg`);
    const small = createImageFetcher(cfgWith({ cacheDir, maxBytes: 1024 }), fast);
    const e = await rejection(small.fetch(`${srv.base}/mid.jpg`));
    expect([e.reason, e.detail]).toEqual(['image_too_large', `cached image of ${jpeg.length} bytes exceeds the limit of 1024 bytes: ${srv.base}/mid.jpg`]);
    expect(srv.count('/mid.jpg')).toBe(1);
  });
});

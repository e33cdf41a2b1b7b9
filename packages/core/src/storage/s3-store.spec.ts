/**
 * S3-specific behaviour against the real s3rver, with a fault-injecting HTTP proxy in between:
 * retries of transient failures (503 SlowDown, connection resets), resumption of a download whose
 * connection drops mid-body, retry of a single multipart part, pagination, and error mapping.
 */
import { S3Client } from '@aws-sdk/client-s3';
import { createHash, randomUUID } from 'node:crypto';
import { createServer, request, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NotFoundError, PermissionError, StorageError } from '../errors.js';
import { S3Store, type S3StoreOptions } from './s3-store.js';

type Fault =
  | { kind: 'status'; status: number; code: string }
  | { kind: 'reset' }
  | { kind: 'truncate'; afterBytes: number };

interface Seen {
  method: string;
  url: string;
  range?: string;
  /** Status the upstream answered (forwarded requests only). */
  status?: number;
}

/** An HTTP proxy to `target` that answers with `decide(request)`'s fault, or forwards. */
async function startFaultProxy(target: string) {
  const up = new URL(target);
  const seen: Seen[] = [];
  let decide: (req: IncomingMessage, seen: Seen[]) => Fault | undefined = () => undefined;
  const server = createServer((req, res) => {
    const entry: Seen = { method: req.method!, url: req.url!, range: req.headers.range };
    seen.push(entry);
    const fault = decide(req, seen);
    if (fault?.kind === 'reset') {
      req.socket.destroy();
      return;
    }
    if (fault?.kind === 'status') {
      req.resume();
      req.on('end', () => {
        const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${fault.code}</Code><Message>injected by test</Message></Error>`;
        res.writeHead(fault.status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
        res.end(body);
      });
      return;
    }
    // Forwarded with the Host header intact, so the SigV4 signature still verifies upstream.
    const upstream = request(
      { host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers },
      (ur) => {
        entry.status = ur.statusCode;
        res.writeHead(ur.statusCode!, ur.headers);
        if (fault?.kind !== 'truncate') {
          ur.pipe(res);
          return;
        }
        let sent = 0;
        const cut = () => {
          ur.destroy();
          // Let the bytes leave, then drop the connection mid-body.
          setTimeout(() => res.socket?.destroy(), 20);
        };
        if (fault.afterBytes === 0) {
          res.flushHeaders();
          cut();
          return;
        }
        ur.on('data', (chunk: Buffer) => {
          if (sent >= fault.afterBytes) return;
          const take = Math.min(chunk.length, fault.afterBytes - sent);
          sent += take;
          res.write(chunk.subarray(0, take));
          if (sent >= fault.afterBytes) cut();
        });
      },
    );
    upstream.on('error', () => res.socket?.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    /** Sets the fault plan and clears the request log. */
    plan(fn: typeof decide) {
      decide = fn;
      seen.length = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function bytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe('S3Store against s3rver through a fault-injecting proxy', () => {
  const bucket = process.env.SMOLRATE_TEST_S3_BUCKET!;
  const prefix = `s3-store-${randomUUID()}`;
  let proxy: Awaited<ReturnType<typeof startFaultProxy>>;
  let store: S3Store;
  const retried: number[] = [];
  const open = (opts: S3StoreOptions = {}) =>
    new S3Store(`s3://${bucket}/${prefix}`, {
      endpoint: proxy.endpoint,
      retry: { attempts: 3, baseDelayMs: 1, maxDelayMs: 5, onRetry: (i) => retried.push(i.attempt) },
      ...opts,
    });

  beforeAll(async () => {
    if (!bucket || !process.env.AWS_ENDPOINT_URL_S3) throw new Error('run through the vitest global setup (s3rver)');
    proxy = await startFaultProxy(process.env.AWS_ENDPOINT_URL_S3);
    store = open();
  });
  afterAll(async () => {
    if (proxy) {
      proxy.plan(() => undefined);
      for (const e of await store.list()) await store.delete(e.key);
      expect(await store.list()).toEqual([]);
      store.client.destroy();
      await proxy.close();
    }
  });

  it('retries 503 SlowDown and a connection reset, then succeeds', async () => {
    let puts = 0;
    proxy.plan((req) => {
      if (req.method !== 'PUT') return undefined;
      puts += 1;
      if (puts === 1) return { kind: 'status', status: 503, code: 'SlowDown' };
      if (puts === 2) return { kind: 'reset' };
      return undefined;
    });
    retried.length = 0;
    await store.put('retry/a.txt', 'payload');
    expect(proxy.seen.filter((s) => s.method === 'PUT')).toHaveLength(3);
    expect(retried).toEqual([1, 2]);
    expect((await store.get('retry/a.txt')).toString()).toBe('payload');
  });

  it('gives up after the configured attempts with a StorageError naming the URI', async () => {
    await store.put('retry/b.txt', 'x');
    proxy.plan((req) => (req.method === 'GET' ? { kind: 'status', status: 500, code: 'InternalError' } : undefined));
    const err = await store.get('retry/b.txt').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageError);
    expect(err).not.toBeInstanceOf(NotFoundError);
    expect((err as StorageError).uri).toBe(`s3://${bucket}/${prefix}/retry/b.txt`);
    expect((err as Error).message).toMatch(/InternalError.*500/);
    expect(proxy.seen.filter((s) => s.method === 'GET')).toHaveLength(3);
  });

  it('does not retry a missing key', async () => {
    proxy.plan(() => undefined);
    await expect(store.get('retry/none.txt')).rejects.toBeInstanceOf(NotFoundError);
    expect(proxy.seen).toHaveLength(1);
  });

  it('resumes a streamed download after the connection drops mid-body', async () => {
    const data = bytes(3_000_000, 11);
    proxy.plan(() => undefined);
    await store.put('resume/obj.bin', data);

    let gets = 0;
    proxy.plan((req) => (req.method === 'GET' && ++gets === 1 ? { kind: 'truncate', afterBytes: 1_000_000 } : undefined));
    expect(sha(await readAll(await store.createReadStream('resume/obj.bin')))).toBe(sha(data));
    const ranges = proxy.seen.filter((s) => s.method === 'GET').map((s) => s.range);
    expect(ranges).toEqual([undefined, 'bytes=1000000-']);

    gets = 0;
    proxy.plan((req) => (req.method === 'GET' && ++gets === 1 ? { kind: 'truncate', afterBytes: 500_000 } : undefined));
    const part = await readAll(await store.createReadStream('resume/obj.bin', { start: 100, end: 2_000_099 }));
    expect(sha(part)).toBe(sha(data.subarray(100, 2_000_100)));
    expect(proxy.seen.map((s) => s.range)).toEqual(['bytes=100-2000099', 'bytes=500100-2000099']);
  });

  it('fails the stream with a StorageError once resuming has used up its attempts', async () => {
    proxy.plan((req) => (req.method === 'GET' ? { kind: 'truncate', afterBytes: 0 } : undefined));
    const stream = await store.createReadStream('resume/obj.bin');
    const err = await readAll(stream).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageError);
    expect((err as StorageError).uri).toBe(store.uriOf('resume/obj.bin'));
    expect(proxy.seen.filter((s) => s.method === 'GET')).toHaveLength(3);
  });

  it('retries a failed multipart part without restarting the upload', async () => {
    const data = bytes(12 * 1024 * 1024, 5);
    const small = open({ partSize: 5 * 1024 * 1024, queueSize: 1 });
    let part2 = 0;
    proxy.plan((req) =>
      req.method === 'PUT' && /[?&]partNumber=2(&|$)/.test(req.url!) && ++part2 === 1
        ? { kind: 'status', status: 503, code: 'ServiceUnavailable' }
        : undefined,
    );
    const chunks = Array.from({ length: 12 }, (_, i) => data.subarray(i * 1024 * 1024, (i + 1) * 1024 * 1024));
    expect(await small.putStream('multipart/obj.bin', Readable.from(chunks))).toEqual({ size: data.length });
    const partPuts = proxy.seen.filter((s) => s.method === 'PUT').map((s) => /partNumber=(\d+)/.exec(s.url)?.[1]);
    expect(partPuts).toEqual(['1', '2', '2', '3']);
    expect(proxy.seen.filter((s) => s.method === 'POST')).toHaveLength(2); // create + complete
    proxy.plan(() => undefined);
    expect(sha(await store.get('multipart/obj.bin'))).toBe(sha(data));
    small.client.destroy();
  });

  it('aborts the multipart upload when the source fails midway', async () => {
    proxy.plan(() => undefined);
    const chunk = bytes(1024 * 1024, 9);
    let sent = 0;
    const source = new Readable({
      read() {
        if (sent++ < 7) this.push(chunk);
        else this.destroy(new Error('source gave out'));
      },
    });
    const failing = open({ partSize: 5 * 1024 * 1024 });
    const err = await failing.putStream('multipart/failed.bin', source).catch((e: unknown) => e);
    failing.client.destroy();
    expect(err).toBeInstanceOf(StorageError);
    expect((err as Error).message).toBe(`upload ${store.uriOf('multipart/failed.bin')} failed: source stream: source gave out`);
    const aborts = proxy.seen.filter((s) => s.method === 'DELETE' && /[?&]uploadId=/.test(s.url));
    expect(aborts.map((s) => s.status)).toEqual([204]);
    expect(await store.exists('multipart/failed.bin')).toBe(false);
  });

  it('lists across pages', async () => {
    proxy.plan(() => undefined);
    const paged = open({ listPageSize: 2 });
    for (const k of ['p/5', 'p/1', 'p/3', 'p/2', 'p/4']) await paged.put(k, k);
    proxy.plan(() => undefined);
    expect((await paged.list('p/')).map((e) => e.key)).toEqual(['p/1', 'p/2', 'p/3', 'p/4', 'p/5']);
    const pages = proxy.seen.filter((s) => s.method === 'GET' && s.url.includes('list-type=2'));
    expect(pages).toHaveLength(3);
    paged.client.destroy();
  });

  it('maps rejected credentials (403) to PermissionError naming the URI', async () => {
    const client = new S3Client({
      endpoint: process.env.AWS_ENDPOINT_URL_S3,
      region: 'us-east-1',
      forcePathStyle: true,
      // s3rver does not verify SigV4 signatures, but it does reject unknown access keys.
      credentials: { accessKeyId: 'NOT-A-KNOWN-KEY', secretAccessKey: 'whatever' },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    const denied = new S3Store(`s3://${bucket}/${prefix}`, { client });
    const err = await denied.get('retry/a.txt').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermissionError);
    expect((err as PermissionError).uri).toBe(`s3://${bucket}/${prefix}/retry/a.txt`);
    await expect(denied.put('denied.txt', 'x')).rejects.toBeInstanceOf(PermissionError);
    client.destroy();
  });
});

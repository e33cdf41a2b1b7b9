/**
 * One behavioural contract, run against every Store implementation: the local directory store
 * (a temp dir) and the S3 store (the s3rver the vitest global setup starts; each run writes under
 * a random prefix of SMOLRATE_TEST_S3_BUCKET and deletes it afterwards).
 */
import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NotFoundError, StorageError } from '../errors.js';
import { LocalStore } from './local-store.js';
import { openStore } from './open-store.js';
import { S3Store } from './s3-store.js';
import type { Store } from './store.js';

interface Backend {
  store: Store;
  /** Every name physically present under the store root, temp files included. */
  everything(): Promise<string[]>;
  cleanup(): Promise<void>;
}

async function walk(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const ent of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const key = rel ? `${rel}/${ent.name}` : ent.name;
    if (ent.isDirectory()) out.push(...(await walk(join(dir, ent.name), key)));
    else out.push(key);
  }
  return out.sort();
}

const backends: Record<string, () => Promise<Backend>> = {
  local: async () => {
    const dir = await mkdtemp(join(tmpdir(), 'smolrate-store-'));
    return {
      store: new LocalStore(join(dir, 'root')),
      everything: () => walk(join(dir, 'root')),
      cleanup: () => rm(dir, { recursive: true, force: true }),
    };
  },
  s3: async () => {
    const bucket = process.env.SMOLRATE_TEST_S3_BUCKET;
    if (!bucket) throw new Error('SMOLRATE_TEST_S3_BUCKET is unset: run through the vitest global setup');
    const prefix = `conformance-${randomUUID()}`;
    const store = openStore(`s3://${bucket}/${prefix}`);
    const bucketStore = openStore(`s3://${bucket}`);
    return {
      store,
      everything: async () => (await bucketStore.list(`${prefix}/`)).map((e) => e.key.slice(prefix.length + 1)),
      cleanup: async () => {
        for (const e of await bucketStore.list(`${prefix}/`)) await bucketStore.delete(e.key);
      },
    };
  },
};

/** `n` bytes that depend on `seed` (not random: failures must reproduce). */
function bytes(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/**
 * Emits `good` bytes in 64 KiB chunks, then fails — with an ENOENT-coded error, which must be
 * reported as the source's failure, not as "destination not found".
 */
function failingSource(good: number, message: string): Readable {
  const data = bytes(64 * 1024, 7);
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= good) {
        this.destroy(Object.assign(new Error(message), { code: 'ENOENT' }));
        return;
      }
      const n = Math.min(data.length, good - sent);
      sent += n;
      this.push(data.subarray(0, n));
    },
  });
}

async function caught(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection');
}

describe.each(Object.keys(backends))('%s store conformance', (name) => {
  let b: Backend;
  let store: Store;
  let scratch: string;

  beforeAll(async () => {
    b = await backends[name]!();
    store = b.store;
    scratch = await mkdtemp(join(tmpdir(), 'smolrate-scratch-'));
  });
  afterAll(async () => {
    await b?.cleanup();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it('has the canonical root URI and names keys under it', () => {
    expect(store.uri).toMatch(name === 's3' ? /^s3:\/\/[^/]+\/conformance-/ : /^file:\/\//);
    expect(store.uriOf('a/./b//c.bin')).toBe(`${store.uri}/a/b/c.bin`);
  });

  it('puts and gets strings, buffers and byte views', async () => {
    await store.put('basic/text.txt', 'héllo\n');
    expect((await store.get('basic/text.txt')).toString('utf8')).toBe('héllo\n');
    const data = bytes(10_000);
    await store.put('basic/bytes.bin', data);
    expect((await store.get('basic/bytes.bin')).equals(data)).toBe(true);
    // A view into a larger buffer: only the viewed bytes are stored.
    const view = new Uint8Array(data.buffer, data.byteOffset + 100, 50);
    await store.put('basic/view.bin', view);
    expect((await store.get('basic/view.bin')).equals(data.subarray(100, 150))).toBe(true);
    await store.put('basic/empty', Buffer.alloc(0));
    expect((await store.get('basic/empty')).length).toBe(0);
    expect(await store.size('basic/empty')).toBe(0);
  });

  it('reports existence and size, overwrites, and deletes idempotently', async () => {
    expect(await store.exists('life/x.bin')).toBe(false);
    await store.put('life/x.bin', bytes(1234));
    expect(await store.exists('life/x.bin')).toBe(true);
    expect(await store.size('life/x.bin')).toBe(1234);
    await store.put('life/x.bin', 'short');
    expect(await store.size('life/x.bin')).toBe(5);
    expect((await store.get('life/x.bin')).toString()).toBe('short');
    // A "directory" is not an object: absent to every read, and deleting it is a no-op.
    expect(await store.exists('life')).toBe(false);
    await expect(store.get('life')).rejects.toBeInstanceOf(NotFoundError);
    await expect(store.size('life')).rejects.toBeInstanceOf(NotFoundError);
    await expect(store.createReadStream('life')).rejects.toBeInstanceOf(NotFoundError);
    await store.delete('life');
    expect(await store.exists('life/x.bin')).toBe(true);
    await store.delete('life/x.bin');
    expect(await store.exists('life/x.bin')).toBe(false);
    await store.delete('life/x.bin');
    await store.delete('never/was.bin');
  });

  it('lists recursively, sorted, with S3 prefix semantics', async () => {
    const keys = ['ls/b/c/d.txt', 'ls/a/1.bin', 'ls/z.txt', 'ls/a2.txt', 'ls/a/b/2.bin', 'ls/A.txt'];
    for (const [i, k] of keys.entries()) await store.put(k, bytes(i + 1, i + 1));
    const all = await store.list('ls/');
    expect(all).toEqual([
      { key: 'ls/A.txt', size: 6 },
      { key: 'ls/a/1.bin', size: 2 },
      { key: 'ls/a/b/2.bin', size: 5 },
      { key: 'ls/a2.txt', size: 4 },
      { key: 'ls/b/c/d.txt', size: 1 },
      { key: 'ls/z.txt', size: 3 },
    ]);
    expect((await store.list('ls/a/')).map((e) => e.key)).toEqual(['ls/a/1.bin', 'ls/a/b/2.bin']);
    expect((await store.list('ls/a')).map((e) => e.key)).toEqual(['ls/a/1.bin', 'ls/a/b/2.bin', 'ls/a2.txt']);
    expect((await store.list('ls/b/c')).map((e) => e.key)).toEqual(['ls/b/c/d.txt']);
    expect(await store.list('ls/nothing/')).toEqual([]);
    expect(await store.list('no-such-prefix')).toEqual([]);
    const everything = (await store.list()).map((e) => e.key);
    expect(everything).toEqual([...everything].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0)));
    expect(everything).toEqual(expect.arrayContaining(keys));
  });

  it('streams reads, whole and by inclusive byte range', async () => {
    const data = bytes(300_000, 3);
    await store.put('range/obj.bin', data);
    expect((await readAll(await store.createReadStream('range/obj.bin'))).equals(data)).toBe(true);
    const cases: Array<[{ start: number; end?: number }, Buffer]> = [
      [{ start: 0, end: 0 }, data.subarray(0, 1)],
      [{ start: 10, end: 19 }, data.subarray(10, 20)],
      [{ start: 123_456 }, data.subarray(123_456)],
      [{ start: 299_999, end: 299_999 }, data.subarray(299_999)],
      // An end past the object is clamped, as in HTTP.
      [{ start: 250_000, end: 10_000_000 }, data.subarray(250_000)],
    ];
    for (const [range, want] of cases) {
      const got = await readAll(await store.createReadStream('range/obj.bin', range));
      expect(got.equals(want), JSON.stringify(range)).toBe(true);
    }
  });

  it('rejects unsatisfiable and malformed ranges as StorageError (not NotFound)', async () => {
    await store.put('range/small.bin', bytes(100));
    for (const range of [{ start: 100 }, { start: 5000, end: 6000 }, { start: 5, end: 2 }, { start: -1 }]) {
      const err = await caught(store.createReadStream('range/small.bin', range));
      expect(err, JSON.stringify(range)).toBeInstanceOf(StorageError);
      expect(err).not.toBeInstanceOf(NotFoundError);
      expect((err as StorageError).uri).toBe(store.uriOf('range/small.bin'));
    }
  });

  it('stops a partly-read stream cleanly when the reader destroys it', async () => {
    await store.put('range/partial.bin', bytes(2_000_000));
    const s = await store.createReadStream('range/partial.bin');
    const first = await new Promise<Buffer>((resolve) => s.once('data', resolve));
    expect(first.length).toBeGreaterThan(0);
    s.destroy();
    await new Promise((resolve) => s.once('close', resolve));
  });

  it('throws NotFoundError naming the full URI for every read of a missing key', async () => {
    const key = 'missing/nothing-here.bin';
    const uri = store.uriOf(key);
    const attempts: Array<[string, () => Promise<unknown>]> = [
      ['get', () => store.get(key)],
      ['size', () => store.size(key)],
      ['createReadStream', () => store.createReadStream(key)],
      ['ranged createReadStream', () => store.createReadStream(key, { start: 1, end: 2 })],
      ['getFile', () => store.getFile(key, join(scratch, 'never.bin'))],
    ];
    for (const [op, run] of attempts) {
      const err = await caught(run());
      expect(err, op).toBeInstanceOf(NotFoundError);
      expect((err as NotFoundError).code).toBe('STORAGE_NOT_FOUND');
      expect((err as NotFoundError).uri, op).toBe(uri);
      expect((err as Error).message, op).toContain(uri);
    }
    // getFile of a missing key must not leave a file (or a temp file) behind.
    expect(await readdir(scratch)).toEqual([]);
  });

  it('putStream, putFile and getFile round-trip and report sizes', async () => {
    const data = bytes(1_500_000, 5);
    const chunks = Array.from({ length: 15 }, (_, i) => data.subarray(i * 100_000, (i + 1) * 100_000));
    expect(await store.putStream('files/streamed.bin', Readable.from(chunks))).toEqual({ size: data.length });
    expect((await store.get('files/streamed.bin')).equals(data)).toBe(true);

    const local = join(scratch, 'upload.bin');
    await writeFile(local, data.subarray(0, 777_777));
    expect(await store.putFile('files/from-file.bin', local)).toEqual({ size: 777_777 });
    expect(await store.size('files/from-file.bin')).toBe(777_777);

    const dest = join(scratch, 'deep', 'down', 'download.bin');
    expect(await store.getFile('files/streamed.bin', dest)).toEqual({ size: data.length });
    expect(createHash('sha256').update(await readFile(dest)).digest('hex')).toBe(
      createHash('sha256').update(data).digest('hex'),
    );
    expect(await readdir(join(scratch, 'deep', 'down'))).toEqual(['download.bin']);

    const err = await caught(store.putFile('files/x.bin', join(scratch, 'does-not-exist.bin')));
    expect(err).toBeInstanceOf(NotFoundError);
    expect((err as NotFoundError).uri).toBe(`file://${join(scratch, 'does-not-exist.bin')}`);
    expect(await store.exists('files/x.bin')).toBe(false);
  });

  it('publishes a stream atomically: nothing is visible until the stream ends', async () => {
    const source = new PassThrough();
    const writing = store.putStream('atomic/pending.bin', source);
    source.write(bytes(1_000_000));
    await new Promise((r) => setTimeout(r, 100));
    expect(await store.exists('atomic/pending.bin')).toBe(false);
    expect((await store.list('atomic/')).map((e) => e.key)).not.toContain('atomic/pending.bin');
    source.end(bytes(10));
    expect(await writing).toEqual({ size: 1_000_010 });
    expect(await store.size('atomic/pending.bin')).toBe(1_000_010);
  });

  it('a failing source stream leaves no object, no temp file, and the previous version intact', async () => {
    await store.put('atomic/kept.bin', 'previous version');
    // 9 MiB: past one S3 multipart part, so the failure lands mid multipart upload.
    for (const [key, size] of [
      ['atomic/kept.bin', 9 * 1024 * 1024],
      ['atomic/new.bin', 9 * 1024 * 1024],
      ['atomic/small.bin', 1000],
    ] as const) {
      const err = await caught(store.putStream(key, failingSource(size, `source failed on purpose (${key})`)));
      expect(err, key).toBeInstanceOf(StorageError);
      expect(err, key).not.toBeInstanceOf(NotFoundError);
      expect((err as StorageError).uri).toBe(store.uriOf(key));
      expect((err as Error).message).toContain(`source failed on purpose (${key})`);
    }
    expect((await store.get('atomic/kept.bin')).toString()).toBe('previous version');
    expect(await store.exists('atomic/new.bin')).toBe(false);
    expect(await store.exists('atomic/small.bin')).toBe(false);
    const present = (await b.everything()).filter((k) => k.startsWith('atomic/'));
    expect(present).toEqual(['atomic/kept.bin', 'atomic/pending.bin']);
  });

  it('rejects keys that would escape the root before touching storage', async () => {
    for (const key of ['../escape.bin', 'a/../../b', '/etc/passwd', '']) {
      await expect(store.put(key, 'x'), key).rejects.toBeInstanceOf(StorageError);
      await expect(store.get(key), key).rejects.not.toBeInstanceOf(NotFoundError);
    }
    expect(() => store.uriOf('../x')).toThrow(StorageError);
  });

  it('opens the same implementation through openStore', () => {
    const again = openStore(store.uri);
    expect(again.uri).toBe(store.uri);
    expect(again).toBeInstanceOf(name === 's3' ? S3Store : LocalStore);
  });
});

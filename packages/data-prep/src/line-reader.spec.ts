import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { NotFoundError, openStore, Rng, StorageError, type Store } from '@smolrate/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLines, TruncatedInputError, type Line } from './line-reader.js';

let dir: string;
let local: Store;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'smolrate-lines-'));
  local = openStore(dir);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function collect(store: Store, key: string, opts = {}): Promise<Line[]> {
  const out: Line[] = [];
  for await (const l of readLines(store, key, opts)) out.push(l);
  return out;
}

/** Text with multi-byte characters everywhere, so chunk boundaries fall inside them. */
function mixedText(lines: number, seed: number): string[] {
  const rng = new Rng(seed, 'lines');
  const alphabet = ['a', 'é', '中', '😀', ' ', '"', '\\', 'z'];
  return Array.from({ length: lines }, () => Array.from({ length: 1 + rng.int(300) }, () => alphabet[rng.int(alphabet.length)]).join(''));
}

describe('readLines', () => {
  it('gives the same lines for a plain and a gzip file, across chunk boundaries', async () => {
    const lines = mixedText(3000, 1); // ≈ 1 MB: many 64 KiB read chunks and 16 KiB gunzip chunks
    const text = `${lines.join('\n')}\n`;
    await local.put('meta_A.jsonl', text);
    await local.put('meta_A.jsonl.gz', gzipSync(Buffer.from(text)));
    const plain = await collect(local, 'meta_A.jsonl');
    const gz = await collect(local, 'meta_A.jsonl.gz');
    expect(plain.map((l) => l.text)).toEqual(lines);
    expect(gz).toEqual(plain);
    expect(plain.map((l) => l.line)).toEqual(lines.map((_, i) => i + 1));
  });

  it('decodes a character split exactly at the 64 KiB read boundary', async () => {
    const line = `${'a'.repeat(65535)}中z`;
    await local.put('split.jsonl', `${line}\nnext`);
    expect((await collect(local, 'split.jsonl')).map((l) => l.text)).toEqual([line, 'next']);
  });

  it('handles CRLF, a BOM, blank lines and a missing final newline', async () => {
    await local.put('crlf.jsonl', '\ufeff{"a":1}\r\n\r\n{"b":"x\ry"}\r\n{"c":3}');
    expect(await collect(local, 'crlf.jsonl')).toEqual([
      { line: 1, text: '{"a":1}' },
      { line: 2, text: '' },
      { line: 3, text: '{"b":"x\ry"}' },
      { line: 4, text: '{"c":3}' },
    ]);
    await local.put('crlf.jsonl.gz', gzipSync(Buffer.from('\ufeff{"a":1}\r\n\r\n{"b":"x\ry"}\r\n{"c":3}')));
    expect(await collect(local, 'crlf.jsonl.gz')).toEqual(await collect(local, 'crlf.jsonl'));
  });

  it('reads empty files and files that are only a newline', async () => {
    await local.put('empty.jsonl', '');
    await local.put('empty.jsonl.gz', gzipSync(Buffer.alloc(0)));
    await local.put('nl.jsonl', '\n');
    expect(await collect(local, 'empty.jsonl')).toEqual([]);
    expect(await collect(local, 'empty.jsonl.gz')).toEqual([]);
    expect(await collect(local, 'nl.jsonl')).toEqual([{ line: 1, text: '' }]);
  });

  it('recognises gzip by its magic bytes whatever the name, and reads concatenated members', async () => {
    await local.put('misnamed.jsonl', Buffer.concat([gzipSync(Buffer.from('one\ntw')), gzipSync(Buffer.from('o\nthree\n'))]));
    await local.put('plain-named.jsonl.gz', 'not\ncompressed\n');
    expect((await collect(local, 'misnamed.jsonl')).map((l) => l.text)).toEqual(['one', 'two', 'three']);
    expect((await collect(local, 'plain-named.jsonl.gz')).map((l) => l.text)).toEqual(['not', 'compressed']);
  });

  it('keeps every complete line of a truncated gzip, then reports the first unread line', async () => {
    const lines = mixedText(2000, 2);
    const gz = gzipSync(Buffer.from(`${lines.join('\n')}\n`));
    await local.put('cut.jsonl.gz', gz.subarray(0, Math.floor(gz.length / 2)));
    const got: Line[] = [];
    let error: unknown;
    try {
      for await (const l of readLines(local, 'cut.jsonl.gz')) got.push(l);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(TruncatedInputError);
    const t = error as TruncatedInputError;
    expect(got.length).toBeGreaterThan(500);
    expect(got.length).toBeLessThan(1500);
    expect(got.map((l) => l.text)).toEqual(lines.slice(0, got.length));
    expect(t.line).toBe(got.length + 1);
    expect(t.detail).toContain('ends early');
    expect(t.message).toContain(local.uriOf('cut.jsonl.gz'));
  });

  it('reports a corrupt gzip header or body as truncated input, not as an I/O error', async () => {
    await local.put('header.jsonl.gz', Buffer.from([0x1f, 0x8b, 0x99, 0x00, 1, 2, 3, 4, 5, 6]));
    await expect(collect(local, 'header.jsonl.gz')).rejects.toMatchObject({ name: 'TruncatedInputError', line: 1 });
  });

  it('skips a line longer than maxLineBytes without holding it, and carries on', async () => {
    await local.put('long.jsonl', `short\n${'x'.repeat(100_000)}\nafter\n${'y'.repeat(50)}`);
    expect(await collect(local, 'long.jsonl', { maxLineBytes: 1000 })).toEqual([
      { line: 1, text: 'short' },
      { line: 2, text: '', overlongBytes: 100_000 },
      { line: 3, text: 'after' },
      { line: 4, text: 'y'.repeat(50) },
    ]);
    expect((await collect(local, 'long.jsonl', { maxLineBytes: 40 }))[3]).toEqual({ line: 4, text: '', overlongBytes: 50 });
  });

  it('lets storage errors through as themselves (plain and gzip)', async () => {
    await expect(collect(local, 'missing.jsonl')).rejects.toBeInstanceOf(NotFoundError);
    // A store whose byte stream fails half-way, like a connection that dies for good.
    const lines = mixedText(500, 3);
    const gz = gzipSync(Buffer.from(`${lines.join('\n')}\n`));
    const failing = (data: Buffer): Store =>
      ({
        uri: 'file:///failing',
        uriOf: (k: string) => `file:///failing/${k}`,
        createReadStream: async () =>
          Readable.from(
            (async function* () {
              yield data.subarray(0, data.length >> 1);
              throw new StorageError('connection lost for good', 'file:///failing/x');
            })(),
          ),
      }) as unknown as Store;
    await expect(collect(failing(gz), 'x.jsonl.gz')).rejects.toThrow('connection lost for good');
    await expect(collect(failing(Buffer.from(lines.join('\n'))), 'x.jsonl')).rejects.toThrow('connection lost for good');
  });

  it('reads from S3 like from a local folder', async () => {
    const bucket = process.env.SMOLRATE_TEST_S3_BUCKET;
    if (!bucket || !process.env.AWS_ENDPOINT_URL_S3) throw new Error('the vitest global setup did not provide an S3 server');
    const s3 = openStore(`s3://${bucket}/lines-test-${randomBytes(6).toString('hex')}`);
    try {
      const lines = mixedText(1500, 4);
      const text = `${lines.join('\r\n')}`;
      await s3.put('meta_B.jsonl', text);
      await s3.put('meta_B.jsonl.gz', gzipSync(Buffer.from(text)));
      await writeFile(join(dir, 'meta_B.jsonl'), text);
      const expected = await collect(local, 'meta_B.jsonl');
      expect(expected.map((l) => l.text)).toEqual(lines);
      expect(await collect(s3, 'meta_B.jsonl')).toEqual(expected);
      expect(await collect(s3, 'meta_B.jsonl.gz')).toEqual(expected);
    } finally {
      for (const { key } of await s3.list()) await s3.delete(key);
    }
  });
});

import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { StorageError } from '../errors.js';
import {
  compareKeys,
  formatStorageUri,
  isS3Uri,
  joinKey,
  normalizeKey,
  normalizePrefix,
  normalizeStorageUri,
  parseStorageUri,
} from './uri.js';

describe('parseStorageUri', () => {
  it('resolves plain paths, absolute and relative', () => {
    expect(parseStorageUri('/data/shards')).toEqual({ scheme: 'file', path: '/data/shards' });
    expect(parseStorageUri('/data/shards/')).toEqual({ scheme: 'file', path: '/data/shards' });
    expect(parseStorageUri('out/run-1')).toEqual({ scheme: 'file', path: resolve('out/run-1') });
    expect(parseStorageUri('.')).toEqual({ scheme: 'file', path: process.cwd() });
  });

  it('decodes file:// URIs, including percent-escapes', () => {
    expect(parseStorageUri('file:///data/my%20shards')).toEqual({ scheme: 'file', path: '/data/my shards' });
    expect(parseStorageUri('FILE:///x')).toEqual({ scheme: 'file', path: '/x' });
  });

  it('rejects file URIs with a remote host', () => {
    expect(() => parseStorageUri('file://fileserver/share')).toThrow(StorageError);
  });

  it('splits s3:// into bucket and a normalised prefix', () => {
    expect(parseStorageUri('s3://bucket')).toEqual({ scheme: 's3', bucket: 'bucket', prefix: '' });
    expect(parseStorageUri('s3://bucket/')).toEqual({ scheme: 's3', bucket: 'bucket', prefix: '' });
    expect(parseStorageUri('s3://my-bucket.v2/runs/a/')).toEqual({ scheme: 's3', bucket: 'my-bucket.v2', prefix: 'runs/a' });
    expect(parseStorageUri('s3://b12//x//y')).toEqual({ scheme: 's3', bucket: 'b12', prefix: 'x/y' });
  });

  it('rejects bad buckets, escaping prefixes and unknown schemes, naming the URI', () => {
    for (const bad of ['s3://', 's3://Bad_Bucket/x', 's3://ab', 's3://bucket/../etc', 'gs://bucket/x', 'http://host/x', '']) {
      let err: unknown;
      try {
        parseStorageUri(bad);
      } catch (e) {
        err = e;
      }
      expect(err, bad).toBeInstanceOf(StorageError);
      expect((err as StorageError).uri).toBe(bad);
    }
  });

  it('formats back to the canonical form', () => {
    expect(normalizeStorageUri('/tmp/a b')).toBe('file:///tmp/a%20b');
    expect(normalizeStorageUri('file:///tmp/x/')).toBe('file:///tmp/x');
    expect(normalizeStorageUri('s3://bucket/p/q/')).toBe('s3://bucket/p/q');
    expect(formatStorageUri({ scheme: 's3', bucket: 'bucket', prefix: '' })).toBe('s3://bucket');
    expect(isS3Uri('S3://bucket')).toBe(true);
    expect(isS3Uri('/s3://bucket')).toBe(false);
  });
});

describe('keys', () => {
  it('normalises separators and dot segments', () => {
    expect(normalizeKey('a/b/c.bin')).toBe('a/b/c.bin');
    expect(normalizeKey('a//b/./c.bin/')).toBe('a/b/c.bin');
  });

  it('rejects escapes, absolute keys, backslashes, NUL and empty keys', () => {
    for (const bad of ['..', '../x', 'a/../../x', 'a/..', '/etc/passwd', 'a\\..\\b', 'a\0b', '', './', '//']) {
      expect(() => normalizeKey(bad), JSON.stringify(bad)).toThrow(StorageError);
    }
  });

  it('rejects ".." even when it would stay inside the root', () => {
    // S3 keys are literal strings: 'a/../b' is a different object from 'b'. Refusing it keeps
    // the local and S3 stores in agreement.
    expect(() => normalizeKey('a/../b')).toThrow(/escape/);
  });

  it('names the store in key errors', () => {
    expect(() => normalizeKey('../x', 's3://bucket/p')).toThrow(/in s3:\/\/bucket\/p/);
  });

  it('joins parts safely', () => {
    expect(joinKey('shards', 'train', '000001.bin')).toBe('shards/train/000001.bin');
    expect(joinKey('runs/', '', '/ckpt')).toBe('runs/ckpt');
    expect(() => joinKey('runs', '..', '..', 'etc')).toThrow(StorageError);
    expect(() => joinKey('/abs', 'x')).toThrow(StorageError);
  });

  it('keeps a trailing slash on list prefixes', () => {
    expect(normalizePrefix('')).toBe('');
    expect(normalizePrefix('a/')).toBe('a/');
    expect(normalizePrefix('a')).toBe('a');
    expect(normalizePrefix('a//b/')).toBe('a/b/');
    expect(() => normalizePrefix('../')).toThrow(StorageError);
  });

  it('orders keys by code unit, not by locale', () => {
    const keys = ['b', 'B', 'a/b', 'a-b', 'a', 'Z'];
    expect([...keys].sort(compareKeys)).toEqual(['B', 'Z', 'a', 'a-b', 'a/b', 'b']);
  });
});

import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigError } from '@smolrate/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createImageCache, imageCacheKey } from './image-cache.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'smolrate-image-cache-'));
});
afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('image cache', () => {
  it('stores bytes under sha256(url) with a two-character fan-out', async () => {
    const url = 'https://m.media-amazon.com/images/I/41+abc.jpg';
    const key = createHash('sha256').update(url).digest('hex');
    expect(imageCacheKey(url)).toBe(key);
    const cache = createImageCache(pathToFileURL(join(tmp, 'a')).href);
    expect(cache.pathFor(url)).toBe(join(tmp, 'a', key.slice(0, 2), key));
    expect(await cache.get(url)).toBeUndefined();
    const bytes = randomBytes(3000);
    await cache.put(url, bytes);
    expect((await cache.get(url))!.equals(bytes)).toBe(true);
    expect(await cache.get(`${url}?other`)).toBeUndefined();
  });

  it('concurrent writers (separate caches on one directory) never expose a partial entry', async () => {
    const dir = join(tmp, 'b');
    const url = 'http://example.invalid/big.png';
    const bytes = randomBytes(2 * 1024 * 1024);
    const writers = Array.from({ length: 4 }, () => createImageCache(dir));
    const reader = createImageCache(dir);
    let stop = false;
    const seen: number[] = [];
    const reading = (async () => {
      while (!stop) {
        const got = await reader.get(url);
        if (got !== undefined) {
          seen.push(got.length);
          expect(got.equals(bytes)).toBe(true);
        }
      }
    })();
    await Promise.all(writers.flatMap((w) => [w.put(url, bytes), w.put(url, bytes)]));
    stop = true;
    await reading;
    expect((await reader.get(url))!.equals(bytes)).toBe(true);
    expect(seen.every((n) => n === bytes.length)).toBe(true);
    const key = imageCacheKey(url);
    expect(await readdir(join(dir, key.slice(0, 2)))).toEqual([key]); // no temporary files left
  });

  it('read errors other than a missing entry are thrown; S3 is refused', async () => {
    const dir = join(tmp, 'c');
    const cache = createImageCache(dir);
    const url = 'http://example.invalid/x.jpg';
    await cache.put(url, Buffer.from('x'));
    // Make the entry a directory: EISDIR must not read as a miss silently.
    await rm(cache.pathFor(url));
    await mkdir(cache.pathFor(url));
    await expect(cache.get(url)).rejects.toMatchObject({ code: 'EISDIR' });
    expect(() => createImageCache('s3://bucket/cache')).toThrow(ConfigError);
  });
});

// loadItemImage end to end: rewrite → fetch (a real HTTP server on 127.0.0.1, and a file mirror)
// → core resizeToJpeg; bad images of every kind become reject records with the right reason.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ImageError, decodeImage, probeImage, rejectRecordProblems, resizeToJpeg } from '@smolrate/core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveDataPrepConfig, type DataPrepConfig } from './config.js';
import { createImageFetcher } from './image-fetch.js';
import { IMAGE_ERROR_REASONS, decodeReject, loadItemImage, type ItemImage, type ItemImageReject } from './item-image.js';
import { ImageRejectError } from './image-reject-error.js';
import { REJECT_REASONS, type Item } from './types.js';
import { pngClaiming } from '@smolrate/core/testing';

const AMZ = 'https://m.media-amazon.com/images/I/';

let server: Server;
let base: string;
let tmp: string;
let mirror: string;
const files: Record<string, Buffer> = {};
let cfg: DataPrepConfig;

function item(id: string, line = 7): Item {
  return {
    parent_asin: `B0${id.replace(/\W/g, '').slice(0, 8).padEnd(8, 'X')}`,
    category: 'All_Beauty',
    main_category: 'All Beauty',
    title: 't',
    description: '',
    features: [],
    average_rating: 4.2,
    rating_number: 31,
    image_url: `${AMZ}${id}`,
    source: 'file:///in/meta_All_Beauty.jsonl',
    line,
  };
}

const ok = (r: ItemImage | ItemImageReject): ItemImage => {
  if (!r.ok) throw new Error(`expected an image, got reject ${JSON.stringify(r.reject)}`);
  return r;
};
const rejected = (r: ItemImage | ItemImageReject): ItemImageReject['reject'] => {
  if (r.ok) throw new Error('expected a reject');
  expect(rejectRecordProblems(r.reject)).toEqual([]);
  return r.reject;
};

beforeAll(async () => {
  // A gradient with deterministic noise: photographic enough for a multi-KB JPEG.
  const raw = Buffer.alloc(900 * 600 * 3);
  let x = 7;
  for (let i = 0; i < raw.length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    raw[i] = (((i / 3) % 900) / 4 + (x >>> 27)) & 0xff;
  }
  const photo = await sharp(raw, { raw: { width: 900, height: 600, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
  files['41+photo._SL1500_.jpg'] = photo;
  // Transparent everywhere but a red square in the middle: the corners must come out white.
  files['rgba.png'] = await sharp({ create: { width: 300, height: 200, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } } })
    .composite([{ input: { create: { width: 100, height: 100, channels: 4, background: { r: 255, g: 0, b: 0, alpha: 1 } } }, left: 100, top: 50 }])
    .png()
    .toBuffer();
  files['page.jpg'] = Buffer.from('<!doctype html><html><body>Page not found</body></html>\n');
  files['truncated.jpg'] = photo.subarray(0, Math.floor(photo.length * 0.6));
  files['bomb.png'] = pngClaiming(100_000, 100_000);
  files['empty.jpg'] = Buffer.alloc(0);
  files['garbage.jpg'] = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(500, 0x5a)]);

  server = createServer((req, res) => {
    const name = decodeURIComponent(req.url!.replace(/^\/img\//, ''));
    const body = files[name];
    if (body === undefined) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': name.endsWith('.png') ? 'image/png' : 'image/jpeg', 'content-length': body.length });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  tmp = await mkdtemp(join(tmpdir(), 'smolrate-item-image-'));
  mirror = join(tmp, 'mirror');
  await mkdir(mirror);
  for (const [name, bytes] of Object.entries(files)) await writeFile(join(mirror, name), bytes);

  cfg = resolveDataPrepConfig({ file: { images: { rewrite: { [AMZ]: `${base}/img/` }, timeoutMs: 2000, retries: 0 } } });
});

afterAll(async () => {
  if (server) {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('loadItemImage', () => {
  it('rewrites, fetches and resizes to a 384×384 JPEG q95; same input → same bytes', async () => {
    const fetcher = createImageFetcher(cfg.images);
    const a = ok(await loadItemImage(item('41+photo._SL1500_.jpg'), fetcher, cfg));
    expect(a.url).toBe(`${base}/img/41+photo._SL1500_.jpg`);
    expect([a.width, a.height, a.sourceFormat]).toEqual([900, 600, 'jpeg']);
    expect(await probeImage(a.jpeg)).toEqual({ width: 384, height: 384, sourceFormat: 'jpeg' });
    const again = ok(await loadItemImage(item('41+photo._SL1500_.jpg'), createImageFetcher(cfg.images), cfg));
    expect(again.jpeg.equals(a.jpeg)).toBe(true);
    const direct = await resizeToJpeg(files['41+photo._SL1500_.jpg'], { size: 384, quality: 95 });
    expect(direct.data.equals(a.jpeg)).toBe(true);

    // A file mirror of the same image gives the same bytes.
    const local = { images: { ...cfg.images, rewrite: { [AMZ]: `${pathToFileURL(mirror).href}/` } } };
    const b = ok(await loadItemImage(item('41+photo._SL1500_.jpg'), createImageFetcher(local.images), local));
    expect(b.url).toBe(`${pathToFileURL(mirror).href}/41+photo._SL1500_.jpg`);
    expect(b.jpeg.equals(a.jpeg)).toBe(true);
  });

  it('honours the configured size and quality', async () => {
    const small = { images: { ...cfg.images, size: 64, quality: 80 } };
    const r = ok(await loadItemImage(item('41+photo._SL1500_.jpg'), createImageFetcher(small.images), small));
    expect(await probeImage(r.jpeg)).toMatchObject({ width: 64, height: 64 });
    expect(r.jpeg.equals((await resizeToJpeg(files['41+photo._SL1500_.jpg'], { size: 64, quality: 80 })).data)).toBe(true);
  });

  it('composites transparency on white', async () => {
    const r = ok(await loadItemImage(item('rgba.png'), createImageFetcher(cfg.images), cfg));
    expect(r.sourceFormat).toBe('png');
    const px = await decodeImage(r.jpeg, { size: 384 });
    const at = (x: number, y: number) => Array.from(px.data.subarray((y * 384 + x) * 3, (y * 384 + x) * 3 + 3));
    for (const v of at(5, 5)) expect(v).toBeGreaterThan(245);
    const [r0, g0, b0] = at(192, 192);
    expect(r0).toBeGreaterThan(230);
    expect(g0).toBeLessThan(30);
    expect(b0).toBeLessThan(30);
  });

  it('turns bad images into rejects with the reason, keeping source, line and parent_asin', async () => {
    const fetcher = createImageFetcher(cfg.images);
    const cases: Array<[string, string]> = [
      ['page.jpg', REJECT_REASONS.imageUnsupported],
      ['truncated.jpg', REJECT_REASONS.imageCorrupt],
      ['garbage.jpg', REJECT_REASONS.imageCorrupt],
      ['bomb.png', REJECT_REASONS.imageBomb],
      ['empty.jpg', REJECT_REASONS.imageEmpty],
      ['missing.jpg', REJECT_REASONS.imageNotFound],
    ];
    const t0 = Date.now();
    for (const [name, reason] of cases) {
      const it = item(name, 42);
      const rej = rejected(await loadItemImage(it, fetcher, cfg));
      expect(rej, name).toMatchObject({ source: it.source, line: 42, parent_asin: it.parent_asin, reason });
      expect(rej.detail, name).toContain(`${base}/img/${name}`);
    }
    expect(Date.now() - t0).toBeLessThan(5000); // the bomb is refused from its header
    const again = rejected(await loadItemImage(item('truncated.jpg', 42), fetcher, cfg));
    const first = rejected(await loadItemImage(item('truncated.jpg', 42), createImageFetcher(cfg.images), cfg));
    expect(again).toEqual(first); // deterministic detail
  });

  it('a fetcher that throws something unexpected still yields a reject', async () => {
    const broken = { fetch: () => Promise.reject(new TypeError('boom')) };
    const rej = rejected(await loadItemImage(item('x.jpg'), broken, cfg));
    expect(rej.reason).toBe('image_fetch_failed');
    expect(rej.detail).toContain('boom');
  });

  it('maps every core ImageError reason', () => {
    for (const reason of ['empty', 'bomb', 'truncated', 'corrupt', 'unsupported', 'timeout']) {
      const e = decodeReject(new ImageError(reason, `resizeToJpeg: ${reason} image`), 'u');
      expect(e).toBeInstanceOf(ImageRejectError);
      expect((e as ImageRejectError).reason).toBe(IMAGE_ERROR_REASONS[reason]);
      // Decoder failures get one fixed detail (libvips' own text is not deterministic under concurrency).
      const corrupt = IMAGE_ERROR_REASONS[reason] === 'image_corrupt';
      expect((e as ImageRejectError).detail).toBe(corrupt ? 'corrupt or truncated image data: u' : `${reason} image: u`);
    }
    const other = new RangeError('x');
    expect(decodeReject(other, 'u')).toBe(other);
  });
});

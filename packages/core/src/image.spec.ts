import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, ImageError } from './errors.js';
import { decodeImage, probeImage, resizeToJpeg } from './image.js';
import { pngClaiming } from './testing.js';

type RGB = [number, number, number];
const RED = { r: 255, g: 0, b: 0 };

const solid = (width: number, height: number, background: sharp.Color, channels: 3 | 4 = 3) =>
  sharp({ create: { width, height, channels, background } });

/** Raw RGBA → sharp; `f(x, y)` gives the pixel. */
function paint(width: number, height: number, f: (x: number, y: number) => [number, number, number, number]): sharp.Sharp {
  const buf = Buffer.alloc(width * height * 4);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) buf.set(f(x, y), (y * width + x) * 4);
  return sharp(buf, { raw: { width, height, channels: 4 } });
}

function noise(width: number, height: number): sharp.Sharp {
  const buf = Buffer.alloc(width * height * 3);
  let s = 12345;
  for (let i = 0; i < buf.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    buf[i] = s >>> 24;
  }
  return sharp(buf, { raw: { width, height, channels: 3 } });
}

function px(img: { data: Uint8Array; size: number }, x: number, y: number): RGB {
  const i = (y * img.size + x) * 3;
  return [img.data[i], img.data[i + 1], img.data[i + 2]];
}

function expectNear(actual: RGB, expected: RGB, tol: number): void {
  actual.forEach((v, c) => expect(Math.abs(v - expected[c]), `channel ${c}: ${actual} vs ${expected}`).toBeLessThanOrEqual(tol));
}

async function rejection(p: Promise<unknown>): Promise<ImageError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(ImageError);
    return e as ImageError;
  }
  throw new Error('expected an ImageError, the call succeeded');
}

const files: Record<string, Buffer> = {};

beforeAll(async () => {
  files.jpeg = await solid(640, 480, RED).jpeg({ quality: 95 }).toBuffer();
  files.progressive = await solid(500, 300, RED).jpeg({ progressive: true }).toBuffer();
  files.cmyk = await solid(300, 200, RED).toColourspace('cmyk').jpeg().toBuffer();
  files.palette = await solid(120, 90, RED).png({ palette: true }).toBuffer();
  files.png16 = await solid(100, 100, RED).toColourspace('rgb16').png().toBuffer();
  // left half fully transparent (black under it), right half opaque blue
  files.rgba = await paint(200, 100, (x) => (x < 100 ? [0, 0, 0, 0] : [0, 0, 255, 255])).png().toBuffer();
  files.webp = await solid(256, 256, { r: 0, g: 255, b: 0 }).webp({ quality: 90 }).toBuffer();
  files.webpAlpha = await solid(64, 64, { r: 0, g: 0, b: 0, alpha: 0.5 }, 4).webp({ lossless: true }).toBuffer();
  const frame1 = await solid(80, 60, RED).png().toBuffer();
  const frame2 = await solid(80, 60, { r: 0, g: 0, b: 255 }).png().toBuffer();
  files.gif = await sharp([frame1, frame2], { join: { animated: true } }).gif().toBuffer();
  files.gray = await solid(50, 70, { r: 100, g: 100, b: 100 }).toColourspace('b-w').png().toBuffer();
  files.grayJpeg = await solid(50, 70, { r: 100, g: 100, b: 100 }).toColourspace('b-w').jpeg().toBuffer();
  files.tiff = await solid(90, 60, RED).tiff({ compression: 'lzw' }).toBuffer();
  // left half red, right half blue, 2:1 aspect
  files.halves = await paint(200, 100, (x) => (x < 100 ? [255, 0, 0, 255] : [0, 0, 255, 255])).removeAlpha().png().toBuffer();
  // vertical stripes red | green | blue at x < 40, 40..159, ≥ 160: tells fill from cover/contain
  files.stripes = await paint(200, 100, (x) => (x < 40 ? [255, 0, 0, 255] : x < 160 ? [0, 255, 0, 255] : [0, 0, 255, 255]))
    .removeAlpha()
    .png()
    .toBuffer();
});

describe('decodeImage', () => {
  it('the generated inputs are of the intended kinds', async () => {
    const m = async (k: string) => sharp(files[k]).metadata();
    expect((await m('progressive')).isProgressive).toBe(true);
    expect((await m('cmyk')).space).toBe('cmyk');
    expect((await m('palette')).isPalette).toBe(true);
    expect((await m('png16')).depth).toBe('ushort');
    expect((await m('rgba')).channels).toBe(4);
    expect((await m('gif')).pages).toBe(2);
    expect((await m('gray')).channels).toBe(1);
    expect((await m('grayJpeg')).channels).toBe(1);
    expect((await m('tiff')).format).toBe('tiff');
  });

  const cases: Array<[string, string, RGB, number]> = [
    ['jpeg', 'jpeg', [255, 0, 0], 3],
    ['progressive', 'jpeg', [255, 0, 0], 3],
    ['palette', 'png', [255, 0, 0], 0],
    ['png16', 'png', [255, 0, 0], 0],
    ['webp', 'webp', [0, 255, 0], 4],
    ['gif', 'gif', [255, 0, 0], 0], // first frame (red), not the second (blue)
    ['gray', 'png', [100, 100, 100], 0],
    ['grayJpeg', 'jpeg', [100, 100, 100], 2],
    ['tiff', 'tiff', [255, 0, 0], 0],
  ];
  for (const [name, format, colour, tol] of cases) {
    it(`${name} → 384×384×3 sRGB uint8`, async () => {
      const img = await decodeImage(files[name]);
      expect(img.data).toBeInstanceOf(Uint8Array);
      expect(img.data.length).toBe(384 * 384 * 3);
      expect(img.size).toBe(384);
      expect(img.sourceFormat).toBe(format);
      for (const [x, y] of [[0, 0], [192, 192], [383, 383]]) expectNear(px(img, x, y), colour, tol);
    });
  }

  it('CMYK JPEG is converted to sRGB (colour-managed, so red stays red within gamut mapping)', async () => {
    const img = await decodeImage(files.cmyk);
    const [r, g, b] = px(img, 192, 192);
    expect(r).toBeGreaterThan(200);
    expect(g).toBeLessThan(40);
    expect(b).toBeLessThan(40);
  });

  it('composites transparency on white', async () => {
    const img = await decodeImage(files.rgba);
    expect(px(img, 20, 192)).toEqual([255, 255, 255]);
    expect(px(img, 360, 192)).toEqual([0, 0, 255]);
    const half = await decodeImage(files.webpAlpha);
    expectNear(px(half, 10, 10), [128, 128, 128], 1); // 50 % black over white
  });

  it('fills the square without preserving the aspect ratio', async () => {
    const img = await decodeImage(files.stripes);
    expect({ w: img.width, h: img.height }).toEqual({ w: 200, h: 100 });
    for (const y of [0, 192, 383]) {
      // x·200/384: column 20 → source 10 (red; 'cover' would crop it away), 370 → 193 (blue)
      expect(px(img, 20, y)).toEqual([255, 0, 0]);
      expect(px(img, 192, y)).toEqual([0, 255, 0]);
      expect(px(img, 370, y)).toEqual([0, 0, 255]);
    }
  });

  it('resizes with a bilinear filter, not nearest-neighbour', async () => {
    const checker = await paint(8, 8, (x, y) => ((x + y) % 2 ? [255, 255, 255, 255] : [0, 0, 0, 255])).removeAlpha().png().toBuffer();
    const img = await decodeImage(checker, { size: 4 });
    expect(img.data.length).toBe(4 * 4 * 3);
    for (const v of img.data) {
      expect(v).toBeGreaterThan(64);
      expect(v).toBeLessThan(192);
    }
  });

  it('applies the EXIF orientation', async () => {
    // Stored 200×100 (left red, right blue); orientation 6 = display rotated 90° clockwise.
    const rotated = await sharp(files.halves).jpeg().withMetadata({ orientation: 6 }).toBuffer();
    const img = await decodeImage(rotated, { size: 64 });
    expect({ w: img.width, h: img.height }).toEqual({ w: 100, h: 200 });
    expectNear(px(img, 58, 5), [255, 0, 0], 8); // top right: stored left half
    expectNear(px(img, 5, 58), [0, 0, 255], 8); // bottom left: stored right half
  });

  it('refuses a zero-byte input', async () => {
    expect((await rejection(decodeImage(Buffer.alloc(0)))).reason).toBe('empty');
  });

  it('refuses a truncated JPEG quickly', async () => {
    const whole = await noise(256, 256).jpeg({ quality: 90 }).toBuffer();
    await expect(decodeImage(whole)).resolves.toBeDefined();
    const t0 = Date.now();
    const e = await rejection(decodeImage(whole.subarray(0, Math.floor(whole.length * 0.6))));
    expect(e.reason).toBe('truncated');
    expect(e.code).toBe('IMAGE');
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('refuses a PNG whose header claims 20000×20000, from the header, quickly', async () => {
    const bomb = pngClaiming(20000, 20000);
    expect(bomb.length).toBeLessThan(200);
    const t0 = Date.now();
    const e = await rejection(decodeImage(bomb));
    expect(e.reason).toBe('bomb');
    expect(Date.now() - t0).toBeLessThan(1000);
    expect((await rejection(probeImage(bomb))).reason).toBe('bomb');
    expect((await rejection(resizeToJpeg(bomb))).reason).toBe('bomb');
  });

  it('has a configurable pixel limit', async () => {
    expect((await rejection(decodeImage(files.palette, { maxPixels: 120 * 90 - 1 }))).reason).toBe('bomb');
    await expect(decodeImage(files.palette, { maxPixels: 120 * 90 })).resolves.toBeDefined();
  });

  it('refuses non-images and formats outside the allow-list', async () => {
    expect((await rejection(decodeImage(Buffer.from('{"not": "an image"}')))).reason).toBe('unsupported');
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10" fill="red"/></svg>');
    expect((await rejection(decodeImage(svg))).reason).toBe('unsupported');
  });

  it('refuses a PNG with a damaged header chunk', async () => {
    const bad = Buffer.from(files.palette);
    bad[20] ^= 0xff; // inside IHDR: the CRC no longer matches
    expect(['corrupt', 'truncated']).toContain((await rejection(decodeImage(bad))).reason);
  });

  it('validates its options', async () => {
    await expect(decodeImage(files.jpeg, { size: 0 })).rejects.toThrow(ConfigError);
    await expect(decodeImage(files.jpeg, { size: 1.5 })).rejects.toThrow(ConfigError);
    await expect(resizeToJpeg(files.jpeg, { quality: 101 })).rejects.toThrow(ConfigError);
  });
});

describe('resizeToJpeg', () => {
  it('writes a deterministic 384×384 baseline JPEG with the same conversions', async () => {
    const a = await resizeToJpeg(files.rgba);
    const b = await resizeToJpeg(files.rgba);
    expect(Buffer.compare(a.data, b.data)).toBe(0);
    const meta = await sharp(a.data).metadata();
    expect(meta).toMatchObject({ format: 'jpeg', width: 384, height: 384, channels: 3, isProgressive: false });
    expect(meta.exif).toBeUndefined();
    expect(a.sourceFormat).toBe('png');
    const back = await decodeImage(a.data);
    expectNear(px(back, 20, 192), [255, 255, 255], 2);
    expectNear(px(back, 360, 192), [0, 0, 255], 4);
  });

  it('honours size and quality', async () => {
    const src = await noise(300, 300).png().toBuffer();
    const q95 = await resizeToJpeg(src, { size: 128 });
    const q50 = await resizeToJpeg(src, { size: 128, quality: 50 });
    expect((await sharp(q95.data).metadata()).width).toBe(128);
    expect(q50.data.length).toBeLessThan(q95.data.length);
  });

  it('refuses bad input like decodeImage', async () => {
    expect((await rejection(resizeToJpeg(Buffer.alloc(0)))).reason).toBe('empty');
    expect((await rejection(resizeToJpeg(Buffer.from('hello')))).reason).toBe('unsupported');
  });
});

import { describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { decodeImage, ImageError, probeImage, Rng } from '@smolrate/core';
import { drawImage, hslToRgb, imageSpec, renderImage, type CorruptKind, type SynthImageFormat } from './synth-images.js';
import { SYNTH_SHAPES } from './synth-rating.js';

const spec = (i: number, format: SynthImageFormat, corrupt: CorruptKind | null = null, size = { width: 320, height: 240 }) =>
  imageSpec(new Rng(5, 'img', i), { warmth: (i % 5) / 2 - 1, shape: SYNTH_SHAPES[i % 4], clutter: i % 11 }, { ...size, format, corrupt });

describe('synthetic images', () => {
  it('encode deterministically in every format', async () => {
    for (const format of ['jpeg', 'png', 'webp'] as const) {
      const s = spec(3, format, null, { width: 500, height: 310 });
      const [a, b] = await Promise.all([renderImage(s), renderImage(structuredClone(s))]);
      expect(a.equals(b), format).toBe(true);
      expect((await probeImage(a)).sourceFormat).toBe(format);
      // A different spec gives different bytes.
      expect(a.equals(await renderImage(spec(4, format, null, { width: 500, height: 310 })))).toBe(false);
    }
  });

  it('draws the big shape in the warmth colour at the centre, visible after the 384² resize', async () => {
    for (let i = 0; i < 8; i++) {
      const s = { ...spec(i, 'jpeg'), blobs: [], cx: 0.5, cy: 0.5 };
      const d = await decodeImage(await renderImage(s), { size: 384 });
      const centre = (192 * 384 + 192) * 3;
      const got = [d.data[centre], d.data[centre + 1], d.data[centre + 2]];
      got.forEach((v, k) => expect(Math.abs(v - s.shapeColour[k]), `image ${i} channel ${k}`).toBeLessThan(12));
    }
    // Warm shapes are red-heavy, cool ones blue-heavy.
    expect(hslToRgb(20, 0.8, 0.5)[0]).toBeGreaterThan(hslToRgb(20, 0.8, 0.5)[2] + 100);
    expect(hslToRgb(220, 0.8, 0.5)[2]).toBeGreaterThan(hslToRgb(220, 0.8, 0.5)[0] + 100);
  });

  it('draws `clutter` blobs, each adding painted pixels', () => {
    const s = { ...spec(10, 'jpeg'), background: [255, 255, 255] as [number, number, number], size: 0.3 };
    expect(s.blobs).toHaveLength(10);
    const painted = (n: number) => {
      const r = drawImage({ ...s, blobs: s.blobs.slice(0, n) });
      let p = 0;
      for (let i = 0; i < r.data.length; i += 3) if (r.data[i] !== 255 || r.data[i + 1] !== 255 || r.data[i + 2] !== 255) p++;
      return p;
    };
    const counts = [0, 1, 5, 10].map(painted);
    for (let k = 1; k < counts.length; k++) expect(counts[k]).toBeGreaterThan(counts[k - 1]);
    // Each blob is 6–10 % of the shorter side: at least ~20 px across after a 384² resize.
    expect(counts[1] - counts[0]).toBeGreaterThan((0.06 * 240) ** 2 * 0.5);
  });

  it('PNGs carry alpha: transparent black that composites to white', async () => {
    const s = { ...spec(2, 'png'), cx: 0.5, cy: 0.5, blobs: [] };
    const bytes = await renderImage(s);
    const meta = await sharp(bytes).metadata();
    expect(meta.format).toBe('png');
    expect(meta.hasAlpha).toBe(true);
    const raw = await sharp(bytes).raw().toBuffer();
    expect([...raw.subarray(0, 4)]).toEqual([0, 0, 0, 0]); // top-left corner: transparent black
    const d = await decodeImage(bytes, { size: 64 });
    expect([...d.data.subarray(0, 3)]).toEqual([255, 255, 255]);
  });

  it('damaged images keep a sniffable header and fail decoding with an ImageError', async () => {
    const expected: Record<CorruptKind, [SynthImageFormat, string]> = {
      'jpeg-truncated': ['jpeg', 'truncated'],
      'png-bad-idat': ['png', 'corrupt'],
      'webp-truncated': ['webp', 'corrupt'],
    };
    for (const [kind, [format, reason]] of Object.entries(expected) as Array<[CorruptKind, [SynthImageFormat, string]]>) {
      for (let i = 0; i < 6; i++) {
        const bytes = await renderImage(spec(i, format, kind, { width: 200 + 97 * i, height: 240 }));
        const err = await decodeImage(bytes, { size: 32 }).catch((e: unknown) => e);
        expect(err, `${kind} #${i}`).toBeInstanceOf(ImageError);
        expect((err as ImageError).reason, `${kind} #${i}`).toBe(reason);
        if (format !== 'webp') expect((await probeImage(bytes)).sourceFormat).toBe(format);
      }
    }
  });
});

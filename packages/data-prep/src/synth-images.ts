/**
 * Images of the synthetic dataset: a big solid shape (the latent colour warmth and shape kind) on a
 * plain background, with `clutter` small blobs scattered over it — features that survive the
 * 384×384 resize. Drawn as scanline spans straight into a raw RGB(A) buffer (a native Buffer.fill
 * per row, so drawing costs next to nothing) and encoded by sharp: JPEG (most), PNG with alpha
 * (transparent pixels are black with alpha 0, so a loader that drops alpha instead of compositing
 * on white sees a black background), WebP (the video-catalogue images, served under `.jpg`
 * names). The corrupt variants keep a valid header so they fail at decode, not at format sniffing.
 *
 * sharp's JPEG (libjpeg-turbo), PNG (libspng + zlib) and WebP encoders are deterministic for the
 * same pixels and options, so the same spec gives the same bytes (synth-images.spec.ts checks it).
 */
import sharp from 'sharp';
import type { Rng } from '@smolrate/core';
import { warmthHue, type ShapeKind } from './synth-rating.js';

export type Rgb = [number, number, number];
export type SynthImageFormat = 'jpeg' | 'png' | 'webp';
/** jpeg-truncated fails decoding as ImageError 'truncated'; the other two as 'corrupt'. */
export type CorruptKind = 'jpeg-truncated' | 'png-bad-idat' | 'webp-truncated';

export interface ClutterBlob {
  /** Centre, as fractions of width and height. */
  x: number;
  y: number;
  /** Side / diameter as a fraction of the shorter image side. */
  size: number;
  colour: Rgb;
  round: boolean;
}

export interface SynthImageSpec {
  width: number;
  height: number;
  format: SynthImageFormat;
  /** null: transparent (PNG only). */
  background: Rgb | null;
  shape: ShapeKind;
  shapeColour: Rgb;
  /** Shape centre (fractions of width / height) and size (fraction of the shorter side). */
  cx: number;
  cy: number;
  size: number;
  blobs: ClutterBlob[];
  corrupt: CorruptKind | null;
  /** Fraction of the encoded bytes kept by the truncating corrupt kinds. */
  keep: number;
}

export interface ImageLatent {
  warmth: number;
  shape: ShapeKind;
  clutter: number;
}

/** HSL (h in degrees, s and l in [0, 1]) → sRGB bytes. */
export function hslToRgb(h: number, s: number, l: number): Rgb {
  const hh = (((h % 360) + 360) % 360) / 60;
  const c = (1 - Math.abs(2 * l - 1)) * s;
  const x = c * (1 - Math.abs((hh % 2) - 1));
  const m = l - c / 2;
  const [r, g, b] = hh < 1 ? [c, x, 0] : hh < 2 ? [x, c, 0] : hh < 3 ? [0, c, x] : hh < 4 ? [0, x, c] : hh < 5 ? [x, 0, c] : [c, 0, x];
  return [Math.round((r + m) * 255), Math.round((g + m) * 255), Math.round((b + m) * 255)];
}

/** The image of one record: latent features fixed, everything else drawn from `rng`. */
export function imageSpec(rng: Rng, latent: ImageLatent, layout: { width: number; height: number; format: SynthImageFormat; corrupt: CorruptKind | null }): SynthImageSpec {
  let background: Rgb | null;
  if (layout.format === 'png') background = null;
  else if (layout.format === 'webp') background = hslToRgb(rng.next() * 360, 0.2 + 0.2 * rng.next(), 0.12 + 0.13 * rng.next());
  else background = rng.next() < 0.7 ? [255, 255, 255] : hslToRgb(rng.next() * 360, 0.3, 0.92 + 0.05 * rng.next());
  const hue = warmthHue(latent.warmth) + (rng.next() - 0.5) * 16;
  const shapeColour = hslToRgb(hue, 0.65 + 0.25 * rng.next(), 0.42 + 0.16 * rng.next());
  const blobs: ClutterBlob[] = [];
  for (let i = 0; i < latent.clutter; i++) {
    blobs.push({
      x: 0.05 + 0.9 * rng.next(),
      y: 0.05 + 0.9 * rng.next(),
      size: 0.06 + 0.04 * rng.next(),
      // Random hues average out: clutter must not move the image's colour balance (warmth).
      colour: hslToRgb(rng.next() * 360, 0.5, 0.3 + 0.3 * rng.next()),
      round: rng.next() < 0.5,
    });
  }
  return {
    width: layout.width,
    height: layout.height,
    format: layout.format,
    background,
    shape: latent.shape,
    shapeColour,
    cx: 0.5 + (rng.next() - 0.5) * 0.16,
    cy: 0.5 + (rng.next() - 0.5) * 0.16,
    size: 0.55 + 0.25 * rng.next(),
    blobs,
    corrupt: layout.corrupt,
    keep: 0.4 + 0.4 * rng.next(),
  };
}

/**
 * Pixel buffers are recycled: allocating (and page-faulting) a fresh multi-megabyte buffer per
 * image cost as much CPU as drawing it. A buffer returns to the pool once sharp has encoded it;
 * every byte is rewritten by the next background fill, so reuse cannot leak pixels.
 */
const POOL_BYTES = 1536 * 1536 * 4;
const freeBuffers: Buffer[] = [];

function takeBuffer(n: number): Buffer {
  if (n > POOL_BYTES) return Buffer.allocUnsafe(n);
  return (freeBuffers.pop() ?? Buffer.allocUnsafeSlow(POOL_BYTES)).subarray(0, n);
}

function giveBuffer(b: Buffer): void {
  if (b.buffer.byteLength === POOL_BYTES && freeBuffers.length < 16) freeBuffers.push(Buffer.from(b.buffer, b.byteOffset, POOL_BYTES));
}

/** A raw canvas: `channels` bytes per pixel, row-major. */
class Canvas {
  readonly data: Buffer;
  constructor(
    readonly width: number,
    readonly height: number,
    readonly channels: 3 | 4,
    background: Rgb | null,
  ) {
    this.data = takeBuffer(width * height * channels);
    if (background === null) this.data.fill(0); // transparent black
    else if (background[0] === background[1] && background[1] === background[2]) this.data.fill(background[0]);
    else this.data.fill(this.pattern(background));
  }

  pattern(c: Rgb, alpha = 255): Buffer {
    return Buffer.from(this.channels === 4 ? [c[0], c[1], c[2], alpha] : c);
  }

  /** Fills row y from x0 (inclusive) to x1 (exclusive), clipped to the canvas. */
  span(y: number, x0: number, x1: number, p: Buffer): void {
    if (y < 0 || y >= this.height) return;
    const a = Math.max(0, Math.round(x0));
    const b = Math.min(this.width, Math.round(x1));
    if (b <= a) return;
    const row = y * this.width * this.channels;
    this.data.fill(p, row + a * this.channels, row + b * this.channels);
  }

  disc(cx: number, cy: number, r: number, p: Buffer): void {
    for (let y = Math.floor(cy - r); y <= Math.ceil(cy + r); y++) {
      const dy = y + 0.5 - cy;
      if (Math.abs(dy) >= r) continue;
      const half = Math.sqrt(r * r - dy * dy);
      this.span(y, cx - half, cx + half, p);
    }
  }

  rect(x0: number, y0: number, x1: number, y1: number, p: Buffer): void {
    for (let y = Math.round(y0); y < Math.round(y1); y++) this.span(y, x0, x1, p);
  }

  /** Upward isosceles triangle in the box (x0, y0)–(x1, y1). */
  triangle(x0: number, y0: number, x1: number, y1: number, p: Buffer): void {
    const cx = (x0 + x1) / 2;
    const h = y1 - y0;
    for (let y = Math.round(y0); y < Math.round(y1); y++) {
      const half = (((y + 0.5 - y0) / h) * (x1 - x0)) / 2;
      this.span(y, cx - half, cx + half, p);
    }
  }
}

/** Draws the spec into raw pixels (3 channels, or 4 for PNG). The buffer may be a pooled one: callers other than renderImage own it. */
export function drawImage(spec: SynthImageSpec): { data: Buffer; width: number; height: number; channels: 3 | 4 } {
  const channels = spec.format === 'png' ? 4 : 3;
  if (channels === 4 && spec.background) throw new Error('drawImage: PNG images have a transparent background');
  const c = new Canvas(spec.width, spec.height, channels, spec.background);
  const m = Math.min(spec.width, spec.height);
  const cx = spec.cx * spec.width;
  const cy = spec.cy * spec.height;
  const s = spec.size * m;
  if (channels === 4) c.disc(cx + 0.04 * m, cy + 0.05 * m, 0.5 * s, c.pattern([0, 0, 0], 80)); // soft shadow: partial alpha
  const p = c.pattern(spec.shapeColour);
  switch (spec.shape) {
    case 'circle':
      c.disc(cx, cy, s / 2, p);
      break;
    case 'square':
      c.rect(cx - 0.43 * s, cy - 0.43 * s, cx + 0.43 * s, cy + 0.43 * s, p);
      break;
    case 'triangle':
      c.triangle(cx - 0.55 * s, cy - 0.52 * s, cx + 0.55 * s, cy + 0.52 * s, p);
      break;
    case 'cross':
      c.rect(cx - s / 2, cy - s / 6, cx + s / 2, cy + s / 6, p);
      c.rect(cx - s / 6, cy - s / 2, cx + s / 6, cy + s / 2, p);
      break;
  }
  for (const b of spec.blobs) {
    const bp = c.pattern(b.colour);
    const r = (b.size * m) / 2;
    const x = b.x * spec.width;
    const y = b.y * spec.height;
    if (b.round) c.disc(x, y, r, bp);
    else c.rect(x - r, y - r, x + r, y + r, bp);
  }
  return { data: c.data, width: spec.width, height: spec.height, channels };
}

/** Encoder settings: fixed, so bytes depend on the spec only. */
// No Huffman optimisation: 40 % faster encodes for 40 % larger files (still ≈ 15 KB per image).
const JPEG_OPTIONS = { quality: 90, chromaSubsampling: '4:2:0', mozjpeg: false, progressive: false, optimiseCoding: false } as const;
const PNG_OPTIONS = { compressionLevel: 6, adaptiveFiltering: false, palette: false } as const;
const WEBP_OPTIONS = { quality: 80, effort: 1, smartSubsample: false } as const;

/** The bytes of the image file: the encoded image, or its deliberately damaged version. */
export async function renderImage(spec: SynthImageSpec): Promise<Buffer> {
  const raw = drawImage(spec);
  let bytes: Buffer;
  try {
    const img = sharp(raw.data, { raw: { width: raw.width, height: raw.height, channels: raw.channels } });
    bytes =
      spec.format === 'jpeg' ? await img.jpeg(JPEG_OPTIONS).toBuffer() : spec.format === 'png' ? await img.png(PNG_OPTIONS).toBuffer() : await img.webp(WEBP_OPTIONS).toBuffer();
  } finally {
    giveBuffer(raw.data);
  }
  return spec.corrupt ? corrupt(bytes, spec.corrupt, spec.keep) : bytes;
}

/**
 * Damages an encoded image so that it still sniffs as its format (a valid header) but cannot be
 * decoded: a JPEG cut short (libjpeg "premature end"), a PNG whose first IDAT chunk's zlib data
 * is scrambled (an inflate error, also a CRC mismatch), a WebP cut short (RIFF size mismatch).
 */
export function corrupt(bytes: Buffer, kind: CorruptKind, keep: number): Buffer {
  if (kind === 'png-bad-idat') {
    const out = Buffer.from(bytes);
    const at = out.indexOf('IDAT', 8, 'latin1');
    if (at < 4) throw new Error('corrupt: no IDAT chunk in the PNG');
    const len = out.readUInt32BE(at - 4);
    // Keep the 2-byte zlib header; scramble the deflate data that follows.
    for (let i = at + 4 + 2; i < at + 4 + len; i++) out[i] ^= 0x5a;
    return out;
  }
  let min = 64;
  if (kind === 'jpeg-truncated') {
    // Cut inside the entropy-coded data, never in the headers: the size must still be readable.
    const sos = bytes.indexOf(Buffer.from([0xff, 0xda]), 2);
    if (sos < 0) throw new Error('corrupt: no SOS marker in the JPEG');
    min = sos + 64;
  }
  const cut = Math.max(min, Math.floor(bytes.length * keep));
  return Buffer.from(bytes.subarray(0, Math.min(cut, bytes.length - 16)));
}


/**
 * Image decoding for the model (and the shard writer): any common web image → sRGB, alpha
 * composited on white, resized to size×size with a bilinear (triangle) filter, aspect ratio NOT
 * preserved, 3 × uint8 channels. This is SmolVLM's fixed-resolution input path without tiling,
 * with transformers' conversions: `load_image` applies the EXIF orientation, `convert_to_rgb`
 * composites transparency on white before resizing.
 *
 * Hostile input is refused with a typed ImageError before any pixel is decoded where possible:
 * empty buffers, formats outside SUPPORTED_IMAGE_FORMATS (no SVG/PDF rasterising), and images
 * whose header claims more than `maxPixels` pixels (decompression bombs). Truncated and corrupt
 * data fail the decode (sharp `failOn`), and every decode has a deadline (sharp `timeout`).
 *
 * Lives in @smolrate/core because sharp must not be imported by @smolrate/model (module
 * boundary); the model package turns the RGB bytes into tensors (`normalizePixels`).
 */
import sharp from 'sharp';
import { ConfigError, ImageError } from './errors.js';

export type ImageErrorReason = 'empty' | 'bomb' | 'truncated' | 'corrupt' | 'unsupported' | 'timeout';

/** Formats accepted as input (sharp's names; `heif` covers AVIF). */
const SUPPORTED_IMAGE_FORMATS: readonly string[] = ['jpeg', 'png', 'webp', 'gif', 'tiff', 'heif'];

export interface ImageDecodeOptions {
  /** Output side in pixels. Default 384. */
  size?: number;
  /** Largest accepted width × height of the source, checked from the header. Default 50e6. */
  maxPixels?: number;
  /** Deadline of one decode/resize (whole seconds). Default 30. */
  timeoutSeconds?: number;
  /**
   * How damaged data is treated (sharp `failOn`): 'error' (default) rejects truncated and
   * corrupt images but tolerates warnings many browsers ignore too; 'warning' is stricter.
   */
  failOn?: 'none' | 'truncated' | 'error' | 'warning';
}

export interface JpegOptions extends ImageDecodeOptions {
  /** JPEG quality 1..100. Default 95. */
  quality?: number;
}

export interface ImageInfo {
  /** Source width and height, after EXIF orientation. */
  width: number;
  height: number;
  /** sharp's format name of the input: jpeg, png, webp, gif, tiff, heif. */
  sourceFormat: string;
}

export interface DecodedImage extends ImageInfo {
  /** size × size × 3 RGB bytes, row-major (HWC). */
  data: Uint8Array;
  /** Output side in pixels. */
  size: number;
}

export interface ResizedJpeg extends ImageInfo {
  /** A size × size baseline sRGB JPEG without metadata; identical input gives identical bytes. */
  data: Buffer;
  size: number;
}

const DEFAULTS = { size: 384, maxPixels: 50e6, timeoutSeconds: 30, failOn: 'error' as const, quality: 95 };

function positiveInteger(v: number, name: string): number {
  if (!Number.isInteger(v) || v < 1) throw new ConfigError(`image: ${name} must be a positive integer, got ${v}`);
  return v;
}

function resolve(options: JpegOptions) {
  const o = { ...DEFAULTS, ...options };
  positiveInteger(o.size, 'size');
  positiveInteger(o.timeoutSeconds, 'timeoutSeconds');
  if (!(o.maxPixels >= 1)) throw new ConfigError(`image: maxPixels must be ≥ 1, got ${o.maxPixels}`);
  if (!Number.isInteger(o.quality) || o.quality < 1 || o.quality > 100) throw new ConfigError(`image: quality must be an integer in 1..100, got ${o.quality}`);
  return { ...o, maxPixels: Math.floor(o.maxPixels) };
}

/** Maps a sharp/libvips failure to a typed ImageError. */
function imageError(e: unknown, what: string): ImageError {
  if (e instanceof ImageError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  let reason: ImageErrorReason = 'corrupt';
  if (/unsupported image format/i.test(msg)) reason = 'unsupported';
  else if (/exceeds pixel limit/i.test(msg)) reason = 'bomb';
  else if (/timeout/i.test(msg)) reason = 'timeout';
  else if (/premature end|truncated|unexpected end|end of (file|stream|data)|read error|not enough data/i.test(msg)) reason = 'truncated';
  return new ImageError(reason, `${what}: ${reason} image (${msg})`, { cause: e });
}

type Resolved = ReturnType<typeof resolve>;

/** Header-only checks; returns the source info. Nothing is decoded. */
async function probe(bytes: Uint8Array, o: Resolved, what: string): Promise<ImageInfo> {
  if (!(bytes instanceof Uint8Array)) throw new ImageError('unsupported', `${what}: expected a Buffer or Uint8Array`);
  if (bytes.length === 0) throw new ImageError('empty', `${what}: empty input (0 bytes)`);
  let meta: sharp.Metadata;
  try {
    // limitInputPixels makes the header read itself refuse oversized images.
    meta = await sharp(bytes, { limitInputPixels: o.maxPixels, pages: 1 }).metadata();
  } catch (e) {
    throw imageError(e, what);
  }
  const format = meta.format ?? 'unknown';
  if (!SUPPORTED_IMAGE_FORMATS.includes(format)) {
    throw new ImageError('unsupported', `${what}: unsupported image format "${format}" (accepted: ${SUPPORTED_IMAGE_FORMATS.join(', ')})`);
  }
  const w = meta.width ?? 0;
  const h = meta.pageHeight ?? meta.height ?? 0;
  if (w < 1 || h < 1) throw new ImageError('corrupt', `${what}: header gives no image size`);
  if (w * h > o.maxPixels) {
    throw new ImageError('bomb', `${what}: ${w}×${h} = ${w * h} pixels exceeds the limit of ${o.maxPixels}`);
  }
  const swap = (meta.orientation ?? 1) >= 5; // EXIF orientations 5..8 turn the image by 90°
  return { width: swap ? h : w, height: swap ? w : h, sourceFormat: format };
}

/** The shared pipeline: first frame/page, oriented, flattened on white, sRGB, size×size bilinear. */
function pipeline(bytes: Uint8Array, o: Resolved): sharp.Sharp {
  return sharp(bytes, { limitInputPixels: o.maxPixels, failOn: o.failOn, sequentialRead: true, pages: 1, page: 0 })
    .timeout({ seconds: o.timeoutSeconds })
    .autoOrient()
    .flatten({ background: { r: 255, g: 255, b: 255 } })
    .toColourspace('srgb')
    // 'linear' is the triangle filter, area-scaled when shrinking (like PIL's BILINEAR);
    // no JPEG/WebP shrink-on-load shortcut, so the result does not depend on the source codec.
    .resize(o.size, o.size, { fit: 'fill', kernel: 'linear', fastShrinkOnLoad: false });
}

/** Decodes `bytes` to size × size × 3 sRGB uint8 (see the file comment for the conversions). */
export async function decodeImage(bytes: Uint8Array, options: ImageDecodeOptions = {}): Promise<DecodedImage> {
  const o = resolve(options);
  const what = 'decodeImage';
  const info = await probe(bytes, o, what);
  let out: { data: Buffer; info: sharp.OutputInfo };
  try {
    out = await pipeline(bytes, o).removeAlpha().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw imageError(e, what);
  }
  const expected = o.size * o.size * 3;
  if (out.info.channels !== 3 || out.data.length !== expected) {
    throw new ImageError('corrupt', `${what}: decoder produced ${out.info.width}×${out.info.height}×${out.info.channels}, expected ${o.size}×${o.size}×3`);
  }
  return { ...info, size: o.size, data: new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.length) };
}

/**
 * The shard image (docs/reference/design.md): size × size RGB JPEG at `quality` (default 95, 4:2:0 chroma, no
 * metadata), made with the same conversions as decodeImage. Deterministic for a given sharp build.
 */
export async function resizeToJpeg(bytes: Uint8Array, options: JpegOptions = {}): Promise<ResizedJpeg> {
  const o = resolve(options);
  const what = 'resizeToJpeg';
  const info = await probe(bytes, o, what);
  let data: Buffer;
  try {
    data = await pipeline(bytes, o)
      .removeAlpha()
      .jpeg({ quality: o.quality, chromaSubsampling: '4:2:0', progressive: false, mozjpeg: false, optimiseCoding: true })
      .toBuffer();
  } catch (e) {
    throw imageError(e, what);
  }
  return { ...info, size: o.size, data };
}

/** Header-only look at an image: format and size, with the same refusals as decodeImage. */
export async function probeImage(bytes: Uint8Array, options: Pick<ImageDecodeOptions, 'maxPixels'> = {}): Promise<ImageInfo> {
  return probe(bytes, resolve(options), 'probeImage');
}

/**
 * One item's stored image: rewrite its MAIN image URL (config `images.rewrite`), fetch the bytes
 * (image-fetch.ts), and resize them with core `resizeToJpeg` to the shard image — size × size RGB,
 * bilinear, aspect not preserved, alpha composited on white, baseline JPEG at `quality`, no
 * metadata. The same source bytes give the same JPEG bytes (a rerun of a build-shard job writes an
 * identical shard).
 *
 * Any failure of the item's own data — fetch failures, non-images, corrupt or truncated files,
 * decompression bombs — is returned as a reject record, never thrown. Only configuration errors
 * (an invalid size or quality) throw, since they would fail every item alike.
 */
import { ImageError, resizeToJpeg, type RejectRecord } from '@smolrate/core';
import type { DataPrepConfig } from './config.js';
import type { ImageFetcher } from './image-fetch.js';
import { ImageRejectError } from './image-reject-error.js';
import { REJECT_REASONS, type Item, type RejectReason } from './types.js';
import { rewriteUrl } from './url-rewrite.js';

export interface ItemImage {
  ok: true;
  /** The shard image: size × size RGB JPEG. */
  jpeg: Buffer;
  /** Source image size (after EXIF orientation), before resizing. */
  width: number;
  height: number;
  /** Source format as sharp names it (jpeg, png, webp, gif, tiff, heif). */
  sourceFormat: string;
  /** The URL the bytes were fetched from (after rewriting). */
  url: string;
}

export interface ItemImageReject {
  ok: false;
  reject: RejectRecord;
}

export type ItemImageResult = ItemImage | ItemImageReject;

/**
 * core ImageError reasons → reject reasons. A decode that runs past its deadline is counted as a
 * bomb: an image that costs that much to decode is refused for the same reason as one that
 * claims too many pixels.
 */
export const IMAGE_ERROR_REASONS: Readonly<Record<string, RejectReason>> = {
  empty: REJECT_REASONS.imageEmpty,
  bomb: REJECT_REASONS.imageBomb,
  timeout: REJECT_REASONS.imageBomb,
  truncated: REJECT_REASONS.imageCorrupt,
  corrupt: REJECT_REASONS.imageCorrupt,
  unsupported: REJECT_REASONS.imageUnsupported,
};

/** The reject of `item` for an image failure. */
function imageReject(item: Item, reason: RejectReason, detail: string): RejectRecord {
  return { source: item.source, line: item.line, parent_asin: item.parent_asin, reason, detail };
}

/** A decode failure as an ImageRejectError (non-image errors are returned unchanged). */
export function decodeReject(e: unknown, url: string): unknown {
  if (!(e instanceof ImageError)) return e;
  const reason = IMAGE_ERROR_REASONS[e.reason] ?? REJECT_REASONS.imageCorrupt;
  // A decoder failure's text comes from libvips' error buffer, which concurrent decodes in one
  // process share: the same file can fail with "premature end of JPEG image" (→ truncated) in one
  // run and "Unknown error" (→ corrupt) in another. rejects.jsonl must be byte-identical across
  // runs, so these get one fixed detail; the others' messages are our own and deterministic.
  const detail =
    reason === REJECT_REASONS.imageCorrupt ? 'corrupt or truncated image data' : e.message.replace(/^resizeToJpeg: /, '');
  return new ImageRejectError(reason, `${detail}: ${url}`, { cause: e });
}

export async function loadItemImage(
  item: Item,
  fetcher: Pick<ImageFetcher, 'fetch'>,
  cfg: Pick<DataPrepConfig, 'images'>,
): Promise<ItemImageResult> {
  const url = rewriteUrl(item.image_url, cfg.images.rewrite);
  let bytes: Buffer;
  try {
    bytes = await fetcher.fetch(url);
  } catch (e) {
    // The fetcher's contract is ImageRejectError; anything else from a fetcher is still the
    // item's failure, not the run's.
    const err = e instanceof ImageRejectError ? e : new ImageRejectError(REJECT_REASONS.imageFetch, `fetch failed (${e instanceof Error ? e.message : String(e)}): ${url}`);
    return { ok: false, reject: imageReject(item, err.reason, err.detail) };
  }
  try {
    const out = await resizeToJpeg(bytes, { size: cfg.images.size, quality: cfg.images.quality, maxPixels: cfg.images.maxPixels });
    return { ok: true, jpeg: out.data, width: out.width, height: out.height, sourceFormat: out.sourceFormat, url };
  } catch (e) {
    const err = decodeReject(e, url);
    if (err instanceof ImageRejectError) return { ok: false, reject: imageReject(item, err.reason, err.detail) };
    throw err;
  }
}

/**
 * Which URL is an item's MAIN image (docs/reference/data.md, "images"). Two shapes reach us:
 *
 *  - raw form: a list of entries `{thumb, large, variant, hi_res}`, or for video-catalogue items
 *    width-keyed entries `{"360w", …, "1920w", variant}`;
 *  - Hugging Face column form: one object of parallel lists `{hi_res: [...], large: [...],
 *    thumb: [...], variant: [...]}` (the width keys are lost there).
 *
 * The entry is the first whose `variant` is exactly "MAIN", else the first entry. Within it:
 * `hi_res`, then the widest `NNNw` key, then `large`; never `thumb` (≤ 40 px, useless at 384²).
 * null, missing and blank strings all mean "absent". If the MAIN entry has no usable URL the item
 * has no MAIN image: a later entry is a different picture (a side view, the back), not a stand-in.
 */

export type ImageChoice =
  | { kind: 'found'; url: string }
  /** No images, or the chosen entry has no usable URL. */
  | { kind: 'none' }
  /** A value the choice depends on has the wrong type; `detail` names it (`images[2].hi_res: …`). */
  | { kind: 'bad'; detail: string };

type Entry = Record<string, unknown>;

const WIDTH_KEY = /^([1-9][0-9]{0,5})w$/;

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'an object';
  return `a ${typeof v}`;
}

function isPlainObject(v: unknown): v is Entry {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

class BadImages extends Error {}

/** The entries in raw form, each with a function naming one of its keys for messages. */
function entriesOf(images: unknown): { entries: Entry[]; path: (i: number, key: string) => string } {
  if (Array.isArray(images)) {
    images.forEach((e, i) => {
      if (!isPlainObject(e)) throw new BadImages(`images[${i}]: expected an object, got ${typeName(e)}`);
    });
    return { entries: images as Entry[], path: (i, key) => `images[${i}].${key}` };
  }
  if (isPlainObject(images)) {
    // Column form: transpose the parallel lists. A null column is an absent column.
    const columns: Array<[string, unknown[]]> = [];
    for (const [key, col] of Object.entries(images)) {
      if (col === null || col === undefined) continue;
      if (!Array.isArray(col)) throw new BadImages(`images.${key}: expected a list (column form), got ${typeName(col)}`);
      columns.push([key, col]);
    }
    const n = columns.reduce((m, [, col]) => Math.max(m, col.length), 0);
    const entries: Entry[] = [];
    for (let i = 0; i < n; i++) {
      const e: Entry = {};
      for (const [key, col] of columns) if (i < col.length) e[key] = col[i];
      entries.push(e);
    }
    return { entries, path: (i, key) => `images.${key}[${i}]` };
  }
  throw new BadImages(`images: expected a list or an object of lists, got ${typeName(images)}`);
}

/** A usable URL string, or null when absent; throws on a wrong type. */
function urlValue(v: unknown, where: string): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v !== 'string') throw new BadImages(`${where}: expected a string or null, got ${typeName(v)}`);
  const t = v.trim();
  return t === '' ? null : t;
}

/** The MAIN image URL of a record's `images` value (raw or column form). */
export function chooseMainImage(images: unknown): ImageChoice {
  if (images === null || images === undefined) return { kind: 'none' };
  try {
    const { entries, path } = entriesOf(images);
    let chosen = -1;
    for (let i = 0; i < entries.length; i++) {
      const variant = entries[i].variant;
      if (variant !== null && variant !== undefined && typeof variant !== 'string') {
        throw new BadImages(`${path(i, 'variant')}: expected a string or null, got ${typeName(variant)}`);
      }
      if (variant === 'MAIN') {
        chosen = i;
        break;
      }
    }
    if (chosen < 0) {
      if (entries.length === 0) return { kind: 'none' };
      chosen = 0;
    }
    const entry = entries[chosen];

    const hiRes = urlValue(entry.hi_res, path(chosen, 'hi_res'));
    if (hiRes !== null) return { kind: 'found', url: hiRes };

    let widest: string | null = null;
    let widestPx = 0;
    // Keys in sorted order so that a message about a bad width key is always about the same key.
    for (const key of Object.keys(entry).sort()) {
      const m = WIDTH_KEY.exec(key);
      if (m === null) continue;
      const url = urlValue(entry[key], path(chosen, key));
      const px = Number(m[1]);
      if (url !== null && px > widestPx) {
        widest = url;
        widestPx = px;
      }
    }
    if (widest !== null) return { kind: 'found', url: widest };

    const large = urlValue(entry.large, path(chosen, 'large'));
    if (large !== null) return { kind: 'found', url: large };
    return { kind: 'none' };
  } catch (e) {
    if (e instanceof BadImages) return { kind: 'bad', detail: e.message };
    throw e;
  }
}

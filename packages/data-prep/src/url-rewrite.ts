/**
 * Image URL rewriting (config `images.rewrite`: prefix → prefix) and the resolution of a URL into
 * something the fetcher can read, so that a local folder or an S3 mirror of the images can stand
 * in for the original host:
 *
 *   {"https://m.media-amazon.com/images/I/": "s3://mirror/amazon/I/"}
 *   https://m.media-amazon.com/images/I/41+xYzAbCdL._SL1500_.jpg → s3://mirror/amazon/I/41+xYzAbCdL._SL1500_.jpg
 *
 * Rules: plain string prefixes, case-sensitive; the longest matching prefix wins (so a specific
 * rule can override a general one); no match leaves the URL unchanged. The replacement may be an
 * http(s)://, file:// or s3:// URL (or an absolute local path).
 *
 * How characters in image ids are treated (docs/reference/data.md: ids can contain '+'):
 *  - The metadata's URL text is taken as the *literal* resource name, except that valid `%XX`
 *    escapes already in it are understood as escapes (so `41+x` and `41%2Bx` name the same image).
 *  - http(s): the path is percent-encoded for the request; '+' is sent as `%2B`, because the
 *    Amazon CDN (S3-backed) reads a raw '+' in a path as a space and answers 404. Existing `%XX`
 *    escapes are kept, never double-encoded.
 *  - file:// and s3://: the name is used literally — `%XX` escapes are decoded, '+' stays '+', and
 *    '?', '#' and spaces are part of the name — so a mirror made by saving each image under its
 *    literal id (`41+xYzAbCdL._SL1500_.jpg`) is found. '.' / '..' segments and escapes that decode
 *    to a separator are refused, so a hostile metadata URL cannot climb out of the mirror root.
 */
import { ConfigError } from '@smolrate/core';
import { ImageRejectError } from './image-reject-error.js';
import { REJECT_REASONS } from './types.js';

export type RewriteRules = Readonly<Record<string, string>>;

/** The rewritten URL: the longest matching rule prefix replaced, or `url` when no rule matches. */
export function rewriteUrl(url: string, rules: RewriteRules): string {
  let best: string | undefined;
  for (const prefix of Object.keys(rules)) {
    if (url.startsWith(prefix) && (best === undefined || prefix.length > best.length)) best = prefix;
  }
  return best === undefined ? url : rules[best] + url.slice(best.length);
}

const TARGET_RE = /^(https?:\/\/[^/?#]+|file:\/\/(localhost)?\/|s3:\/\/[^/]+|\/)/i;

/** Checks every rule's target (a supported scheme); throws ConfigError naming the rule. */
export function validateRewriteRules(rules: RewriteRules): void {
  for (const [from, to] of Object.entries(rules)) {
    if (typeof to !== 'string' || !TARGET_RE.test(to)) {
      throw new ConfigError(
        `images.rewrite["${from}"]: target ${JSON.stringify(to)} must start with http(s)://host, file:///, s3://bucket or an absolute path`,
      );
    }
  }
}

/** Where the bytes of an image URL are read from. */
export type ImageSource =
  | { scheme: 'http'; /** Request URL, path percent-encoded. */ url: string }
  | { scheme: 'file'; /** Literal absolute local path. */ path: string }
  | { scheme: 's3'; bucket: string; /** Literal object key. */ key: string };

// RFC 3986 pchar minus '+' (see the file comment), plus '/'.
const PATH_SAFE = /[A-Za-z0-9\-._~!$&'()*,;=:@/]/;
const QUERY_SAFE = /[A-Za-z0-9\-._~!$&'()*+,;=:@/?]/;

function encodeWith(text: string, safe: RegExp, url: string): string {
  let out = '';
  const chars = Array.from(text);
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i];
    if (c === '%' && /^[0-9A-Fa-f]{2}$/.test((chars[i + 1] ?? '') + (chars[i + 2] ?? ''))) {
      out += c; // an existing escape: keep it
    } else if (safe.test(c)) {
      out += c;
    } else {
      try {
        out += encodeURIComponent(c);
      } catch (e) {
        throw new ImageRejectError(REJECT_REASONS.imageFetch, `malformed URL (unpaired surrogate): ${url}`, { cause: e });
      }
    }
  }
  return out;
}

/** Percent-encodes a URL path for an HTTP request: '+' → %2B, existing %XX kept. */
export function encodeUrlPath(path: string): string {
  return encodeWith(path, PATH_SAFE, path);
}

function literalSegments(path: string, url: string): string[] {
  return path.split('/').map((raw) => {
    let seg = raw;
    if (raw.includes('%')) {
      try {
        seg = decodeURIComponent(raw);
      } catch {
        seg = raw; // not a valid escape sequence: the '%' is literal
      }
    }
    if (seg === '.' || seg === '..' || /[/\\\0]/.test(seg)) {
      throw new ImageRejectError(REJECT_REASONS.imageFetch, `refused path segment ${JSON.stringify(raw)} in ${url}`);
    }
    return seg;
  });
}

/**
 * Resolves a (rewritten) image URL to its source. Throws ImageRejectError (image_fetch_failed)
 * for unsupported schemes and malformed URLs — bad data, not a crash.
 */
export function resolveImageSource(url: string): ImageSource {
  const bad = (why: string) => new ImageRejectError(REJECT_REASONS.imageFetch, `${why}: ${url}`);
  const http = /^(https?):\/\/([^/?#]*)([^?#]*)(\?[^#]*)?(?:#.*)?$/i.exec(url);
  if (http) {
    const [, scheme, host, path, query] = http;
    if (host === '') throw bad('URL without a host');
    const href = `${scheme.toLowerCase()}://${host}${encodeWith(path || '/', PATH_SAFE, url)}${query ? encodeWith(query, QUERY_SAFE, url) : ''}`;
    let parsed: URL;
    try {
      parsed = new URL(href);
    } catch (e) {
      throw new ImageRejectError(REJECT_REASONS.imageFetch, `malformed URL: ${url}`, { cause: e });
    }
    return { scheme: 'http', url: parsed.href };
  }
  const file = /^file:\/\/(?:localhost)?(\/.*)$/is.exec(url) ?? (url.startsWith('/') ? [url, url] : null);
  if (file) return { scheme: 'file', path: literalSegments(file[1], url).join('/') };
  const s3 = /^s3:\/\/([^/]+)\/(.+)$/is.exec(url);
  if (s3) {
    const key = literalSegments(s3[2], url).filter((s) => s !== '').join('/');
    if (key === '') throw bad('S3 URL without an object key');
    return { scheme: 's3', bucket: s3[1], key };
  }
  if (/^s3:/i.test(url)) throw bad('S3 URL without an object key');
  throw bad('unsupported image URL (expected http(s)://, file://, s3:// or an absolute path)');
}

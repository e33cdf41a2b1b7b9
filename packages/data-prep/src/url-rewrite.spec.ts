import { ConfigError } from '@smolrate/core';
import { describe, expect, it } from 'vitest';
import { ImageRejectError } from './image-reject-error.js';
import { encodeUrlPath, resolveImageSource, rewriteUrl, validateRewriteRules } from './url-rewrite.js';

const AMZ = 'https://m.media-amazon.com/images/I/';

describe('rewriteUrl', () => {
  const rules = {
    'https://m.media-amazon.com/': 'http://127.0.0.1:9000/amazon/',
    [AMZ]: 's3://mirror/I/',
    [`${AMZ}81`]: 'file:///data/mirror/81/',
  };

  it('uses the longest matching prefix, whatever the rule order', () => {
    expect(rewriteUrl(`${AMZ}41+abc._SL1500_.jpg`, rules)).toBe('s3://mirror/I/41+abc._SL1500_.jpg');
    expect(rewriteUrl(`${AMZ}81xyz.jpg`, rules)).toBe('file:///data/mirror/81/xyz.jpg');
    expect(rewriteUrl('https://m.media-amazon.com/other/x.jpg', rules)).toBe('http://127.0.0.1:9000/amazon/other/x.jpg');
    const reversed = Object.fromEntries(Object.entries(rules).reverse());
    expect(rewriteUrl(`${AMZ}81xyz.jpg`, reversed)).toBe('file:///data/mirror/81/xyz.jpg');
  });

  it('leaves URLs no rule matches unchanged (prefixes are case-sensitive)', () => {
    expect(rewriteUrl('https://images-na.ssl-images-amazon.com/a.jpg', rules)).toBe('https://images-na.ssl-images-amazon.com/a.jpg');
    expect(rewriteUrl('HTTPS://M.MEDIA-AMAZON.COM/images/I/a.jpg', rules)).toBe('HTTPS://M.MEDIA-AMAZON.COM/images/I/a.jpg');
    expect(rewriteUrl(`${AMZ}a.jpg`, {})).toBe(`${AMZ}a.jpg`);
  });

  it('validates rule targets', () => {
    expect(() => validateRewriteRules(rules)).not.toThrow();
    expect(() => validateRewriteRules({ [AMZ]: '/abs/mirror/' })).not.toThrow();
    expect(() => validateRewriteRules({ [AMZ]: 'mirror/' })).toThrow(ConfigError);
    expect(() => validateRewriteRules({ [AMZ]: 'ftp://host/' })).toThrow(/images\.rewrite\["https:\/\/m\.media-amazon\.com\/images\/I\/"\]/);
  });
});

describe('resolveImageSource', () => {
  it('http(s): percent-encodes the path; "+" becomes %2B; existing escapes are not doubled', () => {
    expect(resolveImageSource(`${AMZ}41+ab-c_d.e~.jpg`)).toEqual({ scheme: 'http', url: `${AMZ}41%2Bab-c_d.e~.jpg` });
    expect(resolveImageSource(`${AMZ}41%2Babc.jpg`)).toEqual({ scheme: 'http', url: `${AMZ}41%2Babc.jpg` });
    expect(resolveImageSource('http://h:8080/a b/é%zz.jpg?x=1+2#frag')).toEqual({ scheme: 'http', url: 'http://h:8080/a%20b/%C3%A9%25zz.jpg?x=1+2' });
    expect(encodeUrlPath('/I/41+x.jpg')).toBe('/I/41%2Bx.jpg');
  });

  it('file:// and s3://: the literal name — "+" stays "+", escapes are decoded', () => {
    expect(resolveImageSource('file:///data/mirror/41+abc.jpg')).toEqual({ scheme: 'file', path: '/data/mirror/41+abc.jpg' });
    expect(resolveImageSource('file:///data/mirror/41%2Babc.jpg')).toEqual({ scheme: 'file', path: '/data/mirror/41+abc.jpg' });
    expect(resolveImageSource('file://localhost/data/a b#1.jpg')).toEqual({ scheme: 'file', path: '/data/a b#1.jpg' });
    expect(resolveImageSource('/data/mirror/41+abc.jpg')).toEqual({ scheme: 'file', path: '/data/mirror/41+abc.jpg' });
    expect(resolveImageSource('s3://mirror/I/41+abc.jpg')).toEqual({ scheme: 's3', bucket: 'mirror', key: 'I/41+abc.jpg' });
    expect(resolveImageSource('s3://mirror/I/41%2Babc.jpg')).toEqual({ scheme: 's3', bucket: 'mirror', key: 'I/41+abc.jpg' });
    expect(resolveImageSource('s3://mirror/I/100%.jpg')).toEqual({ scheme: 's3', bucket: 'mirror', key: 'I/100%.jpg' });
  });

  it('an id with "+" rewritten to each kind of mirror', () => {
    const url = `${AMZ}41+xYzAbCdL._SL1500_.jpg`;
    const to = (target: string) => resolveImageSource(rewriteUrl(url, { [AMZ]: target }));
    expect(to('http://127.0.0.1:8000/I/')).toEqual({ scheme: 'http', url: 'http://127.0.0.1:8000/I/41%2BxYzAbCdL._SL1500_.jpg' });
    expect(to('file:///srv/mirror/')).toEqual({ scheme: 'file', path: '/srv/mirror/41+xYzAbCdL._SL1500_.jpg' });
    expect(to('s3://img-mirror/amazon/')).toEqual({ scheme: 's3', bucket: 'img-mirror', key: 'amazon/41+xYzAbCdL._SL1500_.jpg' });
  });

  it('refuses traversal out of a mirror, unknown schemes and malformed URLs', () => {
    const bad = [
      'file:///mirror/../etc/passwd',
      'file:///mirror/..%2F..%2Fetc/passwd',
      's3://mirror/a/../b.jpg',
      's3://mirror/',
      's3://mirror',
      'ftp://h/a.jpg',
      'https:///a.jpg',
      'relative/a.jpg',
      '',
      'http://h/\ud800.jpg',
    ];
    for (const url of bad) {
      let err: unknown;
      try {
        resolveImageSource(url);
      } catch (e) {
        err = e;
      }
      expect(err, url).toBeInstanceOf(ImageRejectError);
      expect((err as ImageRejectError).reason, url).toBe('image_fetch_failed');
    }
  });
});

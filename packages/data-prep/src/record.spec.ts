import { describe, expect, it } from 'vitest';
import { resolveDataPrepConfig } from './config.js';
import { rawLine, SAMPLE_LINES } from './metadata-samples.js';
import { normalizeRecord, type RecordContext } from './record.js';
import { codePoints } from './text.js';
import { REJECT_REASONS } from './types.js';

const cfg = resolveDataPrepConfig();
const ctx = (line = 7): RecordContext => ({ source: 'file:///data/meta_All_Beauty.jsonl', line, category: 'All_Beauty', cfg });

describe('normalizeRecord on every docs/reference/data.md trap', () => {
  for (const sample of SAMPLE_LINES) {
    it(sample.name, () => {
      let raw: unknown;
      try {
        raw = JSON.parse(sample.text);
      } catch {
        // Only the malformed samples may fail to parse; the select pass rejects them.
        expect(sample.expect).toMatchObject({ reason: REJECT_REASONS.malformedJson });
        return;
      }
      const res = normalizeRecord(raw, ctx());
      if ('item' in sample.expect) {
        expect(res).toHaveProperty('item');
        if (!('item' in res)) return;
        expect(res.item).toMatchObject(sample.expect.item);
        expect(res.item).toMatchObject({ category: 'All_Beauty', source: 'file:///data/meta_All_Beauty.jsonl', line: 7 });
        expect(Object.keys(res.item).sort()).toEqual(
          ['average_rating', 'category', 'description', 'features', 'image_url', 'line', 'main_category', 'parent_asin', 'rating_number', 'source', 'title'].sort(),
        );
      } else {
        expect(res).toHaveProperty('reject');
        if (!('reject' in res)) return;
        expect(res.reject.reason).toBe(sample.expect.reason);
        expect(res.reject).toMatchObject({ source: 'file:///data/meta_All_Beauty.jsonl', line: 7 });
        if (sample.expect.detail !== undefined) expect(res.reject.detail).toContain(sample.expect.detail);
      }
    });
  }

  it('names the parent_asin in rejects once it is known, not before', () => {
    const noImage = normalizeRecord(JSON.parse(rawLine({ parent_asin: 'B0NOIMAGES', images: [] })), ctx());
    expect(noImage).toEqual({ reject: { source: 'file:///data/meta_All_Beauty.jsonl', line: 7, parent_asin: 'B0NOIMAGES', reason: 'no_main_image' } });
    const notObject = normalizeRecord([1], ctx());
    expect(notObject).toEqual({ reject: { source: 'file:///data/meta_All_Beauty.jsonl', line: 7, reason: 'not_an_object', detail: 'expected an object, got a list' } });
  });
});

describe('normalizeRecord rules', () => {
  it('applies the documented check order: type errors before missing values, ratings before images', () => {
    const reason = (fields: Record<string, unknown>) => {
      const r = normalizeRecord(JSON.parse(rawLine(fields)), ctx());
      return 'reject' in r ? r.reject.reason : 'kept';
    };
    expect(reason({ average_rating: null, title: 5 })).toBe('bad_field_type');
    expect(reason({ average_rating: null, rating_number: null })).toBe('no_average_rating');
    expect(reason({ average_rating: 7, rating_number: null })).toBe('average_rating_out_of_range');
    expect(reason({ rating_number: null, images: [] })).toBe('no_rating_number');
    expect(reason({ rating_number: 2, images: [] })).toBe('too_few_ratings');
    expect(reason({ rating_number: 10 })).toBe('kept'); // minRatingNumber 10 is inclusive
  });

  it('accepts the rating bounds 1 and 5 and honours minRatingNumber from the config', () => {
    for (const r of [1, 5]) expect(normalizeRecord(JSON.parse(rawLine({ average_rating: r })), ctx())).toHaveProperty('item');
    const loose = resolveDataPrepConfig({ overrides: { 'selection.minRatingNumber': 0 } });
    expect(normalizeRecord(JSON.parse(rawLine({ rating_number: 0 })), { ...ctx(), cfg: loose })).toHaveProperty('item');
  });

  it('caps title, description and joined features at text.maxChars code points', () => {
    const small = resolveDataPrepConfig({ overrides: { 'text.maxChars': 12 } });
    const res = normalizeRecord(
      JSON.parse(rawLine({ title: '😀'.repeat(20), description: ['abcdefgh', 'ijklmnop'], features: ['one two', 'three four', 'five'] })),
      { ...ctx(), cfg: small },
    );
    if (!('item' in res)) throw new Error(`expected an item, got ${JSON.stringify(res)}`);
    expect(res.item.title).toBe('😀'.repeat(12));
    expect(res.item.description).toBe('abcdefgh ijk');
    expect(res.item.features).toEqual(['one two', 'thre']);
    expect(codePoints(res.item.features.join(' '))).toBeLessThanOrEqual(12);
  });

  it('treats a blank main_category as absent and keeps the record', () => {
    const res = normalizeRecord(JSON.parse(rawLine({ main_category: ' ' })), ctx());
    expect(res).toMatchObject({ item: { main_category: null } });
    const missing = normalizeRecord(JSON.parse(rawLine({ main_category: undefined, title: undefined, features: undefined, description: undefined })), ctx());
    expect(missing).toMatchObject({ item: { main_category: null, title: '', features: [], description: '' } });
  });
});

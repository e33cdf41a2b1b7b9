import { describe, expect, it } from 'vitest';
import { DataError } from '../errors.js';
import { codePointLength, SHARD_COLUMNS, SHARD_TEXT_CAP, shardRowProblems, validateShardRow, type ShardRow } from './schema.js';

function good(): ShardRow {
  return {
    parent_asin: 'B00TEST001',
    category: 'All_Beauty',
    main_category: 'All Beauty',
    title: 'A title',
    description: 'A description',
    features: ['one', 'two'],
    average_rating: 4.3,
    rating_number: 12,
    image: Buffer.from([0xff, 0xd8, 0xff]),
    image_url: 'https://m.media-amazon.com/images/I/x.jpg',
  };
}

function errorOf(row: unknown): DataError {
  try {
    validateShardRow(row);
  } catch (e) {
    expect(e).toBeInstanceOf(DataError);
    return e as DataError;
  }
  throw new Error('expected validateShardRow to throw');
}

describe('shard row validation', () => {
  it('accepts a well-formed row, including null main_category, empty text and no features', () => {
    expect(validateShardRow(good())).toEqual(good());
    expect(shardRowProblems({ ...good(), main_category: null, title: '', description: '', features: [] })).toEqual([]);
    expect(shardRowProblems({ ...good(), average_rating: 1 })).toEqual([]);
    expect(shardRowProblems({ ...good(), average_rating: 5 })).toEqual([]);
    expect(shardRowProblems({ ...good(), rating_number: Number.MAX_SAFE_INTEGER })).toEqual([]);
  });

  it('keeps the column order of docs/reference/design.md', () => {
    expect(SHARD_COLUMNS).toEqual([
      'parent_asin', 'category', 'main_category', 'title', 'description', 'features',
      'average_rating', 'rating_number', 'image', 'image_url',
    ]);
  });

  it.each([
    ['average_rating', { average_rating: 0.99 }, /average_rating: 0\.99 is outside \[1, 5\]/],
    ['average_rating', { average_rating: 5.01 }, /average_rating: 5\.01 is outside/],
    ['average_rating', { average_rating: Number.NaN }, /average_rating: expected a finite number/],
    ['average_rating', { average_rating: '4.5' }, /average_rating: expected a finite number, got string/],
    ['rating_number', { rating_number: 1.5 }, /rating_number: expected a non-negative safe integer/],
    ['rating_number', { rating_number: -1 }, /rating_number: expected a non-negative safe integer/],
    ['rating_number', { rating_number: 2 ** 53 }, /rating_number: expected a non-negative safe integer/],
    ['parent_asin', { parent_asin: '' }, /parent_asin: must not be empty/],
    ['category', { category: 7 }, /category: expected a string, got number 7/],
    ['main_category', { main_category: undefined }, /main_category: expected a string, got undefined/],
    ['title', { title: null }, /title: expected a string, got null/],
    ['description', { description: 'x'.repeat(SHARD_TEXT_CAP + 1) }, /description: 1001 code points, more than the cap of 1000/],
    ['title', { title: 'bad \ud800 surrogate' }, /title: not well-formed Unicode/],
    ['features', { features: 'a, b' }, /features: expected an array of strings/],
    ['features[1]', { features: ['a', 3] }, /features\[1\]: expected a string, got number 3/],
    ['features', { features: ['x'.repeat(600), 'y'.repeat(400)] }, /features: 1001 code points when joined/],
    ['image', { image: new Uint16Array(3) }, /image: expected a Buffer/],
    ['image', { image: Buffer.alloc(0) }, /image: must not be empty/],
    ['image_url', { image_url: '' }, /image_url: must not be empty/],
    ['extra', { extra: 1 }, /extra: unknown field/],
  ])('rejects a bad %s with a DataError naming it', (_field, patch, message) => {
    const e = errorOf({ ...good(), ...patch });
    expect(e.message).toMatch(message);
    if (_field !== 'parent_asin') expect(e.message).toContain('shard row "B00TEST001" is invalid');
  });

  it('reports every problem of a row at once', () => {
    const e = errorOf({ ...good(), average_rating: 9, title: 1, image: 'jpeg' });
    expect(e.message).toMatch(/title: .*; average_rating: .*; image: /);
    expect(shardRowProblems('not a row')).toEqual(['row: expected an object, got string "not a row"']);
  });

  it('caps text in code points, not UTF-16 units', () => {
    const emoji = '😀'.repeat(SHARD_TEXT_CAP); // 2,000 UTF-16 code units
    expect(emoji.length).toBe(2 * SHARD_TEXT_CAP);
    expect(codePointLength(emoji)).toBe(SHARD_TEXT_CAP);
    expect(shardRowProblems({ ...good(), title: emoji })).toEqual([]);
    expect(shardRowProblems({ ...good(), title: `${emoji}a` })).toEqual(['title: 1001 code points, more than the cap of 1000']);
    // A combining mark is its own code point: e + U+0301 counts 2.
    expect(codePointLength('e\u0301')).toBe(2);
  });
});

/**
 * Hand-written metadata lines in the exact Amazon Reviews'23 formats (docs/reference/data.md), one per known
 * trap, each with the outcome the pipeline must produce. The tests run every one of them through
 * normalisation and through a whole selection pass; the selection benchmark mixes them into its
 * generated files so that the measured pass takes the reject paths too.
 */
import type { Item, RejectReason } from './types.js';

export interface SampleLine {
  name: string;
  /** The line exactly as it would appear in the file (no newline). */
  text: string;
  /** The item fields it must produce, or the reject reason (and a fragment of its detail). */
  expect: { item: Partial<Item> } | { reason: RejectReason; detail?: string };
}

const IMG = 'https://m.media-amazon.com/images/I/';

/** A typical raw-form record (All_Beauty), as JSON text with its original key order. */
export function rawLine(fields: Record<string, unknown> = {}): string {
  const base: Record<string, unknown> = {
    main_category: 'All Beauty',
    title: 'Howard LC0008 Leather Conditioner, 8-Ounce (4-Pack)',
    average_rating: 4.8,
    rating_number: 10,
    features: [],
    description: [],
    price: null,
    images: [
      { thumb: `${IMG}41qfjSfqNyL._SS40_.jpg`, large: `${IMG}41qfjSfqNyL.jpg`, variant: 'MAIN', hi_res: `${IMG}71i77AuI9xL._SL1500_.jpg` },
      { thumb: `${IMG}41w2yznfuZL._SS40_.jpg`, large: `${IMG}41w2yznfuZL.jpg`, variant: 'PT01', hi_res: `${IMG}71oYbFROY1L._SL1500_.jpg` },
    ],
    videos: [],
    store: 'Howard Products',
    categories: [],
    details: { 'Package Dimensions': '7.1 x 5.5 x 3 inches; 2.38 Pounds', UPC: '617390882781' },
    parent_asin: 'B01CUPMQZE',
    bought_together: null,
  };
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) delete base[k];
    else base[k] = v;
  }
  // Non-ASCII \u-escaped, as in the published files.
  return JSON.stringify(base).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export const SAMPLE_LINES: SampleLine[] = [
  {
    name: 'typical raw record: hi_res of the MAIN entry',
    text: rawLine({ parent_asin: 'B0TYPICAL1' }),
    expect: { item: { image_url: `${IMG}71i77AuI9xL._SL1500_.jpg`, title: 'Howard LC0008 Leather Conditioner, 8-Ounce (4-Pack)', main_category: 'All Beauty', features: [], description: '' } },
  },
  {
    name: 'hi_res null: large of the MAIN entry',
    text: rawLine({ parent_asin: 'B0HIRESNUL', images: [{ thumb: `${IMG}t._SS40_.jpg`, large: `${IMG}LARGE000001.jpg`, variant: 'MAIN', hi_res: null }] }),
    expect: { item: { image_url: `${IMG}LARGE000001.jpg` } },
  },
  {
    name: 'MAIN not first: the MAIN entry wins',
    text: rawLine({
      parent_asin: 'B0MAINLATE',
      images: [
        { thumb: null, large: `${IMG}SIDE0000001.jpg`, variant: 'PT01', hi_res: `${IMG}SIDE0000002.jpg` },
        { thumb: null, large: `${IMG}MAIN0000001.jpg`, variant: 'MAIN', hi_res: null },
      ],
    }),
    expect: { item: { image_url: `${IMG}MAIN0000001.jpg` } },
  },
  {
    name: 'width-keyed images (Prime Video): the widest NNNw',
    text: rawLine({
      parent_asin: 'B0VIDEO001',
      main_category: 'Prime Video',
      images: [
        {
          '360w': `${IMG}V360.jpg`,
          '480w': `${IMG}V480.jpg`,
          '720w': `${IMG}V720.jpg`,
          '1080w': `${IMG}V1080.jpg`,
          '1440w': `${IMG}V1440.jpg`,
          '1920w': `${IMG}V1920.jpg`,
          variant: 'MAIN',
        },
      ],
    }),
    expect: { item: { image_url: `${IMG}V1920.jpg`, main_category: 'Prime Video' } },
  },
  {
    name: 'Hugging Face column form: images and videos as dicts of lists, price "None", details a JSON string',
    text:
      '{"main_category": "All Beauty", "title": "Column form", "average_rating": 3.9, "rating_number": 41, "features": ["Soft", "Gentle"], ' +
      '"description": ["One.", "Two."], "price": "None", "images": {"hi_res": [null, "' +
      IMG +
      'COLHIRES002.jpg"], "large": ["' +
      IMG +
      'COLLARGE001.jpg", "' +
      IMG +
      'COLLARGE002.jpg"], "thumb": ["' +
      IMG +
      'COLTHUMB001.jpg", null], "variant": ["MAIN", "PT01"]}, "videos": {"title": [], "url": [], "user_id": []}, "store": "Acme", ' +
      '"categories": [], "details": "{\\"Brand\\": \\"Acme\\", \\"Size\\": {\\"Width\\": \\"3 in\\"}}", "parent_asin": "B0COLUMN01", "bought_together": null}',
    expect: { item: { image_url: `${IMG}COLLARGE001.jpg`, features: ['Soft', 'Gentle'], description: 'One. Two.', average_rating: 3.9, rating_number: 41 } },
  },
  { name: 'images []', text: rawLine({ parent_asin: 'B0NOIMAGES', images: [] }), expect: { reason: 'no_main_image' } },
  {
    name: 'only a thumb',
    text: rawLine({ parent_asin: 'B0THUMBONL', images: [{ thumb: `${IMG}T._SS40_.jpg`, large: null, variant: 'MAIN', hi_res: null }] }),
    expect: { reason: 'no_main_image' },
  },
  { name: 'average_rating null', text: rawLine({ parent_asin: 'B0NULLRATE', average_rating: null }), expect: { reason: 'no_average_rating' } },
  { name: 'rating_number null', text: rawLine({ parent_asin: 'B0NULLCNT1', rating_number: null }), expect: { reason: 'no_rating_number' } },
  { name: 'average_rating 0', text: rawLine({ parent_asin: 'B0RATING00', average_rating: 0 }), expect: { reason: 'average_rating_out_of_range', detail: '0' } },
  { name: 'average_rating 6', text: rawLine({ parent_asin: 'B0RATING06', average_rating: 6 }), expect: { reason: 'average_rating_out_of_range', detail: '6' } },
  {
    name: 'average_rating 1e999 (Infinity)',
    text: rawLine({ parent_asin: 'B0RATEINF1' }).replace('"average_rating":4.8', '"average_rating":1e999'),
    expect: { reason: 'average_rating_out_of_range' },
  },
  { name: 'string price with symbols', text: rawLine({ parent_asin: 'B0PRICESTR', price: '$12.99 - $15.00' }), expect: { item: { parent_asin: 'B0PRICESTR' } } },
  {
    name: 'nested details',
    text: rawLine({ parent_asin: 'B0DETAILS1', details: { 'Product Dimensions': { Width: '3 in', Height: ['1', '2'] }, 'Best Sellers Rank': { Beauty: 1234 } } }),
    expect: { item: { parent_asin: 'B0DETAILS1' } },
  },
  { name: 'malformed JSON', text: '{"main_category": "All Beauty", "title": "cut here', expect: { reason: 'malformed_json' } },
  { name: 'malformed JSON with a readable parent_asin', text: '{"parent_asin": "B0BROKEN01", "title": oops}', expect: { reason: 'malformed_json' } },
  { name: 'a JSON list, not an object', text: '[1, 2, 3]', expect: { reason: 'not_an_object' } },
  { name: 'a JSON string, not an object', text: '"B01CUPMQZE"', expect: { reason: 'not_an_object' } },
  { name: 'JSON null', text: 'null', expect: { reason: 'not_an_object' } },
  { name: 'missing parent_asin', text: rawLine({ parent_asin: undefined }), expect: { reason: 'missing_parent_asin' } },
  { name: 'blank parent_asin', text: rawLine({ parent_asin: '  ' }), expect: { reason: 'missing_parent_asin' } },
  { name: 'numeric parent_asin', text: rawLine({ parent_asin: 1234567890 }), expect: { reason: 'bad_field_type', detail: 'parent_asin' } },
  { name: 'average_rating as a string', text: rawLine({ parent_asin: 'B0STRRATE1', average_rating: '4.5' }), expect: { reason: 'bad_field_type', detail: 'average_rating' } },
  { name: 'rating_number as a string', text: rawLine({ parent_asin: 'B0STRCOUNT', rating_number: '123' }), expect: { reason: 'bad_field_type', detail: 'rating_number' } },
  { name: 'rating_number negative', text: rawLine({ parent_asin: 'B0NEGCOUNT', rating_number: -3 }), expect: { reason: 'bad_field_type', detail: 'rating_number' } },
  { name: 'rating_number fractional', text: rawLine({ parent_asin: 'B0FRACOUNT', rating_number: 12.5 }), expect: { reason: 'bad_field_type', detail: 'rating_number' } },
  { name: 'title a list', text: rawLine({ parent_asin: 'B0TITLELST', title: ['a'] }), expect: { reason: 'bad_field_type', detail: 'title' } },
  { name: 'features holding a number', text: rawLine({ parent_asin: 'B0FEATNUM1', features: ['ok', 7] }), expect: { reason: 'bad_field_type', detail: 'features[1]' } },
  { name: 'images a string', text: rawLine({ parent_asin: 'B0IMGSTR01', images: `${IMG}X.jpg` }), expect: { reason: 'bad_field_type', detail: 'images' } },
  { name: 'hi_res a number', text: rawLine({ parent_asin: 'B0HIRESNUM', images: [{ variant: 'MAIN', hi_res: 5, large: `${IMG}L.jpg` }] }), expect: { reason: 'bad_field_type', detail: 'images[0].hi_res' } },
  { name: 'too few ratings', text: rawLine({ parent_asin: 'B0FEWRATES', rating_number: 9 }), expect: { reason: 'too_few_ratings' } },
  {
    name: 'title null, description a string, features with nulls',
    text: rawLine({ parent_asin: 'B0NULLTITL', title: null, description: '  Only\tone  ', features: [null, 'kept'] }),
    expect: { item: { title: '', description: 'Only one', features: ['kept'] } },
  },
  {
    name: 'emoji, CJK, control characters and mojibake in text',
    text: rawLine({
      parent_asin: 'B0UNICODE1',
      title: 'Cute 😀 cat\u0007 mug — 可爱的猫\u0000杯',
      description: ['Donâ€™t microwave.\r\n\r\nHand wash\u000b only.', '  '],
      features: ['👍🏽 sturdy', '\u0001'],
    }),
    expect: { item: { title: 'Cute 😀 cat mug — 可爱的猫杯', description: 'Donâ€™t microwave. Hand wash only.', features: ['👍🏽 sturdy'] } },
  },
  {
    name: 'a lone surrogate escape in the title',
    text: rawLine({ parent_asin: 'B0SURROGAT' }).replace('"title":"Howard', '"title":"\\ud83d Howard'),
    expect: { item: { title: '\ufffd Howard LC0008 Leather Conditioner, 8-Ounce (4-Pack)' } },
  },
];

import { describe, expect, it } from 'vitest';
import { chooseMainImage } from './image-choice.js';

const u = (s: string) => `https://m.media-amazon.com/images/I/${s}.jpg`;

describe('chooseMainImage', () => {
  it('raw form: the MAIN entry (else the first), then hi_res > widest NNNw > large, never thumb', () => {
    expect(chooseMainImage([{ variant: 'PT01', hi_res: u('a') }, { variant: 'MAIN', hi_res: u('b'), large: u('c') }])).toEqual({ kind: 'found', url: u('b') });
    expect(chooseMainImage([{ variant: 'PT01', large: u('a') }, { variant: 'BACK', large: u('b') }])).toEqual({ kind: 'found', url: u('a') });
    expect(chooseMainImage([{ variant: 'MAIN', hi_res: null, large: u('l') }])).toEqual({ kind: 'found', url: u('l') });
    expect(chooseMainImage([{ variant: 'MAIN', hi_res: '', large: '  ', '480w': u('w480'), '1080w': u('w1080'), '720w': u('w720') }])).toEqual({
      kind: 'found',
      url: u('w1080'),
    });
    expect(chooseMainImage([{ variant: 'MAIN', '1920w': null, '360w': u('w360'), large: u('l') }])).toEqual({ kind: 'found', url: u('w360') });
    expect(chooseMainImage([{ variant: 'MAIN', thumb: u('t') }])).toEqual({ kind: 'none' });
    // A MAIN entry without a URL means no MAIN image: a side view is not a stand-in.
    expect(chooseMainImage([{ variant: 'MAIN', large: null }, { variant: 'PT01', large: u('side') }])).toEqual({ kind: 'none' });
    expect(chooseMainImage([])).toEqual({ kind: 'none' });
    expect(chooseMainImage(null)).toEqual({ kind: 'none' });
    expect(chooseMainImage(undefined)).toEqual({ kind: 'none' });
  });

  it('column form: parallel lists, ragged lengths and null columns', () => {
    const col = { hi_res: [null, u('h2')], large: [u('l1'), u('l2')], thumb: [u('t1'), u('t2')], variant: ['PT01', 'MAIN'] };
    expect(chooseMainImage(col)).toEqual({ kind: 'found', url: u('h2') });
    expect(chooseMainImage({ hi_res: [null], large: [u('l1'), u('l2')], variant: ['MAIN'] })).toEqual({ kind: 'found', url: u('l1') });
    expect(chooseMainImage({ hi_res: null, large: [u('l1')], variant: null })).toEqual({ kind: 'found', url: u('l1') });
    expect(chooseMainImage({ hi_res: [], large: [], thumb: [], variant: [] })).toEqual({ kind: 'none' });
    expect(chooseMainImage({})).toEqual({ kind: 'none' });
  });

  it('names the offending value on a wrong type', () => {
    expect(chooseMainImage('x')).toEqual({ kind: 'bad', detail: 'images: expected a list or an object of lists, got a string' });
    expect(chooseMainImage([{ variant: 'MAIN', large: u('a') }, 3])).toEqual({ kind: 'bad', detail: 'images[1]: expected an object, got a number' });
    expect(chooseMainImage([{ variant: 7 }])).toEqual({ kind: 'bad', detail: 'images[0].variant: expected a string or null, got a number' });
    expect(chooseMainImage({ large: 'x' })).toEqual({ kind: 'bad', detail: 'images.large: expected a list (column form), got a string' });
    expect(chooseMainImage({ large: [{}], variant: ['MAIN'] })).toEqual({ kind: 'bad', detail: 'images.large[0]: expected a string or null, got an object' });
    expect(chooseMainImage([{ variant: 'MAIN', '720w': 5 }])).toEqual({ kind: 'bad', detail: 'images[0].720w: expected a string or null, got a number' });
  });
});

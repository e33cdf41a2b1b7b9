import { describe, expect, it } from 'vitest';
import { capCodePoints, capTextList, cleanText, codePoints, joinText } from './text.js';

describe('cleanText', () => {
  it('removes control characters, turns whitespace runs into one space, trims', () => {
    expect(cleanText('  a\tb\r\n\nc  ')).toBe('a b c');
    expect(cleanText('bell\u0007 and nul\u0000 and del\u007f and c1\u0090 gone')).toBe('bell and nul and del and c1 gone');
    expect(cleanText('nbsp\u00a0ideographic\u3000nel\u0085end')).toBe('nbsp ideographic nel end');
    expect(cleanText('\u0001\u0002')).toBe('');
  });

  it('keeps the text as given: no Unicode normalisation, mojibake and emoji untouched', () => {
    const decomposed = 'Cafe\u0301'; // e + combining acute: not turned into é (NFC)
    expect(cleanText(decomposed)).toBe(decomposed);
    expect(cleanText('Donâ€™t â€œquoteâ€\u009d')).toBe('Donâ€™t â€œquoteâ€'); // the C1 control is the only change
    expect(cleanText('👍🏽 家庭用 👨‍👩‍👧')).toBe('👍🏽 家庭用 👨‍👩‍👧'); // ZWJ (a format character) kept
  });

  it('replaces lone surrogates with U+FFFD and keeps pairs', () => {
    expect(cleanText('a\ud83db')).toBe('a\ufffdb');
    expect(cleanText('a\ude00b')).toBe('a\ufffdb');
    expect(cleanText('a\ud83d\ude00b')).toBe('a😀b');
  });

  it('returns plain ASCII unchanged (fast path) and cleans ASCII that needs it', () => {
    const s = 'Howard LC0008 Leather Conditioner, 8-Ounce (4-Pack)';
    expect(cleanText(s)).toBe(s);
    expect(cleanText('a  b')).toBe('a b');
    expect(cleanText(' a')).toBe('a');
  });
});

describe('capCodePoints', () => {
  it('counts code points, not UTF-16 units, and never splits a pair', () => {
    const emoji = '😀'.repeat(10); // 20 units
    expect(capCodePoints(emoji, 10)).toBe(emoji);
    expect(capCodePoints(emoji, 3)).toBe('😀😀😀');
    expect(codePoints(capCodePoints(`${'中'.repeat(5)}${'😀'.repeat(5)}`, 7))).toBe(7);
    expect(capCodePoints('abcdef', 3)).toBe('abc');
    expect(capCodePoints('ab cdef', 3)).toBe('ab'); // the cut left a trailing space
    expect(capCodePoints('abc', 0)).toBe('');
  });
});

describe('joinText and capTextList', () => {
  it('joins cleaned non-empty parts with one space and caps', () => {
    expect(joinText(['  first\n', '', '\u0000', 'second'], 1000)).toBe('first second');
    expect(joinText(['abc', 'def'], 5)).toBe('abc d');
  });

  it('keeps whole features while their " "-join fits, cutting the last one', () => {
    expect(capTextList(['aaa', ' ', 'bbb', 'ccc'], 1000)).toEqual(['aaa', 'bbb', 'ccc']);
    expect(capTextList(['aaa', 'bbb', 'ccc'], 9)).toEqual(['aaa', 'bbb', 'c']);
    expect(capTextList(['aaa', 'bbb', 'ccc'], 8)).toEqual(['aaa', 'bbb']);
    expect(capTextList(['😀😀😀', '😀😀'], 5)).toEqual(['😀😀😀', '😀']);
    for (const cap of [1, 2, 7, 13]) {
      expect(codePoints(capTextList(['alpha', 'beta', 'gamma'], cap).join(' '))).toBeLessThanOrEqual(cap);
    }
  });
});

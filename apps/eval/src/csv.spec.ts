import { DataError } from '@smolrate/core';
import { describe, expect, it } from 'vitest';
import { formatCsv, parseCsv, parseCsvRecords } from './csv.js';

describe('csv', () => {
  it('parses quotes, doubled quotes, embedded commas / newlines, CRLF and a BOM', () => {
    const text = '\ufeffa,b,c\r\n"x, y","he said ""hi""","multi\nline"\r\n1,,3\r\n';
    expect(parseCsv(text)).toEqual([['a', 'b', 'c'], ['x, y', 'he said "hi"', 'multi\nline'], ['1', '', '3']]);
  });
  it('round-trips what formatCsv writes', () => {
    const rows = [['q"uote', 'com,ma', 'nl\nx'], ['1', '2.5', '']];
    expect(parseCsv(formatCsv(['a', 'b', 'c'], rows))).toEqual([['a', 'b', 'c'], ...rows]);
  });
  it('names missing columns and ragged rows', () => {
    expect(() => parseCsvRecords('target\n1\n', ['target', 'prediction'], 'f.csv')).toThrow(/f\.csv: missing column prediction/);
    expect(() => parseCsvRecords('a,b\n1\n', ['a'], 'f.csv')).toThrow(/row 2 has 1 fields, the header has 2/);
    expect(() => parseCsv('"open')).toThrow(DataError);
  });
});

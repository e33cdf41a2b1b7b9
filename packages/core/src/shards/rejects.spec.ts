import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DataError, ShardIntegrityError } from '../errors.js';
import { openStore } from '../storage/open-store.js';
import type { Store } from '../storage/store.js';
import { parseRejects, readRejects, rejectLine, serializeRejects, writeRejects, type RejectRecord } from './rejects.js';

const RECORDS: RejectRecord[] = [
  { source: 'file:///in/b.jsonl', line: 2, reason: 'no-image', parent_asin: 'B2' },
  { source: 'file:///in/a.jsonl', line: 10, reason: 'rating-null', detail: 'average_rating is null', parent_asin: 'A10' },
  { source: 'file:///in/a.jsonl', line: 9, reason: 'bad-json', detail: 'Unexpected token } in JSON' },
  { source: 'file:///in/a.jsonl', line: 10, reason: 'image-fetch', detail: 'HTTP 404 😞', parent_asin: 'A10' },
];

const EXPECTED =
  '{"source":"file:///in/a.jsonl","line":9,"reason":"bad-json","detail":"Unexpected token } in JSON"}\n' +
  '{"source":"file:///in/a.jsonl","line":10,"parent_asin":"A10","reason":"image-fetch","detail":"HTTP 404 😞"}\n' +
  '{"source":"file:///in/a.jsonl","line":10,"parent_asin":"A10","reason":"rating-null","detail":"average_rating is null"}\n' +
  '{"source":"file:///in/b.jsonl","line":2,"parent_asin":"B2","reason":"no-image"}\n';

describe('rejects.jsonl', () => {
  it('serialises in canonical order with a fixed key order, whatever the input order', () => {
    expect(serializeRejects(RECORDS)).toBe(EXPECTED);
    expect(serializeRejects([...RECORDS].reverse())).toBe(EXPECTED);
    expect(serializeRejects([])).toBe('');
    // Line numbers sort numerically, not as text.
    const lines = serializeRejects([
      { source: 's', line: 100, reason: 'r' },
      { source: 's', line: 20, reason: 'r' },
    ]);
    expect(lines).toBe('{"source":"s","line":20,"reason":"r"}\n{"source":"s","line":100,"reason":"r"}\n');
    expect(parseRejects(EXPECTED)).toEqual([RECORDS[2], RECORDS[3], RECORDS[1], RECORDS[0]]);
  });

  it('rejects malformed records with a DataError naming the field', () => {
    expect(() => rejectLine({ source: '', line: 0, reason: '' })).toThrow(DataError);
    expect(() => rejectLine({ source: '', line: 0, reason: '' })).toThrow(
      /source: expected a non-empty string; line: expected a positive integer, got 0; reason: expected a non-empty string/,
    );
    expect(() => serializeRejects([{ source: 's', line: 1.5, reason: 'r' }])).toThrow(/line: expected a positive integer, got 1.5/);
    expect(() => parseRejects('{"source":"s","line":1,"reason":"r"}\nnot json\n')).toThrow(/rejects\.jsonl line 2: not valid JSON/);
    expect(() => parseRejects('{"source":"s","line":1,"reason":"r","why":1}\n')).toThrow(/line 1: why: unknown field/);
  });

  describe('in a store', () => {
    let dir: string;
    let store: Store;
    beforeEach(async () => {
      dir = await mkdtemp(join(tmpdir(), 'smolrate-rejects-'));
      store = openStore(dir);
    });
    afterEach(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('writes the canonical bytes and reads them back', async () => {
      await writeRejects(store, RECORDS, { root: 'ds' });
      expect((await store.get('ds/rejects.jsonl')).toString('utf8')).toBe(EXPECTED);
      expect(await readRejects(store, { root: 'ds' })).toEqual(parseRejects(EXPECTED));

      // Many records: streamed in several chunks, still the same bytes as the string form.
      const many = Array.from({ length: 10_000 }, (_, i) => ({ source: `s${i % 3}`, line: 10_000 - i, reason: 'r' }));
      await writeRejects(store, many);
      expect((await store.get('rejects.jsonl')).toString('utf8')).toBe(serializeRejects(many));

      await expect(writeRejects(store, [{ source: 's', line: -1, reason: 'r' }], { root: 'bad' })).rejects.toThrow(DataError);
      expect(await store.exists('bad/rejects.jsonl')).toBe(false);

      await store.put('broken/rejects.jsonl', '{"source":"s"}\n');
      await expect(readRejects(store, { root: 'broken' })).rejects.toThrow(ShardIntegrityError);
    });
  });
});

import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigError, openStore, type Store } from '@smolrate/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listInputs, parseInputName } from './inputs.js';

let dir: string;
let local: Store;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'smolrate-inputs-'));
  local = openStore(dir);
  for (const k of ['data/meta_Toys_and_Games.jsonl', 'data/meta_All_Beauty.jsonl.gz', 'data/Books.jsonl', 'data/README.md', 'data/sub/meta_Software.jsonl', 'data/.meta_Hidden.jsonl']) {
    await local.put(k, '{}\n');
  }
  await local.put('pq/meta_Books.parquet', 'PAR1');
  await local.put('pq/meta_Software.jsonl', '{}\n');
  await local.put('other/meta_Books.jsonl.gz', 'x');
  await local.put('other/notes.txt', 'x');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const fileUri = (p: string) => pathToFileURL(join(dir, p)).href;

describe('parseInputName', () => {
  it('knows the three naming schemes and nothing else', () => {
    expect(parseInputName('meta_All_Beauty.jsonl')).toEqual({ category: 'All_Beauty', compressed: false });
    expect(parseInputName('meta_Clothing_Shoes_and_Jewelry.jsonl.gz')).toEqual({ category: 'Clothing_Shoes_and_Jewelry', compressed: true });
    expect(parseInputName('Books.jsonl')).toEqual({ category: 'Books', compressed: false });
    expect(parseInputName('Books.jsonl.gz')).toEqual({ category: 'Books', compressed: true });
    for (const bad of ['meta_Books.json', 'Books.jsonl.bz2', 'meta_Books.parquet', 'README.md', 'meta_.jsonl', 'a b.jsonl', '.jsonl']) {
      expect(parseInputName(bad)).toBeNull();
    }
  });
});

describe('listInputs (local)', () => {
  it('expands a folder to the metadata files directly in it, sorted by category', async () => {
    const files = await listInputs([join(dir, 'data')]);
    expect(files).toEqual([
      { uri: fileUri('data/meta_All_Beauty.jsonl.gz'), storeUri: fileUri('data'), key: 'meta_All_Beauty.jsonl.gz', category: 'All_Beauty', compressed: true },
      { uri: fileUri('data/Books.jsonl'), storeUri: fileUri('data'), key: 'Books.jsonl', category: 'Books', compressed: false },
      { uri: fileUri('data/meta_Toys_and_Games.jsonl'), storeUri: fileUri('data'), key: 'meta_Toys_and_Games.jsonl', category: 'Toys_and_Games', compressed: false },
    ]);
    const text = (await openStore(files[1].storeUri).get(files[1].key)).toString();
    expect(text).toBe('{}\n');
  });

  it('takes explicit files (path or file://), drops repeats, filters categories', async () => {
    const files = await listInputs([fileUri('data/Books.jsonl'), join(dir, 'pq/meta_Software.jsonl'), join(dir, 'data')], { categories: ['Software', 'Books'] });
    expect(files.map((f) => [f.category, f.uri])).toEqual([
      ['Books', fileUri('data/Books.jsonl')],
      ['Software', fileUri('pq/meta_Software.jsonl')],
    ]);
  });

  it('rejects unknown file names, naming all of them', async () => {
    const p = listInputs([join(dir, 'data/README.md'), join(dir, 'other/notes.txt'), join(dir, 'data/Books.jsonl')]);
    await expect(p).rejects.toBeInstanceOf(ConfigError);
    await expect(p).rejects.toThrow(/README\.md.*notes\.txt/);
  });

  it('rejects Parquet, given or found in a folder, with a clear message', async () => {
    await expect(listInputs([join(dir, 'pq/meta_Books.parquet')])).rejects.toThrow('Parquet column-form files not supported yet');
    await expect(listInputs([join(dir, 'pq')])).rejects.toThrow(/Parquet column-form files not supported yet: .*meta_Books\.parquet/);
  });

  it('rejects missing inputs, empty folders, two files of one category and unknown categories', async () => {
    await expect(listInputs([join(dir, 'nope/meta_Books.jsonl')])).rejects.toThrow(/inputs not found: .*nope/);
    await expect(listInputs([join(dir, 'nope')])).rejects.toThrow(ConfigError);
    await expect(listInputs([])).rejects.toThrow(ConfigError);
    await expect(listInputs([join(dir, 'data'), join(dir, 'other/meta_Books.jsonl.gz')])).rejects.toThrow(/one category, several input files .*Books: /);
    await expect(listInputs([join(dir, 'data')], { categories: ['Books', 'Garden'] })).rejects.toThrow(/selection.categories not found in the inputs: Garden/);
    await expect(listInputs(['ftp://host/x'])).rejects.toThrow(ConfigError);
  });
});

describe('listInputs (S3)', () => {
  it('expands an S3 folder and takes an S3 file, with stores that read them', async () => {
    const bucket = process.env.SMOLRATE_TEST_S3_BUCKET;
    if (!bucket || !process.env.AWS_ENDPOINT_URL_S3) throw new Error('the vitest global setup did not provide an S3 server');
    const root = `s3://${bucket}/inputs-test-${randomBytes(6).toString('hex')}`;
    const s3 = openStore(root);
    try {
      await s3.put('raw/meta_Gift_Cards.jsonl', 'g\n');
      await s3.put('raw/meta_Appliances.jsonl.gz', 'a\n');
      await s3.put('raw/deeper/meta_Books.jsonl', 'b\n');
      await s3.put('raw/readme.txt', 'r');
      await s3.put('single/Software.jsonl', 's\n');
      const files = await listInputs([`${root}/raw/`, `${root}/single/Software.jsonl`]);
      expect(files.map((f) => [f.category, f.storeUri, f.key, f.uri, f.compressed])).toEqual([
        ['Appliances', `${root}/raw`, 'meta_Appliances.jsonl.gz', `${root}/raw/meta_Appliances.jsonl.gz`, true],
        ['Gift_Cards', `${root}/raw`, 'meta_Gift_Cards.jsonl', `${root}/raw/meta_Gift_Cards.jsonl`, false],
        ['Software', `${root}/single`, 'Software.jsonl', `${root}/single/Software.jsonl`, false],
      ]);
      expect((await openStore(files[2].storeUri).get(files[2].key)).toString()).toBe('s\n');
      await expect(listInputs([`${root}/raw/readme.txt`])).rejects.toThrow(/not metadata file names: .*readme\.txt/);
      await expect(listInputs([`${root}/raw/meta_Missing.jsonl`])).rejects.toThrow(/inputs not found/);
      await expect(listInputs([`${root}/nothing-here`])).rejects.toThrow(/inputs not found/);
    } finally {
      for (const { key } of await s3.list()) await s3.delete(key);
    }
  });
});

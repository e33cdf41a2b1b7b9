import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { runCommand } from '@smolrate/core';
import * as synth from './synth.js';

describe('synth command', () => {
  const dir = mkdtempSync(join(tmpdir(), 'smolrate-synth-cmd-'));
  let stdout: string;
  let stderr: string;
  beforeEach(() => {
    stdout = '';
    stderr = '';
    vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => ((stdout += String(c)), true));
    vi.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => ((stderr += String(c)), true));
  });
  afterEach(() => vi.restoreAllMocks());
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const cli = (...argv: string[]) => runCommand('smolrate-data-prep', { synth }, ['synth', ...argv]);

  it('writes the dataset and prints files, traps, fates, images and the rewrite rule', async () => {
    const out = join(dir, 'a');
    const code = await cli('--items', '40', '--out', out, '--seed', '3', '--categories', 'Books,Video_Games', '--gzip-categories', 'Books', '--rates', '{"duplicate":0.1,"widthKeyed":0}');
    expect(code, stderr).toBe(0);
    expect(existsSync(join(out, 'meta_Books.jsonl.gz'))).toBe(true);
    expect(existsSync(join(out, 'meta_Video_Games.jsonl'))).toBe(true);
    expect(stdout).toContain('wrote 40 records (seed 3)');
    expect(stdout).toMatch(/meta_Books\.jsonl\.gz\s+\d+ records\s+\d+ bytes/);
    expect(stdout).toMatch(/duplicate\s+4 {2}→ duplicate_parent_asin/);
    expect(stdout).toMatch(/widthKeyed\s+0\n/);
    expect(stdout).toMatch(/images: \d+ files, \d+ bytes/);
    expect(stdout).toContain(`"https://m.media-amazon.com/images/I/" → "file://${out}/images/"`);
    expect(readFileSync(join(out, 'README.md'), 'utf8')).toContain('| duplicate | 0.1 | 4 |');
  });

  it('maps bad usage to exit code 2 and bad values to 3, with one-line messages', async () => {
    expect(await cli('--out', join(dir, 'b'))).toBe(2);
    expect(stderr).toContain('missing required --items');
    expect(await cli('--items', '5', '--out', join(dir, 'b'), '--bogus', '1')).toBe(2);
    expect(stderr).toContain('unknown option --bogus');
    expect(await cli('--items', '5', '--out', join(dir, 'b'), '--rates', '{nope')).toBe(2);
    expect(stderr).toContain('--rates must be a JSON object');
    expect(await cli('--items', '5', '--out', join(dir, 'b'), '--rates', '{"nope":1}')).toBe(3);
    expect(stderr).toContain('unknown trap "nope"');
    expect(await cli('--help')).toBe(0);
    expect(stdout).toContain('--items N');
  });
});

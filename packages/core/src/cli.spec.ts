import { describe, expect, it, vi } from 'vitest';
import { flagBool, flagNumber, parseArgs, requireFlag, runCommand, runLazyCommand } from './cli.js';
import { ConfigError, UsageError } from './errors.js';

describe('parseArgs', () => {
  it('parses values, equals, booleans, negations, positionals and rest', () => {
    const a = parseArgs(['report', '--gpus', '4', '--peak-lr=1e-3', '--json', '--no-cache', 'x', '--dry-run', '--', 'npm', 'test'], ['json']);
    expect(a.positionals).toEqual(['report', 'x']);
    expect(a.flags).toEqual({ gpus: '4', peakLr: '1e-3', json: true, cache: false, dryRun: true });
    expect(a.rest).toEqual(['npm', 'test']);
    expect(flagNumber(a, 'gpus')).toBe(4);
    expect(flagBool(a, 'json')).toBe(true);
    expect(flagBool(a, 'cache', true)).toBe(false);
  });

  it('gives usage errors naming the flag', () => {
    const a = parseArgs(['--gpus', 'four', '--out']);
    expect(() => flagNumber(a, 'gpus')).toThrow(/--gpus must be a number, got "four"/);
    expect(() => requireFlag(a, 'out')).toThrow(/--out needs a value/);
    expect(() => requireFlag(a, 'inputDir')).toThrow(/missing required --input-dir/);
  });

  it('refuses to read a flag by its kebab-case name, which would never match', () => {
    const a = parseArgs(['--global-batch', '8', '--keep']);
    expect(flagNumber(a, 'globalBatch')).toBe(8);
    expect(() => flagNumber(a, 'global-batch', 16)).toThrow(/camelCase key \("globalBatch"\)/);
    expect(() => flagBool(a, 'dry-run')).toThrow(/"dryRun"/);
  });
});

describe('runCommand', () => {
  it('maps typed errors to exit codes and one line', async () => {
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const out = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      const cmds = {
        ok: { summary: 'fine', run: async () => undefined },
        bad: { summary: 'config', run: async () => { throw new ConfigError('unknown config key "x"'); } },
        usage: { summary: 'usage', run: async () => { throw new UsageError('missing --out'); } },
        boom: { summary: 'bug', run: async () => { throw new Error('kaput'); } },
      };
      expect(await runCommand('prog', cmds, ['ok'])).toBe(0);
      expect(await runCommand('prog', cmds, ['bad'])).toBe(3);
      expect(err.mock.calls.map((c) => String(c[0])).join('')).toContain('prog: unknown config key "x"');
      expect(await runCommand('prog', cmds, ['usage'])).toBe(2);
      expect(await runCommand('prog', cmds, ['boom'])).toBe(1);
      expect(await runCommand('prog', cmds, ['nope'])).toBe(2);
      expect(await runCommand('prog', cmds, ['--help'])).toBe(0);
      expect(out.mock.calls.map((c) => String(c[0])).join('')).toMatch(/ok\s+fine/);
    } finally {
      err.mockRestore();
      out.mockRestore();
    }
  });
});

describe('runLazyCommand', () => {
  it('loads a command module only to run it or print its help; load failures exit like run failures', async () => {
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const out = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const loaded: string[] = [];
    const cmds = {
      greet: {
        summary: 'table summary',
        load: async () => {
          loaded.push('greet');
          return { summary: 'module summary', usage: 'usage: prog greet --name N\n\n', run: async (argv: string[]) => (argv[0] === 'x' ? 4 : undefined) };
        },
      },
      broken: { summary: 'fails to load', load: async () => { throw new UsageError('command "broken" is not available'); } },
    };
    try {
      expect(await runLazyCommand('prog', cmds, ['--help'])).toBe(0);
      expect(loaded).toEqual([]);
      expect(out.mock.calls.map((c) => String(c[0])).join('')).toMatch(/greet\s+table summary/);
      out.mockClear();
      expect(await runLazyCommand('prog', cmds, ['greet', '--help'])).toBe(0);
      expect(out.mock.calls.map((c) => String(c[0])).join('')).toBe('prog greet: module summary\n\nusage: prog greet --name N\n');
      expect(await runLazyCommand('prog', cmds, ['greet'])).toBe(0);
      expect(await runLazyCommand('prog', cmds, ['greet', 'x'])).toBe(4);
      expect(loaded).toEqual(['greet', 'greet', 'greet']);
      expect(await runLazyCommand('prog', cmds, ['broken'])).toBe(2);
      expect(await runLazyCommand('prog', cmds, ['broken', '--help'])).toBe(2);
      expect(err.mock.calls.map((c) => String(c[0])).join('')).toContain('prog: command "broken" is not available');
    } finally {
      err.mockRestore();
      out.mockRestore();
    }
  });
});

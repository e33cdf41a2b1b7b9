import { afterEach, describe, expect, it, vi } from 'vitest';
import { COMMANDS, dispatch, main } from './cli.js';

afterEach(() => vi.restoreAllMocks());

/** Captures stdout and stderr of one dispatch. */
async function capture(f: () => Promise<number | void>): Promise<{ code: number | void; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => (out.push(String(c)), true));
  vi.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => (err.push(String(c)), true));
  const code = await f();
  vi.restoreAllMocks();
  return { code, out: out.join(''), err: err.join('') };
}

describe('smolrate-model dispatch', () => {
  it('--help lists every registered command; no command is a usage error', async () => {
    const help = await capture(() => dispatch(['--help']));
    expect(help.code).toBe(0);
    for (const name of ['inspect', 'forward', 'init', 'bench']) expect(help.out).toMatch(new RegExp(`^  ${name} `, 'm'));
    expect((await capture(() => dispatch([]))).code).toBe(2);
  });

  it('runs inspect, loaded from commands/inspect', async () => {
    const r = await capture(() => dispatch(['inspect', '--preset', 'tiny', '--text-tokens', '3']));
    expect(r.code).toBe(0);
    expect(r.out).toContain('Model: preset tiny');
    expect(r.out).toContain('L 15');
  });

  it('<command> --help prints the module usage', async () => {
    const r = await capture(() => dispatch(['inspect', '--help']));
    expect(r.code).toBe(0);
    expect(r.out).toContain('usage: smolrate-model inspect');
  });

  it('maps errors to one line and the EXIT_CODES code', async () => {
    const usage = await capture(() => dispatch(['inspect', '--bogus']));
    expect(usage).toMatchObject({ code: 2, err: 'smolrate-model: unknown option --bogus (see --help)\n' });
    const config = await capture(() => dispatch(['inspect', '--image-size', '400']));
    expect(config).toMatchObject({ code: 3, err: 'smolrate-model: image size 400 must be a multiple of patch 16 × scale 4 = 64\n' });
    const unknown = await capture(() => dispatch(['frobnicate']));
    expect(unknown.code).toBe(2);
    expect(unknown.err).toMatch(/^smolrate-model: unknown command "frobnicate"/);
  });

  it('lists its commands', () => {
    expect(Object.keys(COMMANDS)).toEqual(['inspect', 'forward', 'init', 'bench']);
  });

  it('an unexpected error exits 1', async () => {
    const table = { boom: { summary: 'fails', load: async () => ({ run: async () => { throw new Error('kaput'); } }) } };
    const r = await capture(() => dispatch(['boom'], table));
    expect(r.code).toBe(1);
    expect(r.err).toContain('smolrate-model: unexpected error: kaput');
  });

  it('main sets process.exitCode', async () => {
    const saved = process.exitCode;
    await capture(() => main(['inspect', '--seq-len', '1']));
    expect(process.exitCode).toBe(3);
    process.exitCode = saved;
  });
});

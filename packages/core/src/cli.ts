/**
 * Shared plumbing for the `bin/` entry points: a small argument parser that keeps unknown
 * `--flags` (they become config overrides), and `runCommand`, the one place where errors are
 * mapped to one-line messages and exit codes. Library code never calls process.exit.
 */
import { EXIT_CODES, isSmolrateError, UsageError } from './errors.js';
import { flagToKey } from './config.js';

export interface ParsedArgs {
  positionals: string[];
  /** Flags by camelCase key: `--peak-lr 1e-3` → { peakLr: '1e-3' }; bare `--json` → true. */
  flags: Record<string, string | boolean>;
  /** Everything after a lone `--`. */
  rest: string[];
}

/**
 * `--name value`, `--name=value`, `--flag` (boolean when followed by another flag or nothing),
 * `--no-flag` (false). `booleans` lists flags that never take a value.
 */
export function parseArgs(argv: string[], booleans: readonly string[] = []): ParsedArgs {
  const out: ParsedArgs = { positionals: [], flags: {}, rest: [] };
  const isBool = new Set(booleans.map((b) => flagToKey(b)));
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      out.rest = argv.slice(i + 1);
      break;
    }
    if (a.startsWith('--') && a.length > 2) {
      const eq = a.indexOf('=');
      if (eq > 0) {
        out.flags[flagToKey(a.slice(0, eq))] = a.slice(eq + 1);
        continue;
      }
      const key = flagToKey(a);
      if (key.startsWith('no') && key.length > 2 && /[A-Z]/.test(key[2]) && !isBool.has(key)) {
        out.flags[key[2].toLowerCase() + key.slice(3)] = false;
        continue;
      }
      const next = argv[i + 1];
      if (!isBool.has(key) && next !== undefined && !next.startsWith('--')) {
        out.flags[key] = next;
        i++;
      } else {
        out.flags[key] = true;
      }
    } else {
      out.positionals.push(a);
    }
  }
  return out;
}

/**
 * Flags are stored by camelCase key; a kebab-case key would never match and its flag would be
 * ignored without a word (repro's `--global-batch` was), so it is a programming error.
 */
function checkKey(key: string): void {
  if (key.includes('-')) throw new Error(`flag key ${JSON.stringify(key)}: read flags by their camelCase key (${JSON.stringify(key.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()))})`);
}

/** Reads a string flag, with an optional default; a bare flag (true) is a usage error. */
export function flagString(args: ParsedArgs, key: string, def?: string): string | undefined {
  checkKey(key);
  const v = args.flags[key];
  if (v === undefined || v === false) return def;
  if (v === true) throw new UsageError(`--${kebab(key)} needs a value`);
  return v;
}

export function requireFlag(args: ParsedArgs, key: string): string {
  const v = flagString(args, key);
  if (v === undefined) throw new UsageError(`missing required --${kebab(key)}`);
  return v;
}

export function flagNumber(args: ParsedArgs, key: string, def?: number): number | undefined {
  const v = flagString(args, key);
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new UsageError(`--${kebab(key)} must be a number, got ${JSON.stringify(v)}`);
  return n;
}

export function flagBool(args: ParsedArgs, key: string, def = false): boolean {
  checkKey(key);
  const v = args.flags[key];
  if (v === undefined) return def;
  if (typeof v === 'boolean') return v;
  if (['true', '1', 'yes'].includes(v)) return true;
  if (['false', '0', 'no'].includes(v)) return false;
  throw new UsageError(`--${kebab(key)} is a switch (true/false), got ${JSON.stringify(v)}`);
}

export function kebab(key: string): string {
  return key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
}

export interface CommandSpec {
  summary: string;
  usage?: string;
  run(args: string[]): Promise<number | void>;
}

/**
 * Dispatches `argv[0]` to a command and turns errors into one line on stderr and an exit code
 * (EXIT_CODES in errors.ts; 1 for unexpected errors, with the stack when SMOLRATE_DEBUG is set).
 */
export async function runCommand(program: string, commands: Record<string, CommandSpec>, argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  const help = () => {
    const width = Math.max(...Object.keys(commands).map((k) => k.length));
    return [`usage: ${program} <command> [options]`, '', 'commands:', ...Object.entries(commands).map(([k, c]) => `  ${k.padEnd(width)}  ${c.summary}`), '', `${program} <command> --help for a command's options`].join('\n');
  };
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(help() + '\n');
    return name ? 0 : 2;
  }
  const cmd = commands[name];
  if (!cmd) {
    process.stderr.write(`${program}: unknown command "${name}"\n\n${help()}\n`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${program} ${name}: ${cmd.summary}\n${cmd.usage ? '\n' + cmd.usage + '\n' : ''}`);
    return 0;
  }
  try {
    const code = await cmd.run(rest);
    return typeof code === 'number' ? code : 0;
  } catch (e) {
    return reportError(program, e);
  }
}

/** A command implemented in its own module: `run(argv)`, a one-line summary, its usage text. */
export interface CommandModule {
  summary?: string;
  usage?: string;
  run(argv: string[]): Promise<number | void>;
}

/** A command whose module is imported only when it runs or prints its `--help`. */
export interface LazyCommand {
  summary: string;
  load(): Promise<CommandModule>;
}

/**
 * runCommand over lazily loaded command modules, so `program --help` and one command's run do
 * not import every command's dependencies (tfjs, sharp, BullMQ …). `<command> --help` prints the
 * module's own summary and usage.
 */
export async function runLazyCommand(program: string, commands: Record<string, LazyCommand>, argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  const cmd = name === undefined ? undefined : commands[name];
  if (cmd && (rest.includes('--help') || rest.includes('-h'))) {
    const printHelp = async () => {
      const mod = await cmd.load();
      process.stdout.write(`${program} ${name}: ${mod.summary ?? cmd.summary}\n${mod.usage ? `\n${mod.usage.trimEnd()}\n` : ''}`);
    };
    return runCommand(program, { [name!]: { summary: cmd.summary, run: printHelp } }, [name!]);
  }
  const specs: Record<string, CommandSpec> = Object.fromEntries(
    Object.entries(commands).map(([key, c]) => [key, { summary: c.summary, run: async (args: string[]) => (await c.load()).run(args) }]),
  );
  return runCommand(program, specs, argv);
}

export function reportError(program: string, e: unknown): number {
  if (isSmolrateError(e)) {
    process.stderr.write(`${program}: ${e.message}${e.cause instanceof Error ? ` (${e.cause.message})` : ''}\n`);
    if (process.env.SMOLRATE_DEBUG) process.stderr.write(`${e.stack}\n`);
    return EXIT_CODES[e.code] ?? 1;
  }
  const err = e as Error;
  process.stderr.write(`${program}: unexpected error: ${err?.message ?? String(e)}\n`);
  if (process.env.SMOLRATE_DEBUG) process.stderr.write(`${err?.stack}\n`);
  else process.stderr.write('(set SMOLRATE_DEBUG=1 for the stack trace)\n');
  return 1;
}

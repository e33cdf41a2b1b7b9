/**
 * The `smolrate-model` command line (bin/smolrate-model.js). Each command lives in
 * `commands/<name>.ts`, loaded on demand, and exports `run(argv)`, a one-line `summary` and its
 * `usage`. Errors become one line on stderr and an exit code from EXIT_CODES (core's runCommand).
 */
import { fileURLToPath } from 'node:url';
import { runCommand, UsageError, type CommandSpec } from '@smolrate/core';

export const PROGRAM = 'smolrate-model';

export interface CommandModule {
  summary?: string;
  usage?: string;
  run(argv: string[]): Promise<number | void>;
}

export interface CommandEntry {
  summary: string;
  load(): Promise<CommandModule>;
}

/** Loads `commands/<name>.js` next to this file; a missing module is a clear usage error. */
export async function loadCommandModule(name: string): Promise<CommandModule> {
  const file = `./commands/${name}.js`;
  let mod: Partial<CommandModule>;
  try {
    // A computed specifier: the set of command modules is open (others add commands/<name>.ts),
    // and bundler-style analysis of the template must not turn it into a fixed glob.
    mod = (await import(/* @vite-ignore */ file)) as Partial<CommandModule>;
  } catch (e) {
    const err = e as { code?: string; message?: string };
    const missing = err.code === 'ERR_MODULE_NOT_FOUND' || /Cannot find module|Failed to load url|Does the file exist/i.test(err.message ?? '');
    if (missing && (err.message ?? '').includes(`commands/${name}.`)) {
      throw new UsageError(`command "${name}" is not available in this build (${fileURLToPath(new URL(file, import.meta.url))} is missing)`);
    }
    throw e;
  }
  if (typeof mod.run !== 'function') throw new UsageError(`command module ${file} exports no run(argv) function`);
  return mod as CommandModule;
}

function entry(name: string, summary: string): CommandEntry {
  return { summary, load: () => loadCommandModule(name) };
}

/** The dispatch table: command name → summary and loader. */
export const COMMANDS: Record<string, CommandEntry> = {
  inspect: entry('inspect', 'parameter and multiply-accumulate counts per component (no weights needed)'),
  forward: entry('forward', 'run the model forward on an image and a prompt'),
  init: entry('init', 'write a seeded, randomly initialised checkpoint'),
  bench: entry('bench', 'time forward / backward steps on a compute backend'),
};

/** Runs one command line and returns its exit code (prints usage, messages and errors itself). */
export async function dispatch(argv: string[], commands: Record<string, CommandEntry> = COMMANDS): Promise<number> {
  const [name, ...rest] = argv;
  const cmd = name === undefined ? undefined : commands[name];
  if (cmd && (rest.includes('--help') || rest.includes('-h'))) {
    const specs: Record<string, CommandSpec> = {
      [name]: {
        summary: cmd.summary,
        run: async () => {
          const mod = await cmd.load();
          process.stdout.write(`${PROGRAM} ${name}: ${mod.summary ?? cmd.summary}\n${mod.usage ? `\n${mod.usage.trimEnd()}\n` : ''}`);
        },
      },
    };
    return runCommand(PROGRAM, specs, [name]);
  }
  const specs: Record<string, CommandSpec> = Object.fromEntries(
    Object.entries(commands).map(([key, c]) => [key, { summary: c.summary, run: async (args: string[]) => (await c.load()).run(args) }]),
  );
  return runCommand(PROGRAM, specs, argv);
}

/** Entry point of bin/smolrate-model.js: sets process.exitCode rather than exiting, so output drains. */
export async function main(argv: string[]): Promise<void> {
  process.exitCode = await dispatch(argv);
}

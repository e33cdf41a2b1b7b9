/**
 * The `smolrate-data-prep` command line (bin/smolrate-data-prep.js). Each command lives in
 * `commands/<name>.ts`, loaded on demand, and exports `run(argv)`, a one-line `summary` and its
 * `usage`. Errors become one line on stderr and an exit code from EXIT_CODES (core's runCommand).
 */
import { fileURLToPath } from 'node:url';
import { runCommand, UsageError, type CommandSpec } from '@smolrate/core';

export const PROGRAM = 'smolrate-data-prep';

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
  'build-shards': entry('build-shards', 'metadata JSONL(.gz) → selected items → fetched, resized images → Parquet shards + manifest.json'),
  worker: entry('worker', 'serve the BullMQ jobs of data-prep builds (join a build from any host)'),
  synth: entry('synth', 'write a synthetic dataset in the exact Amazon Reviews\'23 format'),
  bench: entry('bench', 'benchmarks: select throughput (0.5 M and 2 M records) and image fetch/resize'),
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

/** Entry point of bin/smolrate-data-prep.js: sets process.exitCode rather than exiting, so output drains. */
export async function main(argv: string[]): Promise<void> {
  process.exitCode = await dispatch(argv);
}

/**
 * Forking a package's own entry modules (the worker, benchmark children) so that it works
 * both from the build (`dist/<name>.js`, what the Nx targets and `bin/` run) and from the sources
 * (`src/<name>.ts` under Vitest or tsx, loaded through tsx's ESM hook). The caller passes its own
 * `import.meta.url`; the entry is looked up next to it.
 */
import { fork, type ChildProcess, type StdioOptions } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

export interface EntryModule {
  /** Absolute path of the module to run. */
  file: string;
  /** Node options needed to run it (`--import tsx` for a .ts source). */
  execArgv: string[];
}

/** The entry `name` (without extension) next to the module at `baseUrl`. */
function entryModule(baseUrl: string, name: string): EntryModule {
  const fromSource = baseUrl.endsWith('.ts');
  const file = fileURLToPath(new URL(`./${name}.${fromSource ? 'ts' : 'js'}`, baseUrl));
  if (!fromSource) return { file, execArgv: [] };
  // tsx's ESM loader, resolved from this package (not from the working directory).
  const tsx = createRequire(baseUrl).resolve('tsx');
  return { file, execArgv: ['--import', pathToFileURL(tsx).href] };
}

export interface ForkEntryOptions {
  env?: NodeJS.ProcessEnv;
  /** Default: stdin ignored, stdout/stderr inherited, plus the IPC channel. */
  stdio?: StdioOptions;
  /** Extra node options (e.g. --max-old-space-size). */
  execArgv?: string[];
}

/**
 * Forks the entry `name` with `args`. The child gets an IPC channel; the parent's own node
 * options are not inherited (a test runner's flags have no business in a worker).
 */
export function forkEntry(baseUrl: string, name: string, args: string[], opts: ForkEntryOptions = {}): ChildProcess {
  const entry = entryModule(baseUrl, name);
  return fork(entry.file, args, {
    execArgv: [...entry.execArgv, ...(opts.execArgv ?? [])],
    env: opts.env ?? process.env,
    stdio: opts.stdio ?? ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

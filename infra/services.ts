/**
 * Local services for humans, scripts and CI: a private Redis and an S3-compatible server on
 * loopback, stopped when the run ends (no orphans: see packages/core/src/services/redis-server.ts;
 * redis-server is installed first when missing and this runs as root: infra/redis-install.ts).
 *
 *   npx tsx infra/services.ts redis [--port N] [--password P]
 *       starts redis-server, prints REDIS_URL=... on stdout, runs until Ctrl-C / SIGTERM.
 *   npx tsx infra/services.ts s3 [--port N] [--dir D] [--buckets a,b]
 *       starts the S3-compatible server, prints the AWS_* variables, runs until Ctrl-C / SIGTERM.
 *   npx tsx infra/services.ts with [--no-s3] [--buckets a,b] -- <command> [args...]
 *       runs <command> with REDIS_URL (a private redis-server unless REDIS_URL is set) and a
 *       private S3 server (unless AWS_ENDPOINT_URL_S3 is set, or --no-s3) in its environment;
 *       forwards SIGINT / SIGTERM to it, stops the services, exits with the command's code.
 *
 * Messages go to stderr; stdout carries only the variables (redis, s3) or the command's output.
 */
import { spawn } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { reportError, parseArgs, flagString, flagNumber, type ParsedArgs } from '../packages/core/src/cli.js';
import { UsageError } from '../packages/core/src/errors.js';
import { redactUrl } from '../packages/core/src/redis.js';
import { startRedisServer } from '../packages/core/src/services/redis-server.js';
import { ensureLocalRedis, redisServerBinary } from './redis-install.js';
import { startS3Server } from './s3-server.js';

const PROGRAM = 'services';
const DEFAULT_BUCKETS = ['smolrate'];
const FORWARDED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

const USAGE = `usage: npx tsx infra/services.ts <command>

  redis [--port N] [--password P]
      Start a private redis-server on loopback; print REDIS_URL=...; run until Ctrl-C.
  s3 [--port N] [--dir D] [--buckets a,b]
      Start the S3-compatible server (buckets default: ${DEFAULT_BUCKETS.join(',')}); print the
      AWS_* variables; run until Ctrl-C.
  with [--no-s3] [--buckets a,b] -- <command> [args...]
      Run <command> with REDIS_URL (a private redis-server unless REDIS_URL is set) and a private
      S3 server (unless AWS_ENDPOINT_URL_S3 is set, or --no-s3) in its environment; exit with
      its code, after stopping what was started.
`;

function note(line: string): void {
  process.stderr.write(`[${PROGRAM}] ${line}\n`);
}

function signalExitCode(signal: NodeJS.Signals): number {
  return 128 + (osConstants.signals[signal] ?? 0);
}

function buckets(args: ParsedArgs): string[] {
  const v = flagString(args, 'buckets') ?? flagString(args, 'bucket');
  return v === undefined ? DEFAULT_BUCKETS : v.split(',').map((b) => b.trim()).filter(Boolean);
}

function rejectUnknown(args: ParsedArgs, known: string[]): void {
  for (const k of Object.keys(args.flags)) if (!known.includes(k)) throw new UsageError(`unknown option --${k}\n\n${USAGE}`);
  if (args.positionals.length > 0) throw new UsageError(`unexpected argument "${args.positionals[0]}"\n\n${USAGE}`);
}

/** Resolves with the first SIGINT / SIGTERM / SIGHUP (or `other` settling); listeners removed after. */
async function untilSignal(other?: Promise<unknown>): Promise<NodeJS.Signals | 'other'> {
  const keepAlive = setInterval(() => undefined, 1 << 30); // the server child is unref()ed
  let onSignal: (s: NodeJS.Signals) => void = () => undefined;
  try {
    return await Promise.race([
      new Promise<NodeJS.Signals>((r) => {
        onSignal = r;
        for (const s of FORWARDED) process.on(s, onSignal);
      }),
      ...(other ? [other.then(() => 'other' as const)] : []),
    ]);
  } finally {
    clearInterval(keepAlive);
    for (const s of FORWARDED) process.off(s, onSignal);
  }
}

async function redisCommand(args: ParsedArgs): Promise<number> {
  rejectUnknown(args, ['port', 'password']);
  const server = await startRedisServer({
    name: 'services',
    port: flagNumber(args, 'port'),
    password: flagString(args, 'password'),
    binary: redisServerBinary(),
  });
  process.stdout.write(`REDIS_URL=${server.url}\n`);
  note(`redis-server pid ${server.pid} on ${redactUrl(server.url)}; Ctrl-C to stop`);
  const why = await untilSignal(server.exited);
  await server.stop();
  if (why === 'other') {
    const { code, signal } = await server.exited;
    note(`redis-server exited on its own (${code ?? signal}); see ${server.dir}/redis.log`);
    return 10;
  }
  note('stopped');
  return 0;
}

async function s3Command(args: ParsedArgs): Promise<number> {
  rejectUnknown(args, ['port', 'dir', 'buckets', 'bucket']);
  const s3 = await startS3Server({ port: flagNumber(args, 'port'), directory: flagString(args, 'dir'), buckets: buckets(args) });
  for (const [k, v] of Object.entries(s3Env(s3.endpoint))) process.stdout.write(`${k}=${v}\n`);
  note(`S3 server on ${s3.endpoint} (objects in ${s3.directory}, buckets ${buckets(args).join(', ')}); Ctrl-C to stop`);
  await untilSignal();
  await s3.stop();
  note('stopped');
  return 0;
}

function s3Env(endpoint: string): Record<string, string> {
  return {
    AWS_ENDPOINT_URL_S3: endpoint,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    SMOLRATE_S3_FORCE_PATH_STYLE: 'true',
  };
}

async function withCommand(args: ParsedArgs): Promise<number> {
  rejectUnknown(args, ['s3', 'buckets', 'bucket']);
  const command = args.rest;
  if (command.length === 0) throw new UsageError(`with: no command after --\n\n${USAGE}`);

  // Signals that arrive before the command runs abort the start-up; later ones are forwarded.
  let pending: NodeJS.Signals | undefined;
  let forward: (s: NodeJS.Signals) => void = (s) => {
    pending ??= s;
  };
  const onSignal = (s: NodeJS.Signals): void => forward(s);
  for (const s of FORWARDED) process.on(s, onSignal);

  const stops: Array<{ what: string; stop: () => Promise<void> }> = [];
  try {
    const env: NodeJS.ProcessEnv = { ...process.env };
    const redis = await ensureLocalRedis('services');
    stops.push({ what: 'redis-server', stop: redis.stop });
    env.REDIS_URL = redis.url;
    note(`redis: ${redactUrl(redis.url)}${redis.owned ? ' (private redis-server)' : ' (from REDIS_URL)'}`);

    if (args.flags.s3 === false) {
      note('s3: not started (--no-s3)');
    } else if (process.env.AWS_ENDPOINT_URL_S3) {
      note(`s3: ${process.env.AWS_ENDPOINT_URL_S3} (from AWS_ENDPOINT_URL_S3)`);
    } else if (pending === undefined) {
      const s3 = await startS3Server({ buckets: buckets(args) });
      stops.push({ what: 'S3 server', stop: s3.stop });
      Object.assign(env, s3Env(s3.endpoint));
      note(`s3: ${s3.endpoint} (private; buckets ${buckets(args).join(', ')})`);
    }
    if (pending !== undefined) {
      note(`${pending} during start-up; not running ${command[0]}`);
      return signalExitCode(pending);
    }

    const child = spawn(command[0], command.slice(1), { stdio: 'inherit', env });
    forward = (s) => {
      child.kill(s);
    };
    const result = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((r) => {
      child.once('error', (error) => r({ code: null, signal: null, error }));
      child.once('exit', (code, signal) => r({ code, signal }));
    });
    if (result.error) {
      const notFound = (result.error as NodeJS.ErrnoException).code === 'ENOENT';
      note(`could not run ${command[0]}: ${notFound ? 'command not found' : result.error.message}`);
      return notFound ? 127 : 126;
    }
    return result.code ?? signalExitCode(result.signal!);
  } finally {
    for (const { what, stop } of stops.reverse()) {
      await stop().catch((e: unknown) => note(`could not stop the ${what}: ${(e as Error).message}`));
    }
    for (const s of FORWARDED) process.off(s, onSignal);
  }
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process[command ? 'stdout' : 'stderr'].write(USAGE);
    return command ? 0 : 2;
  }
  try {
    // Only our own options are parsed: everything after `--` belongs to the command.
    const dashDash = rest.indexOf('--');
    const own = dashDash === -1 ? rest : rest.slice(0, dashDash);
    if (own.includes('--help') || own.includes('-h')) {
      process.stdout.write(USAGE);
      return 0;
    }
    const args = parseArgs(rest, ['s3']);
    switch (command) {
      case 'redis':
        return await redisCommand(args);
      case 's3':
        return await s3Command(args);
      case 'with':
        return await withCommand(args);
      default:
        throw new UsageError(`unknown command "${command}"\n\n${USAGE}`);
    }
  } catch (e) {
    return reportError(PROGRAM, e);
  }
}

// An entry point may exit: every service has been stopped by now.
process.exit(await main(process.argv.slice(2)));

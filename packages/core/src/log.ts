/**
 * Structured, rank-aware logging. JSON lines when the stream is not a TTY (machines read them),
 * short readable lines on a TTY (people read them). Rank comes from the RANK environment
 * variable unless given. Level from SMOLRATE_LOG_LEVEL (debug|info|warn|error|silent).
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<LogLevel | 'silent', number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 99 };

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger with extra fixed fields (e.g. {stage: 'select'}). */
  child(fields: LogFields): Logger;
  readonly json: boolean;
}

export interface LoggerOptions {
  name: string;
  rank?: number | null;
  level?: LogLevel | 'silent';
  /** Where lines go; default process.stderr (stdout stays free for command output). */
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
  /** Force JSON lines (true) or readable lines (false); default: JSON unless the stream is a TTY. */
  json?: boolean;
  fields?: LogFields;
}

function envLevel(): LogLevel | 'silent' {
  const v = (process.env.SMOLRATE_LOG_LEVEL ?? '').toLowerCase();
  return v in ORDER ? (v as LogLevel | 'silent') : 'info';
}

function envRank(): number | null {
  const r = process.env.RANK;
  return r !== undefined && /^\d+$/.test(r) ? Number(r) : null;
}

function fmtValue(v: unknown): string {
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toPrecision(5);
  if (typeof v === 'string') return /\s/.test(v) ? JSON.stringify(v) : v;
  if (v instanceof Error) return JSON.stringify(v.message);
  return JSON.stringify(v);
}

function serialise(fields: LogFields): LogFields {
  const out: LogFields = {};
  for (const [k, v] of Object.entries(fields)) {
    out[k] = v instanceof Error ? { name: v.name, message: v.message, code: (v as { code?: unknown }).code } : v;
  }
  return out;
}

export function createLogger(opts: LoggerOptions): Logger {
  const stream = opts.stream ?? process.stderr;
  const json = opts.json ?? !(stream as { isTTY?: boolean }).isTTY;
  const level = opts.level ?? envLevel();
  const rank = opts.rank === undefined ? envRank() : opts.rank;
  const base = opts.fields ?? {};

  const emit = (lvl: LogLevel, msg: string, fields?: LogFields) => {
    if (ORDER[lvl] < ORDER[level]) return;
    const all = { ...base, ...(fields ?? {}) };
    if (json) {
      const rec: LogFields = { ts: new Date().toISOString(), level: lvl, name: opts.name };
      if (rank !== null) rec.rank = rank;
      rec.msg = msg;
      Object.assign(rec, serialise(all));
      stream.write(JSON.stringify(rec) + '\n');
    } else {
      const time = new Date().toTimeString().slice(0, 8);
      const prefix = rank !== null ? `[rank${rank}] ` : '';
      const tag = lvl === 'info' ? '' : `${lvl.toUpperCase()} `;
      const kv = Object.entries(all)
        .map(([k, v]) => `${k}=${fmtValue(v)}`)
        .join(' ');
      stream.write(`${prefix}${time} ${tag}${opts.name}: ${msg}${kv ? '  ' + kv : ''}\n`);
    }
  };

  return {
    json,
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => createLogger({ ...opts, rank, level, json, stream, fields: { ...base, ...fields } }),
  };
}

/** A logger that drops everything (library defaults, quiet tests). */
export const silentLogger: Logger = createLogger({ name: 'silent', level: 'silent' });

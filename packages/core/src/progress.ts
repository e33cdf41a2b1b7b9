/**
 * Progress for long work: a redrawn bar with rate and ETA on a TTY; elsewhere (CI, log files) a
 * log line at most every `intervalMs`, plus one at the end — never a flood of carriage returns.
 */
import type { Logger } from './log.js';

export interface ProgressOptions {
  label: string;
  total?: number | null;
  unit?: string;
  stream?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  logger?: Logger;
  intervalMs?: number;
  /** Injected clock for tests. */
  now?: () => number;
}

export interface Progress {
  tick(n?: number): void;
  update(done: number, total?: number | null): void;
  done(message?: string): void;
  readonly count: number;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function createProgress(opts: ProgressOptions): Progress {
  const stream = opts.stream ?? process.stderr;
  const tty = Boolean(stream.isTTY);
  const now = opts.now ?? (() => Date.now());
  const unit = opts.unit ?? 'items';
  const interval = opts.intervalMs ?? (tty ? 100 : 10_000);
  const start = now();
  let total = opts.total ?? null;
  let count = 0;
  let last = 0;
  let finished = false;

  const line = (): string => {
    const secs = Math.max((now() - start) / 1000, 1e-9);
    const rate = count / secs;
    const rateText = `${rate >= 100 ? rate.toFixed(0) : rate.toPrecision(3)} ${unit}/s`;
    if (total && total > 0) {
      const frac = Math.min(count / total, 1);
      const eta = rate > 0 ? (total - count) / rate : Infinity;
      const width = 24;
      const filled = Math.round(frac * width);
      const bar = tty ? `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ` : '';
      return `${opts.label} ${bar}${count}/${total} (${(frac * 100).toFixed(1)}%) ${rateText} eta ${formatDuration(eta)}`;
    }
    return `${opts.label} ${count} ${unit} ${rateText} ${formatDuration(secs)}`;
  };

  const render = (force: boolean) => {
    const t = now();
    if (!force && t - last < interval) return;
    last = t;
    if (tty) stream.write(`\r${line().slice(0, (stream.columns ?? 120) - 1)}\x1b[K`);
    else if (opts.logger) opts.logger.info(line());
    else stream.write(line() + '\n');
  };

  return {
    get count() {
      return count;
    },
    tick(n = 1) {
      count += n;
      render(false);
    },
    update(d, t) {
      count = d;
      if (t !== undefined) total = t;
      render(false);
    },
    done(message) {
      if (finished) return;
      finished = true;
      const secs = (now() - start) / 1000;
      const text = `${opts.label} done: ${count} ${unit} in ${formatDuration(secs)}${message ? ` — ${message}` : ''}`;
      if (tty) stream.write(`\r${text}\x1b[K\n`);
      else if (opts.logger) opts.logger.info(text);
      else stream.write(text + '\n');
    },
  };
}

import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from './log.js';
import { createProgress, formatDuration } from './progress.js';
import { MetricsSink, readMetrics } from './metrics.js';
import { appendFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function capture(isTTY = false) {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  }) as Writable & { isTTY?: boolean };
  stream.isTTY = isTTY;
  return { stream, lines };
}

describe('logger', () => {
  it('writes JSON lines with rank and fields when not a TTY', () => {
    const { stream, lines } = capture(false);
    const log = createLogger({ name: 'trainer', rank: 3, stream, level: 'info' });
    log.info('step', { loss: 0.5 });
    log.debug('hidden');
    log.child({ stage: 'eval' }).warn('slow', { err: new Error('boom') });
    expect(lines).toHaveLength(2);
    const a = JSON.parse(lines[0]);
    expect(a).toMatchObject({ level: 'info', name: 'trainer', rank: 3, msg: 'step', loss: 0.5 });
    const b = JSON.parse(lines[1]);
    expect(b).toMatchObject({ level: 'warn', stage: 'eval', err: { message: 'boom' } });
  });

  it('writes readable rank-prefixed lines on a TTY', () => {
    const { stream, lines } = capture(true);
    createLogger({ name: 'prep', rank: 0, stream }).error('failed', { shard: 'a b' });
    expect(lines[0]).toMatch(/^\[rank0\] \d\d:\d\d:\d\d ERROR prep: failed {2}shard="a b"\n$/);
  });
});

describe('progress', () => {
  it('logs a bounded number of lines off a TTY and a final summary', () => {
    const { stream, lines } = capture(false);
    let t = 0;
    const p = createProgress({ label: 'resize', total: 100, stream, intervalMs: 1000, now: () => t });
    for (let i = 0; i < 100; i++) {
      t += 50;
      p.tick();
    }
    p.done();
    // 5 s of work at one line per second at most, plus the final line.
    expect(lines.length).toBeLessThanOrEqual(6);
    expect(lines.at(-1)).toMatch(/resize done: 100 items in 5s/);
    expect(lines[0]).toMatch(/resize \d+\/100/);
  });

  it('redraws one line on a TTY', () => {
    const { stream, lines } = capture(true);
    let t = 0;
    const p = createProgress({ label: 'x', total: 10, stream, intervalMs: 0, now: () => (t += 100) });
    p.tick(5);
    p.done();
    expect(lines[0].startsWith('\r')).toBe(true);
    expect(lines[0]).toContain('[############............] 5/10');
  });

  it('formats durations', () => {
    expect(formatDuration(5)).toBe('5s');
    expect(formatDuration(125)).toBe('2m05s');
    expect(formatDuration(7300)).toBe('2h01m');
  });
});

describe('metrics sink', () => {
  it('appends JSONL and reads it back, skipping a torn last line', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'metrics-')), 'sub', 'metrics.jsonl');
    const sink = new MetricsSink(path);
    sink.write({ step: 1, loss: 0.9 });
    sink.write({ step: 2, loss: 0.8, time: 5 });
    appendFileSync(path, '{"step": 3, "lo');
    const recs = readMetrics(path);
    expect(recs).toHaveLength(2);
    expect(recs[0]).toMatchObject({ step: 1, loss: 0.9 });
    expect(typeof recs[0].time).toBe('number');
    expect(recs[1]).toEqual({ step: 2, loss: 0.8, time: 5 });
  });
});

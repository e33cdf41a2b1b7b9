import { createLogger } from '@smolrate/core';
import { describe, expect, it } from 'vitest';
import { TrainingProgress } from './training-progress.js';

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const stream = { write: (s: string) => (lines.push(JSON.parse(s)), true) } as unknown as NodeJS.WritableStream;
  return { lines, log: createLogger({ name: 't', stream, json: true, level: 'info' }) };
}

describe('TrainingProgress', () => {
  it('logs at most once per interval, with the mean loss since the last line, rate and ETA; always at the last step', () => {
    const { lines, log } = capture();
    let t = 0;
    const p = new TrainingProgress({ log, firstStep: 10, lastStep: 20, globalBatch: 32, intervalMs: 10_000, now: () => t });
    for (let step = 11; step <= 20; step++) {
      t += 2_000; // 2 s per step
      p.step(step, step % 2 === 0 ? 1 : 3, 0);
    }
    // Lines at steps 15 (10 s after start) and 20 (the last step).
    expect(lines.map((l) => l.step)).toEqual([15, 20]);
    expect(lines[0]).toMatchObject({ msg: 'training', of: 20, percent: 75, epoch: 1, samplesPerSec: 16, eta: '10s' });
    expect(lines[0]!.loss).toBeCloseTo((3 + 1 + 3 + 1 + 3) / 5);
    expect(lines[1]).toMatchObject({ step: 20, percent: 100, eta: '0s' });
    expect(lines[1]!.loss).toBeCloseTo((1 + 3 + 1 + 3 + 1) / 5);
  });
});

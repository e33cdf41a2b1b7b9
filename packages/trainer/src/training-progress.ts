import { formatDuration, type Logger } from '@smolrate/core';

/**
 * Rank 0's progress line, logged at most every `intervalMs` and at the last step: the step out of
 * the run's, the mean loss since the previous line, samples/s and the time left at that rate.
 */
export class TrainingProgress {
  private readonly now: () => number;
  private readonly t0: number;
  private last: number;
  private lossSum = 0;
  private lossCount = 0;

  constructor(private readonly o: { log: Logger; firstStep: number; lastStep: number; globalBatch: number; intervalMs?: number; now?: () => number }) {
    this.now = o.now ?? (() => performance.now());
    this.t0 = this.now();
    this.last = this.t0;
  }

  step(step: number, loss: number, epoch: number): void {
    this.lossSum += loss;
    this.lossCount += 1;
    const now = this.now();
    if (now - this.last < (this.o.intervalMs ?? 10_000) && step < this.o.lastStep) return;
    this.last = now;
    const done = step - this.o.firstStep;
    const perStep = (now - this.t0) / 1000 / Math.max(done, 1);
    this.o.log.info('training', {
      step, of: this.o.lastStep, percent: Math.round((1000 * step) / this.o.lastStep) / 10, epoch: epoch + 1,
      loss: this.lossSum / this.lossCount, samplesPerSec: this.o.globalBatch / perStep, eta: formatDuration(perStep * (this.o.lastStep - step)),
    });
    this.lossSum = 0;
    this.lossCount = 0;
  }
}

/**
 * Metrics sink: one JSON object per line in a local file, kept apart from diagnostics so that
 * training curves can be read back (eval's report plots them). Appends, so a resumed run
 * continues the same file.
 */
import { appendFileSync, mkdirSync, readFileSync, existsSync } from 'node:fs';
import { dirname } from 'node:path';

export type MetricRecord = Record<string, number | string | boolean | null>;

export class MetricsSink {
  readonly path: string;
  constructor(path: string) {
    this.path = path;
    mkdirSync(dirname(path), { recursive: true });
  }

  /** Appends one record, with a wall-clock timestamp unless it has one. */
  write(record: MetricRecord): void {
    const rec = 'time' in record ? record : { time: Date.now() / 1000, ...record };
    appendFileSync(this.path, JSON.stringify(rec) + '\n');
  }
}

/** Reads a metrics JSONL file; a torn last line (a crash mid-write) is skipped, not fatal. */
export function readMetrics(path: string): MetricRecord[] {
  if (!existsSync(path)) return [];
  const out: MetricRecord[] = [];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line) as MetricRecord);
    } catch {
      // a partially written final line
    }
  }
  return out;
}

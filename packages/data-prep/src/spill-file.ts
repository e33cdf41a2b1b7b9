/**
 * An append-only local temp file with random-access reads: where one selection pass parks what it
 * must not hold in memory. Items that enter the top-K / bottom-K heaps are appended here and the
 * heaps keep only (rating_number, parent_asin, offset) — at the paper's K = 1 M per side, the
 * items themselves would be gigabytes of text. The reject lines of a pass go to a second one.
 *
 * Appends are buffered in memory and written in large blocks; `flush()` must be awaited before
 * `read()` sees them (`read` flushes first).
 */
import { open, type FileHandle } from 'node:fs/promises';

export interface SpillRef {
  offset: number;
  length: number;
}

const FLUSH_BYTES = 1 << 20;

export class SpillFile {
  private pending: string[] = [];
  private pendingBytes = 0;
  private written = 0;
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
  ) {}

  /** Creates (truncates) the file at `path`. */
  static async create(path: string): Promise<SpillFile> {
    return new SpillFile(path, await open(path, 'w+'));
  }

  /** Bytes appended so far (flushed or not). */
  get size(): number {
    return this.written + this.pendingBytes;
  }

  /** Whether enough is buffered that the caller should `await flush()`. */
  get full(): boolean {
    return this.pendingBytes >= FLUSH_BYTES;
  }

  /** Appends UTF-8 `text`; returns where it lands. */
  append(text: string): SpillRef {
    const length = Buffer.byteLength(text, 'utf8');
    const ref = { offset: this.size, length };
    this.pending.push(text);
    this.pendingBytes += length;
    return ref;
  }

  async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const buf = Buffer.from(this.pending.join(''), 'utf8');
    this.pending = [];
    this.pendingBytes = 0;
    let done = 0;
    while (done < buf.length) {
      const { bytesWritten } = await this.fh.write(buf, done, buf.length - done, this.written + done);
      done += bytesWritten;
    }
    this.written += buf.length;
  }

  /** The text at each ref, in the order given. */
  async read(refs: readonly SpillRef[]): Promise<string[]> {
    await this.flush();
    return Promise.all(
      refs.map(async ({ offset, length }) => {
        const buf = Buffer.allocUnsafe(length);
        let done = 0;
        while (done < length) {
          const { bytesRead } = await this.fh.read(buf, done, length - done, offset + done);
          if (bytesRead === 0) throw new Error(`spill file ${this.path}: ${offset}+${length} is past the end (${this.written} bytes)`);
          done += bytesRead;
        }
        return buf.toString('utf8');
      }),
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close();
  }
}

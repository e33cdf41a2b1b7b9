/**
 * Streams the lines of a JSON-lines object in a Store — local or S3, plain or gzip — holding only
 * one chunk and one line at a time (the files reach 18 GB).
 *
 * gzip is recognised by its magic bytes (1f 8b), not by the name: no UTF-8 JSON text can start
 * with 0x1f, and a `.gz` copy that some tool already decompressed still reads correctly.
 * Concatenated gzip members (pigz, bgzip) are read as one stream.
 *
 * Line handling: '\n' ends a line; a '\r' before it is dropped (CRLF files); a final line without
 * a newline is still a line; a UTF-8 BOM at the start of the file is dropped. Bytes are split on
 * '\n' before decoding, so a multi-byte character split across chunks is never damaged; invalid
 * UTF-8 decodes to U+FFFD (the text is otherwise kept as given).
 *
 * A gzip stream that ends early or is corrupt is not an I/O error (retrying reads the same bytes):
 * every complete line before the damage is yielded, then `TruncatedInputError` is thrown with the
 * number of the first line that could not be read, so the caller can reject the rest of the file
 * as one `truncated_input` record and keep what was read. Storage errors propagate unchanged.
 */
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { DataError, type Store } from '@smolrate/core';

export interface Line {
  /** 1-based line number in the (decompressed) file. */
  line: number;
  /** The line's text without its line ending. '' for an over-long line (see `overlongBytes`). */
  text: string;
  /** Set when the line was longer than `maxLineBytes`: its length in bytes; its text was skipped. */
  overlongBytes?: number;
}

export interface ReadLinesOptions {
  /**
   * Longest line kept, in bytes (default 64 MiB). Longer lines are skipped without being held in
   * memory and reported through `overlongBytes`, so a file without newlines cannot exhaust memory.
   */
  maxLineBytes?: number;
}

/** The rest of the input (from `line` on) could not be read: the gzip data ends early or is corrupt. */
export class TruncatedInputError extends DataError {
  /** The first line that could not be read completely (1-based). */
  readonly line: number;
  readonly uri: string;
  /** What went wrong, without the URI (for the reject record). */
  readonly detail: string;
  constructor(uri: string, line: number, detail: string, options?: { cause?: unknown }) {
    super(`${uri}: ${detail}; lines from ${line} on could not be read`, options);
    this.uri = uri;
    this.line = line;
    this.detail = detail;
  }
}

const DEFAULT_MAX_LINE_BYTES = 64 * 1024 * 1024;

function isZlibError(e: unknown): e is NodeJS.ErrnoException {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('Z_');
}

/** The chunks of `source`, with the first ones looked at: whether they start with a gzip header. */
async function peek(source: Readable): Promise<{ chunks: AsyncGenerator<Buffer>; gzip: boolean }> {
  const it = (source as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  const head: Buffer[] = [];
  let n = 0;
  let ended = false;
  while (n < 2) {
    const r = await it.next();
    if (r.done) {
      ended = true;
      break;
    }
    head.push(r.value);
    n += r.value.length;
  }
  const first = Buffer.concat(head);
  async function* chunks(): AsyncGenerator<Buffer> {
    if (first.length > 0) yield first;
    while (!ended) {
      const r = await it.next();
      if (r.done) return;
      yield r.value;
    }
  }
  return { chunks: chunks(), gzip: first.length >= 2 && first[0] === 0x1f && first[1] === 0x8b };
}

/** Every line of `key` in `store`, in order. See the module comment for the contract. */
export async function* readLines(store: Store, key: string, opts: ReadLinesOptions = {}): AsyncGenerator<Line> {
  const maxLineBytes = opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  const uri = store.uriOf(key);
  const source = await store.createReadStream(key);
  const gunzip = createGunzip();
  const stopPump = new AbortController();
  try {
    const { chunks, gzip } = await peek(source);
    let bytes: AsyncIterable<Buffer> = chunks;
    if (gzip) {
      // Pump by hand rather than pipe(): a source (storage) error then reaches the reader as
      // itself, and a zlib error is unambiguously about the data.
      void (async () => {
        try {
          for await (const chunk of chunks) {
            if (!gunzip.write(chunk)) await once(gunzip, 'drain', { signal: stopPump.signal });
          }
          gunzip.end();
        } catch (e) {
          if (!stopPump.signal.aborted) gunzip.destroy(e as Error);
        }
      })();
      bytes = gunzip;
    }

    let lineNo = 0;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let overlong = 0; // > 0 while skipping the rest of an over-long line
    let first = true;

    const emit = (buf: Buffer): Line => {
      lineNo++;
      let end = buf.length;
      if (end > 0 && buf[end - 1] === 0x0d) end--;
      let start = 0;
      if (first && end >= 3 && buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf) start = 3;
      first = false;
      return { line: lineNo, text: buf.toString('utf8', start, end) };
    };
    const emitOverlong = (size: number): Line => {
      lineNo++;
      first = false;
      return { line: lineNo, text: '', overlongBytes: size };
    };

    try {
      for await (const chunk of bytes) {
        let pos = 0;
        while (pos < chunk.length) {
          const nl = chunk.indexOf(0x0a, pos);
          const end = nl < 0 ? chunk.length : nl;
          const piece = chunk.subarray(pos, end);
          if (overlong > 0) {
            overlong += piece.length;
          } else if (pendingBytes + piece.length > maxLineBytes) {
            overlong = pendingBytes + piece.length;
            pending = [];
            pendingBytes = 0;
          } else if (piece.length > 0) {
            pending.push(piece);
            pendingBytes += piece.length;
          }
          if (nl < 0) break;
          if (overlong > 0) {
            yield emitOverlong(overlong);
            overlong = 0;
          } else {
            yield emit(pending.length === 1 ? pending[0] : Buffer.concat(pending, pendingBytes));
            pending = [];
            pendingBytes = 0;
          }
          pos = nl + 1;
        }
        // Copy a partial line out of the chunk so the chunk itself can be freed.
        if (pending.length > 0 && pending[pending.length - 1].buffer === chunk.buffer) {
          pending[pending.length - 1] = Buffer.from(pending[pending.length - 1]);
        }
      }
    } catch (e) {
      if (gzip && isZlibError(e)) {
        const what = e.code === 'Z_BUF_ERROR' ? 'gzip data ends early (truncated file)' : `corrupt gzip data (${e.code})`;
        throw new TruncatedInputError(uri, lineNo + 1, what, { cause: e });
      }
      throw e;
    }
    if (overlong > 0) yield emitOverlong(overlong);
    else if (pendingBytes > 0) yield emit(Buffer.concat(pending, pendingBytes));
  } finally {
    stopPump.abort();
    source.destroy();
    gunzip.destroy();
  }
}

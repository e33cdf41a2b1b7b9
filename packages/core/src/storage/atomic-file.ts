/**
 * Atomic file publication: data goes to a temporary file in the destination's directory (same
 * filesystem, so rename(2) is atomic), is fsync'd, then renamed over the destination. Readers see
 * the old file or the complete new one, never a prefix; a failure removes the temporary file.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Readable } from 'node:stream';

const TEMP_MARKER = '.smolrate-tmp-';

/**
 * The source stream (not the filesystem) failed while `writeFileAtomic` was copying it; `cause` is
 * the source's error. Lets callers blame the right party: a source that fails with ENOENT must not
 * read as "destination not found".
 */
export class SourceStreamError extends Error {
  constructor(cause: unknown) {
    super(`source stream failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'SourceStreamError';
  }
}

/** Name of a fresh temporary sibling of `path`: `.<name>.smolrate-tmp-<hex>`. */
export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}${TEMP_MARKER}${randomBytes(6).toString('hex')}`);
}

/** True for files `tempPathFor` names (in-flight or abandoned writes): listings skip them. */
export function isTempFileName(name: string): boolean {
  return name.startsWith('.') && /\.smolrate-tmp-[0-9a-f]{12}$/.test(name);
}

function toBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (typeof chunk === 'string') return Buffer.from(chunk, 'utf8');
  throw new TypeError(`expected Buffer, Uint8Array or string chunks, got ${typeof chunk}`);
}

/**
 * Writes `source` (a stream, consumed with backpressure, or a whole buffer) to `path` atomically,
 * creating parent directories. Returns the bytes written. Filesystem errors are rethrown unchanged,
 * source failures as SourceStreamError, after the temporary file is removed.
 */
export async function writeFileAtomic(
  path: string,
  source: Readable | Buffer | Uint8Array | string,
): Promise<{ size: number }> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = tempPathFor(path);
  const fh = await open(tmp, 'wx');
  let size = 0;
  try {
    try {
      if (typeof source === 'string' || source instanceof Uint8Array) {
        const buf = toBuffer(source);
        await fh.writeFile(buf);
        size = buf.length;
      } else {
        // Awaiting each write is the backpressure: one chunk in flight, constant memory.
        // Throwing inside for-await destroys the source stream.
        let writeError: unknown;
        try {
          for await (const chunk of source) {
            try {
              const buf = toBuffer(chunk);
              let off = 0;
              while (off < buf.length) off += (await fh.write(buf, off, buf.length - off)).bytesWritten;
              size += buf.length;
            } catch (e) {
              writeError = e;
              throw e;
            }
          }
        } catch (e) {
          throw e === writeError ? e : new SourceStreamError(e);
        }
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  return { size };
}

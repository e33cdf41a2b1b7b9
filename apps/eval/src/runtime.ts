/** What the inference commands share: backend, checkpoint resolution and loading, image fallback. */
import { createLogger, decodeImage, isSmolrateError, type Logger } from '@smolrate/core';
import { describeBackend, initBackend, parseBackendChoice } from '@smolrate/model';
import { resolveCheckpointDir } from './checkpoint.js';
import { loadPredictor, type LoadedPredictor } from './predictor.js';

export interface Runtime {
  predictor: LoadedPredictor;
  backend: string;
  log: Logger;
}

export async function openRuntime(checkpoint: string, backendFlag = 'auto', log: Logger = createLogger({ name: 'eval' })): Promise<Runtime> {
  const dir = await resolveCheckpointDir(checkpoint);
  const info = await initBackend(parseBackendChoice(backendFlag));
  const backend = describeBackend(info);
  log.info('backend', { backend });
  const predictor = await loadPredictor(dir);
  log.info('checkpoint loaded', { dir });
  return { predictor, backend, log };
}

/** Mid-grey (128) RGB: the documented stand-in for an item without a readable image. */
export function greyImage(size: number): Uint8Array {
  return new Uint8Array(size * size * 3).fill(128);
}

/**
 * Decodes the first readable image of `candidates` (each read by `read`) to size² RGB; null when
 * none can be read or decoded (the caller substitutes greyImage and counts it).
 */
export async function firstReadableImage(candidates: readonly string[], read: (p: string) => Promise<Uint8Array>, size: number): Promise<Uint8Array | null> {
  for (const c of candidates) {
    try {
      return (await decodeImage(await read(c), { size })).data;
    } catch (e) {
      if (!isSmolrateError(e) && (e as NodeJS.ErrnoException).code === undefined) throw e;
    }
  }
  return null;
}

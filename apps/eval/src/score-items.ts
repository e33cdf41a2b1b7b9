/**
 * Scores external items (predict, submit): each item has prompt fields and candidate image files;
 * the first readable image is used. An item with no readable image is still scored, on a
 * mid-grey (128, 128, 128) image — the documented fallback — and counted, so the caller can warn.
 */
import { readFile } from 'node:fs/promises';
import type { PromptItem } from '@smolrate/model';
import { meanTextTokens } from './efficiency.js';
import { predictAll, type LoadedPredictor, type Throughput } from './predictor.js';
import { firstReadableImage, greyImage } from './runtime.js';

export interface ExternalItem {
  id: string;
  prompt: PromptItem;
  /** Image files to try in order (absolute or relative to the cwd). */
  images: string[];
}

export interface ScoredItems {
  scores: Float32Array;
  /** Items scored on the grey fallback image. */
  withoutImage: string[];
  throughput: Throughput;
  /** Mean prompt-text tokens of the items (for the operational MAC count). */
  meanTextTokens: number;
}

export async function scoreItems(p: LoadedPredictor, items: readonly ExternalItem[], options: { batchSize: number; backend: string; onBatch?: (done: number) => void }): Promise<ScoredItems> {
  const size = p.config.regression.imageSize;
  const withoutImage: string[] = [];
  const { ratings, throughput } = await predictAll(
    p,
    items.length,
    async (i) => {
      const it = items[i];
      let rgb = await firstReadableImage(it.images, (f) => readFile(f), size);
      if (rgb === null) {
        withoutImage.push(it.id);
        rgb = greyImage(size);
      }
      return { prompt: it.prompt, rgb };
    },
    options,
  );
  return { scores: ratings, withoutImage, throughput, meanTextTokens: meanTextTokens(p.tokenizer, p.config, items.map((i) => i.prompt)) };
}

/** Scores are 1 + 4·sigmoid(·) already; clamped to [1, 5] against float rounding. */
export function clampScore(v: number): number {
  return Math.min(5, Math.max(1, v));
}

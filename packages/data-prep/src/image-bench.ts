/**
 * Image-stage throughput: end to end (HTTP fetch from a local server + decode + resize + JPEG
 * encode, i.e. loadItemImage as the build-shard job runs it) against sharp alone (resizeToJpeg
 * on the same bytes already in memory), at the same concurrency, measured side by side in one
 * run. The ratio says how much the fetching machinery costs on top of the unavoidable pixel work;
 * on a real crawl network latency adds to it, which the concurrency is there to hide.
 *
 * Source images are generated (seeded) in a realistic mix: 500–1500 px sides, mostly JPEG on a
 * white background, some PNG, some with transparency; ids contain '+' now and then, as real
 * Amazon ids do.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { Rng, resizeToJpeg } from '@smolrate/core';
import sharp from 'sharp';
import { resolveDataPrepConfig, type DataPrepConfig } from './config.js';
import { createImageFetcher } from './image-fetch.js';
import { loadItemImage } from './item-image.js';
import type { Item } from './types.js';

export interface ImageBenchOptions {
  /** Number of source images. */
  images: number;
  /** Directory for the generated source images (served over HTTP from there). */
  dir: string;
  /** Parallel images; default `images.concurrency` of the config (8). */
  concurrency?: number;
  /** Timed rounds of each phase (alternating); the best is reported. Default 3. */
  rounds?: number;
  /** Image settings (size, quality, limits); default the data-prep defaults. */
  config?: Pick<DataPrepConfig, 'images'>;
  seed?: number;
  /** Where the report lines go; default stdout. */
  print?: (line: string) => void;
}

export interface BenchPhase {
  seconds: number;
  imagesPerSec: number;
  /** Process CPU time (user + system) over the phase, in seconds: > seconds means several cores. */
  cpuSeconds: number;
}

export interface ImageBenchResult {
  images: number;
  concurrency: number;
  /** libvips worker threads per image operation. */
  sharpThreads: number;
  sources: { jpeg: number; png: number; bytes: number; megapixels: number };
  rounds: number;
  /** Best round of each phase. */
  sharpOnly: BenchPhase;
  endToEnd: BenchPhase & { rejects: number };
  allRounds: { sharpOnly: BenchPhase[]; endToEnd: BenchPhase[] };
  /** endToEnd.imagesPerSec / sharpOnly.imagesPerSec. */
  ratio: number;
  /** Whether both paths produced byte-identical JPEGs for every image. */
  identical: boolean;
}

const HOST_PREFIX = 'https://m.media-amazon.com/images/I/';
const ID_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+-';

interface Source {
  name: string;
  bytes: Buffer;
  width: number;
  height: number;
  format: 'jpeg' | 'png';
}

function productSvg(rng: Rng, width: number, height: number, transparent: boolean): string {
  const c = () => `rgb(${rng.int(256)},${rng.int(256)},${rng.int(256)})`;
  const cx = width * (0.35 + 0.3 * rng.next());
  const cy = height * (0.35 + 0.3 * rng.next());
  const rx = width * (0.18 + 0.2 * rng.next());
  const ry = height * (0.18 + 0.2 * rng.next());
  const parts = [
    `<defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="${c()}"/><stop offset="1" stop-color="${c()}"/></linearGradient></defs>`,
    transparent ? '' : `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<rect x="${cx - rx}" y="${cy - ry}" width="${2 * rx}" height="${2 * ry}" rx="${Math.min(rx, ry) * 0.3}" fill="url(#g)"/>`,
  ];
  for (let k = 0; k < 6; k++) {
    parts.push(
      `<circle cx="${cx + (rng.next() - 0.5) * rx * 1.6}" cy="${cy + (rng.next() - 0.5) * ry * 1.6}" r="${Math.min(rx, ry) * (0.05 + 0.25 * rng.next())}" fill="${c()}" fill-opacity="0.8"/>`,
    );
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${parts.join('')}</svg>`;
}

const TILE = 128;

/** TILE × TILE × 3 bytes of roughly Gaussian noise around mid-grey (σ ≈ 18). */
function noiseTile(rng: Rng): Buffer {
  const buf = Buffer.alloc(TILE * TILE * 3);
  for (let i = 0; i < buf.length; i++) buf[i] = Math.max(0, Math.min(255, Math.round(128 + 18 * rng.normal())));
  return buf;
}

/** Seeded source images written to `dir`; returns them with their bytes. */
export async function generateBenchImages(count: number, dir: string, seed = 0): Promise<Source[]> {
  await mkdir(dir, { recursive: true });
  const rng = new Rng(seed, 'image-bench');
  const out: Source[] = [];
  for (let i = 0; i < count; i++) {
    const width = 500 + rng.int(1001);
    const height = 500 + rng.int(1001);
    const roll = rng.next();
    const format: 'jpeg' | 'png' = roll < 0.7 ? 'jpeg' : 'png';
    const transparent = roll >= 0.9;
    let id = '';
    for (let k = 0; k < 11; k++) id += ID_CHARS[rng.int(ID_CHARS.length)];
    const name = `${id}._SL1500_.${format === 'jpeg' ? 'jpg' : 'png'}`;
    // Photographic texture (camera noise) over the product, from a seeded tile (libvips' own
    // noise is not seeded); 'overlay' keeps the white background white.
    let img = sharp(Buffer.from(productSvg(rng, width, height, transparent))).composite([
      { input: noiseTile(rng), raw: { width: TILE, height: TILE, channels: 3 }, tile: true, blend: 'overlay' },
    ]);
    img = format === 'jpeg' ? img.flatten({ background: '#ffffff' }).jpeg({ quality: 85 + rng.int(11) }) : img.png({ palette: roll < 0.8 });
    const bytes = await img.toBuffer();
    await writeFile(join(dir, name), bytes);
    out.push({ name, bytes, width, height, format });
  }
  return out;
}

async function runPool(count: number, limit: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < count) await fn(next++);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, count)) }, lane));
}

async function timed(count: number, fn: () => Promise<void>): Promise<BenchPhase> {
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await fn();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  return { seconds, imagesPerSec: count / seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
}

/**
 * A static server on 127.0.0.1 for the generated images (the bench's "image host"). It serves
 * them from memory, like a CDN edge with the images in its cache: reading the files per request
 * would put the server's disk reads in the same libuv thread pool as sharp's work (one process)
 * and charge the server's queueing to the fetcher.
 */
async function serveImages(sources: readonly Source[]) {
  const files = new Map(sources.map((s) => [s.name, s.bytes]));
  const server = createServer((req, res) => {
    let name: string;
    try {
      name = decodeURIComponent((req.url ?? '').replace(/^\/images\//, ''));
    } catch {
      return void res.writeHead(400).end();
    }
    const body = files.get(name);
    if (body === undefined) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': name.endsWith('.png') ? 'image/png' : 'image/jpeg', 'content-length': body.length });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export async function runImageBench(opts: ImageBenchOptions): Promise<ImageBenchResult> {
  const print = opts.print ?? ((line: string) => void process.stdout.write(`${line}\n`));
  const base = opts.config ?? resolveDataPrepConfig();
  const concurrency = opts.concurrency ?? base.images.concurrency;
  const n = opts.images;
  const rounds = opts.rounds ?? 3;
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`image bench: images must be a positive integer, got ${n}`);
  if (!Number.isInteger(rounds) || rounds < 1) throw new RangeError(`image bench: rounds must be a positive integer, got ${rounds}`);

  const sources = await generateBenchImages(n, opts.dir, opts.seed ?? 0);
  const server = await serveImages(sources);
  try {
    const cfg = { images: { ...base.images, concurrency, cacheDir: null, rewrite: { [HOST_PREFIX]: `${server.base}/images/` } } };
    const resizeOpts = { size: cfg.images.size, quality: cfg.images.quality, maxPixels: cfg.images.maxPixels };
    const items: Item[] = sources.map((s, i) => ({
      parent_asin: `B${String(i).padStart(9, '0')}`,
      category: 'Bench',
      main_category: null,
      title: '',
      description: '',
      features: [],
      average_rating: 4,
      rating_number: 100,
      image_url: `${HOST_PREFIX}${s.name}`,
      source: 'bench',
      line: i + 1,
    }));

    // Warm-up (not timed): first-call costs of sharp and of the HTTP connection pool.
    const warm = Math.min(4, n);
    const warmFetcher = createImageFetcher(cfg.images);
    await runPool(warm, concurrency, async (i) => {
      await resizeToJpeg(sources[i].bytes, resizeOpts);
      await loadItemImage(items[i], warmFetcher, cfg);
    });
    warmFetcher.close();

    // The phases alternate, `rounds` times each, and the best round of each is reported: on a
    // shared machine, load that comes and goes then hits both sides alike.
    const direct: Buffer[] = new Array(n);
    const viaHttp: Array<Buffer | undefined> = new Array(n);
    let rejects = 0;
    const sharpRounds: BenchPhase[] = [];
    const e2eRounds: BenchPhase[] = [];
    for (let round = 0; round < rounds; round++) {
      sharpRounds.push(
        await timed(n, () =>
          runPool(n, concurrency, async (i) => {
            direct[i] = (await resizeToJpeg(sources[i].bytes, resizeOpts)).data;
          }),
        ),
      );
      const fetcher = createImageFetcher(cfg.images); // new connections and no cache every round
      rejects = 0;
      e2eRounds.push(
        await timed(n, () =>
          runPool(n, concurrency, async (i) => {
            const r = await loadItemImage(items[i], fetcher, cfg);
            viaHttp[i] = r.ok ? r.jpeg : undefined;
            if (!r.ok) rejects++;
          }),
        ),
      );
      fetcher.close();
    }
    const best = (phases: BenchPhase[]) => phases.reduce((a, b) => (b.seconds < a.seconds ? b : a));
    const sharpOnly = best(sharpRounds);
    const e2e = best(e2eRounds);

    const result: ImageBenchResult = {
      images: n,
      concurrency,
      sharpThreads: sharp.concurrency(),
      sources: {
        jpeg: sources.filter((s) => s.format === 'jpeg').length,
        png: sources.filter((s) => s.format === 'png').length,
        bytes: sources.reduce((a, s) => a + s.bytes.length, 0),
        megapixels: sources.reduce((a, s) => a + s.width * s.height, 0) / 1e6,
      },
      rounds,
      sharpOnly,
      endToEnd: { ...e2e, rejects },
      allRounds: { sharpOnly: sharpRounds, endToEnd: e2eRounds },
      ratio: e2e.imagesPerSec / sharpOnly.imagesPerSec,
      identical: direct.every((d, i) => viaHttp[i] !== undefined && d.equals(viaHttp[i]!)),
    };
    for (const line of formatImageBench(result)) print(line);
    return result;
  } finally {
    await server.close();
  }
}

export function formatImageBench(r: ImageBenchResult): string[] {
  const phase = (p: BenchPhase) =>
    `${p.imagesPerSec.toFixed(1)} images/s (${p.seconds.toFixed(2)} s; CPU ${p.cpuSeconds.toFixed(2)} s = ${((1000 * p.cpuSeconds) / r.images).toFixed(1)} ms/image)`;
  const mb = (r.sources.bytes / 1e6).toFixed(1);
  return [
    `image bench: ${r.images} source images (${r.sources.jpeg} JPEG, ${r.sources.png} PNG; ${mb} MB, ${(r.sources.megapixels / r.images).toFixed(2)} MP mean), concurrency ${r.concurrency}, libvips threads ${r.sharpThreads}`,
    `  best of ${r.rounds} alternating round(s) each; load average at the end ${loadavg().map((x) => x.toFixed(1)).join(' ')}`,
    `  sharp only (resizeToJpeg, bytes in memory):    ${phase(r.sharpOnly)}`,
    `  end to end (HTTP fetch + loadItemImage):       ${phase(r.endToEnd)}${r.endToEnd.rejects ? `, ${r.endToEnd.rejects} rejects` : ''}`,
    `  end-to-end / sharp-only: ${r.ratio.toFixed(3)}; outputs byte-identical: ${r.identical ? 'yes' : 'NO'}`,
  ];
}

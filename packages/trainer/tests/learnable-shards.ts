/**
 * Test fixture: a small `smolrate-shards/1` build with a learnable rating. The rating is a
 * function of what the model sees: the image is mostly red or mostly blue (+1.5 for blue) and
 * the title says "excellent" or "awful" (+1.5 for excellent), plus a little seeded noise —
 * so training loss falls and validation PLCC rises well above 0 within a few dozen steps.
 * (data-prep's generateSynthetic is out of reach of the trainer by the module boundaries.)
 */
import { Rng, resizeToJpeg, type Manifest, type ShardRow, type Store } from '@smolrate/core';
import { encodePng, writeShardSet } from '@smolrate/core/testing';

async function colourJpeg(blue: boolean, shade: number): Promise<Buffer> {
  const side = 16;
  const rgb = new Uint8Array(side * side * 3);
  for (let i = 0; i < side * side; i++) {
    rgb[3 * i] = blue ? 20 : 200 + shade;
    rgb[3 * i + 1] = 30 + shade;
    rgb[3 * i + 2] = blue ? 200 + shade : 20;
  }
  return (await resizeToJpeg(encodePng(side, side, rgb), { size: 384, quality: 90 })).data;
}

export interface LearnableShardsOptions {
  train: number;
  val: number;
  /** Rows per shard. Default 16. */
  shardRows?: number;
  root?: string;
}

/** Writes the build (shards, then the manifest) under `root` (default '') of `store`. */
export async function writeLearnableShards(store: Store, o: LearnableShardsOptions): Promise<Manifest> {
  const per = o.shardRows ?? 16;
  const images = new Map<string, Buffer>();
  const shards = { train: [] as ShardRow[][], val: [] as ShardRow[][] };
  for (const split of ['train', 'val'] as const) {
    const n = split === 'train' ? o.train : o.val;
    const rng = new Rng(11, split);
    for (let i = 0; i < n; i++) {
      const blue = rng.int(2) === 1;
      const good = rng.int(2) === 1;
      const shade = rng.int(4) * 10;
      const key = `${blue}-${shade}`;
      let image = images.get(key);
      if (image === undefined) images.set(key, (image = await colourJpeg(blue, shade)));
      const rating = Math.min(5, Math.max(1, 1.5 + (blue ? 1.5 : 0) + (good ? 1.5 : 0) + (rng.next() - 0.5) * 0.4));
      if (i % per === 0) shards[split].push([]);
      shards[split].at(-1)!.push({
        parent_asin: `${split[0]!.toUpperCase()}${String(i).padStart(9, '0')}`,
        category: 'All_Beauty',
        main_category: 'All Beauty',
        title: `${good ? 'excellent' : 'awful'} item`,
        description: `${good ? 'excellent' : 'awful'} quality`,
        features: [],
        average_rating: Math.round(rating * 10) / 10,
        rating_number: 10 + i,
        image,
        image_url: `https://example.invalid/${split}-${i}.jpg`,
      });
    }
  }
  return (await writeShardSet(store, shards, { root: o.root, label: 'learnable-shards', rowGroupSize: per })).manifest;
}

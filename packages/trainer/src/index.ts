export * from './collective.js';
export * from './collective-keys.js';
export * from './all-reduce-plan.js';
export * from './redis-collective.js';
export {
  COLLECTIVE_DEFAULTS,
  MAX_CHUNK_BYTES,
  resolveCollectiveOptions,
  type RedisCollectiveOptions,
  type ResolvedCollectiveOptions,
} from './redis-collective-options.js';
export * from './byte-lru.js';
export * from './sampler.js';
export * from './shard-dataset.js';
export * from './backbone-hash.js';
export * from './feature-cache.js';
export * from './precompute-features.js';
export * from './batches.js';
export * from './sample-index.js';
export * from './prefetcher.js';
export * from './quant-tables.js';
export * from './adamw-options.js';
export * from './optimizer-state-file.js';
export { AdamWBase, type MomentState, type TensorSlice } from './adamw-base.js';
export * from './adamw8bit.js';
export * from './adamw32.js';
export * from './lr-schedule.js';
export * from './early-stopping.js';
export * from './bench-allreduce.js';
export * from './config.js';
export * from './replica.js';
export * from './evaluate.js';
export * from './checkpoint.js';
export * from './train-worker.js';
export * from './launch.js';
export * from './bench-scaling.js';

/**
 * The trainer's configuration: one typed schema with its defaults (core config.ts field
 * builders). Precedence: defaults ← config file (`--config x.json|yaml`) ← CLI flags
 * (`--peak-lr 1e-3`, `--collective.timeout-ms 60000`). The resolved config is logged once by
 * rank 0 and saved in every checkpoint's trainer-state.json.
 */
import { join } from 'node:path';
import { checkInvariant, ConfigError, field, kebab, resolveConfig, type Infer, type ResolveOptions } from '@smolrate/core';

export const TRAINER_CONFIG_SCHEMA = {
  data: field.string('', 'shard root URI holding manifest.json (file path, file:// or s3://)'),
  run: field.string('', 'run directory (local): metrics.jsonl, checkpoints/, feature-cache/, sample-index/'),
  preset: field.enum(['tiny', 'smolvlm2-256m'] as const, 'smolvlm2-256m', 'model preset of a seeded init (ignored with init)'),
  init: field.optionalString('initial weights: a model folder (config.json + model.safetensors + tokenizer.json); default: seeded init of the preset'),
  tokenizer: field.optionalString('tokenizer.json; default: the init folder\'s, or the bundled tiny tokenizer for the tiny preset'),
  seed: field.int(0, 'run seed: init, sample order, dropout', { min: 0 }),
  backend: field.enum(['auto', 'tensorflow', 'wasm', 'cpu'] as const, 'auto', 'tfjs backend'),
  globalBatch: field.int(64, 'samples per optimizer step over all ranks', { min: 1 }),
  microBatch: field.int(0, 'samples per forward/backward on one rank; 0 = globalBatch / worldSize (no accumulation)', { min: 0 }),
  epochs: field.int(5, 'epochs (an upper bound with early stopping)', { min: 1 }),
  maxSteps: field.int(0, 'cap on optimizer steps of the whole run (the schedule spans the capped run); 0 = no cap', { min: 0 }),
  stopAfterSteps: field.int(0, 'checkpoint and stop after this many optimizer steps without changing the schedule (an interruption; resume with --resume); 0 = never', { min: 0 }),
  peakLr: field.number(4e-4, 'peak learning rate', { min: 0 }),
  warmupFraction: field.number(0.03, 'fraction of the steps spent in linear warm-up', { min: 0, max: 1 }),
  weightDecay: field.number(0.01, 'decoupled weight decay', { min: 0 }),
  optimizer: field.enum(['adamw8bit', 'adamw32'] as const, 'adamw8bit', 'optimizer'),
  // Default on, as Hugging Face's Trainer does for `adamw_bnb_8bit` (it registers every
  // nn.Embedding for 32-bit state): a token row absent from a batch keeps m but its small v
  // rounds to the zero code of its block, and m / (√0 + ε) throws the row far off (measured on the
  // tiny preset: embedding max |w| 0.08 → 1.13 within 12 steps). docs/training.md.
  fp32EmbeddingState: field.bool(true, 'keep fp32 Adam state for embed_tokens (as HF Trainer does with adamw_bnb_8bit); --no-fp32-embedding-state for 8-bit'),
  zero: field.int(1, 'ZeRO stage: 1 = each rank steps only its 1/N slice of the parameters (optimizer state / N) and the updated weights are all-gathered; 0 = every rank steps every parameter', { min: 0, max: 1 }),
  gradDtype: field.enum(['f32', 'bf16'] as const, 'f32', 'wire type of the gradient exchange: bf16 halves the traffic (each contribution rounded to bf16, summed in float32)'),
  gradClip: field.number(0, 'clip the global gradient L2 norm to this value; 0 = no clipping', { min: 0 }),
  evalEvery: field.int(0, 'validate every K steps (and at every epoch end); 0 = only at epoch ends', { min: 0 }),
  evalBatch: field.int(16, 'validation batch size', { min: 1 }),
  patience: field.int(3, 'early stopping: validations without a val PLCC improvement before stopping', { min: 1 }),
  checkpointEvery: field.int(0, 'checkpoint every K steps (and at every epoch end and the end); 0 = epoch ends only', { min: 0 }),
  keepCheckpoints: field.int(3, 'step folders kept: the K newest plus the best; 0 = keep all', { min: 0 }),
  hashCheckEvery: field.int(50, 'compare a parameter hash across ranks every K steps (and at the end); 0 = only at the end', { min: 0 }),
  // f32 by default until half precision is shown not to move validation metrics: on the demo
  // (8 seeds) bf16 features changed the val PLCC by −0.010 ± 0.014 on average, but by up to 0.085
  // on one seed; flipping f32's last bit moves it by up to 0.034 (docs/training.md "The feature cache").
  featureDtype: field.enum(['bf16', 'f16', 'f32'] as const, 'f32', 'element type of the packed feature cache: f32 keeps the encoder\'s exact features; bf16 or f16 halve its bytes (rounded to nearest even; f16 keeps 3 more mantissa bits, range ±65504), for caches at the paper\'s scale'),
  featureCache: field.optionalString('vision-feature cache directory; default <run>/feature-cache (share one between runs of the same backbone)'),
  maxTextLength: field.int(0, 'characters kept per metadata field (the paper: L = 100); 0 = the model config\'s', { min: 0 }),
  prefetch: field.int(2, 'steps of batches built ahead', { min: 0 }),
  sampleBlock: field.int(1, 'shuffle blocks of K consecutive samples instead of single samples: the feature cache then reads K entries at once (for caches on disk; see docs/training.md "The data path at scale"); 1 = the plain global shuffle', { min: 1 }),
  resume: field.bool(false, 'continue from <run>/checkpoints/latest (weights, optimizer, schedule, sampler cursor)'),
  collective: field.object({
    timeoutMs: field.int(120_000, 'bound on each collective wait (ms without progress)', { min: 1 }),
    rendezvousTimeoutMs: field.int(120_000, 'bound on the rendezvous', { min: 1 }),
    heartbeatMs: field.int(1_000, 'heartbeat period', { min: 10 }),
    evalTimeoutMs: field.int(1_800_000, 'how long ranks wait for rank 0 to validate / checkpoint', { min: 1 }),
    dataPlane: field.enum(['tcp', 'redis'] as const, 'tcp', 'where gradients and weights travel: direct TCP between the ranks, or through Redis (the fallback); --collective tcp|redis'),
    host: field.string('127.0.0.1', 'tcp data plane: address each rank listens on (0.0.0.0 for ranks on several hosts)'),
    port: field.string('0', 'tcp data plane: port to listen on: 0 = any free port, N, or a range "29500-29599"'),
    advertise: field.string('', 'tcp data plane: address the other ranks dial; default: host, or the first external IPv4 when host is 0.0.0.0'),
    bucketMb: field.int(4, 'MiB per gradient bucket (one frame of the data plane; sent as soon as the gradients in it are ready)', { min: 1, max: 32 }),
  }),
};

export type TrainerConfig = Infer<typeof TRAINER_CONFIG_SCHEMA>;

/** defaults ← file ← overrides, validated, with the checks that need no world size. */
export function resolveTrainerConfig(opts: ResolveOptions = {}): TrainerConfig {
  const cfg = resolveConfig(TRAINER_CONFIG_SCHEMA, opts);
  if (cfg.data === '') throw new ConfigError('config key "data" is required: the shard root URI (where manifest.json is)');
  if (cfg.run === '') throw new ConfigError('config key "run" is required: the run directory');
  return cfg;
}

/** The micro-batch in effect for `worldSize` ranks. */
export function effectiveMicroBatch(cfg: TrainerConfig, worldSize: number): number {
  return cfg.microBatch > 0 ? cfg.microBatch : cfg.globalBatch / worldSize;
}

/** Checks the derived invariants for a world of `worldSize` ranks (both values in each message). */
export function checkTrainerConfig(cfg: TrainerConfig, worldSize: number): void {
  checkInvariant(
    cfg.globalBatch % worldSize === 0,
    `globalBatch (${cfg.globalBatch}) must be divisible by worldSize (${worldSize})`,
  );
  const micro = effectiveMicroBatch(cfg, worldSize);
  const per = worldSize * micro;
  checkInvariant(
    cfg.globalBatch % per === 0,
    `globalBatch (${cfg.globalBatch}) must be divisible by worldSize × microBatch (${worldSize} × ${micro} = ${per})`,
  );
}

/**
 * Keys `--resume` applies from the given config: where and how the run executes (backend, the
 * micro-batch, ZeRO and the collective, like the world size) and how it is driven (where it
 * stops, validation, checkpoint and hash-check cadence, early-stopping patience, prefetch, the
 * feature cache). Every other key defines the trajectory — data, model, seed, batch, epochs,
 * schedule, optimizer — and must equal the checkpoint's.
 */
const RESUME_MAY_CHANGE: ReadonlySet<keyof TrainerConfig> = new Set<keyof TrainerConfig>([
  'run', 'resume', 'backend', 'microBatch', 'zero', 'collective', 'stopAfterSteps', 'evalEvery', 'evalBatch',
  'patience', 'checkpointEvery', 'keepCheckpoints', 'hashCheckEvery', 'prefetch', 'featureCache',
]);

/** Refuses a resume whose config changes a trajectory key of the checkpoint's (keys it lacks are not compared). */
export function checkResumeConfig(saved: Partial<TrainerConfig>, given: TrainerConfig, checkpoint: string): void {
  const changed = (Object.keys(TRAINER_CONFIG_SCHEMA) as Array<keyof TrainerConfig>)
    .filter((k) => !RESUME_MAY_CHANGE.has(k) && k in saved && JSON.stringify(saved[k]) !== JSON.stringify(given[k]))
    .map((k) => `${k} (--${kebab(k)}): checkpoint ${JSON.stringify(saved[k])}, given ${JSON.stringify(given[k])}`);
  if (changed.length > 0) {
    throw new ConfigError(`--resume from ${checkpoint} cannot change what the run was started with: ${changed.join('; ')} (resume with the checkpoint's values, or start a new run)`);
  }
}

export function featureCacheDir(cfg: TrainerConfig): string {
  return cfg.featureCache ?? join(cfg.run, 'feature-cache');
}

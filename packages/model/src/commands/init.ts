/**
 * `smolrate-model init`: a seeded, randomly initialised checkpoint folder in the format of
 * checkpoint-dir.ts (config.json, model.safetensors, tokenizer.json). Parameters are drawn and
 * written one at a time (init.ts gives each its own stream), so the 256M preset needs about one
 * parameter's memory (the 113 MB embedding table), not the model's 1 GB; the folder holds the
 * same values as SmolVLMRegressor.fromSeed(config, seed).
 *
 * Tokenizer: the tiny preset ships its own (assets/tiny/tokenizer.json). The real vocabulary's
 * tokenizer is not bundled (no downloads), so smolvlm2-256m needs `--tokenizer FILE` (SmolVLM2's
 * tokenizer.json) or an explicit `--no-tokenizer`, which writes the folder without one and warns:
 * such a folder loads only with `allowMissingTokenizer` (forward needs a tokenizer). No
 * lm_head.weight is written (see checkpoint-dir.ts: transformers initialises it on load).
 */
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { ConfigError, createLogger, flagBool, flagNumber, flagString, kebab, parseArgs, requireFlag, UsageError } from '@smolrate/core';
import { CONFIG_FILE, WEIGHTS_FILE, writeModelDir, type SavedModelDir } from '../checkpoint-dir.js';
import { presetConfig, PRESETS, type ModelConfig } from '../config.js';
import { initParameter } from '../init.js';
import { expectedParameters, totalParameters } from '../params.js';
import { TINY_TOKENIZER_URL } from '../tokenizer.js';

export const summary = 'write a seeded, randomly initialised checkpoint';

export const usage = `usage: smolrate-model init --preset tiny|smolvlm2-256m --out DIR [--seed S]
                           [--tokenizer FILE | --no-tokenizer] [--force]

  --preset NAME      tiny (the test/demo model, ships its tokenizer) or smolvlm2-256m
  --out DIR          the folder to write: config.json, model.safetensors, tokenizer.json
  --seed S           initialisation seed, a non-negative integer (default 0)
  --tokenizer FILE   tokenizer.json to include (default for tiny: its bundled tokenizer;
                     smolvlm2-256m has none bundled: give SmolVLM2's, or --no-tokenizer)
  --no-tokenizer     write no tokenizer.json (the folder then cannot run forward)
  --force            overwrite a folder that already holds a checkpoint

Weights ~ normal(0, 0.02), norms 1, biases 0 (init.ts); no lm_head.weight.`;

const KNOWN_FLAGS = ['preset', 'out', 'seed', 'tokenizer', 'force'];

export interface InitCommandOptions {
  preset: string;
  out: string;
  seed?: number;
  /** A tokenizer.json path; null: none; undefined: the preset's bundled one (tiny only). */
  tokenizer?: string | null;
  force?: boolean;
  onWarning?: (message: string) => void;
}

export interface InitResult extends SavedModelDir {
  preset: string;
  seed: number;
  parameters: number;
  tokenizer: string | null;
}

async function tokenizerText(opts: InitCommandOptions): Promise<{ json: string | null; source: string | null }> {
  if (opts.tokenizer === null) return { json: null, source: null };
  let file = opts.tokenizer;
  if (file === undefined) {
    if (opts.preset !== 'tiny') {
      throw new UsageError(`preset ${opts.preset} has no bundled tokenizer: give --tokenizer FILE (its tokenizer.json) or --no-tokenizer`);
    }
    file = fileURLToPath(TINY_TOKENIZER_URL);
  }
  try {
    return { json: await readFile(file, 'utf8'), source: file };
  } catch (e) {
    throw new ConfigError(`cannot read the tokenizer ${file}`, { cause: e });
  }
}

/** Refuses to overwrite an existing checkpoint unless forced. */
async function checkTarget(dir: string, force: boolean): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch {
    return; // absent (or not listable: the write will say why)
  }
  const existing = entries.filter((n) => n === CONFIG_FILE || n === WEIGHTS_FILE);
  if (existing.length > 0 && !force) throw new UsageError(`${dir} already holds a checkpoint (${existing.join(', ')}); pass --force to overwrite it`);
}

export async function runInit(opts: InitCommandOptions): Promise<InitResult> {
  if (!(opts.preset in PRESETS)) throw new UsageError(`--preset must be one of ${Object.keys(PRESETS).join(', ')}; got "${opts.preset}"`);
  const seed = opts.seed ?? 0;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new UsageError(`--seed must be a non-negative integer, got ${seed}`);
  const config: ModelConfig = presetConfig(opts.preset);
  const tok = await tokenizerText(opts);
  await checkTarget(opts.out, opts.force ?? false);
  if (tok.json === null) {
    (opts.onWarning ?? ((m: string) => createLogger({ name: 'init' }).warn(m)))(
      `${opts.out}: written without tokenizer.json — copy the model's tokenizer.json into it before running forward or training`,
    );
  }
  const specs = expectedParameters(config);
  const saved = await writeModelDir(opts.out, {
    config,
    tensors: specs.map((spec) => ({ name: spec.name, shape: spec.shape, data: () => initParameter(spec, seed).data })),
    tokenizerJson: tok.json,
    metadata: { smolrate_init_seed: String(seed), smolrate_preset: opts.preset },
  });
  return { ...saved, preset: opts.preset, seed, parameters: totalParameters(specs), tokenizer: tok.source };
}

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, ['force']);
  const unknown = Object.keys(args.flags).filter((k) => !KNOWN_FLAGS.includes(k));
  if (unknown.length > 0) throw new UsageError(`unknown option${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `--${kebab(k)}`).join(', ')} (see --help)`);
  if (args.positionals.length > 0) throw new UsageError(`unexpected argument "${args.positionals[0]}" (see --help)`);
  const r = await runInit({
    preset: requireFlag(args, 'preset'),
    out: requireFlag(args, 'out'),
    seed: flagNumber(args, 'seed'),
    // parseArgs turns --no-tokenizer into { tokenizer: false }.
    tokenizer: args.flags.tokenizer === false ? null : flagString(args, 'tokenizer'),
    force: flagBool(args, 'force'),
  });
  process.stdout.write(
    `wrote ${r.dir}: preset ${r.preset}, seed ${r.seed}, ${r.parameters.toLocaleString('en-US')} parameters in ${r.tensors} tensors ` +
      `(${(r.weightsBytes / 2 ** 20).toFixed(1)} MiB), tokenizer ${r.tokenizer ?? 'none'}\n`,
  );
  return 0;
}

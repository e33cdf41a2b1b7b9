/**
 * Single-process mode: the same four steps as the BullMQ flow (steps.ts), run in this process
 * without Redis — selects `selectConcurrency` files at a time, then plan, then the shards
 * `buildConcurrency` at a time (image fetches share one per-process limit, `images.concurrency`),
 * then finalize. The output is byte-identical to a distributed build of the same inputs and seed.
 */
import { silentLogger, UsageError, type Logger, type Manifest } from '@smolrate/core';
import { forEachPool } from './concurrency.js';
import type { InputFile } from './inputs.js';
import type { Plan } from './plan.js';
import { closeStepContext, runBuildStep, runFinalizeStep, runPlanStep, runSelectStep, type RunSpec, type StepContext } from './steps.js';

export interface PipelineProgress {
  onSelectProgress?: (category: string, read: number) => void;
  onSelectDone?: (category: string, read: number) => void;
  onPlanned?: (plan: Plan) => void;
  onShardDone?: (done: number, total: number) => void;
}

export interface LocalPipelineOptions extends PipelineProgress {
  run: RunSpec;
  inputs: readonly InputFile[];
  /** Plan only (no images, no shards, no manifest). */
  dryRun?: boolean;
  /** Input files read at once. Default 2. */
  selectConcurrency?: number;
  /** Shards built at once. Default 2. */
  buildConcurrency?: number;
  log?: Logger;
  /** Checked before each step and each file / shard: an aborted build stops there. */
  signal?: AbortSignal;
}

export interface PipelineOutcome {
  plan: Plan;
  /** null for a dry run. */
  manifest: Manifest | null;
}

export async function runLocalPipeline(opts: LocalPipelineOptions): Promise<PipelineOutcome> {
  const { run, inputs } = opts;
  const log = opts.log ?? silentLogger;
  const ctx: StepContext = { log, stores: new Map(), fetchers: new Map() };
  const check = (): void => {
    if (opts.signal?.aborted) throw new UsageError('build interrupted');
  };

  try {
    await forEachPool(inputs, opts.selectConcurrency ?? 2, async (input) => {
      check();
      const r = await runSelectStep(run, input, { ...ctx, onProgress: (read) => opts.onSelectProgress?.(input.category, read) });
      opts.onSelectDone?.(input.category, r.read);
    });

    check();
    const plan = await runPlanStep(
      run,
      inputs.map((i) => i.category),
      ctx,
    );
    opts.onPlanned?.(plan);
    if (opts.dryRun) return { plan, manifest: null };

    let done = 0;
    await forEachPool(plan.tasks, opts.buildConcurrency ?? 2, async (task) => {
      check();
      await runBuildStep(run, task, ctx);
      opts.onShardDone?.(++done, plan.tasks.length);
    });

    check();
    const manifest = await runFinalizeStep(run, ctx);
    return { plan, manifest };
  } finally {
    closeStepContext(ctx);
  }
}


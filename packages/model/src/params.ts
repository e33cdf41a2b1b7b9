/**
 * The module tree of the rating model (vision.ts / connector.ts / decoder.ts / head.ts) and the
 * parameters read off it: the names of the HF SmolVLM2 checkpoint (docs/reference/model.md
 * "Checkpoint tensors", in that listing's order) plus smolrate's `regression_head.*`, each with
 * the shape, layout and initial-value family its module gives it. A golden test pins the list
 * for the 256M preset.
 */
import { ConfigError } from '@smolrate/core';
import type { ModelConfig } from './config.js';
import { Connector } from './connector.js';
import { TextModel } from './decoder.js';
import { RegressionHead } from './head.js';
import { Linear, ParamScope, type Param } from './layers.js';
import { shapeSize } from './state-dict.js';
import { VisionTransformer } from './vision.js';

/** Which part of the model a parameter belongs to. `lm_head` is stored in checkpoints but unused. */
export type ParamGroup = 'vision' | 'connector' | 'text' | 'lm_head' | 'head';
/** How the PyTorch layout maps to tfjs: Linear [out,in] ↔ [in,out]; Conv2d [o,i,kh,kw] ↔ [kh,kw,i,o]. */
export type ParamLayout = 'linear' | 'conv' | 'plain';
/** Initial value family used by init.ts. */
export type ParamInit = 'normal' | 'ones' | 'zeros';

export interface ParamSpec {
  name: string;
  /** PyTorch shape (the checkpoint's). */
  shape: number[];
  group: ParamGroup;
  layout: ParamLayout;
  init: ParamInit;
  /** Trained by smolrate: the text model (incl. embed_tokens) and the regression head. */
  trainable: boolean;
}

export interface ExpectedParametersOptions {
  /** Include `lm_head.weight` (present in HF checkpoints, never used). Default false. */
  includeLmHead?: boolean;
  /** Include `regression_head.*`. Default true. */
  includeHead?: boolean;
}

export const VISION_PREFIX = 'model.vision_model';
export const CONNECTOR_PREFIX = 'model.connector';
export const TEXT_PREFIX = 'model.text_model';
export const LM_HEAD_PREFIX = 'lm_head';
export const LM_HEAD_NAME = `${LM_HEAD_PREFIX}.weight`;
export const HEAD_PREFIX = 'regression_head';

/** Side of the learned position grid: image_size / patch_size (512/16 = 32). */
export function positionGridSide(cfg: ModelConfig): number {
  const side = cfg.vision.imageSize / cfg.vision.patchSize;
  if (!Number.isInteger(side)) {
    throw new ConfigError(`vision_config.image_size ${cfg.vision.imageSize} must be a multiple of patch_size ${cfg.vision.patchSize}`);
  }
  return side;
}

/** The modules of the rating model (smolvlm.ts runs them); building them allocates no tensors. */
export interface ModelModules {
  visionModel: VisionTransformer;
  connector: Connector;
  textModel: TextModel;
  /** Upstream's unused `lm_head`, only when asked for (its checkpoint place is before the head). */
  lmHead: Linear | null;
  regressionHead: RegressionHead;
  /** Every parameter, in module-tree (= checkpoint) order. */
  params: Param[];
}

export function buildModules(cfg: ModelConfig, options: { includeLmHead?: boolean } = {}): ModelModules {
  const params: Param[] = [];
  const scope = (prefix: string, group: ParamGroup) => ParamScope.root(params, prefix, group);
  const { vision, text } = cfg;
  return {
    visionModel: new VisionTransformer(scope(VISION_PREFIX, 'vision'), vision, positionGridSide(cfg)),
    connector: new Connector(scope(CONNECTOR_PREFIX, 'connector'), vision.hiddenSize, text.hiddenSize, cfg.scaleFactor),
    textModel: new TextModel(scope(TEXT_PREFIX, 'text'), text),
    lmHead: options.includeLmHead ? new Linear(scope(LM_HEAD_PREFIX, 'lm_head'), text.hiddenSize, text.vocabSize, { bias: false }) : null,
    regressionHead: new RegressionHead(scope(HEAD_PREFIX, 'head'), text.hiddenSize, cfg.regression.hiddenSize, cfg.regression.dropout),
    params,
  };
}

/** The parameters of `cfg`'s module tree, like PyTorch's `named_parameters()`, without weights. */
export function expectedParameters(cfg: ModelConfig, options: ExpectedParametersOptions = {}): ParamSpec[] {
  return buildModules(cfg, options)
    .params.filter((p) => (options.includeHead ?? true) || p.group !== 'head')
    .map(({ name, shape, group, layout, init, trainable }) => ({ name, shape: [...shape], group, layout, init, trainable }));
}

/** Sum of element counts, optionally restricted to some groups or layouts, to names `prefix.*`, or to (non-)trainable parameters. */
export function totalParameters(
  specs: readonly ParamSpec[],
  filter: { groups?: ParamGroup[]; layouts?: ParamLayout[]; prefix?: string; trainable?: boolean } = {},
): number {
  let n = 0;
  for (const s of specs) {
    if (filter.groups && !filter.groups.includes(s.group)) continue;
    if (filter.layouts && !filter.layouts.includes(s.layout)) continue;
    if (filter.prefix !== undefined && !s.name.startsWith(`${filter.prefix}.`)) continue;
    if (filter.trainable !== undefined && s.trainable !== filter.trainable) continue;
    n += shapeSize(s.shape);
  }
  return n;
}

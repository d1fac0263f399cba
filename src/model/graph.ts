/**
 * A model's forward pass as an ONNX graph, up to a target layer, with an optional fused TopK SAE encoder on the
 * residual stream. The family (./families/) emits the decoder layers; everything around them is shared:
 *
 *   input_ids, attention_mask: int64 [B, T]
 *   resid_post:   float [B, T, D]   raw residual stream after decoder layer L (before the final norm)
 *   topk_values:  float [B, T, k]   (SAE fused only) relu of the k largest pre-activations
 *   topk_indices: int64 [B, T, k]   (SAE fused only) their feature ids
 *
 * Rows are flattened to N = B*T for every MatMul. Weights are written transposed to [in, out] into an
 * external-data file. Operators are those onnxruntime 1.30 runs fast on CPU; opset imports are collected from the
 * nodes (ai.onnx 23, com.microsoft 1 where a family uses its kernels).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatError } from '../errors.js';
import type { WeightSource } from './checkpoint.js';
import type { BlockContext, DecoderInputs, GraphOptions } from './blocks/context.js';
import { causalPaddingMask, positionsFromMask } from './blocks/mask.js';
import { type WeightDtype, precisionFor } from './blocks/precision.js';
import { saeTopK } from './blocks/sae.js';
import type { ModelArch } from './families/family.js';
import { ExternalDataFile, GraphBuilder, TensorDataType, attr } from './onnx/graph-builder.js';
import type { TopKSae } from './sae/types.js';

export type { WeightDtype } from './blocks/precision.js';
export type { GraphOptions } from './blocks/context.js';

/** Version of the shared graph assembly (the families have their own); part of the graph cache key. */
export const GRAPH_BUILDER_VERSION = 4;

export interface GraphSpec {
  arch: ModelArch;
  /** 0-based decoder layer whose output residual the graph returns */
  layer: number;
  weights: WeightSource;
  sae?: TopKSae | null;
  /** default 'f32' */
  weightDtype?: WeightDtype;
  options?: GraphOptions;
}

export interface BuiltGraph {
  modelPath: string;
  weightsPath: string;
  inputs: string[];
  outputs: string[];
}

export const MODEL_FILE = 'model.onnx';
export const WEIGHTS_FILE = 'weights.bin';

/** Write model.onnx + weights.bin for `spec` into `dir` (which must exist). */
export function buildModelGraph(spec: GraphSpec, dir: string): BuiltGraph {
  const { arch, layer, sae } = spec;
  if (sae && sae.dModel !== arch.config.hiddenSize)
    throw formatError(`${sae.source}: SAE d_model ${sae.dModel} does not match the model's hidden_size ${arch.config.hiddenSize}`);
  const weightsPath = join(dir, WEIGHTS_FILE);
  const ext = new ExternalDataFile(weightsPath);
  try {
    const g = new GraphBuilder(ext);
    const outputs = emitModel(g, spec);
    const modelPath = join(dir, MODEL_FILE);
    const meta = { family: arch.family, family_version: String(arch.familyVersion), layer: String(layer), builder_version: String(GRAPH_BUILDER_VERSION) };
    writeFileSync(modelPath, g.encode([], meta, `${arch.family}_residual`));
    return { modelPath, weightsPath, inputs: ['input_ids', 'attention_mask'], outputs };
  } finally {
    ext.close();
  }
}

function emitModel(g: GraphBuilder, spec: GraphSpec): string[] {
  const { arch, layer, weights, sae } = spec;
  const D = arch.config.hiddenSize;
  const ids = g.input('input_ids', TensorDataType.INT64, ['batch', 'seq']);
  const mask = g.input('attention_mask', TensorDataType.INT64, ['batch', 'seq']);
  const ctx: BlockContext = { g, w: weights, precision: precisionFor(spec.weightDtype ?? 'f32'), options: spec.options ?? {}, bt: g.op('Shape', [ids]) }; // bt = [B, T]

  // Embedding: x [N, D]. Pads read token 0 (any pad id works, even one outside a small vocabulary).
  const flatIds = g.op('Reshape', [g.op('Mul', [ids, mask]), g.constI64('minus1', [-1])]); //                 [N]
  const x0 = ctx.precision.embedding(g, weights, arch.embeddingName, flatIds, arch.config.vocabSize, D); //   [N, D]

  const inputs: DecoderInputs = { ids, mask, positions: positionsFromMask(ctx, mask), attnMask: causalPaddingMask(ctx, ids, mask) };
  const x = arch.emitDecoder(ctx, inputs, x0, layer); //                                                       [N, D]

  const shapeBTD = g.op('Concat', [ctx.bt, g.constI64('D', [D])], { axis: attr.int(0) });
  g.node('Reshape', [x, shapeBTD], { outputs: ['resid_post'] }); //                                           [B, T, D]
  g.output('resid_post', TensorDataType.FLOAT, ['batch', 'seq', D]);
  return sae ? ['resid_post', ...saeTopK(ctx, sae, x)] : ['resid_post'];
}

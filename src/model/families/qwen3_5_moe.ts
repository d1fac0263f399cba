/**
 * Qwen3.5-MoE (`model_type: qwen3_5_moe`: Qwen3.5-35B-A3B), as Hugging Face's modeling_qwen3_5_moe.py computes
 * it: Qwen3.5's hybrid stack (nested text_config, `model.language_model.` names, Gated DeltaNet and gated full
 * attention layers, zero-centred norms: ./qwen3_5.ts) with a sparse mixture of experts in EVERY layer:
 *
 *   out = Σ_top-k w_e · expert_e(h) + sigmoid(shared_expert_gate · h) · shared_expert(h)
 *
 * Router `mlp.gate.weight` [E, D]: softmax over all experts, top-k, always renormalised. The files store the
 * experts fused: `mlp.experts.gate_up_proj` [E, 2I, D] (rows 0..I-1 gate, I..2I-1 up) and
 * `mlp.experts.down_proj` [E, D, I]; the shared expert is a plain SwiGLU MLP of width
 * shared_expert_intermediate_size with a scalar gate `mlp.shared_expert_gate.weight` [1, D].
 */
import { z } from 'zod';
import { formatError } from '../../errors.js';
import type { WeightSource } from '../checkpoint.js';
import type { BlockContext } from '../blocks/context.js';
import { swiGluMlp } from '../blocks/mlp.js';
import { type ExpertWeights, type MoeShape, sparseMoe } from '../blocks/moe.js';
import { transposed } from '../blocks/weights.js';
import { decodeToF32 } from '../dtypes.js';
import { TensorDataType } from '../onnx/graph-builder.js';
import type { Family, ModelArch } from './family.js';
import { type HybridTextConfig, embedName, emitHybridDecoder, hybridMixerTensors, hybridTextConfigJson, layerPrefix, parseHybridTextConfig, textConfigOf } from './qwen3_5.js';

const posInt = z.number().int().positive();

const MoeTextSchema = z.object({
  num_experts: posInt,
  num_experts_per_tok: posInt,
  moe_intermediate_size: posInt,
  shared_expert_intermediate_size: posInt,
}).loose();

export interface Qwen35MoeConfig extends HybridTextConfig {
  modelType: 'qwen3_5_moe';
  numExperts: number; //       E
  topK: number; //             k
  expertWidth: number; //      I (moe_intermediate_size)
  sharedExpertWidth: number; // S (shared_expert_intermediate_size)
}

export function parseQwen35MoeConfig(raw: unknown, where = 'config.json'): Qwen35MoeConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw formatError(`${where}: not a JSON object`);
  const top = raw as Record<string, unknown>;
  if (top.model_type !== 'qwen3_5_moe') throw formatError(`${where}: model_type is ${JSON.stringify(top.model_type)}, expected "qwen3_5_moe"`);
  const text = textConfigOf(raw, where, 'qwen3_5_moe');
  if (text.model_type !== undefined && text.model_type !== 'qwen3_5_moe_text')
    throw formatError(`${where}: text_config.model_type is ${JSON.stringify(text.model_type)}, expected "qwen3_5_moe_text"`);
  const hybrid = parseHybridTextConfig(text, top, where);
  const r = MoeTextSchema.safeParse(text);
  if (!r.success) throw formatError(`${where}: text_config is not a Qwen3.5-MoE text config (${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')})`);
  const m = r.data;
  if (m.num_experts_per_tok > m.num_experts) throw formatError(`${where}: text_config.num_experts_per_tok ${m.num_experts_per_tok} exceeds num_experts ${m.num_experts}`);
  return { modelType: 'qwen3_5_moe', ...hybrid, numExperts: m.num_experts, topK: m.num_experts_per_tok, expertWidth: m.moe_intermediate_size, sharedExpertWidth: m.shared_expert_intermediate_size };
}

/** Hugging Face config.json for a config, nested as the real checkpoints are (tests and the bench). */
export function toQwen35MoeHfConfigJson(c: Qwen35MoeConfig): Record<string, unknown> {
  return {
    architectures: ['Qwen3_5MoeForConditionalGeneration'],
    model_type: 'qwen3_5_moe',
    tie_word_embeddings: c.tieWordEmbeddings,
    text_config: {
      model_type: 'qwen3_5_moe_text',
      ...hybridTextConfigJson(c),
      num_experts: c.numExperts,
      num_experts_per_tok: c.topK,
      moe_intermediate_size: c.expertWidth,
      shared_expert_intermediate_size: c.sharedExpertWidth,
    },
    vision_config: { model_type: 'qwen3_5_moe', depth: 1, hidden_size: 32, out_hidden_size: c.hiddenSize },
  };
}

export function qwen35MoeShape(c: Qwen35MoeConfig): MoeShape {
  return { hiddenSize: c.hiddenSize, numExperts: c.numExperts, topK: c.topK, expertWidth: c.expertWidth, normTopK: true };
}

/** The MLP tensors of layer l, with shapes. */
export function qwen35MoeMlpTensors(c: Qwen35MoeConfig, l: number): Map<string, number[]> {
  const D = c.hiddenSize, E = c.numExperts, I = c.expertWidth, S = c.sharedExpertWidth;
  const p = layerPrefix(l) + 'mlp.';
  return new Map([
    [p + 'gate.weight', [E, D]],
    [p + 'experts.gate_up_proj', [E, 2 * I, D]],
    [p + 'experts.down_proj', [E, D, I]],
    [p + 'shared_expert.gate_proj.weight', [S, D]],
    [p + 'shared_expert.up_proj.weight', [S, D]],
    [p + 'shared_expert.down_proj.weight', [D, S]],
    [p + 'shared_expert_gate.weight', [1, D]],
  ]);
}

/**
 * Expert e's gate, up [I, D] and down [D, I] out of the fused tensors, decoded one expert at a time from the
 * stored bytes (the fused bf16 tensors of the 35B model are about 1 GB per layer: never all in float32 at once).
 */
export function fusedExperts(w: WeightSource, prefix: string, s: { hiddenSize: number; expertWidth: number }): (e: number) => ExpertWeights {
  const D = s.hiddenSize, I = s.expertWidth;
  const gu = w.info(prefix + 'gate_up_proj'), dn = w.info(prefix + 'down_proj');
  const guRaw = w.readRaw(prefix + 'gate_up_proj'), dnRaw = w.readRaw(prefix + 'down_proj');
  const bpe = guRaw.byteLength / (gu.shape.reduce((a, b) => a * b, 1));
  const slice = (raw: Uint8Array, dtype: typeof gu.dtype, start: number, n: number, what: string) =>
    decodeToF32(dtype, raw.subarray(start * bpe, (start + n) * bpe), what);
  return (e) => ({
    gate: slice(guRaw, gu.dtype, e * 2 * I * D, I * D, `${prefix}gate_up_proj[${e}]`),
    up: slice(guRaw, gu.dtype, e * 2 * I * D + I * D, I * D, `${prefix}gate_up_proj[${e}]`),
    down: slice(dnRaw, dn.dtype, e * D * I, D * I, `${prefix}down_proj[${e}]`),
  });
}

/** Layer l's MLP: routed experts plus the sigmoid-gated shared expert. h2 [N, D] -> [N, D]. */
function qwen35MoeMlp(ctx: BlockContext, c: Qwen35MoeConfig, l: number, h2: string): string {
  const { g, w } = ctx;
  const D = c.hiddenSize;
  const p = layerPrefix(l) + 'mlp.';
  const routed = sparseMoe(ctx, layerPrefix(l) + 'mlp', h2, p + 'gate.weight', qwen35MoeShape(c), fusedExperts(w, p + 'experts.', c), ctx.options.moeKernel); // [N, D]
  const shared = swiGluMlp(ctx, p + 'shared_expert.', h2, D, c.sharedExpertWidth); //                                                      [N, D]
  const gateT = g.weight(p + 'shared_expert_gate.weightT', TensorDataType.FLOAT, [D, 1], transposed(w.readF32(p + 'shared_expert_gate.weight'), 1, D));
  const gate = g.op('Sigmoid', [g.op('MatMul', [h2, gateT])]); //                                                                          [N, 1]
  return g.op('Add', [routed, g.op('Mul', [gate, shared])]); //                                                                            [N, D]
}

export function qwen35MoeArch(c: Qwen35MoeConfig): ModelArch<Qwen35MoeConfig> {
  return {
    family: 'qwen3_5_moe',
    familyVersion: qwen35MoeFamily.version,
    config: c,
    embeddingName: embedName(),
    requiredTensors(layer) {
      const req = new Map<string, number[]>([[embedName(), [c.vocabSize, c.hiddenSize]]]);
      for (let l = 0; l <= layer; l++) for (const m of [hybridMixerTensors(c, l), qwen35MoeMlpTensors(c, l)]) for (const [n, s] of m) req.set(n, s);
      return req;
    },
    emitDecoder: (ctx, inputs, x, layer) => emitHybridDecoder(ctx, inputs, c, x, layer, (ctx2, l, h2) => qwen35MoeMlp(ctx2, c, l, h2)),
  };
}

export const qwen35MoeFamily: Family = {
  modelType: 'qwen3_5_moe',
  version: 1,
  title: 'Qwen3.5-MoE (Gated DeltaNet hybrid, sparse experts + shared expert)',
  parse: (raw, where) => qwen35MoeArch(parseQwen35MoeConfig(raw, where)),
};

/**
 * Qwen3-MoE (`model_type: qwen3_moe`: Qwen3-30B-A3B), as Hugging Face's modeling_qwen3_moe.py computes it:
 * dense Qwen3's attention and plain RMSNorms with flat `model.*` names, and a sparse mixture-of-experts MLP on
 * layer l iff l is not in mlp_only_layers and (l + 1) % decoder_sparse_step == 0 (a dense SwiGLU MLP of
 * intermediate_size elsewhere). Router `mlp.gate.weight` [E, D]: softmax over all experts, top-k, renormalised
 * only when norm_topk_prob. The files list every expert separately: `mlp.experts.E.{gate,up,down}_proj.weight`.
 * No shared expert.
 */
import { z } from 'zod';
import { formatError } from '../../errors.js';
import { swiGluMlp } from '../blocks/mlp.js';
import { type MoeShape, sparseMoe } from '../blocks/moe.js';
import type { Family, ModelArch } from './family.js';
import { parseWith } from './parse.js';
import { type Qwen3AttentionConfig, denseMlpTensors, emitQwen3Decoder, qwen3AttentionConfig, qwen3AttentionFields, qwen3AttentionTensors } from './qwen3.js';

const posInt = z.number().int().positive();

export const Qwen3MoeConfigSchema = z.object({
  model_type: z.literal('qwen3_moe'),
  ...qwen3AttentionFields,
  num_experts: posInt,
  num_experts_per_tok: posInt,
  moe_intermediate_size: posInt,
  norm_topk_prob: z.boolean().default(false),
  decoder_sparse_step: posInt.default(1),
  mlp_only_layers: z.array(z.number().int().nonnegative()).default([]),
  /** the dense MLP's width, on layers without experts */
  intermediate_size: posInt.optional(),
}).loose();

export interface Qwen3MoeConfig extends Qwen3AttentionConfig {
  numExperts: number;
  topK: number;
  expertWidth: number; // moe_intermediate_size
  normTopK: boolean;
  decoderSparseStep: number;
  mlpOnlyLayers: number[];
  /** dense MLP width (layers without experts); null when every layer has experts */
  intermediateSize: number | null;
}

export function parseQwen3MoeConfig(raw: unknown, where = 'config.json'): Qwen3MoeConfig {
  const c = parseWith(Qwen3MoeConfigSchema, raw, where, 'Qwen3-MoE');
  if (c.num_experts_per_tok > c.num_experts)
    throw formatError(`${where}: num_experts_per_tok ${c.num_experts_per_tok} exceeds num_experts ${c.num_experts}`);
  const config: Qwen3MoeConfig = {
    ...qwen3AttentionConfig(c, where),
    numExperts: c.num_experts,
    topK: c.num_experts_per_tok,
    expertWidth: c.moe_intermediate_size,
    normTopK: c.norm_topk_prob,
    decoderSparseStep: c.decoder_sparse_step,
    mlpOnlyLayers: c.mlp_only_layers,
    intermediateSize: c.intermediate_size ?? null,
  };
  const dense = Array.from({ length: config.numLayers }, (_, l) => l).filter((l) => !isMoeLayer(config, l));
  if (dense.length && config.intermediateSize === null)
    throw formatError(`${where}: layers ${dense.join(', ')} have a dense MLP (mlp_only_layers / decoder_sparse_step) but intermediate_size is missing`);
  return config;
}

/** Hugging Face's rule (Qwen3MoeDecoderLayer): experts unless listed in mlp_only_layers, every decoder_sparse_step-th layer. */
export function isMoeLayer(c: Pick<Qwen3MoeConfig, 'mlpOnlyLayers' | 'decoderSparseStep'>, l: number): boolean {
  return !c.mlpOnlyLayers.includes(l) && (l + 1) % c.decoderSparseStep === 0;
}

/** Hugging Face config.json for a config (tests and the bench write tiny / random checkpoints with it). */
export function toQwen3MoeHfConfigJson(c: Qwen3MoeConfig): Record<string, unknown> {
  return {
    architectures: ['Qwen3MoeForCausalLM'],
    model_type: 'qwen3_moe',
    hidden_size: c.hiddenSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    vocab_size: c.vocabSize,
    tie_word_embeddings: c.tieWordEmbeddings,
    hidden_act: 'silu',
    attention_bias: false,
    rope_scaling: null,
    use_sliding_window: false,
    num_experts: c.numExperts,
    num_experts_per_tok: c.topK,
    moe_intermediate_size: c.expertWidth,
    norm_topk_prob: c.normTopK,
    decoder_sparse_step: c.decoderSparseStep,
    mlp_only_layers: c.mlpOnlyLayers,
    ...(c.intermediateSize !== null ? { intermediate_size: c.intermediateSize } : {}),
    torch_dtype: c.torchDtype ?? 'bfloat16',
  };
}

export function moeShape(c: Qwen3MoeConfig): MoeShape {
  return { hiddenSize: c.hiddenSize, numExperts: c.numExperts, topK: c.topK, expertWidth: c.expertWidth, normTopK: c.normTopK };
}

export function qwen3MoeArch(c: Qwen3MoeConfig): ModelArch<Qwen3MoeConfig> {
  const D = c.hiddenSize, E = c.numExperts, I = c.expertWidth;
  return {
    family: 'qwen3_moe',
    familyVersion: qwen3MoeFamily.version,
    config: c,
    embeddingName: 'model.embed_tokens.weight',
    requiredTensors(layer) {
      const req = qwen3AttentionTensors(c, layer);
      for (let l = 0; l <= layer; l++) {
        if (!isMoeLayer(c, l)) { denseMlpTensors(req, l, D, c.intermediateSize!); continue; }
        const p = `model.layers.${l}.mlp.`;
        req.set(p + 'gate.weight', [E, D]);
        for (let e = 0; e < E; e++) {
          req.set(`${p}experts.${e}.gate_proj.weight`, [I, D]);
          req.set(`${p}experts.${e}.up_proj.weight`, [I, D]);
          req.set(`${p}experts.${e}.down_proj.weight`, [D, I]);
        }
      }
      return req;
    },
    emitDecoder: (ctx, inputs, x, layer) =>
      emitQwen3Decoder(ctx, inputs, c, x, layer, (ctx2, l, h2) => {
        const p = `model.layers.${l}.mlp.`;
        if (!isMoeLayer(c, l)) return swiGluMlp(ctx2, p, h2, D, c.intermediateSize!);
        const expert = (e: number) => ({
          gate: ctx2.w.readF32(`${p}experts.${e}.gate_proj.weight`),
          up: ctx2.w.readF32(`${p}experts.${e}.up_proj.weight`),
          down: ctx2.w.readF32(`${p}experts.${e}.down_proj.weight`),
        });
        return sparseMoe(ctx2, `model.layers.${l}.mlp`, h2, p + 'gate.weight', moeShape(c), expert, ctx2.options.moeKernel);
      }),
  };
}

export const qwen3MoeFamily: Family = {
  modelType: 'qwen3_moe',
  version: 1,
  title: 'Qwen3-MoE',
  parse: (raw, where) => qwen3MoeArch(parseQwen3MoeConfig(raw, where)),
};

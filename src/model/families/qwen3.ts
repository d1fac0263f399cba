/**
 * Qwen3 (dense; `model_type: qwen3`: Qwen3-1.7B, Qwen3-8B), exactly as Hugging Face's modeling_qwen3.py
 * computes it: flat `model.*` tensor names; each decoder layer is
 *   x = x + o_proj(attn(rope(q_norm(q)), rope(k_norm(k)), v))     with h = input_layernorm(x)
 *   x = x + down(silu(gate(h2)) * up(h2))                           with h2 = post_attention_layernorm(x)
 * The attention-side config (and its checks) is shared with qwen3_moe, which differs only in its MLPs.
 */
import { z } from 'zod';
import { formatError } from '../../errors.js';
import { qkNormAttention } from '../blocks/attention.js';
import type { BlockContext, DecoderInputs } from '../blocks/context.js';
import { swiGluMlp } from '../blocks/mlp.js';
import { rmsNorm } from '../blocks/norm.js';
import { type RopeTables, ropeTables } from '../blocks/rope.js';
import type { BaseConfig, Family, ModelArch } from './family.js';
import { parseWith } from './parse.js';

const posInt = z.number().int().positive();

/** config.json keys of Qwen3's attention and embedding, shared by qwen3 and qwen3_moe. */
export const qwen3AttentionFields = {
  hidden_size: posInt,
  num_hidden_layers: posInt,
  num_attention_heads: posInt,
  num_key_value_heads: posInt,
  head_dim: posInt.optional(),
  rms_norm_eps: z.number().positive(),
  rope_theta: z.number().positive(),
  vocab_size: posInt,
  tie_word_embeddings: z.boolean().default(false),
  hidden_act: z.literal('silu').default('silu'),
  attention_bias: z.boolean().default(false),
  rope_scaling: z.unknown().optional(),
  use_sliding_window: z.boolean().optional(),
  layer_types: z.array(z.string()).optional(),
  torch_dtype: z.string().optional(),
};

export const Qwen3ConfigSchema = z.object({
  model_type: z.literal('qwen3'),
  intermediate_size: posInt,
  ...qwen3AttentionFields,
}).loose();

/** The attention-side config of Qwen3 and Qwen3-MoE. */
export interface Qwen3AttentionConfig extends BaseConfig {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
}

export interface Qwen3Config extends Qwen3AttentionConfig {
  intermediateSize: number;
}

type AttentionFields = z.infer<z.ZodObject<typeof qwen3AttentionFields>>;

/** Checks and derived values of the attention-side keys (qwen3 and qwen3_moe). */
export function qwen3AttentionConfig(c: AttentionFields, where: string): Qwen3AttentionConfig {
  if (c.attention_bias) throw formatError(`${where}: attention_bias=true is not supported (Qwen3 has no attention biases)`);
  if (c.rope_scaling !== undefined && c.rope_scaling !== null)
    throw formatError(`${where}: rope_scaling ${JSON.stringify(c.rope_scaling)} is not supported (plain RoPE only)`);
  // Qwen3 checkpoints ship use_sliding_window: false; with it on, layers past max_window_layers attend to a
  // window only, which this graph does not build: refuse rather than compute something else.
  if (c.use_sliding_window === true || c.layer_types?.some((t) => t !== 'full_attention'))
    throw formatError(`${where}: sliding-window attention (use_sliding_window / layer_types) is not supported: only full attention`);
  if (c.num_attention_heads % c.num_key_value_heads !== 0)
    throw formatError(`${where}: num_attention_heads ${c.num_attention_heads} is not a multiple of num_key_value_heads ${c.num_key_value_heads}`);
  const headDim = c.head_dim ?? c.hidden_size / c.num_attention_heads;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) throw formatError(`${where}: head_dim ${headDim} must be an even integer`);
  return {
    hiddenSize: c.hidden_size,
    numLayers: c.num_hidden_layers,
    numHeads: c.num_attention_heads,
    numKvHeads: c.num_key_value_heads,
    headDim,
    rmsNormEps: c.rms_norm_eps,
    ropeTheta: c.rope_theta,
    vocabSize: c.vocab_size,
    tieWordEmbeddings: c.tie_word_embeddings,
    torchDtype: c.torch_dtype,
  };
}

export function parseQwen3Config(raw: unknown, where = 'config.json'): Qwen3Config {
  const c = parseWith(Qwen3ConfigSchema, raw, where, 'Qwen3');
  return { ...qwen3AttentionConfig(c, where), intermediateSize: c.intermediate_size };
}

/** Hugging Face config.json text for a config (used by tests, the bench and the demo backbone). */
export function toHfConfigJson(c: Qwen3Config): Record<string, unknown> {
  return {
    architectures: ['Qwen3ForCausalLM'],
    model_type: 'qwen3',
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
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
    torch_dtype: c.torchDtype ?? 'bfloat16',
  };
}

// ---------------------------------------------------------------- tensors and layers (shared with qwen3_moe)

/** Embedding plus, for each layer 0..layer, the norms and attention tensors, with shapes. */
export function qwen3AttentionTensors(c: Qwen3AttentionConfig, layer: number): Map<string, number[]> {
  const D = c.hiddenSize, H = c.numHeads, KV = c.numKvHeads, hd = c.headDim;
  const req = new Map<string, number[]>();
  req.set('model.embed_tokens.weight', [c.vocabSize, D]);
  for (let l = 0; l <= layer; l++) {
    const p = `model.layers.${l}.`;
    req.set(p + 'input_layernorm.weight', [D]);
    req.set(p + 'self_attn.q_proj.weight', [H * hd, D]);
    req.set(p + 'self_attn.k_proj.weight', [KV * hd, D]);
    req.set(p + 'self_attn.v_proj.weight', [KV * hd, D]);
    req.set(p + 'self_attn.o_proj.weight', [D, H * hd]);
    req.set(p + 'self_attn.q_norm.weight', [hd]);
    req.set(p + 'self_attn.k_norm.weight', [hd]);
    req.set(p + 'post_attention_layernorm.weight', [D]);
  }
  return req;
}

/** Dense SwiGLU MLP tensors of layer l: `model.layers.l.mlp.{gate,up,down}_proj.weight`. */
export function denseMlpTensors(req: Map<string, number[]>, l: number, D: number, F: number): void {
  const p = `model.layers.${l}.mlp.`;
  req.set(p + 'gate_proj.weight', [F, D]);
  req.set(p + 'up_proj.weight', [F, D]);
  req.set(p + 'down_proj.weight', [D, F]);
}

/** The MLP of layer l: h2 [N, D] -> [N, D]. */
export type MlpEmitter = (ctx: BlockContext, l: number, h2: string) => string;

/** Decoder layers 0..layer of a Qwen3-style model (plain RMSNorms, qk-norm attention, full RoPE), any MLP. */
export function emitQwen3Decoder(ctx: BlockContext, inputs: DecoderInputs, c: Qwen3AttentionConfig, x: string, layer: number, mlp: MlpEmitter): string {
  const rope = ropeTables(ctx, inputs.positions, { headDim: c.headDim, theta: c.ropeTheta }); //         cos, sin [B, T, hd/2]
  for (let l = 0; l <= layer; l++) x = qwen3DecoderLayer(ctx, inputs, c, l, x, rope, mlp);
  return x;
}

/** One Qwen3DecoderLayer: x [N, D] -> x [N, D]. */
function qwen3DecoderLayer(ctx: BlockContext, inputs: DecoderInputs, c: Qwen3AttentionConfig, l: number, x: string, rope: RopeTables, mlp: MlpEmitter): string {
  const { g } = ctx;
  const p = `model.layers.${l}.`;
  const D = c.hiddenSize, eps = c.rmsNormEps;
  const h = rmsNorm(ctx, x, p + 'input_layernorm.weight', D, { eps }); //                                  [N, D]
  const x1 = g.op('Add', [x, qkNormAttention(ctx, inputs, p + 'self_attn.', h, c, rope)]); //              [N, D]
  const h2 = rmsNorm(ctx, x1, p + 'post_attention_layernorm.weight', D, { eps }); //                      [N, D]
  return g.op('Add', [x1, mlp(ctx, l, h2)]); //                                                           [N, D]
}

// ---------------------------------------------------------------- the family

export function qwen3Arch(c: Qwen3Config): ModelArch<Qwen3Config> {
  return {
    family: 'qwen3',
    familyVersion: qwen3Family.version,
    config: c,
    embeddingName: 'model.embed_tokens.weight',
    requiredTensors(layer) {
      const req = qwen3AttentionTensors(c, layer);
      for (let l = 0; l <= layer; l++) denseMlpTensors(req, l, c.hiddenSize, c.intermediateSize);
      return req;
    },
    emitDecoder: (ctx, inputs, x, layer) =>
      emitQwen3Decoder(ctx, inputs, c, x, layer, (ctx2, l, h2) => swiGluMlp(ctx2, `model.layers.${l}.mlp.`, h2, c.hiddenSize, c.intermediateSize)),
  };
}

export const qwen3Family: Family = {
  modelType: 'qwen3',
  version: 1,
  title: 'Qwen3 (dense)',
  parse: (raw, where) => qwen3Arch(parseQwen3Config(raw, where)),
};

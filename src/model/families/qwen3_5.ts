/**
 * Qwen3.5 (`model_type: qwen3_5`: Qwen3.5-2B / 9B / 27B), exactly as Hugging Face's modeling_qwen3_5.py computes
 * it. The checkpoints are vision-language models: everything the text stack needs sits in a nested `text_config`
 * (`model_type` qwen3_5_text), text weights under `model.language_model.`; `vision_config`, `model.visual.*` and
 * `mtp.*` are never read. Each decoder layer is a hybrid:
 *   x = x + mixer(rms(x)(1 + w_in))        mixer: Gated DeltaNet, or gated full attention every
 *                                          `full_attention_interval`-th layer (or as `layer_types` says)
 *   x = x + mlp(rms(x)(1 + w_post))         dense SwiGLU (Qwen3.5-MoE swaps in its experts)
 * The hybrid part (config keys, tensor names, decoder loop) is exported for qwen3_5_moe.
 */
import { z } from 'zod';
import { formatError } from '../../errors.js';
import type { BlockContext, DecoderInputs } from '../blocks/context.js';
import { type GatedAttentionShape, gatedAttention, gatedAttentionTensors } from '../blocks/gated-attention.js';
import { type GatedDeltaNetShape, gatedDeltaNet, gatedDeltaNetTensors } from '../blocks/gated-deltanet.js';
import { TensorDataType, attr } from '../onnx/graph-builder.js';
import { swiGluMlp } from '../blocks/mlp.js';
import { rmsNorm } from '../blocks/norm.js';
import { ropeTables } from '../blocks/rope.js';
import type { BaseConfig, Family, ModelArch } from './family.js';
import { parseWith } from './parse.js';

export type LayerType = 'linear_attention' | 'full_attention';

export interface HybridTextConfig extends BaseConfig {
  rmsNormEps: number;
  /** per decoder layer: which token mixer it has */
  layerTypes: LayerType[];
  /** the gated full attention of the full_attention layers (head_dim is not hidden / heads: 256 in every Qwen3.5) */
  attention: GatedAttentionShape;
  /** the Gated DeltaNet of the linear_attention layers (Hv a multiple of Hk) */
  deltaNet: GatedDeltaNetShape;
}

export interface Qwen35Config extends HybridTextConfig {
  modelType: 'qwen3_5';
  intermediateSize: number; // F, the dense SwiGLU MLP
}

/** Where the text weights live in the file (the vision tower is `model.visual.*`, the MTP head `mtp.*`). */
export const TEXT_PREFIX = 'model.language_model.';

const posInt = z.number().int().positive();

const RopeParameters = z.object({
  rope_type: z.string().optional(),
  rope_theta: z.number().positive().optional(),
  partial_rotary_factor: z.number().positive().max(1).optional(),
  mrope_section: z.array(z.number().int().nonnegative()).optional(),
  mrope_interleaved: z.boolean().optional(),
}).loose();

/** The keys of `text_config` the hybrid stack reads (dense and MoE alike). */
export const HybridTextConfigSchema = z.object({
  hidden_size: posInt,
  num_hidden_layers: posInt,
  vocab_size: posInt,
  rms_norm_eps: z.number().positive(),
  num_attention_heads: posInt,
  num_key_value_heads: posInt,
  head_dim: posInt.optional(),
  linear_num_key_heads: posInt,
  linear_num_value_heads: posInt,
  linear_key_head_dim: posInt,
  linear_value_head_dim: posInt,
  linear_conv_kernel_dim: posInt,
  layer_types: z.array(z.string()).optional(),
  full_attention_interval: posInt.optional(),
  rope_parameters: RopeParameters.optional(),
  // transformers 4.x wrote these at the top of text_config (and rope_scaling for M-RoPE)
  rope_theta: z.number().positive().optional(),
  partial_rotary_factor: z.number().positive().max(1).optional(),
  rope_scaling: z.unknown().optional(),
  attn_output_gate: z.boolean().default(true),
  attention_bias: z.boolean().default(false),
  hidden_act: z.literal('silu').default('silu'),
  tie_word_embeddings: z.boolean().optional(),
  dtype: z.string().optional(),
  torch_dtype: z.string().optional(),
}).loose();

/** The nested `text_config` object of a vision-language config, refused clearly when absent. */
export function textConfigOf(raw: unknown, where: string, family: string): Record<string, unknown> {
  const tc = (raw as { text_config?: unknown } | null)?.text_config;
  if (tc === undefined || tc === null)
    throw formatError(`${where}: a ${family} config must nest the language model's settings in "text_config" (as Hugging Face's ${family} checkpoints do); it has none`);
  if (typeof tc !== 'object' || Array.isArray(tc)) throw formatError(`${where}: "text_config" must be an object`);
  return tc as Record<string, unknown>;
}

/**
 * The shared hybrid part of a Qwen3.5 / Qwen3.5-MoE text config. `top` is the whole config.json (for
 * tie_word_embeddings, which real checkpoints repeat at the top level).
 */
export function parseHybridTextConfig(text: Record<string, unknown>, top: Record<string, unknown>, where: string): HybridTextConfig {
  const c = parseWith(HybridTextConfigSchema, text, `${where} text_config`, 'Qwen3.5 text');
  if (c.attention_bias) throw formatError(`${where}: text_config.attention_bias=true is not supported (Qwen3.5 has no attention biases)`);
  if (!c.attn_output_gate) throw formatError(`${where}: text_config.attn_output_gate=false is not supported (every Qwen3.5 gates its attention output)`);
  if (c.num_attention_heads % c.num_key_value_heads !== 0)
    throw formatError(`${where}: num_attention_heads ${c.num_attention_heads} is not a multiple of num_key_value_heads ${c.num_key_value_heads}`);
  if (c.linear_num_value_heads % c.linear_num_key_heads !== 0)
    throw formatError(`${where}: linear_num_value_heads ${c.linear_num_value_heads} is not a multiple of linear_num_key_heads ${c.linear_num_key_heads}`);

  const rope = c.rope_parameters ?? {};
  const ropeType = rope.rope_type ?? 'default';
  if (ropeType !== 'default') throw formatError(`${where}: rope_type '${ropeType}' is not supported (plain RoPE only)`);
  if (c.rope_scaling !== undefined && c.rope_scaling !== null) {
    const rs = c.rope_scaling as { rope_type?: unknown; type?: unknown };
    const t = rs.rope_type ?? rs.type;
    // Multimodal RoPE (mrope_section) is plain RoPE for text: the three position rows are equal.
    if (t !== undefined && t !== 'default' && t !== 'mrope') throw formatError(`${where}: rope_scaling ${JSON.stringify(c.rope_scaling)} is not supported`);
  }
  const ropeTheta = rope.rope_theta ?? c.rope_theta;
  if (ropeTheta === undefined) throw formatError(`${where}: text_config has no rope_theta (rope_parameters.rope_theta)`);
  const headDim = c.head_dim ?? c.hidden_size / c.num_attention_heads;
  if (!Number.isInteger(headDim)) throw formatError(`${where}: head_dim ${headDim} must be an integer`);
  const factor = rope.partial_rotary_factor ?? c.partial_rotary_factor ?? 1;
  const rotaryDim = Math.floor(headDim * factor); // HF: int(head_dim * partial_rotary_factor)
  if (rotaryDim < 2 || rotaryDim % 2 !== 0) throw formatError(`${where}: head_dim ${headDim} * partial_rotary_factor ${factor} = ${rotaryDim} rotary dims: must be a positive even number`);

  let layerTypes: LayerType[];
  if (c.layer_types) {
    if (c.layer_types.length !== c.num_hidden_layers)
      throw formatError(`${where}: layer_types has ${c.layer_types.length} entries for ${c.num_hidden_layers} layers`);
    const bad = c.layer_types.findIndex((t) => t !== 'linear_attention' && t !== 'full_attention');
    if (bad >= 0) throw formatError(`${where}: layer_types[${bad}] is '${c.layer_types[bad]}': expected 'linear_attention' or 'full_attention'`);
    layerTypes = c.layer_types as LayerType[];
  } else {
    // HF's default: layer l is full attention iff (l + 1) % interval == 0
    const interval = c.full_attention_interval ?? 4;
    layerTypes = Array.from({ length: c.num_hidden_layers }, (_, l) => ((l + 1) % interval === 0 ? 'full_attention' : 'linear_attention'));
  }

  const tie = c.tie_word_embeddings ?? (typeof top.tie_word_embeddings === 'boolean' ? top.tie_word_embeddings : false);
  return {
    hiddenSize: c.hidden_size,
    numLayers: c.num_hidden_layers,
    vocabSize: c.vocab_size,
    rmsNormEps: c.rms_norm_eps,
    tieWordEmbeddings: tie,
    layerTypes,
    attention: { numHeads: c.num_attention_heads, numKvHeads: c.num_key_value_heads, headDim, ropeTheta, rotaryDim },
    deltaNet: {
      numKeyHeads: c.linear_num_key_heads,
      numValueHeads: c.linear_num_value_heads,
      keyHeadDim: c.linear_key_head_dim,
      valueHeadDim: c.linear_value_head_dim,
      convKernel: c.linear_conv_kernel_dim,
    },
    torchDtype: c.dtype ?? c.torch_dtype,
  };
}

/** A whole Qwen3.5 (dense) config.json. */
export function parseQwen35Config(raw: unknown, where = 'config.json'): Qwen35Config {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw formatError(`${where}: not a JSON object`);
  const top = raw as Record<string, unknown>;
  if (top.model_type !== 'qwen3_5') throw formatError(`${where}: model_type is ${JSON.stringify(top.model_type)}, expected "qwen3_5"`);
  const text = textConfigOf(raw, where, 'qwen3_5');
  if (text.model_type !== undefined && text.model_type !== 'qwen3_5_text')
    throw formatError(`${where}: text_config.model_type is ${JSON.stringify(text.model_type)}, expected "qwen3_5_text"`);
  const hybrid = parseHybridTextConfig(text, top, where);
  const { intermediate_size } = parseWith(z.object({ intermediate_size: posInt }).loose(), text, `${where} text_config`, 'dense Qwen3.5 text');
  return { modelType: 'qwen3_5', ...hybrid, intermediateSize: intermediate_size };
}

/** Hugging Face config.json for a Qwen3.5 config, nested as the real checkpoints are (tests, bench, demo). */
export function toQwen35HfConfigJson(c: Qwen35Config): Record<string, unknown> {
  return {
    architectures: ['Qwen3_5ForConditionalGeneration'],
    model_type: 'qwen3_5',
    tie_word_embeddings: c.tieWordEmbeddings,
    text_config: {
      model_type: 'qwen3_5_text',
      ...hybridTextConfigJson(c),
      intermediate_size: c.intermediateSize,
    },
    vision_config: { model_type: 'qwen3_5', depth: 1, hidden_size: 32, out_hidden_size: c.hiddenSize },
  };
}

/** The hybrid keys of a text_config, as Hugging Face writes them. */
export function hybridTextConfigJson(c: HybridTextConfig): Record<string, unknown> {
  return {
    hidden_size: c.hiddenSize,
    num_hidden_layers: c.numLayers,
    vocab_size: c.vocabSize,
    rms_norm_eps: c.rmsNormEps,
    tie_word_embeddings: c.tieWordEmbeddings,
    layer_types: c.layerTypes,
    num_attention_heads: c.attention.numHeads,
    num_key_value_heads: c.attention.numKvHeads,
    head_dim: c.attention.headDim,
    attn_output_gate: true,
    attention_bias: false,
    hidden_act: 'silu',
    rope_parameters: {
      rope_type: 'default',
      rope_theta: c.attention.ropeTheta,
      partial_rotary_factor: c.attention.rotaryDim / c.attention.headDim,
      mrope_section: [11, 11, 10],
      mrope_interleaved: true,
    },
    linear_num_key_heads: c.deltaNet.numKeyHeads,
    linear_num_value_heads: c.deltaNet.numValueHeads,
    linear_key_head_dim: c.deltaNet.keyHeadDim,
    linear_value_head_dim: c.deltaNet.valueHeadDim,
    linear_conv_kernel_dim: c.deltaNet.convKernel,
    dtype: c.torchDtype ?? 'bfloat16',
  };
}

// ---------------------------------------------------------------- tensors

export const embedName = () => `${TEXT_PREFIX}embed_tokens.weight`;
export const layerPrefix = (l: number) => `${TEXT_PREFIX}layers.${l}.`;

/** The token mixer and the two norms of layer `l` (Gated DeltaNet or gated full attention). */
export function hybridMixerTensors(c: HybridTextConfig, l: number): Map<string, number[]> {
  const D = c.hiddenSize;
  const p = layerPrefix(l);
  const req = new Map<string, number[]>();
  req.set(p + 'input_layernorm.weight', [D]);
  req.set(p + 'post_attention_layernorm.weight', [D]);
  const mixer = c.layerTypes[l] === 'linear_attention'
    ? gatedDeltaNetTensors(p + 'linear_attn.', D, c.deltaNet)
    : gatedAttentionTensors(p + 'self_attn.', D, c.attention);
  for (const [n, shape] of mixer) req.set(n, shape);
  return req;
}

/** Everything a dense Qwen3.5 reads to compute the residual after layer `layer` (0-based, inclusive). */
export function qwen35RequiredTensors(c: Qwen35Config, layer: number): Map<string, number[]> {
  const D = c.hiddenSize, F = c.intermediateSize;
  const req = new Map<string, number[]>([[embedName(), [c.vocabSize, D]]]);
  for (let l = 0; l <= layer; l++) {
    for (const [n, s] of hybridMixerTensors(c, l)) req.set(n, s);
    const p = layerPrefix(l) + 'mlp.';
    req.set(p + 'gate_proj.weight', [F, D]);
    req.set(p + 'up_proj.weight', [F, D]);
    req.set(p + 'down_proj.weight', [D, F]);
  }
  return req;
}

// ---------------------------------------------------------------- decoder

/** The MLP of layer l: h2 [N, D] (post-attention-normed) -> [N, D]. */
export type HybridMlp = (ctx: BlockContext, l: number, h2: string) => string;

/** Decoder layers 0..layer of the hybrid stack: x [N, D] -> the residual after `layer`, with the given MLP. */
export function emitHybridDecoder(ctx: BlockContext, inputs: DecoderInputs, c: HybridTextConfig, x: string, layer: number, mlp: HybridMlp): string {
  const { g } = ctx;
  const D = c.hiddenSize, eps = c.rmsNormEps;
  const a = c.attention;
  const needsRope = c.layerTypes.slice(0, layer + 1).includes('full_attention');
  // Multimodal RoPE gives a text token three equal position rows: that is plain partial RoPE on its position.
  const rope = needsRope ? ropeTables(ctx, inputs.positions, { headDim: a.headDim, theta: a.ropeTheta, rotaryDim: a.rotaryDim }) : null; // [B, T, rd/2]
  // float [N, 1]: 1 on real tokens. The DeltaNet zeroes pads so they add nothing to its conv or state.
  const realToken = c.layerTypes.slice(0, layer + 1).includes('linear_attention')
    ? g.op('Reshape', [g.op('Cast', [inputs.mask], { to: attr.int(TensorDataType.FLOAT) }), g.constI64('rows_by_1', [-1, 1])])
    : '';
  for (let l = 0; l <= layer; l++) {
    const p = layerPrefix(l);
    const h = rmsNorm(ctx, x, p + 'input_layernorm.weight', D, { eps, zeroCentred: true }); //            [N, D]
    const mixed = c.layerTypes[l] === 'linear_attention'
      ? gatedDeltaNet(ctx, p + 'linear_attn.', h, c, realToken)
      : gatedAttention(ctx, inputs, p + 'self_attn.', h, c, rope!); //                                     [N, D]
    x = g.op('Add', [x, mixed]);
    const h2 = rmsNorm(ctx, x, p + 'post_attention_layernorm.weight', D, { eps, zeroCentred: true }); //   [N, D]
    x = g.op('Add', [x, mlp(ctx, l, h2)]); //                                                              [N, D]
  }
  return x;
}

// ---------------------------------------------------------------- the family

export function qwen35Arch(c: Qwen35Config): ModelArch<Qwen35Config> {
  return {
    family: 'qwen3_5',
    familyVersion: qwen35Family.version,
    config: c,
    embeddingName: embedName(),
    requiredTensors: (layer) => qwen35RequiredTensors(c, layer),
    emitDecoder: (ctx, inputs, x, layer) =>
      emitHybridDecoder(ctx, inputs, c, x, layer, (ctx2, l, h2) => swiGluMlp(ctx2, layerPrefix(l) + 'mlp.', h2, c.hiddenSize, c.intermediateSize)),
  };
}

export const qwen35Family: Family = {
  modelType: 'qwen3_5',
  version: 1,
  title: 'Qwen3.5 (Gated DeltaNet hybrid)',
  parse: (raw, where) => qwen35Arch(parseQwen35Config(raw, where)),
};

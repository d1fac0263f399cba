/** Hugging Face Qwen3 `config.json`, parsed with zod. Other Qwen families are refused by name. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { formatError } from '../errors.js';

const REFUSED_TYPES: Record<string, string> = {
  qwen3_moe: 'Qwen3 mixture-of-experts checkpoints (qwen3_moe) are not supported yet',
  qwen3_5: 'Qwen3.5 checkpoints (qwen3_5, hybrid linear attention) are not supported yet',
  qwen3_5_moe: 'Qwen3.5 mixture-of-experts checkpoints (qwen3_5_moe) are not supported yet',
  qwen2: 'Qwen2 checkpoints have no q_norm/k_norm and are not supported: use a Qwen3 checkpoint',
};

const posInt = z.number().int().positive();

export const Qwen3ConfigSchema = z.object({
  model_type: z.literal('qwen3'),
  hidden_size: posInt,
  intermediate_size: posInt,
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
}).loose();

export interface Qwen3Config {
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  vocabSize: number;
  tieWordEmbeddings: boolean;
  torchDtype?: string;
}

export function parseQwen3Config(raw: unknown, where = 'config.json'): Qwen3Config {
  const type = (raw as { model_type?: unknown } | null)?.model_type;
  if (typeof type === 'string' && REFUSED_TYPES[type]) throw formatError(`${where}: ${REFUSED_TYPES[type]}`);
  const r = Qwen3ConfigSchema.safeParse(raw);
  if (!r.success) {
    const issues = r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw formatError(`${where}: not a Qwen3 config (${issues})`);
  }
  const c = r.data;
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
    intermediateSize: c.intermediate_size,
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

export function readQwen3Config(dir: string): Qwen3Config {
  const path = join(dir, 'config.json');
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw formatError(`${path}: cannot read the model config (${(e as Error).message})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw formatError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  return parseQwen3Config(raw, path);
}

/** Hugging Face config.json text for a config (used by tests and the demo backbone). */
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

/** Rotary position embeddings (rotate-half form, as Hugging Face's apply_rotary_pos_emb). */
import { TensorDataType, attr } from '../onnx/graph-builder.js';
import type { BlockContext } from './context.js';

export interface RopeSpec {
  headDim: number;
  theta: number;
  /** dimensions rotated, from the start of each head (head_dim * partial_rotary_factor); default headDim */
  rotaryDim?: number;
}

export interface RopeTables {
  /** float [B, T, rotaryDim / 2] each */
  cos: string;
  sin: string;
  rotaryDim: number;
  headDim: number;
}

/**
 * cos/sin of pos * inv_freq, inv_freq[i] = 1 / theta^(2i / rotaryDim) in float32 as torch computes it:
 * 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)), the power in float32 too.
 */
export function ropeTables(ctx: BlockContext, positions: string, spec: RopeSpec): RopeTables {
  const { g } = ctx;
  const rotaryDim = spec.rotaryDim ?? spec.headDim;
  if (rotaryDim % 2 !== 0 || rotaryDim > spec.headDim) throw new Error(`rotary dim ${rotaryDim} must be even and at most head_dim ${spec.headDim}`);
  const half = rotaryDim / 2;
  const invFreq = new Float32Array(half);
  for (let i = 0; i < half; i++) invFreq[i] = 1 / Math.fround(spec.theta ** Math.fround((2 * i) / rotaryDim));
  const posF = g.op('Unsqueeze', [g.op('Cast', [positions], { to: attr.int(TensorDataType.FLOAT) }), g.constI64('axis_last', [-1])]); // [B, T, 1]
  const freqs = g.op('Mul', [posF, g.constF32('inv_freq', invFreq)]); //                                                      [B, T, rd/2]
  return { cos: g.op('Cos', [freqs]), sin: g.op('Sin', [freqs]), rotaryDim, headDim: spec.headDim };
}

/** RoPE on x [B, T, heads * headDim]; with a partial rotary dim only the first rotaryDim of each head turn. */
export function applyRope(ctx: BlockContext, x: string, heads: number, r: RopeTables): string {
  const attrs = { num_heads: attr.int(heads), interleaved: attr.int(0), ...(r.rotaryDim < r.headDim ? { rotary_embedding_dim: attr.int(r.rotaryDim) } : {}) };
  return ctx.g.op('RotaryEmbedding', [x, r.cos, r.sin], attrs);
}
